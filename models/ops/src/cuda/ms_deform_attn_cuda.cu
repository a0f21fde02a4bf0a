// CUDA kernels of multi-scale deformable attention (float and double; AMP callers cast to float first).
//
// Forward: one thread per output element (batch, query, head, channel), summing the bilinear samples of all
// levels and points.  Backward: one warp per (batch, query, head); lanes stride over channels, scatter the value
// gradient with atomicAdd (so the order of additions, hence the last bits of grad_value, can differ between
// runs) and reduce the location / weight gradients over channels with warp shuffles.
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "../bilinear_stencil.h"
#include "../ms_deform_attn.h"

namespace rvos_msda {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int kWarpSize = 32;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // kernels use grid-stride loops beyond this

int64_t num_blocks(int64_t num_threads) {
  return std::max<int64_t>(1, std::min<int64_t>((num_threads + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks));
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t warp_sum(scalar_t v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ spatial_shapes,
                               const int64_t* __restrict__ level_start_index,
                               const scalar_t* __restrict__ sampling_loc, const scalar_t* __restrict__ attn_weight,
                               ProblemSizes sizes, scalar_t* __restrict__ output) {
  const int64_t total = sizes.batch * sizes.num_query * sizes.num_heads * sizes.channels;
  const int64_t pixel_stride = sizes.num_heads * sizes.channels;
  const int64_t samples_per_head = sizes.num_levels * sizes.num_points;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = index % sizes.channels;
    const int64_t head_query = index / sizes.channels;  // (b * Lq + q) * M + m
    const int64_t m = head_query % sizes.num_heads;
    const int64_t b = head_query / (sizes.num_heads * sizes.num_query);
    scalar_t acc = 0;
    for (int64_t l = 0; l < sizes.num_levels; ++l) {
      const int64_t height = spatial_shapes[2 * l];
      const int64_t width = spatial_shapes[2 * l + 1];
      const scalar_t* level_value =
          value + (b * sizes.num_value + level_start_index[l]) * pixel_stride + m * sizes.channels + c;
      for (int64_t p = 0; p < sizes.num_points; ++p) {
        const int64_t sample = head_query * samples_per_head + l * sizes.num_points + p;
        BilinearStencil<scalar_t> stencil;
        if (make_bilinear_stencil(sampling_loc[2 * sample], sampling_loc[2 * sample + 1], height, width, stencil)) {
          acc += attn_weight[sample] * sample_channel(level_value, pixel_stride, stencil);
        }
      }
    }
    output[index] = acc;
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ spatial_shapes,
                                const int64_t* __restrict__ level_start_index,
                                const scalar_t* __restrict__ sampling_loc, const scalar_t* __restrict__ attn_weight,
                                const scalar_t* __restrict__ grad_output, ProblemSizes sizes,
                                scalar_t* __restrict__ grad_value, scalar_t* __restrict__ grad_sampling_loc,
                                scalar_t* __restrict__ grad_attn_weight) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps_per_block = blockDim.x / kWarpSize;
  const int64_t total_warps = sizes.batch * sizes.num_query * sizes.num_heads;
  const int64_t pixel_stride = sizes.num_heads * sizes.channels;
  const int64_t samples_per_head = sizes.num_levels * sizes.num_points;
  // The loop bound is the same for every lane of a warp, so whole warps stay converged for the shuffles.
  for (int64_t head_query = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize; head_query < total_warps;
       head_query += int64_t(gridDim.x) * warps_per_block) {
    const int64_t m = head_query % sizes.num_heads;
    const int64_t b = head_query / (sizes.num_heads * sizes.num_query);
    const scalar_t* top_grad = grad_output + head_query * sizes.channels;
    for (int64_t l = 0; l < sizes.num_levels; ++l) {
      const int64_t height = spatial_shapes[2 * l];
      const int64_t width = spatial_shapes[2 * l + 1];
      const int64_t level_offset = (b * sizes.num_value + level_start_index[l]) * pixel_stride + m * sizes.channels;
      for (int64_t p = 0; p < sizes.num_points; ++p) {
        const int64_t sample = head_query * samples_per_head + l * sizes.num_points + p;
        BilinearStencil<scalar_t> stencil;
        if (!make_bilinear_stencil(sampling_loc[2 * sample], sampling_loc[2 * sample + 1], height, width,
                                   stencil)) {
          continue;  // same decision for the whole warp; gradients stay zero
        }
        const scalar_t weight = attn_weight[sample];
        scalar_t grad_weight = 0, grad_h = 0, grad_w = 0;
        for (int64_t c = lane; c < sizes.channels; c += kWarpSize) {
          scalar_t sample_grad_h, sample_grad_w;
          const scalar_t sampled =
              sample_channel_with_grad(value + level_offset + c, pixel_stride, stencil, sample_grad_h, sample_grad_w);
          const scalar_t top = top_grad[c];
          grad_weight += top * sampled;
          grad_h += top * sample_grad_h;
          grad_w += top * sample_grad_w;
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (stencil.corner_inside(k)) {
              gpuAtomicAddNoReturn(grad_value + level_offset + c + stencil.corner_pixel(k) * pixel_stride,
                                   top * weight * stencil.weight(k));
            }
          }
        }
        grad_weight = warp_sum(grad_weight);
        grad_h = warp_sum(grad_h);
        grad_w = warp_sum(grad_w);
        if (lane == 0) {
          grad_attn_weight[sample] = grad_weight;
          grad_sampling_loc[2 * sample] = weight * static_cast<scalar_t>(width) * grad_w;
          grad_sampling_loc[2 * sample + 1] = weight * static_cast<scalar_t>(height) * grad_h;
        }
      }
    }
  }
}

// Sizes of one chunk of `step` batch elements and the element offsets between consecutive chunks.
struct Chunking {
  ProblemSizes chunk_sizes;
  int64_t num_chunks;
  int64_t value_stride;
  int64_t loc_stride;
  int64_t weight_stride;
  int64_t output_stride;
};

Chunking make_chunking(const ProblemSizes& sizes, int64_t im2col_step) {
  const int64_t step = effective_im2col_step(sizes.batch, im2col_step);
  ProblemSizes chunk_sizes = sizes;
  chunk_sizes.batch = step;
  const int64_t weights_per_batch = sizes.num_query * sizes.num_heads * sizes.num_levels * sizes.num_points;
  return {chunk_sizes,
          sizes.batch / step,
          step * sizes.num_value * sizes.num_heads * sizes.channels,
          step * weights_per_batch * 2,
          step * weights_per_batch,
          step * sizes.num_query * sizes.num_heads * sizes.channels};
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                        const at::Tensor& attn_weight, const ProblemSizes& sizes, int64_t im2col_step) {
  const c10::cuda::CUDAGuard device_guard(value.device());
  auto output = at::zeros({sizes.batch, sizes.num_query, sizes.num_heads * sizes.channels}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const Chunking chunking = make_chunking(sizes, im2col_step);
  const int64_t threads_per_chunk =
      chunking.chunk_sizes.batch * sizes.num_query * sizes.num_heads * sizes.channels;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
    for (int64_t chunk = 0; chunk < chunking.num_chunks; ++chunk) {
      forward_kernel<scalar_t><<<num_blocks(threads_per_chunk), kThreadsPerBlock, 0, stream>>>(
          value.data_ptr<scalar_t>() + chunk * chunking.value_stride, spatial_shapes.data_ptr<int64_t>(),
          level_start_index.data_ptr<int64_t>(), sampling_loc.data_ptr<scalar_t>() + chunk * chunking.loc_stride,
          attn_weight.data_ptr<scalar_t>() + chunk * chunking.weight_stride, chunking.chunk_sizes,
          output.data_ptr<scalar_t>() + chunk * chunking.output_stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return output;
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight, const at::Tensor& grad_output,
                                      const ProblemSizes& sizes, int64_t im2col_step) {
  const c10::cuda::CUDAGuard device_guard(value.device());
  auto grad_value = at::zeros_like(value);
  auto grad_sampling_loc = at::zeros_like(sampling_loc);
  auto grad_attn_weight = at::zeros_like(attn_weight);
  if (grad_output.numel() == 0) {
    return {grad_value, grad_sampling_loc, grad_attn_weight};
  }
  const Chunking chunking = make_chunking(sizes, im2col_step);
  const int64_t threads_per_chunk = chunking.chunk_sizes.batch * sizes.num_query * sizes.num_heads * kWarpSize;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
    for (int64_t chunk = 0; chunk < chunking.num_chunks; ++chunk) {
      backward_kernel<scalar_t><<<num_blocks(threads_per_chunk), kThreadsPerBlock, 0, stream>>>(
          value.data_ptr<scalar_t>() + chunk * chunking.value_stride, spatial_shapes.data_ptr<int64_t>(),
          level_start_index.data_ptr<int64_t>(), sampling_loc.data_ptr<scalar_t>() + chunk * chunking.loc_stride,
          attn_weight.data_ptr<scalar_t>() + chunk * chunking.weight_stride,
          grad_output.data_ptr<scalar_t>() + chunk * chunking.output_stride, chunking.chunk_sizes,
          grad_value.data_ptr<scalar_t>() + chunk * chunking.value_stride,
          grad_sampling_loc.data_ptr<scalar_t>() + chunk * chunking.loc_stride,
          grad_attn_weight.data_ptr<scalar_t>() + chunk * chunking.weight_stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_value, grad_sampling_loc, grad_attn_weight};
}

std::vector<int64_t> kernel_image_for_device(int64_t device_index) {
  const c10::cuda::CUDAGuard device_guard(static_cast<c10::DeviceIndex>(device_index));
  cudaFuncAttributes attributes;
  const cudaError_t status = cudaFuncGetAttributes(&attributes, forward_kernel<float>);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // reset the (non-sticky) error state before raising
    TORCH_CHECK(false, "MultiScaleDeformableAttention extension has no usable kernel image for CUDA device ",
                device_index, ": ", cudaGetErrorString(status),
                ". Rebuild it with TORCH_CUDA_ARCH_LIST including this GPU's compute capability.");
  }
  return {attributes.binaryVersion, attributes.ptxVersion};
}

}  // namespace rvos_msda
