"""The model for inference: rebuilt from a checkpoint's own config, or from the options (legacy
checkpoints, or random weights for pipeline tests with ``--allow_random_weights``)."""
import argparse
import copy
import logging
from typing import Iterable, Optional, Tuple

import torch

from rvos.models import build_model
from rvos.models.variants import get_variant
from rvos.models.checkpoint import architecture_options, infer_model_name, load_state_dict_strict, read_checkpoint
from rvos.opts import get_args_parser, variant_option_defaults

logger = logging.getLogger(__name__)

# Besides models.checkpoint.architecture_options(), options that change the parameters or the outputs.
EXTRA_ARCHITECTURE_OPTIONS = ("dilation", "two_stage", "aux_loss", "output_levels", "position_embedding",
                              "freeze_text_encoder")
# Kept from this run even when the checkpoint says otherwise: where the files are, not what the model is.
RUN_OPTIONS = ("text_encoder",)
# Taken from the checkpoint without a warning: for inference they also mean something else (the benchmark).
SILENT_OPTIONS = ("dataset_file",)


def default_short_side(model_name: Optional[str]) -> int:
    """The inference resize of a model variant: 360 (ReferFormer, SgMg), 432 (MUTR and the MeViS-2024 solution)."""
    return get_variant(model_name or "referformer").inference_short_side


def same_parameters(name: Optional[str], other: Optional[str]) -> bool:
    """Whether two variants have the same parameters (a checkpoint of one is one of the other: TFVOS and
    ReferFormer), so ``--model`` may choose either."""
    try:
        return get_variant(name or "referformer").layout() == get_variant(other or "referformer").layout()
    except ValueError:  # a variant this checkout does not have
        return False


def model_options_from_config(args: argparse.Namespace, config: dict, explicit: Iterable[str]) -> argparse.Namespace:
    """``args`` with the architecture options of a checkpoint ``config`` (ours). An option given on the command
    line that the checkpoint contradicts is reported and the checkpoint wins, except ``RUN_OPTIONS`` and a
    ``--model`` with the checkpoint's parameters (``same_parameters``)."""
    model_args = copy.copy(args)
    explicit = set(explicit)
    for key in architecture_options() + EXTRA_ARCHITECTURE_OPTIONS:
        if key not in config:
            continue
        if key in RUN_OPTIONS and key in explicit:
            continue
        if key == "model" and key in explicit and same_parameters(args.model, config[key]):
            if args.model != config[key]:
                logger.info("--model %s on a %s checkpoint: the same parameters, built as %s", args.model,
                            config[key], args.model)
            continue
        if key in explicit and key not in SILENT_OPTIONS and getattr(args, key, None) != config[key]:
            logger.warning("--%s %r ignored: the checkpoint was trained with %r", key, getattr(args, key), config[key])
        setattr(model_args, key, config[key])
    return model_args


def legacy_model_options(args: argparse.Namespace, legacy_config: Optional[dict], state_dict: dict,
                         explicit: Iterable[str]) -> argparse.Namespace:
    """``args`` for a legacy checkpoint (pickled Namespace, no config of ours): the variant comes from the
    checkpoint (its variant-only options or its keys) unless ``--model`` was given, with that variant's own
    defaults for options left at ReferFormer's; the other architecture flags come from the command line."""
    model_args = copy.copy(args)
    explicit = set(explicit)
    if "model" in explicit and args.model:
        return model_args
    model_args.model = infer_model_name(legacy_config, state_dict)
    base = get_args_parser()
    for key, value in variant_option_defaults(model_args.model).items():
        if key not in explicit and getattr(model_args, key) == base.get_default(key):
            setattr(model_args, key, value)
    if model_args.model != (args.model or "referformer"):
        logger.info("legacy checkpoint of a %s model: building --model %s", model_args.model, model_args.model)
    return model_args


def build_inference_model(args: argparse.Namespace,
                          explicit: Iterable[str] = ()) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """The model of ``--resume`` (strictly loaded; rebuilt from its config when it has one) or, with
    ``--allow_random_weights``, of the options with random weights (seeded by ``--seed``), in eval mode on
    the CPU, and the options it was built from."""
    resume = getattr(args, "resume", "")
    if resume:
        ckpt = read_checkpoint(resume)
        config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
        legacy = None if config is not None else ckpt.get("args")
        legacy_config = vars(legacy) if isinstance(legacy, argparse.Namespace) else None
        model_args = (model_options_from_config(args, config, explicit) if config is not None
                      else legacy_model_options(args, legacy_config, ckpt["model"], explicit))
        torch.manual_seed(args.seed)
        model, _, _ = build_model(model_args)
        load_state_dict_strict(model, ckpt["model"], str(resume), ckpt_config=config or legacy_config,
                               model_config=vars(model_args))
        logger.info("loaded %s (%s)", resume, "architecture from its config" if config is not None
                    else "legacy checkpoint: architecture from the command line")
    elif getattr(args, "allow_random_weights", False):
        logger.warning("no --resume: RANDOM weights (--allow_random_weights); the masks are meaningless")
        model_args = args
        torch.manual_seed(args.seed)
        model, _, _ = build_model(args)
    else:
        raise ValueError("inference needs weights: --resume CHECKPOINT (or --config with --allow_random_weights for "
                         "pipeline tests and benchmarks)")
    return model.eval(), model_args
