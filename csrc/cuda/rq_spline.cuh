// The __global__ kernels of the rational-quadratic spline family and their launch configuration, on raw pointers
// (no ATen): included by rq_spline_cuda.cu, which launches them, and by csrc/tests/test_cuda_emulation_rq_spline.cpp,
// which runs them on the CPU under csrc/tests/cuda_emulation.h (CTest). Math in math/rq_spline.h.
#pragma once

#include "../math/rq_spline.h"
#include "device_compat.cuh"

#include <algorithm>
#include <cstdint>

namespace mfk {
namespace rq_spline {
namespace device {

constexpr int kThreads = 256;

template <bool kInv, bool kLin, typename T>
__global__ void forward_kernel(const T* __restrict__ in, const T* __restrict__ w, const T* __restrict__ h,
                               const T* __restrict__ d, T* __restrict__ out, T* __restrict__ logabsdet, int64_t n,
                               SplineConfig<T> c) {
  const int K = c.num_bins, Kd = c.num_derivs;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    element_forward<kInv, kLin>(in[e], w + e * K, h + e * K, d + e * Kd, 1, c, out[e], logabsdet[e]);
}

template <bool kInv, bool kLin, typename T>
__global__ void backward_kernel(const T* __restrict__ go, const T* __restrict__ gl, const T* __restrict__ in,
                                const T* __restrict__ w, const T* __restrict__ h, const T* __restrict__ d,
                                T* __restrict__ gi, T* __restrict__ gw, T* __restrict__ gh, T* __restrict__ gd,
                                int64_t n, SplineConfig<T> c) {
  const int K = c.num_bins, Kd = c.num_derivs;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    element_backward<kInv, kLin>(go[e], gl[e], in[e], w + e * K, h + e * K, d + e * Kd, 1, c, gi[e], gw + e * K,
                                 gh + e * K, gd + e * Kd);
}

template <bool kInv, bool kLin, typename T>
__global__ void jvp_kernel(const T* __restrict__ in, const T* __restrict__ w, const T* __restrict__ h,
                           const T* __restrict__ d, const T* __restrict__ in_dot, const T* __restrict__ w_dot,
                           const T* __restrict__ h_dot, const T* __restrict__ d_dot, T* __restrict__ out_dot,
                           T* __restrict__ logabsdet_dot, int64_t n, SplineConfig<T> c) {
  const int K = c.num_bins, Kd = c.num_derivs;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    element_jvp<kInv, kLin>(in[e], w + e * K, h + e * K, d + e * Kd, in_dot[e], w_dot + e * K, h_dot + e * K,
                            d_dot + e * Kd, 1, c, out_dot[e], logabsdet_dot[e]);
}

inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
}

}  // namespace device
}  // namespace rq_spline
}  // namespace mfk
