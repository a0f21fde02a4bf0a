// CPU reference loops of the compiled op: the same bilinear stencil and accumulation as the CUDA kernels, run
// serially.  They let the compiled arithmetic be checked on machines without a GPU; the PyTorch path
// (models/ops/core.py) remains the implementation used for CPU tensors.
#include <ATen/Dispatch.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "../bilinear_stencil.h"
#include "../ms_deform_attn.h"

namespace rvos_msda {

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                       const at::Tensor& attn_weight, const ProblemSizes& sizes) {
  auto output = at::zeros({sizes.batch, sizes.num_query, sizes.num_heads * sizes.channels}, value.options());
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  const int64_t pixel_stride = sizes.num_heads * sizes.channels;
  const int64_t samples_per_head = sizes.num_levels * sizes.num_points;

  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    const scalar_t* value_ptr = value.data_ptr<scalar_t>();
    const scalar_t* loc_ptr = sampling_loc.data_ptr<scalar_t>();
    const scalar_t* weight_ptr = attn_weight.data_ptr<scalar_t>();
    scalar_t* out_ptr = output.data_ptr<scalar_t>();
    for (int64_t b = 0; b < sizes.batch; ++b) {
      for (int64_t q = 0; q < sizes.num_query; ++q) {
        for (int64_t m = 0; m < sizes.num_heads; ++m) {
          const int64_t head_query = (b * sizes.num_query + q) * sizes.num_heads + m;
          scalar_t* out = out_ptr + head_query * sizes.channels;
          for (int64_t l = 0; l < sizes.num_levels; ++l) {
            const scalar_t* level_value = value_ptr + (b * sizes.num_value + starts[l]) * pixel_stride +
                                          m * sizes.channels;
            for (int64_t p = 0; p < sizes.num_points; ++p) {
              const int64_t sample = head_query * samples_per_head + l * sizes.num_points + p;
              BilinearStencil<scalar_t> stencil;
              if (!make_bilinear_stencil(loc_ptr[2 * sample], loc_ptr[2 * sample + 1], shapes[2 * l],
                                         shapes[2 * l + 1], stencil)) {
                continue;
              }
              for (int64_t c = 0; c < sizes.channels; ++c) {
                out[c] += weight_ptr[sample] * sample_channel(level_value + c, pixel_stride, stencil);
              }
            }
          }
        }
      }
    }
  });
  return output;
}

std::vector<at::Tensor> backward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                     const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                     const at::Tensor& attn_weight, const at::Tensor& grad_output,
                                     const ProblemSizes& sizes) {
  auto grad_value = at::zeros_like(value);
  auto grad_sampling_loc = at::zeros_like(sampling_loc);
  auto grad_attn_weight = at::zeros_like(attn_weight);
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  const int64_t pixel_stride = sizes.num_heads * sizes.channels;
  const int64_t samples_per_head = sizes.num_levels * sizes.num_points;

  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    const scalar_t* value_ptr = value.data_ptr<scalar_t>();
    const scalar_t* loc_ptr = sampling_loc.data_ptr<scalar_t>();
    const scalar_t* weight_ptr = attn_weight.data_ptr<scalar_t>();
    const scalar_t* grad_out_ptr = grad_output.data_ptr<scalar_t>();
    scalar_t* grad_value_ptr = grad_value.data_ptr<scalar_t>();
    scalar_t* grad_loc_ptr = grad_sampling_loc.data_ptr<scalar_t>();
    scalar_t* grad_weight_ptr = grad_attn_weight.data_ptr<scalar_t>();
    for (int64_t b = 0; b < sizes.batch; ++b) {
      for (int64_t q = 0; q < sizes.num_query; ++q) {
        for (int64_t m = 0; m < sizes.num_heads; ++m) {
          const int64_t head_query = (b * sizes.num_query + q) * sizes.num_heads + m;
          const scalar_t* top_grad = grad_out_ptr + head_query * sizes.channels;
          for (int64_t l = 0; l < sizes.num_levels; ++l) {
            const int64_t height = shapes[2 * l];
            const int64_t width = shapes[2 * l + 1];
            const int64_t level_offset = (b * sizes.num_value + starts[l]) * pixel_stride + m * sizes.channels;
            for (int64_t p = 0; p < sizes.num_points; ++p) {
              const int64_t sample = head_query * samples_per_head + l * sizes.num_points + p;
              BilinearStencil<scalar_t> stencil;
              if (!make_bilinear_stencil(loc_ptr[2 * sample], loc_ptr[2 * sample + 1], height, width, stencil)) {
                continue;
              }
              const scalar_t weight = weight_ptr[sample];
              scalar_t grad_weight = 0, grad_h = 0, grad_w = 0;
              for (int64_t c = 0; c < sizes.channels; ++c) {
                scalar_t sample_grad_h, sample_grad_w;
                const scalar_t sampled = sample_channel_with_grad(value_ptr + level_offset + c, pixel_stride,
                                                                  stencil, sample_grad_h, sample_grad_w);
                grad_weight += top_grad[c] * sampled;
                grad_h += top_grad[c] * sample_grad_h;
                grad_w += top_grad[c] * sample_grad_w;
                for (int k = 0; k < 4; ++k) {
                  if (stencil.corner_inside(k)) {
                    grad_value_ptr[level_offset + c + stencil.corner_pixel(k) * pixel_stride] +=
                        top_grad[c] * weight * stencil.weight(k);
                  }
                }
              }
              grad_weight_ptr[sample] = grad_weight;
              grad_loc_ptr[2 * sample] = weight * static_cast<scalar_t>(width) * grad_w;
              grad_loc_ptr[2 * sample + 1] = weight * static_cast<scalar_t>(height) * grad_h;
            }
          }
        }
      }
    }
  });
  return {grad_value, grad_sampling_loc, grad_attn_weight};
}

}  // namespace rvos_msda
