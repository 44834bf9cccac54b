// Shared math of the block-diagonal Gaussian NIF op (paper 001: x = A z + b + eps, eps ~ N(0, Sigma), Sigma
// diagonal; closed-form marginal eq 41, manifold term eq 9, z_mean and the stochastic-inverse mean eq 42).
// One block p: A (r x c) row-major, S = Sigma^-1 = diag(inv_var), mu = x - b, t = S mu, u = A^T t,
// Lambda = A^T S A, K1 = (I + Lambda)^-1, K0 = Lambda^-1. The CPU and CUDA kernels call these functions:
// `block_setup` once per block (the c x c factorisations, in registers for c <= kMaxLatent), then
// `sample_forward` / `sample_backward` per (sample, block): r x c products, nothing of size N x M.
#pragma once

#include "../common/host_device.h"

namespace mfk {
namespace nif_block {

constexpr int kMaxLatent = 16;  // the fused kernels' c x c work arrays; larger c takes the ATen driver

// Calls BODY with the compile-time constant kC = c for c in 1..4 (upsampling a 1-4 channel latent), else kC = 0.
#define MFK_NIF_WITH_LATENT(c, ...) \
  switch (c) {                      \
    case 1: {                       \
      constexpr int kC = 1;         \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
    case 2: {                       \
      constexpr int kC = 2;         \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
    case 3: {                       \
      constexpr int kC = 3;         \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
    case 4: {                       \
      constexpr int kC = 4;         \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
    default: {                      \
      constexpr int kC = 0;         \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
  }

// In place: the lower triangle of the SPD c x c matrix M (row-major) becomes its Cholesky factor L, and
// logdet = log det M. False (M partly overwritten) when M is not numerically positive definite or not finite.
template <typename T>
MFK_HD_INLINE bool cholesky(T* M, int c, T& logdet) {
  logdet = T(0);
  for (int j = 0; j < c; ++j) {
    T d = M[j * c + j];
    for (int k = 0; k < j; ++k) d -= M[j * c + k] * M[j * c + k];
    if (!(d > T(0))) return false;  // also false for NaN
    const T l = sqrt_(d);
    M[j * c + j] = l;
    logdet += T(2) * log_(l);
    for (int i = j + 1; i < c; ++i) {
      T s = M[i * c + j];
      for (int k = 0; k < j; ++k) s -= M[i * c + k] * M[j * c + k];
      M[i * c + j] = s / l;
    }
  }
  return true;
}

// K = (L L^T)^-1 (full, symmetric) from the lower factor L: W = L^-1 by forward substitution, K = W^T W.
template <typename T>
MFK_HD_INLINE void cholesky_inverse(const T* L, int c, T* K) {
  T W[kMaxLatent * kMaxLatent];
  for (int j = 0; j < c; ++j) {
    for (int i = 0; i < c; ++i) {
      T s = i == j ? T(1) : T(0);
      for (int k = j; k < i; ++k) s -= L[i * c + k] * W[k * c + j];
      W[i * c + j] = i < j ? T(0) : s / L[i * c + i];
    }
  }
  for (int a = 0; a < c; ++a) {
    for (int b = 0; b <= a; ++b) {
      T s = T(0);
      for (int k = a; k < c; ++k) s += W[k * c + a] * W[k * c + b];  // W is lower: rows k >= a
      K[a * c + b] = s;
      K[b * c + a] = s;
    }
  }
}

// K = M^-1 and logdet = log det M for SPD M (c x c); NaN in both when M does not factor (the op's
// convention for a singular Lambda, as in the ATen driver).
template <typename T>
MFK_HD_INLINE void spd_inverse(const T* M, int c, T* K, T& logdet) {
  T L[kMaxLatent * kMaxLatent];
  for (int i = 0; i < c * c; ++i) L[i] = M[i];
  if (cholesky(L, c, logdet)) {
    cholesky_inverse(L, c, K);
  } else {
    logdet = quiet_nan_<T>();
    for (int i = 0; i < c * c; ++i) K[i] = quiet_nan_<T>();
  }
}

// Per block: Lambda = A^T S A, then K1, K0 (c x c) and logdets[0] = log|I + Lambda|, logdets[1] = log|Lambda|.
template <typename T>
MFK_HD void block_setup(const T* A, const T* inv_var, int r, int c, T* K1, T* K0, T* logdets) {
  T lambda[kMaxLatent * kMaxLatent];
  for (int a = 0; a < c; ++a) {
    for (int b = 0; b <= a; ++b) {
      T s = T(0);
      for (int i = 0; i < r; ++i) s += A[i * c + a] * A[i * c + b] * inv_var[i];
      lambda[a * c + b] = s;
      lambda[b * c + a] = s;
    }
  }
  spd_inverse(lambda, c, K0, logdets[1]);
  for (int a = 0; a < c; ++a) lambda[a * c + a] += T(1);
  spd_inverse(lambda, c, K1, logdets[0]);
}

// One block's terms of one sample's log p(x) (eq 41) and manifold term (eq 9), added to lp and mf, from
// sample_forward's quadratic forms and block_setup's log-determinants. One home for the CPU loop and
// the CUDA kernel, so the two round alike (log 2 pi as one correctly rounded constant).
template <typename T>
MFK_HD_INLINE void add_block_terms(T quad, T u_zm, T u_zp, T sum_log_sigma, const T* logdets, int r, int c, T& lp,
                                   T& mf) {
  const T log_2pi = T(1.8378770664093454835606594728112);
  const T log_zx = T(0.5) * (quad + T(2) * sum_log_sigma + T(r) * log_2pi);
  lp += T(0.5) * (u_zm - logdets[0]) - log_zx;
  mf += T(0.5) * (u_zp - logdets[1] + T(c) * log_2pi) - log_zx;
}

// Per (sample, block): t = S (x - b) (r), u = A^T t, z_mean = K1 u, z_point = K0 u (c each) and
// quad = mu^T S mu, u_zm = u^T z_mean, u_zp = u^T z_point, from which the op's two densities follow.
// kC > 0 fixes c at compile time (the drivers instantiate small c: the c-loops unroll into registers).
template <typename T, int kC = 0>
MFK_HD void sample_forward(const T* x, const T* b, const T* A, const T* inv_var, const T* K1, const T* K0, int r,
                           int c_runtime, T* t, T* u, T* z_mean, T* z_point, T& quad, T& u_zm, T& u_zp) {
  const int c = kC > 0 ? kC : c_runtime;
  // even and odd rows summed apart: one running sum is a chain of r dependent FMAs, and the
  // CPU forward waited on FMA latency
  T uu[kMaxLatent], odd[kMaxLatent];
  for (int a = 0; a < c; ++a) uu[a] = odd[a] = T(0);
  T quad_odd = T(0);
  quad = T(0);
  int i = 0;
  for (; i + 1 < r; i += 2) {
    const T mu0 = x[i] - b[i], mu1 = x[i + 1] - b[i + 1];
    const T t0 = mu0 * inv_var[i], t1 = mu1 * inv_var[i + 1];
    t[i] = t0;
    t[i + 1] = t1;
    quad += mu0 * t0;
    quad_odd += mu1 * t1;
    for (int a = 0; a < c; ++a) {
      uu[a] += A[i * c + a] * t0;
      odd[a] += A[(i + 1) * c + a] * t1;
    }
  }
  if (i < r) {
    const T mu = x[i] - b[i];
    const T ti = mu * inv_var[i];
    t[i] = ti;
    quad += mu * ti;
    for (int a = 0; a < c; ++a) uu[a] += A[i * c + a] * ti;
  }
  quad += quad_odd;
  for (int a = 0; a < c; ++a) uu[a] += odd[a];
  u_zm = T(0);
  u_zp = T(0);
  for (int a = 0; a < c; ++a) {
    T sm = T(0), sp = T(0);
    for (int k = 0; k < c; ++k) {
      sm += K1[a * c + k] * uu[k];
      sp += K0[a * c + k] * uu[k];
    }
    u[a] = uu[a];
    z_mean[a] = sm;
    z_point[a] = sp;
    u_zm += uu[a] * sm;
    u_zp += uu[a] * sp;
  }
}

// Backward of one block over its samples (the derivation is in csrc/ops/nif_block.cpp). Per sample n:
//   gu = g1 z_mean + g2 z_point + K1 gm + K0 gp,  gt = A gu,  grad_x = S gt - w t  (w = g1 + g2),
// accumulating sum_n t gu^T into grad_A and sum_n (gt mu - w mu^2 / 2) into grad_S (r), and the c x c
//   G = -1/2 (sum g1 zm zm^T + K1 sum g1) - 1/2 (sum g2 zp zp^T + K0 sum g2) - K1 sum gm zm^T - K0 sum gp zp^T;
// then grad_A += S A (G + G^T), grad_S += diag(A (G + G^T) A^T) / 2, grad_log_sigma = -2 S grad_S - sum w.
// Strides: samples are `sample_stride_r` apart in t / grad_x and `sample_stride_c` in the c-sized arrays.
template <typename T, int kC = 0>
MFK_HD void block_backward(int64_t B, const T* MFK_RESTRICT g_log_px, const T* MFK_RESTRICT g_manifold,
                           const T* MFK_RESTRICT g_z_mean, const T* MFK_RESTRICT g_z_point, const T* MFK_RESTRICT A,
                           const T* MFK_RESTRICT inv_var, const T* MFK_RESTRICT t, const T* MFK_RESTRICT z_mean,
                           const T* MFK_RESTRICT z_point, const T* MFK_RESTRICT K1, const T* MFK_RESTRICT K0, int r,
                           int c_runtime, int64_t sample_stride_r, int64_t sample_stride_c, T* MFK_RESTRICT grad_x,
                           T* MFK_RESTRICT grad_A, T* MFK_RESTRICT grad_log_sigma) {
  const int c = kC > 0 ? kC : c_runtime;
  T G[kMaxLatent * kMaxLatent];
  T gu[kMaxLatent];
  for (int i = 0; i < c * c; ++i) G[i] = T(0);
  T sum_g1 = T(0), sum_g2 = T(0);
  for (int i = 0; i < r * c; ++i) grad_A[i] = T(0);
  for (int i = 0; i < r; ++i) grad_log_sigma[i] = T(0);        // holds grad_S until the end
  T Cm[kMaxLatent * kMaxLatent], Cp[kMaxLatent * kMaxLatent];  // sum gm zm^T, sum gp zp^T
  for (int i = 0; i < c * c; ++i) Cm[i] = Cp[i] = T(0);
  for (int64_t n = 0; n < B; ++n) {
    const T g1 = g_log_px[n], g2 = g_manifold[n], w = g1 + g2;
    const T* zm = z_mean + n * sample_stride_c;
    const T* zp = z_point + n * sample_stride_c;
    const T* gm = g_z_mean + n * sample_stride_c;
    const T* gp = g_z_point + n * sample_stride_c;
    sum_g1 += g1;
    sum_g2 += g2;
    for (int a = 0; a < c; ++a) {
      T s = g1 * zm[a] + g2 * zp[a];
      for (int k = 0; k < c; ++k) s += K1[a * c + k] * gm[k] + K0[a * c + k] * gp[k];
      gu[a] = s;
      for (int k = 0; k < c; ++k) {
        G[a * c + k] -= T(0.5) * (g1 * zm[a] * zm[k] + g2 * zp[a] * zp[k]);
        Cm[a * c + k] += gm[a] * zm[k];
        Cp[a * c + k] += gp[a] * zp[k];
      }
    }
    const T* tn = t + n * sample_stride_r;
    T* gx = grad_x + n * sample_stride_r;
    for (int i = 0; i < r; ++i) {
      T gt = T(0);
      for (int a = 0; a < c; ++a) {
        gt += A[i * c + a] * gu[a];
        grad_A[i * c + a] += tn[i] * gu[a];
      }
      const T mu = tn[i] / inv_var[i];
      gx[i] = inv_var[i] * gt - w * tn[i];
      grad_log_sigma[i] += gt * mu - T(0.5) * w * mu * mu;
    }
  }
  for (int a = 0; a < c; ++a) {
    for (int k = 0; k < c; ++k) {
      T s = -T(0.5) * (sum_g1 * K1[a * c + k] + sum_g2 * K0[a * c + k]);
      for (int m = 0; m < c; ++m) s -= K1[a * c + m] * Cm[m * c + k] + K0[a * c + m] * Cp[m * c + k];
      G[a * c + k] += s;
    }
  }
  for (int i = 0; i < r; ++i) {
    T diag = T(0);
    for (int a = 0; a < c; ++a) {
      T ags = T(0);  // (A (G + G^T))_ia
      for (int k = 0; k < c; ++k) ags += A[i * c + k] * (G[k * c + a] + G[a * c + k]);
      grad_A[i * c + a] += inv_var[i] * ags;
      diag += ags * A[i * c + a];
    }
    const T grad_S = grad_log_sigma[i] + T(0.5) * diag;
    grad_log_sigma[i] = -T(2) * inv_var[i] * grad_S - (sum_g1 + sum_g2);
  }
}

}  // namespace nif_block
}  // namespace mfk
