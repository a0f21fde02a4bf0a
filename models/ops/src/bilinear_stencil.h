// Bilinear sampling shared by the CUDA kernels and the CPU reference loops of the compiled op.
//
// A sampling location (x, y) in [0, 1] of a level map of size (height, width) lies at the fractional pixel
// coordinate (h, w) = (y * height - 0.5, x * width - 0.5): pixel centres sit at (i + 0.5) / size, as in
// F.grid_sample(align_corners=False).  The sample is the bilinear blend of the four neighbouring pixels; a
// neighbour outside the map reads zero.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MSDA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MSDA_HOST_DEVICE inline
#endif

namespace rvos_msda {

template <typename scalar_t>
MSDA_HOST_DEVICE scalar_t floor_value(scalar_t x) {
#if defined(__CUDA_ARCH__)
  return floor(x);
#else
  return std::floor(x);
#endif
}

// The four neighbours of one fractional pixel coordinate.  Corner k in 0..3 is (h_low + k / 2, w_low + k % 2),
// i.e. top-left, top-right, bottom-left, bottom-right.
template <typename scalar_t>
struct BilinearStencil {
  int64_t h_low;
  int64_t w_low;
  scalar_t frac_h;  // h - h_low, in [0, 1)
  scalar_t frac_w;  // w - w_low, in [0, 1)
  int64_t height;
  int64_t width;

  MSDA_HOST_DEVICE bool corner_inside(int k) const {
    const int64_t row = h_low + (k >> 1);
    const int64_t col = w_low + (k & 1);
    return row >= 0 && row < height && col >= 0 && col < width;
  }
  // Row-major pixel index (row * width + col) of corner k; only meaningful when corner_inside(k).
  MSDA_HOST_DEVICE int64_t corner_pixel(int k) const {
    return (h_low + (k >> 1)) * width + (w_low + (k & 1));
  }
  MSDA_HOST_DEVICE scalar_t row_weight(int k) const { return (k >> 1) ? frac_h : scalar_t(1) - frac_h; }
  MSDA_HOST_DEVICE scalar_t col_weight(int k) const { return (k & 1) ? frac_w : scalar_t(1) - frac_w; }
  // Interpolation weight of corner k.
  MSDA_HOST_DEVICE scalar_t weight(int k) const { return row_weight(k) * col_weight(k); }
  // d weight(k) / d h and d weight(k) / d w.
  MSDA_HOST_DEVICE scalar_t weight_grad_h(int k) const {
    return ((k >> 1) ? scalar_t(1) : scalar_t(-1)) * col_weight(k);
  }
  MSDA_HOST_DEVICE scalar_t weight_grad_w(int k) const {
    return ((k & 1) ? scalar_t(1) : scalar_t(-1)) * row_weight(k);
  }
};

// Builds the stencil of location (loc_x, loc_y) on a (height, width) map.  Returns false when no corner can be
// inside the map (the sample and all its gradients are then zero); NaN locations also return false.
template <typename scalar_t>
MSDA_HOST_DEVICE bool make_bilinear_stencil(scalar_t loc_x, scalar_t loc_y, int64_t height, int64_t width,
                                            BilinearStencil<scalar_t>& stencil) {
  const scalar_t h = loc_y * static_cast<scalar_t>(height) - scalar_t(0.5);
  const scalar_t w = loc_x * static_cast<scalar_t>(width) - scalar_t(0.5);
  if (!(h > scalar_t(-1) && w > scalar_t(-1) && h < static_cast<scalar_t>(height) &&
        w < static_cast<scalar_t>(width))) {
    return false;
  }
  const scalar_t h_floor = floor_value(h);
  const scalar_t w_floor = floor_value(w);
  stencil.h_low = static_cast<int64_t>(h_floor);
  stencil.w_low = static_cast<int64_t>(w_floor);
  stencil.frac_h = h - h_floor;
  stencil.frac_w = w - w_floor;
  stencil.height = height;
  stencil.width = width;
  return true;
}

// Bilinear sample of one channel.  `channel_value` points at the channel in pixel 0 of the level; consecutive
// pixels are `pixel_stride` elements apart.
template <typename scalar_t>
MSDA_HOST_DEVICE scalar_t sample_channel(const scalar_t* channel_value, int64_t pixel_stride,
                                         const BilinearStencil<scalar_t>& stencil) {
  scalar_t result = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 0; k < 4; ++k) {
    if (stencil.corner_inside(k)) {
      result += stencil.weight(k) * channel_value[stencil.corner_pixel(k) * pixel_stride];
    }
  }
  return result;
}

// Same sample plus its derivatives with respect to the fractional pixel coordinates h and w.
template <typename scalar_t>
MSDA_HOST_DEVICE scalar_t sample_channel_with_grad(const scalar_t* channel_value, int64_t pixel_stride,
                                                   const BilinearStencil<scalar_t>& stencil, scalar_t& grad_h,
                                                   scalar_t& grad_w) {
  scalar_t result = 0;
  grad_h = 0;
  grad_w = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 0; k < 4; ++k) {
    if (stencil.corner_inside(k)) {
      const scalar_t corner_value = channel_value[stencil.corner_pixel(k) * pixel_stride];
      result += stencil.weight(k) * corner_value;
      grad_h += stencil.weight_grad_h(k) * corner_value;
      grad_w += stencil.weight_grad_w(k) * corner_value;
    }
  }
  return result;
}

}  // namespace rvos_msda
