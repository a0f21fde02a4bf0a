"""Build a model variant, its criterion and post-processors from parsed options."""
import logging
from typing import Tuple

from torch import nn

from .backbones import build_backbone
from .deformable_transformer import build_deformable_transformer
from .ops import set_msda_impl
from .postprocess import build_postprocessors
from .text_encoder import TextEncoderSource, build_roberta, load_text_encoder_weights as _load_weights
from .variants import MODEL_NAMES, get_variant

logger = logging.getLogger(__name__)

# Class counts of the non-binary heads, as the original build() hard-codes them.
NUM_CLASSES = {"ytvos": 65, "davis": 78, "a2d": 1, "jhmdb": 1}
COCO_NUM_CLASSES = 91


def num_classes_for(args) -> int:
    return 1 if args.binary else NUM_CLASSES.get(args.dataset_file, COCO_NUM_CLASSES)


def resolve_model_name(args) -> str:
    name = getattr(args, "model", None) or "referformer"
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown --model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return name


def build_model(args) -> Tuple[nn.Module, nn.Module, object]:
    """Build (model, criterion, postprocessors) on the current default device. No weights are read:
    the text encoder is randomly initialised from its config (see ``load_text_encoder_weights``)."""
    variant = get_variant(resolve_model_name(args))
    set_msda_impl(getattr(args, "msda_impl", "auto"))
    num_classes = num_classes_for(args)
    core = variant.uses_referformer_core
    backbone = build_backbone(args) if core else None
    transformer = build_deformable_transformer(args) if core else None
    source = TextEncoderSource(getattr(args, "text_encoder", "roberta-base"))
    text_encoder = build_roberta(source)
    model, criterion = variant.build(args, backbone, transformer, text_encoder, source, num_classes)
    return model, criterion, build_postprocessors(args, args.dataset_file)


def load_text_encoder_weights(model: nn.Module) -> None:
    """Load the pretrained text-encoder weights from ``--text_encoder`` (when no checkpoint supplies them)."""
    _load_weights(model.text_encoder, model.text_source)
