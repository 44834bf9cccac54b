// Per-row math of the low-rank Gaussian backward (ops/lowrank_gaussian.cpp; paper 001 eq 41) that
// ATen cannot do without an (N, D) temporary: with alpha_n = Sigma^-1 (x_n - loc) and incoming
// gradients g_n, accumulate sum_n g_n alpha_n^2 (the data part of d log p / d diag) and turn alpha_n
// into d log p / d x_n = -g_n alpha_n in place. On a segment [0, len) of one row, so a caller can
// split columns over threads and each thread owns its accumulator entries.
#pragma once

#include "../common/host_device.h"

namespace mfk {
namespace lowrank_gaussian {

template <typename T>
MFK_HD_INLINE void residual_grad_segment(T* MFK_RESTRICT alpha, T g, T* MFK_RESTRICT weighted_squares, int64_t len) {
  for (int64_t i = 0; i < len; ++i) {
    const T a = alpha[i];
    weighted_squares[i] += g * a * a;
    alpha[i] = -g * a;
  }
}

}  // namespace lowrank_gaussian
}  // namespace mfk
