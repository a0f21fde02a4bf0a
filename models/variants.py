"""Registry of the model variants built on the ReferFormer core (SgMg, MUTR)."""
import importlib

VARIANT_MODULES = {"sgmg": "models.sgmg", "mutr": "models.mutr"}


def build(name, args, backbone, transformer, text_encoder, source, num_classes):
    """Build variant ``name``: returns (model, criterion). Each variant module exposes
    ``build(args, backbone, transformer, text_encoder, source, num_classes)``."""
    if name not in VARIANT_MODULES:
        raise ValueError(f"unknown model variant {name!r}; choose one of {sorted(VARIANT_MODULES)}")
    module = importlib.import_module(VARIANT_MODULES[name])
    return module.build(args, backbone, transformer, text_encoder, source, num_classes)
