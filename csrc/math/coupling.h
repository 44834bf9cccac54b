// Shared math of the affine coupling op family, the building block of every flow in papers 000-004.
//
//   forward:  y = x * exp(a) + t,       logabsdet = sum over the row of a
//   inverse:  x = (y - t) * exp(-a),    logabsdet = -sum over the row of a
//
// with a = a(s) the effective log-scale of the mode:
//   exp                a = s
//   softclamp          a = c * tanh(s / c)                  (Glow / FrEIA soft clamping)
//   sigmoid            a = log sigmoid(s + 2)               (Glow's scale sigmoid(s + 2))
//   volume_preserving  a = s - mean_row(s), logabsdet = 0   (spread flows, paper 003 appendix)
//
// Functions work on one row of n elements; `tid`/`nthreads` split the elements (the CPU passes 0, 1,
// a CUDA block its threads) and return the caller's partial row sums, which the caller reduces.
// Those sums run in T inside the elementwise loops: a double accumulator stops gcc from vectorising
// the whole loop (2x slower on CPU). For float32 the log-determinant is thus a running float sum,
// relative error up to ~n * eps(float32) in the worst case.
#pragma once

#include "../common/host_device.h"

#include <cstdint>

namespace mfk {
namespace coupling {

enum AffineMode : int { kExp = 0, kSoftclamp = 1, kSigmoid = 2, kVolumePreserving = 3 };

// The mode is a template parameter inside the row loops, so each loop is straight-line code the
// compiler can vectorise; MFK_WITH_AFFINE_MODE turns the runtime mode into that parameter.
#define MFK_WITH_AFFINE_MODE(mode, K, ...)                  \
  switch (mode) {                                           \
    case ::mfk::coupling::kSoftclamp: {                     \
      constexpr int K = ::mfk::coupling::kSoftclamp;        \
      __VA_ARGS__;                                          \
    }                                                       \
    case ::mfk::coupling::kSigmoid: {                       \
      constexpr int K = ::mfk::coupling::kSigmoid;          \
      __VA_ARGS__;                                          \
    }                                                       \
    case ::mfk::coupling::kVolumePreserving: {              \
      constexpr int K = ::mfk::coupling::kVolumePreserving; \
      __VA_ARGS__;                                          \
    }                                                       \
    default: {                                              \
      constexpr int K = ::mfk::coupling::kExp;              \
      __VA_ARGS__;                                          \
    }                                                       \
  }

// a(s); volume_preserving subtracts the row mean (passed in).
template <int kMode, typename T>
MFK_HD_INLINE T log_scale(T s, T clamp, T row_mean) {
  if constexpr (kMode == kSoftclamp) {
    return clamp * tanh_(s / clamp);
  } else if constexpr (kMode == kSigmoid) {
    const T u = s + T(2);  // log sigmoid(u) = -softplus(-u), stable for both signs of u
    return u >= T(0) ? -log1p_(exp_(-u)) : u - log1p_(exp_(u));
  } else if constexpr (kMode == kVolumePreserving) {
    return s - row_mean;
  } else {
    return s;
  }
}

// da/ds for the elementwise part (volume_preserving's mean is handled by the row passes).
template <int kMode, typename T>
MFK_HD_INLINE T log_scale_derivative(T s, T clamp) {
  if constexpr (kMode == kSoftclamp) {
    const T th = tanh_(s / clamp);
    return T(1) - th * th;
  } else if constexpr (kMode == kSigmoid) {  // d/du log sigmoid(u) = sigmoid(-u)
    return T(1) / (T(1) + exp_(s + T(2)));
  } else {
    return T(1);
  }
}

// Partial sum of v over this thread's elements (volume_preserving's row means).
template <typename T>
MFK_HD double partial_sum(const T* v, int64_t n, int64_t tid, int64_t nthreads) {
  double acc = 0;
  MFK_FOR_STRIDED(i, n, tid, nthreads, acc += static_cast<double>(v[i]))
  return acc;
}

// out = x exp(a) + t (forward) or (x - t) exp(-a) (inverse); returns this thread's sum of a.
template <int kMode, typename T>
MFK_HD double affine_forward(const T* MFK_RESTRICT x, const T* MFK_RESTRICT t, const T* MFK_RESTRICT s,
                             T* MFK_RESTRICT out, int64_t n, T clamp, T row_mean, bool inverse, int64_t tid,
                             int64_t nthreads) {
  T acc = T(0);
  if (inverse) {
    MFK_FOR_STRIDED(i, n, tid, nthreads, const T a = log_scale<kMode>(s[i], clamp, row_mean);
                    out[i] = (x[i] - t[i]) * exp_(-a); acc += a)
  } else {
    MFK_FOR_STRIDED(i, n, tid, nthreads, const T a = log_scale<kMode>(s[i], clamp, row_mean);
                    out[i] = x[i] * exp_(a) + t[i]; acc += a)
  }
  return static_cast<double>(acc);
}

// Gradients of the row given g = dL/dout and gl = dL/dlogabsdet. Writes gx, gt and, in gs, dL/da
// times da/ds (for volume_preserving: dL/da; the caller subtracts its row mean). Returns this
// thread's sum of what it wrote to gs (that mean's numerator). kRowConstantGrad: g points at one value
// for the whole row (an expanded gradient, e.g. of `.sum()`), read as it is instead of materialised.
//   forward: dout/dx = e^a, dout/dt = 1,       dL/da = g x e^a + gl
//   inverse: dout/dx = e^-a, dout/dt = -e^-a,  dL/da = -g (x - t) e^-a - gl
template <int kMode, bool kRowConstantGrad = false, typename T>
MFK_HD double affine_backward(const T* MFK_RESTRICT g, T gl, const T* MFK_RESTRICT x, const T* MFK_RESTRICT t,
                              const T* MFK_RESTRICT s, T* MFK_RESTRICT gx, T* MFK_RESTRICT gt, T* MFK_RESTRICT gs,
                              int64_t n, T clamp, T row_mean, bool inverse, int64_t tid, int64_t nthreads) {
  T acc = T(0);
  if (inverse) {
    MFK_FOR_STRIDED(i, n, tid, nthreads, const T e = exp_(-log_scale<kMode>(s[i], clamp, row_mean));
                    const T gi = g[kRowConstantGrad ? 0 : i]; const T ge = gi * e;
                    const T gsi = (-ge * (x[i] - t[i]) - gl) * log_scale_derivative<kMode>(s[i], clamp); gx[i] = ge;
                    gt[i] = -ge; gs[i] = gsi; acc += gsi)
  } else {
    MFK_FOR_STRIDED(i, n, tid, nthreads, const T e = exp_(log_scale<kMode>(s[i], clamp, row_mean));
                    const T gi = g[kRowConstantGrad ? 0 : i]; const T ge = gi * e;
                    const T gsi = (ge * x[i] + gl) * log_scale_derivative<kMode>(s[i], clamp); gx[i] = ge; gt[i] = gi;
                    gs[i] = gsi; acc += gsi)
  }
  return static_cast<double>(acc);
}

// Subtracts the row mean (volume_preserving: a = s - mean(s) makes d/ds = I - 11^T / n).
template <typename T>
MFK_HD void subtract_mean(T* v, int64_t n, T mean, int64_t tid, int64_t nthreads) {
  MFK_FOR_STRIDED(i, n, tid, nthreads, v[i] -= mean)
}

// Forward-mode tangent of the row. a_dot = da/ds * s_dot (volume_preserving: minus the row mean of
// s_dot, passed as s_dot_mean). Returns this thread's sum of a_dot.
//   forward: out_dot = x_dot e^a + x e^a a_dot + t_dot
//   inverse: out_dot = (x_dot - t_dot) e^-a - (x - t) e^-a a_dot
template <int kMode, typename T>
MFK_HD double affine_jvp(const T* MFK_RESTRICT x, const T* MFK_RESTRICT t, const T* MFK_RESTRICT s,
                         const T* MFK_RESTRICT x_dot, const T* MFK_RESTRICT t_dot, const T* MFK_RESTRICT s_dot,
                         T* MFK_RESTRICT out_dot, int64_t n, T clamp, T row_mean, T s_dot_mean, bool inverse,
                         int64_t tid, int64_t nthreads) {
  T acc = T(0);
  MFK_FOR_STRIDED(
      i, n, tid, nthreads, const T a = log_scale<kMode>(s[i], clamp, row_mean); T a_dot;
      if constexpr (kMode == kVolumePreserving) { a_dot = s_dot[i] - s_dot_mean; } else {
        a_dot = log_scale_derivative<kMode>(s[i], clamp) * s_dot[i];
      } if (inverse) {
        const T e = exp_(-a);
        out_dot[i] = (x_dot[i] - t_dot[i]) * e - (x[i] - t[i]) * e * a_dot;
      } else {
        const T e = exp_(a);
        out_dot[i] = x_dot[i] * e + x[i] * e * a_dot + t_dot[i];
      } acc += a_dot)
  return static_cast<double>(acc);
}

// The row's logabsdet from the sum of a: exactly 0 for volume_preserving, whose a sums to zero by
// construction (the computed sum is rounding noise).
template <typename T>
MFK_HD_INLINE T row_logabsdet(double sum_a, int mode, bool inverse) {
  if (mode == kVolumePreserving) return T(0);
  return static_cast<T>(inverse ? -sum_a : sum_a);
}

}  // namespace coupling
}  // namespace mfk
