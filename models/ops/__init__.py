"""Multi-scale deformable attention: the ``MSDeformAttn`` layer, the op with its CUDA / PyTorch dispatch.

``python -m rvos.models.ops.check`` reports the build and runs a numeric self-test; docs/OPS.md explains building.
"""
from .core import ms_deform_attn_core_pytorch
from .dispatch import MSDA_IMPLS, get_msda_impl, ms_deform_attn, msda_status, set_msda_impl
from .extension import extension_unavailable_reason, is_extension_available
from .functions import MSDeformAttnFunction
from .modules import MSDeformAttn

__all__ = [
    "MSDA_IMPLS",
    "MSDeformAttn",
    "MSDeformAttnFunction",
    "extension_unavailable_reason",
    "get_msda_impl",
    "is_extension_available",
    "ms_deform_attn",
    "ms_deform_attn_core_pytorch",
    "msda_status",
    "set_msda_impl",
]
