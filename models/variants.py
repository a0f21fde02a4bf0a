"""The model variants of the family: one table, and what each variant declares about itself.

Adding a variant is one line in ``VARIANT_PACKAGES`` and one folder ``models/<name>/`` whose ``__init__`` defines
``VARIANT`` (a :class:`Variant`). A variant's ``__init__`` stays light (its model is imported by ``builder`` on
first use): the parser, the checkpoint identification and the zoo read these declarations without building.
"""
import argparse
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

# Name -> the module declaring ``VARIANT``: the base model's module, or a variant's package.
# The order is the order in which legacy checkpoints' options are tried (``infer_model_name``).
VARIANT_PACKAGES = {
    "referformer": "rvos.models.referformer",
    "mutr": "rvos.models.mutr",
    "sgmg": "rvos.models.sgmg",
    "tfvos": "rvos.models.tfvos",
    "dshmp": "rvos.models.dshmp",
}


@dataclass(frozen=True)
class Variant:
    """What a variant declares.

    Attributes:
        name: the ``--model`` value.
        builder: ``"module:function"`` building ``(model, criterion)`` from
            ``(args, backbone, transformer, text_encoder, text_source, num_classes)``; imported on first use.
        option_defaults: the defaults its own original ``opts.py`` has where they differ from ReferFormer's, applied
            to options left at ReferFormer's default when this variant is selected.
        add_arguments: adds the variant's own command-line options to a parser (None: it has none).
        architecture_options: its own options that change the parameter layout (checkpoint mismatch reports).
        legacy_options: options only the pickled ``argparse.Namespace`` of its original checkpoints has.
        key_prefixes: state-dict key prefixes only this variant has.
        inference_short_side: the short side its original inference resizes frames to.
        parameter_layout: the variant whose parameters this one has exactly (TFVOS: ReferFormer's). Checkpoints of
            either load into both, so keys cannot tell them apart: the variant comes from ``--model`` or the
            checkpoint's own config, and ``--model`` may choose either for a checkpoint of the other.
        prompt_frames: its training samples also carry each frame's prompt frame (TFVOS: a neighbour masked by
            the ground truth; see ``datasets.prompt_frames``).
        uses_referformer_core: whether it is built on ReferFormer's backbone joiner and deformable transformer
            (else the builder gets None for both and builds its own parts).
    """

    name: str
    builder: str
    option_defaults: Mapping[str, Any] = field(default_factory=dict)
    add_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
    architecture_options: Tuple[str, ...] = ()
    legacy_options: Tuple[str, ...] = ()
    key_prefixes: Tuple[str, ...] = ()
    inference_short_side: int = 360
    parameter_layout: Optional[str] = None
    prompt_frames: bool = False

    def layout(self) -> str:
        """The name of the variant whose parameter layout this one has (its own name unless shared)."""
        return self.parameter_layout or self.name
    uses_referformer_core: bool = True

    def build(self, *args, **kwargs):
        module_name, function = self.builder.split(":")
        return getattr(importlib.import_module(module_name), function)(*args, **kwargs)


MODEL_NAMES = tuple(VARIANT_PACKAGES)


def get_variant(name: str) -> Variant:
    """The declaration of variant ``name``; a clear error for an unknown name."""
    if name not in VARIANT_PACKAGES:
        raise ValueError(f"unknown model variant {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return importlib.import_module(VARIANT_PACKAGES[name]).VARIANT


def all_variants() -> Dict[str, Variant]:
    """Every variant's declaration, in table order."""
    return {name: get_variant(name) for name in VARIANT_PACKAGES}
