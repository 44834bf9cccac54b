// The __global__ kernels of the block NIF family and their launch configuration, on raw pointers
// (no ATen): included by nif_block_cuda.cu, which launches them, and by csrc/tests/test_cuda_emulation_nif_block.cpp,
// which runs them on the CPU under csrc/tests/cuda_emulation.h (CTest). Math in math/nif_block.h.
#pragma once

#include "../math/nif_block.h"
#include "device_compat.cuh"

#include <algorithm>
#include <cstdint>

namespace mfk {
namespace nif_block {
namespace device {

constexpr int kThreads = 128;

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

template <typename T>
__global__ void setup_kernel(int64_t P, const T* A, const T* inv_var, int r, int c, T* K1, T* K0, T* logdets) {
  const int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (p >= P) return;
  block_setup(A + p * r * c, inv_var + p * r, r, c, K1 + p * c * c, K0 + p * c * c, logdets + 2 * p);
}

template <typename T>
__global__ void forward_kernel(int64_t B, int64_t P, const T* x, const T* b, int64_t b_stride, const T* A,
                               const T* inv_var, const T* sum_log_sigma, const T* K1, const T* K0, const T* logdets,
                               int r, int c, T* t, T* u, T* z_mean, T* z_point, T* log_px, T* manifold) {
  const int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (n >= B) return;
  T lp = T(0), mf = T(0);
  for (int64_t p = 0; p < P; ++p) {
    const int64_t row = n * P + p;
    T quad, u_zm, u_zp;
    sample_forward(x + row * r, b + n * b_stride + p * r, A + p * r * c, inv_var + p * r, K1 + p * c * c,
                   K0 + p * c * c, r, c, t + row * r, u + row * c, z_mean + row * c, z_point + row * c, quad, u_zm,
                   u_zp);
    add_block_terms(quad, u_zm, u_zp, sum_log_sigma[p], logdets + 2 * p, r, c, lp, mf);
  }
  log_px[n] = lp;
  manifold[n] = mf;
}

template <typename T>
__global__ void backward_kernel(int64_t B, int64_t P, const T* g1, const T* g2, const T* gm, const T* gp, const T* A,
                                const T* inv_var, const T* t, const T* z_mean, const T* z_point, const T* K1,
                                const T* K0, int r, int c, T* grad_x, T* grad_A, T* grad_log_sigma) {
  const int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (p >= P) return;
  block_backward(B, g1, g2, gm + p * c, gp + p * c, A + p * r * c, inv_var + p * r, t + p * r, z_mean + p * c,
                 z_point + p * c, K1 + p * c * c, K0 + p * c * c, r, c, P * r, P * c, grad_x + p * r,
                 grad_A + p * r * c, grad_log_sigma + p * r);
}

}  // namespace device
}  // namespace nif_block
}  // namespace mfk
