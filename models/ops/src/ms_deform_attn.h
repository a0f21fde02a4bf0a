// Multi-scale deformable attention: declarations shared by the bindings, the CPU loops and the CUDA kernels.
//
// Tensor layout (all contiguous, same device; value / sampling_loc / attn_weight share one floating dtype):
//   value              [N, S, M, D]        S = sum over levels of H_l * W_l
//   spatial_shapes     [L, 2]   int64      (H_l, W_l)
//   level_start_index  [L]      int64      offset of level l along S
//   sampling_loc       [N, Lq, M, L, P, 2] (x, y) in [0, 1] per level
//   attn_weight        [N, Lq, M, L, P]
//   output             [N, Lq, M * D]
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace rvos_msda {

struct ProblemSizes {
  int64_t batch;       // N
  int64_t num_value;   // S
  int64_t num_heads;   // M
  int64_t channels;    // D, channels per head
  int64_t num_levels;  // L
  int64_t num_query;   // Lq
  int64_t num_points;  // P
};

// Validates shapes, dtypes and devices (TORCH_CHECK with a readable message) and returns the sizes.
ProblemSizes check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                          const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                          const at::Tensor& attn_weight);

// Largest divisor of `batch` that is <= `requested` (>= 1), so that any batch size can be processed in
// equal chunks of batch elements.
int64_t effective_im2col_step(int64_t batch, int64_t requested);

// Reference loops on CPU, same arithmetic as the CUDA kernels (used to verify the compiled math without a GPU).
at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                       const at::Tensor& attn_weight, const ProblemSizes& sizes);
std::vector<at::Tensor> backward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                     const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                     const at::Tensor& attn_weight, const at::Tensor& grad_output,
                                     const ProblemSizes& sizes);

#ifdef WITH_CUDA
at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                        const at::Tensor& attn_weight, const ProblemSizes& sizes, int64_t im2col_step);
std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight, const at::Tensor& grad_output,
                                      const ProblemSizes& sizes, int64_t im2col_step);
// (binaryVersion, ptxVersion) of the kernel image the driver picks for `device_index`, e.g. (90, 90); raises
// a clear error when the build contains no image for that GPU.
std::vector<int64_t> kernel_image_for_device(int64_t device_index);
#endif

}  // namespace rvos_msda
