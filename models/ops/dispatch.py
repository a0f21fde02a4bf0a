"""Choice between the compiled CUDA kernels and the pure-PyTorch path, and the dtype rules shared by both.

Implementation setting (``set_msda_impl``, from the ``--msda_impl`` option):

* ``auto`` (default): the CUDA extension for CUDA tensors when it is available, the PyTorch path otherwise.
  CUDA tensors falling back because the extension is missing emit one ``RuntimeWarning`` per process.
* ``cuda``: always the extension; a ``RuntimeError`` says how to build it when it is missing or when the
  tensors are not on a CUDA device.
* ``pytorch``: always the PyTorch path (``F.grid_sample``).

Dtypes: under autocast (of the tensors' device type) the inputs are cast to float32 (float64 stays float64) and
the result is float32 (or float64).  Outside autocast, fp16 / bf16 inputs are computed in float32 and the result
is cast back to the promoted input dtype.
"""
import contextlib
import warnings
from typing import ContextManager, Tuple

import torch

from .core import check_ms_deform_attn_inputs, ms_deform_attn_core_pytorch
from .extension import extension_unavailable_reason, is_extension_available
from .functions import MSDeformAttnFunction

__all__ = ["MSDA_IMPLS", "set_msda_impl", "get_msda_impl", "msda_status", "ms_deform_attn"]

MSDA_IMPLS = ("auto", "cuda", "pytorch")
REDUCED_PRECISION = (torch.float16, torch.bfloat16)

_impl = "auto"
_fallback_warned = False


def set_msda_impl(impl: str) -> None:
    """Select the implementation used by ``ms_deform_attn``: 'auto', 'cuda' or 'pytorch' (process-wide)."""
    global _impl
    if impl not in MSDA_IMPLS:
        raise ValueError(f"msda_impl must be one of {MSDA_IMPLS}, got {impl!r}")
    _impl = impl


def get_msda_impl() -> str:
    return _impl


def msda_status() -> dict:
    """The op's build and setting, for run provenance: ``compiled_extension``, ``impl_option``, ``reason``."""
    available = is_extension_available()
    return {"compiled_extension": available, "impl_option": _impl,
            "reason": None if available else extension_unavailable_reason()}


def warn_cuda_fallback_once(reason: str) -> None:
    """Warn (once per process) that CUDA tensors run through the slower PyTorch path."""
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    warnings.warn(
        "MultiScaleDeformableAttention: CUDA tensors use the slower pure-PyTorch path because the CUDA "
        f"extension is unavailable: {reason} (warned once; set_msda_impl('pytorch') / --msda_impl pytorch "
        "makes this choice explicit)",
        RuntimeWarning,
        stacklevel=3,
    )


def _use_cuda_extension(value: torch.Tensor) -> bool:
    if _impl == "pytorch":
        return False
    if _impl == "cuda":
        problems = []
        if not value.is_cuda:
            problems.append(f"it needs CUDA tensors, got tensors on {value.device} (use msda_impl 'auto' or "
                            "'pytorch' for this device)")
        if not is_extension_available():
            problems.append(f"the CUDA extension is unavailable: {extension_unavailable_reason()}")
        if problems:
            raise RuntimeError("msda_impl='cuda' cannot run: " + "; ".join(problems))
        return True
    if not value.is_cuda:
        return False
    if is_extension_available():
        return True
    warn_cuda_fallback_once(extension_unavailable_reason())
    return False


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast support (e.g. meta)
        return False


def _autocast_disabled(device_type: str) -> ContextManager:
    if _autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _compute_and_output_dtypes(value: torch.Tensor, sampling_locations: torch.Tensor,
                               attention_weights: torch.Tensor) -> Tuple[torch.dtype, torch.dtype]:
    promoted = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype), attention_weights.dtype)
    if _autocast_enabled(value.device.type):
        dtype = promoted if promoted == torch.float64 else torch.float32
        return dtype, dtype
    compute = torch.float32 if promoted in REDUCED_PRECISION else promoted
    return compute, promoted


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    im2col_step: int = 64,
) -> torch.Tensor:
    """Multi-scale deformable attention on the implementation chosen by ``set_msda_impl``.

    Args:
        value: [N, S, M, D], S = sum of H_l * W_l.
        spatial_shapes: [L, 2] int64 (H_l, W_l).
        level_start_index: [L] int64, start of every level along S (used by the CUDA kernels).
        sampling_locations: [N, Lq, M, L, P, 2], (x, y) in [0, 1]; outside the map reads zeros.
        attention_weights: [N, Lq, M, L, P].
        im2col_step: batch elements per CUDA launch (the largest divisor of N not above it is used).

    Returns:
        [N, Lq, M * D] (dtype: see the module docstring).
    """
    check_ms_deform_attn_inputs(value, spatial_shapes, sampling_locations, attention_weights)
    use_cuda = _use_cuda_extension(value)
    compute_dtype, output_dtype = _compute_and_output_dtypes(value, sampling_locations, attention_weights)
    value, sampling_locations, attention_weights = (
        t.to(compute_dtype) for t in (value, sampling_locations, attention_weights)
    )
    with _autocast_disabled(value.device.type):
        if use_cuda:
            output = MSDeformAttnFunction.apply(value, spatial_shapes, level_start_index, sampling_locations,
                                                attention_weights, im2col_step)
        else:
            output = ms_deform_attn_core_pytorch(value, spatial_shapes, sampling_locations, attention_weights)
    return output.to(output_dtype)
