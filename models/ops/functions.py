"""Autograd Function around the compiled MultiScaleDeformableAttention kernels.

AMP: under CUDA autocast the floating inputs (fp16 / bf16 / fp32, not fp64) are cast to float32 before the
kernels run (``torch.amp.custom_fwd(cast_inputs=torch.float32)``) and the output is float32, like the other
ops autocast keeps in float32 (softmax, losses); backward runs in the same autocast state (``custom_bwd``).
Outside autocast the kernels accept float32 and float64 only; ``rvos.models.ops.ms_deform_attn`` upcasts reduced
precision inputs for them.
"""
import torch
from torch.autograd.function import once_differentiable

from .extension import extension_unavailable_reason, get_extension

__all__ = ["MSDeformAttnFunction"]


def _require_extension():
    extension = get_extension()
    if extension is None:
        raise RuntimeError(
            f"MultiScaleDeformableAttention CUDA extension unavailable: {extension_unavailable_reason()}")
    return extension


class MSDeformAttnFunction(torch.autograd.Function):
    """``apply(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step)``.

    Shapes: value [N, S, M, D]; spatial_shapes [L, 2] int64 (H, W); level_start_index [L] int64;
    sampling_locations [N, Lq, M, L, P, 2] in [0, 1]; attention_weights [N, Lq, M, L, P]  ->  [N, Lq, M * D].
    ``im2col_step``: batch elements per kernel launch; the largest divisor of N not above it is used.
    The backward pass accumulates grad_value with atomicAdd, so it is not bitwise deterministic.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step):
        extension = _require_extension()
        ctx.im2col_step = int(im2col_step)
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return extension.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                 ctx.im2col_step)

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_sampling_locations, grad_attention_weights = _require_extension().backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous(), ctx.im2col_step)
        return grad_value, None, None, grad_sampling_locations, grad_attention_weights, None
