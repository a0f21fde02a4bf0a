// Python bindings of the MultiScaleDeformableAttention extension: input checks, device dispatch, build info.
#include <algorithm>
#include <string>

#include <torch/csrc/utils/pybind.h>

#include "ms_deform_attn.h"

#if __has_include("msda_build_info.h")
#include "msda_build_info.h"  // generated at build time by models/ops/build.py
#endif
#ifndef MSDA_BUILD_CUDA_ARCH_LIST
#define MSDA_BUILD_CUDA_ARCH_LIST ""
#endif
#ifndef MSDA_BUILD_TORCH_VERSION
#define MSDA_BUILD_TORCH_VERSION "unknown"
#endif

#ifdef WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace rvos_msda {

ProblemSizes check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                          const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                          const at::Tensor& attn_weight) {
  TORCH_CHECK(value.dim() == 4, "value must be [N, S, n_heads, d_head], got ", value.sizes());
  TORCH_CHECK(value.scalar_type() == at::kFloat || value.scalar_type() == at::kDouble,
              "MultiScaleDeformableAttention computes in float32 or float64, got ", value.scalar_type(),
              " (use models.ops.ms_deform_attn, which casts fp16/bf16 inputs to float32)");
  TORCH_CHECK(sampling_loc.scalar_type() == value.scalar_type() && attn_weight.scalar_type() == value.scalar_type(),
              "value, sampling_locations and attention_weights must share one dtype, got ", value.scalar_type(),
              ", ", sampling_loc.scalar_type(), ", ", attn_weight.scalar_type());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "spatial_shapes must be [n_levels, 2] (H, W), got ", spatial_shapes.sizes());
  const int64_t num_levels = spatial_shapes.size(0);
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == num_levels,
              "level_start_index must be [n_levels] = [", num_levels, "], got ", level_start_index.sizes());
  TORCH_CHECK(sampling_loc.dim() == 6 && sampling_loc.size(5) == 2,
              "sampling_locations must be [N, Lq, n_heads, n_levels, n_points, 2], got ", sampling_loc.sizes());
  const ProblemSizes sizes{value.size(0),        value.size(1),        value.size(2), value.size(3),
                           num_levels,           sampling_loc.size(1), sampling_loc.size(4)};
  TORCH_CHECK(sampling_loc.size(0) == sizes.batch && sampling_loc.size(2) == sizes.num_heads &&
                  sampling_loc.size(3) == num_levels,
              "sampling_locations ", sampling_loc.sizes(), " does not match value ", value.sizes(),
              " and spatial_shapes ", spatial_shapes.sizes());
  TORCH_CHECK(attn_weight.dim() == 5 && attn_weight.sizes() == sampling_loc.sizes().slice(0, 5),
              "attention_weights must be [N, Lq, n_heads, n_levels, n_points] = ", sampling_loc.sizes().slice(0, 5),
              ", got ", attn_weight.sizes());
  const auto device = value.device();
  TORCH_CHECK(spatial_shapes.device() == device && level_start_index.device() == device &&
                  sampling_loc.device() == device && attn_weight.device() == device,
              "all inputs must be on the device of value (", device, ")");
  if (device.is_cpu()) {  // reading the level table on a GPU would synchronise, so only CPU inputs are checked
    const auto shapes = spatial_shapes.contiguous();
    const auto starts = level_start_index.contiguous();
    int64_t expected_start = 0;
    for (int64_t l = 0; l < num_levels; ++l) {
      TORCH_CHECK(starts.data_ptr<int64_t>()[l] == expected_start, "level_start_index[", l, "] must be ",
                  expected_start, " (the sum of H*W of the previous levels)");
      expected_start += shapes.data_ptr<int64_t>()[2 * l] * shapes.data_ptr<int64_t>()[2 * l + 1];
    }
    TORCH_CHECK(expected_start == sizes.num_value, "spatial_shapes cover ", expected_start,
                " positions (sum of H*W) but value has S=", sizes.num_value);
  }
  return sizes;
}

int64_t effective_im2col_step(int64_t batch, int64_t requested) {
  TORCH_CHECK(requested >= 1, "im2col_step must be >= 1, got ", requested);
  int64_t step = std::max<int64_t>(1, std::min(batch, requested));
  while (batch % step != 0) {
    --step;
  }
  return step;
}

namespace {

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                   const at::Tensor& sampling_loc, const at::Tensor& attn_weight, int64_t im2col_step) {
  const ProblemSizes sizes = check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  TORCH_CHECK(im2col_step >= 1, "im2col_step must be >= 1, got ", im2col_step);
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return forward_cuda(value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                        sampling_loc.contiguous(), attn_weight.contiguous(), sizes, im2col_step);
#else
    TORCH_CHECK(false, "this MultiScaleDeformableAttention build has no CUDA kernels");
#endif
  }
  TORCH_CHECK(value.device().is_cpu(), "unsupported device ", value.device());
  return forward_cpu(value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                     sampling_loc.contiguous(), attn_weight.contiguous(), sizes);
}

std::vector<at::Tensor> backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                 const at::Tensor& attn_weight, const at::Tensor& grad_output, int64_t im2col_step) {
  const ProblemSizes sizes = check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  TORCH_CHECK(im2col_step >= 1, "im2col_step must be >= 1, got ", im2col_step);
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == sizes.batch && grad_output.size(1) == sizes.num_query &&
                  grad_output.size(2) == sizes.num_heads * sizes.channels,
              "grad_output must be [N, Lq, n_heads * d_head] = [", sizes.batch, ", ", sizes.num_query, ", ",
              sizes.num_heads * sizes.channels, "], got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type() && grad_output.device() == value.device(),
              "grad_output must have the dtype and device of value");
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return backward_cuda(value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                         sampling_loc.contiguous(), attn_weight.contiguous(), grad_output.contiguous(), sizes,
                         im2col_step);
#else
    TORCH_CHECK(false, "this MultiScaleDeformableAttention build has no CUDA kernels");
#endif
  }
  TORCH_CHECK(value.device().is_cpu(), "unsupported device ", value.device());
  return backward_cpu(value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                      sampling_loc.contiguous(), attn_weight.contiguous(), grad_output.contiguous(), sizes);
}

pybind11::dict build_info() {
  pybind11::dict info;
  info["cuda_arch_list"] = std::string(MSDA_BUILD_CUDA_ARCH_LIST);
  info["torch_version"] = std::string(MSDA_BUILD_TORCH_VERSION);
#ifdef WITH_CUDA
  info["with_cuda"] = true;
  info["cuda_runtime_version"] =
      std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
#else
  info["with_cuda"] = false;
  info["cuda_runtime_version"] = std::string();
#endif
  return info;
}

}  // namespace
}  // namespace rvos_msda

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.doc() = "MultiScaleDeformableAttention kernels (see models/ops/functions.py for the autograd wrapper)";
  m.def("forward", &rvos_msda::forward, "output [N, Lq, M*D] of multi-scale deformable attention", py::arg("value"),
        py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_locations"),
        py::arg("attention_weights"), py::arg("im2col_step"));
  m.def("backward", &rvos_msda::backward, "[grad_value, grad_sampling_locations, grad_attention_weights]",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_locations"),
        py::arg("attention_weights"), py::arg("grad_output"), py::arg("im2col_step"));
  m.def("effective_im2col_step", &rvos_msda::effective_im2col_step,
        "largest divisor of batch that is <= requested", py::arg("batch"), py::arg("requested"));
  m.def("build_info", &rvos_msda::build_info,
        "dict: cuda_arch_list, torch_version, with_cuda, cuda_runtime_version recorded at build time");
#ifdef WITH_CUDA
  m.def("kernel_image_for_device", &rvos_msda::kernel_image_for_device,
        "(binaryVersion, ptxVersion) of the kernel image used on a CUDA device; raises if there is none",
        py::arg("device_index"));
#endif
}
