"""Propagators by name: ``build_propagator({"type": ..., option: value, ...})``."""
import inspect
from typing import Callable, Dict, Mapping

from rvos.ensemble.propagate.base import Propagator
from rvos.ensemble.propagate.optical_flow import OpticalFlowPropagator
from rvos.ensemble.propagate.sam2_adapter import Sam2Propagator
from rvos.ensemble.propagate.tfvos import TfvosPropagator


def _builders() -> Dict[str, Callable[..., Propagator]]:
    return {"optical_flow": OpticalFlowPropagator, "sam2": Sam2Propagator, "tfvos": TfvosPropagator}


PROPAGATOR_TYPES = tuple(_builders())


def build_propagator(spec: Mapping) -> Propagator:
    """A propagator from its spec: ``type`` (one of PROPAGATOR_TYPES) and that type's options (the keyword
    arguments of its class). An unknown type or option is a ValueError naming it and the accepted ones."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"a propagator spec is a mapping with a 'type' (one of {', '.join(PROPAGATOR_TYPES)}), "
                         f"got {spec!r}")
    options = dict(spec)
    kind = options.pop("type")
    builders = _builders()
    if kind not in builders:
        raise ValueError(f"unknown propagator type {kind!r}; accepted: {', '.join(PROPAGATOR_TYPES)}")
    parameters = inspect.signature(builders[kind]).parameters
    accepted = list(parameters)
    missing = [name for name, parameter in parameters.items()
               if parameter.default is inspect.Parameter.empty and name not in options]
    if missing:
        raise ValueError(f"propagator {kind!r}: missing option(s) {', '.join(map(repr, missing))}; accepted: "
                         f"{', '.join(accepted)}")
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"propagator {kind!r}: unknown option(s) {', '.join(map(repr, unknown))}; accepted: "
                         f"{', '.join(accepted) or 'none'}")
    return builders[kind](**options)
