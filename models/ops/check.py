"""``python -m rvos.models.ops.check``: report the MultiScaleDeformableAttention build and run numeric self-tests.

Reports whether the extension is built and how (CUDA architectures, torch / CUDA versions it was built with),
the current device and its compute capability, and whether the build has a kernel image for it.  Self-tests:

* PyTorch path: float64 ``gradcheck`` and exact reads at pixel centres (always);
* compiled CPU loops vs the PyTorch path, forward and backward (when the extension is built);
* CUDA kernels vs the PyTorch path on the GPU, forward and backward, float32 / float64 / fp16 autocast, a batch
  not divisible by ``im2col_step`` (when a GPU is present).

Exit code 0 when every self-test that ran passed, 1 otherwise (a GPU without a usable build counts as a failure).
"""
import argparse
import re
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .core import ms_deform_attn_core_pytorch
from .dispatch import get_msda_impl, ms_deform_attn, set_msda_impl
from .extension import extension_unavailable_reason, get_extension

GRAD_NAMES = ("value", "sampling_locations", "attention_weights")


@dataclass
class Problem:
    """Inputs of one op call: value [N, S, M, D], spatial_shapes [L, 2], level_start_index [L],
    sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P], grad_output [N, Lq, M*D]."""

    value: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    sampling_locations: torch.Tensor
    attention_weights: torch.Tensor
    grad_output: torch.Tensor

    def inputs(self) -> Tuple[torch.Tensor, ...]:
        return (self.value, self.spatial_shapes, self.level_start_index, self.sampling_locations,
                self.attention_weights)

    def to(self, device=None, dtype=None) -> "Problem":
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return Problem(*(move(t) for t in (*self.inputs(), self.grad_output)))


def make_problem(batch: int = 2, num_query: int = 5, n_heads: int = 2, d_head: int = 4,
                 level_shapes: Sequence[Tuple[int, int]] = ((6, 4), (3, 2)), n_points: int = 3,
                 loc_range: Tuple[float, float] = (-0.1, 1.1), dtype: torch.dtype = torch.float64,
                 device="cpu", seed: int = 0) -> Problem:
    """A random problem (softmax attention weights; locations may fall slightly outside the maps)."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(level_shapes, dtype=torch.int64)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    n_levels = len(level_shapes)

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    value = torch.randn(batch, int(areas.sum()), n_heads, d_head, generator=generator, dtype=torch.float64)
    low, high = loc_range
    locations = low + (high - low) * rand(batch, num_query, n_heads, n_levels, n_points, 2)
    logits = torch.randn(batch, num_query, n_heads, n_levels * n_points, generator=generator, dtype=torch.float64)
    weights = logits.softmax(-1).view(batch, num_query, n_heads, n_levels, n_points)
    grad_output = torch.randn(batch, num_query, n_heads * d_head, generator=generator, dtype=torch.float64)
    return Problem(value, spatial_shapes, level_start_index, locations, weights, grad_output).to(device, dtype)


def forward_backward(op: Callable[..., torch.Tensor], problem: Problem) -> Dict[str, torch.Tensor]:
    """Run ``op(*problem.inputs())`` and backpropagate ``grad_output``; returns output and the three grads."""
    value, shapes, starts, locations, weights = problem.inputs()
    leaves = [t.detach().requires_grad_() for t in (value, locations, weights)]
    output = op(leaves[0], shapes, starts, leaves[1], leaves[2])
    output.backward(problem.grad_output.to(output.dtype))
    return {"output": output.detach(), **{name: leaf.grad for name, leaf in zip(GRAD_NAMES, leaves)}}


def pytorch_op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """The PyTorch path with the op's signature (level_start_index is implied by spatial_shapes)."""
    return ms_deform_attn_core_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


def compiled_results(extension, problem: Problem, im2col_step: int = 64) -> Dict[str, torch.Tensor]:
    """Output and grads straight from the compiled ``forward`` / ``backward`` (CPU loops or CUDA kernels)."""
    output = extension.forward(*problem.inputs(), im2col_step)
    grads = extension.backward(*problem.inputs(), problem.grad_output, im2col_step)
    return {"output": output, **dict(zip(GRAD_NAMES, grads))}


def max_differences(actual: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> Dict[str, float]:
    return {name: (actual[name].double() - expected[name].double()).abs().max().item() for name in expected}


def max_relative_differences(actual: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """max |a - e| / max(1, max |e|) per tensor: absolute for O(1) tensors, relative for large gradients."""
    return {name: (actual[name].double() - expected[name].double()).abs().max().item()
            / max(1.0, expected[name].double().abs().max().item()) for name in expected}


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str


def _format(differences: Dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1e}" for name, value in differences.items())


def check_pytorch_gradcheck() -> CheckResult:
    problem = make_problem(batch=1, num_query=3, level_shapes=((4, 3), (2, 2)), n_points=2)
    inputs = (problem.value.requires_grad_(), problem.spatial_shapes, problem.level_start_index,
              problem.sampling_locations.requires_grad_(), problem.attention_weights.requires_grad_())
    passed = torch.autograd.gradcheck(pytorch_op, inputs, eps=1e-6, atol=1e-7, raise_exception=False)
    return CheckResult("PyTorch path gradcheck (float64)", passed, "finite differences vs autograd")


def check_pytorch_pixel_centres() -> CheckResult:
    """Sampling exactly at a pixel centre with weight 1 must return that pixel's value."""
    problem = make_problem(batch=1, num_query=1, n_heads=1, level_shapes=((3, 5),), n_points=1)
    height, width = 3, 5
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    centres = torch.stack([(cols.flatten() + 0.5) / width, (rows.flatten() + 0.5) / height], -1)
    num_query = centres.shape[0]
    locations = centres.view(1, num_query, 1, 1, 1, 2)
    weights = torch.ones(1, num_query, 1, 1, 1, dtype=torch.float64)
    output = ms_deform_attn_core_pytorch(problem.value, problem.spatial_shapes, locations, weights)
    difference = (output[0] - problem.value[0, :, 0]).abs().max().item()
    return CheckResult("PyTorch path reads pixel centres exactly", difference < 1e-12, f"max diff {difference:.1e}")


def check_compiled_cpu(extension) -> CheckResult:
    problem = make_problem(batch=3, num_query=6, n_heads=4, d_head=8, level_shapes=((7, 5), (4, 3), (1, 2)),
                           n_points=3, loc_range=(-0.3, 1.3))
    differences = max_differences(compiled_results(extension, problem), forward_backward(pytorch_op, problem))
    passed = max(differences.values()) < 1e-10
    return CheckResult("compiled CPU loops vs PyTorch path (float64)", passed, _format(differences))


def _check_cuda_dtype(problem: Problem, dtype: torch.dtype, tolerance: float, im2col_step: int) -> CheckResult:
    gpu_problem = problem.to("cuda", dtype)
    extension = get_extension()
    actual = compiled_results(extension, gpu_problem, im2col_step)
    expected = forward_backward(pytorch_op, gpu_problem)
    differences = max_relative_differences(actual, expected)
    step = extension.effective_im2col_step(problem.value.shape[0], im2col_step)
    return CheckResult(f"CUDA vs PyTorch path ({str(dtype).replace('torch.', '')}, N={problem.value.shape[0]}, "
                       f"im2col_step {im2col_step}->{step})", max(differences.values()) < tolerance,
                       _format(differences))


def _check_cuda_autocast(problem: Problem, dtype: torch.dtype) -> CheckResult:
    """fp16 / bf16 inputs under autocast: both paths compute in float32 and return float32."""
    reduced = problem.to("cuda", dtype)
    previous = get_msda_impl()
    results = {}
    try:
        for impl in ("cuda", "pytorch"):
            set_msda_impl(impl)
            with torch.autocast("cuda", dtype=dtype):
                results[impl] = forward_backward(ms_deform_attn, reduced)
    finally:
        set_msda_impl(previous)
    differences = max_relative_differences(results["cuda"], results["pytorch"])
    output_dtype = results["cuda"]["output"].dtype
    passed = max(differences.values()) < 1e-4 and output_dtype == torch.float32
    return CheckResult(f"CUDA vs PyTorch path under autocast ({str(dtype).replace('torch.', '')} inputs)", passed,
                       f"output dtype {str(output_dtype).replace('torch.', '')}; {_format(differences)}")


def check_cuda() -> List[CheckResult]:
    problem = make_problem(batch=3, num_query=20, n_heads=8, d_head=40, level_shapes=((12, 16), (6, 8), (3, 4), (2, 2)),
                           n_points=4, loc_range=(-0.2, 1.2), seed=1)
    return [_check_cuda_dtype(problem, torch.float64, 1e-10, im2col_step=2),
            _check_cuda_dtype(problem, torch.float32, 1e-4, im2col_step=64),
            _check_cuda_autocast(problem, torch.float16),
            _check_cuda_autocast(problem, torch.bfloat16)]


def arch_numbers(arch_list: str) -> List[int]:
    """Compute capabilities in an arch list string, e.g. '8.6;9.0+PTX' -> [86, 90]."""
    return [int(major) * 10 + int(minor) for major, minor in re.findall(r"(\d+)\.(\d+)", arch_list)]


def describe_extension(extension) -> List[str]:
    info = dict(extension.build_info())
    lines = [f"extension: built ({extension.__file__})",
             f"  CUDA architectures: {info['cuda_arch_list'] or 'unknown'}",
             f"  built with torch {info['torch_version']}, CUDA runtime {info['cuda_runtime_version'] or 'none'}"]
    if info["torch_version"] != torch.__version__:
        lines.append(f"  WARNING: running torch {torch.__version__}: rebuild the extension for this version")
    return lines


def describe_device(extension) -> Tuple[List[str], Optional[CheckResult]]:
    """Device lines and, on a GPU, the kernel-image check (None without a GPU)."""
    if not torch.cuda.is_available():
        return ["device: CPU (torch.cuda.is_available() is False)"], None
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    lines = [f"device: cuda:{index} {torch.cuda.get_device_name(index)}, compute capability {major}.{minor} "
             f"(sm_{major}{minor})"]
    if extension is None:
        return lines, CheckResult("CUDA extension usable on this GPU", False, extension_unavailable_reason())
    try:
        binary_version, ptx_version = extension.kernel_image_for_device(index)
    except RuntimeError as error:
        return lines, CheckResult("CUDA extension has a kernel image for this GPU", False, str(error))
    listed = major * 10 + minor in arch_numbers(dict(extension.build_info())["cuda_arch_list"])
    detail = f"binary sm_{binary_version}, PTX {ptx_version}" + ("" if listed else " (JIT from PTX: not in arch list)")
    return lines, CheckResult("CUDA extension has a kernel image for this GPU", True, detail)


def run_checks() -> Tuple[List[str], List[CheckResult]]:
    extension = get_extension()
    lines = [f"torch {torch.__version__} (CUDA {torch.version.cuda}), msda_impl setting: {get_msda_impl()}"]
    if extension is None:
        lines.append(f"extension: NOT available: {extension_unavailable_reason()}")
    else:
        lines.extend(describe_extension(extension))
    device_lines, device_check = describe_device(extension)
    lines.extend(device_lines)

    results = [check_pytorch_gradcheck(), check_pytorch_pixel_centres()]
    if extension is not None:
        results.append(check_compiled_cpu(extension))
    if device_check is not None:
        results.append(device_check)
        if device_check.passed:
            results.extend(check_cuda())
    else:
        tested = "the PyTorch path and the compiled CPU loops were" if extension is not None else "the PyTorch path was"
        lines.append(f"CUDA parity: skipped (no CUDA device available); only {tested} tested")
    return lines, results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    lines, results = run_checks()
    print("MultiScaleDeformableAttention check")
    for line in lines:
        print(f"  {line}")
    for result in results:
        print(f"  [{'PASS' if result.passed else 'FAIL'}] {result.name}: {result.detail}")
    failed = [result for result in results if not result.passed]
    print(f"  {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
