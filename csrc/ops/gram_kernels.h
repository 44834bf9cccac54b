// Device kernels of the Gram log-determinant family, as seen by the device-generic op drivers in
// ops/gram.cpp. Each device implements the same two primitives on flat, contiguous batches.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace mfk {
namespace gram {

// J: (B, D, d) contiguous. Returns (half_logdet (B,), L (B, d, d), perm (B, d) int64): the pivoted
// Cholesky factorisation P^T (J^T J) P = L L^T, perm[a] the original index of position a. L has a
// zero upper triangle; L[0][0] = 0 marks a singular row and an all-NaN L a non-finite one.
std::tuple<at::Tensor, at::Tensor, at::Tensor> factor_cpu(const at::Tensor& J, double rtol);

// J (B, D, d), L and perm from factor_*, scale (B,). Returns scale_b * J_b (J_b^T J_b)^{-1}, shape
// (B, D, d): the gradient of 0.5 log det(J^T J) times scale. Rows whose factor is marked invalid get
// 0 where scale_b == 0 and NaN otherwise.
at::Tensor jacobian_times_inverse_cpu(const at::Tensor& J, const at::Tensor& L, const at::Tensor& perm,
                                      const at::Tensor& scale);

#ifdef MFK_WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor> factor_cuda(const at::Tensor& J, double rtol);
at::Tensor jacobian_times_inverse_cuda(const at::Tensor& J, const at::Tensor& L, const at::Tensor& perm,
                                       const at::Tensor& scale);
#endif

}  // namespace gram
}  // namespace mfk
