// CPU kernels of the rational-quadratic spline op (math in math/rq_spline.h). Elements are split
// over threads in chunks of kChunk. A chunk's parameters are transposed (chunk_transpose.h) so that
// bin i of consecutive elements is contiguous, and every step of the math runs as one loop over the
// chunk's elements (bins in the outer loop), for the compiler to vectorise (8 float / 4 double
// elements per AVX2 instruction). gcc 12 vectorises most of these loops, but not the float bin-scan
// loop ("control flow in loop"); this form still measured faster than a plain per-element loop. The
// GPU composes the same step functions per element.
#include "../common/dual.h"
#include "../math/rq_spline_config.h"
#include "../ops/rq_spline.h"
#include "chunk_transpose.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <memory>
#include <vector>

namespace mfk {
namespace rq_spline {
namespace {

constexpr int64_t kChunk = 64;
constexpr int64_t kGrain = 16 * kChunk;

template <typename T>
void to_columns(const T* src, int64_t m, int64_t n, T* dst) {
  cpu::to_columns(src, m, n, dst, kChunk);
}

template <typename T>
void from_columns(const T* src, int64_t m, int64_t n, T* dst) {
  cpu::from_columns(src, m, n, dst, kChunk);
}

// Per-element state of one chunk, one array per field (what the SIMD loops read and write).
template <typename T>
struct Lanes {
  T v[kChunk];  // input, replaced by 0 outside the domain
  T mx_w[kChunk], inv_w[kChunk], mx_h[kChunk], inv_h[kChunk];
  T cw[kChunk], ch[kChunk], pw[kChunk], ph[kChunk], X[kChunk], Y[kChunk];
  T k[kChunk];
  T x0[kChunk], x1[kChunk], y0[kChunk], y1[kChunk], u0[kChunk], u1[kChunk], d0[kChunk], d1[kChunk];
  T pw0[kChunk], pw1[kChunk], ph0[kChunk], ph1[kChunk];
  // backward: knot gradients per side, derivative-logit gradients; tangent: sums per side
  T a0_w[kChunk], a1_w[kChunk], mean_w[kChunk], a0_h[kChunk], a1_h[kChunk], mean_h[kChunk];
  T gd0[kChunk], gd1[kChunk];
  T bw[kChunk], tw[kChunk], sw[kChunk], bh[kChunk], th[kChunk], sh[kChunk];

  T spread_w, spread_h;  // 1 - K min, per chunk (set by locate_chunk)
  MFK_HD_INLINE Bin<T> bin(int64_t e) const {
    return {k[e], x0[e], x1[e], y0[e], y1[e], u0[e], u1[e], d0[e], d1[e], pw0[e], pw1[e], ph0[e], ph1[e]};
  }
  MFK_HD_INLINE void set_bin(int64_t e, const Bin<T>& b) {
    k[e] = b.k, x0[e] = b.x0, x1[e] = b.x1, y0[e] = b.y0, y1[e] = b.y1, u0[e] = b.u0, u1[e] = b.u1;
    d0[e] = b.d0, d1[e] = b.d1, pw0[e] = b.pw0, pw1[e] = b.pw1, ph0[e] = b.ph0, ph1[e] = b.ph1;
  }
};

// Steps shared by all three kernels: the softmaxes and the bin of every element of the chunk.
// pw, ph, ud are the chunk's transposed parameters (bin i of element e at [i * kChunk + e]); the
// width and height logits in pw, ph are replaced by their softmax probabilities, so each exp is
// computed once and the later steps (scan, gradients, tangents) only multiply and select.
template <bool kInv, bool kLin, typename T>
void locate_chunk(int64_t n, const T* MFK_RESTRICT x, T* MFK_RESTRICT pw, T* MFK_RESTRICT ph, const T* MFK_RESTRICT ud,
                  const SplineConfig<T>& config, Lanes<T>& L) {
  const SplineConfig<T> c = config;  // a local copy: stores to the lanes cannot alias it
  const int K = c.num_bins;
  L.spread_w = make_bin_sizes(T(0), T(1), K, c.min_bin_width).spread;
  L.spread_h = make_bin_sizes(T(0), T(1), K, c.min_bin_height).spread;
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    L.v[e] = in_domain(x[e], c) ? x[e] : T(0);
    L.mx_w[e] = pw[e];
    L.mx_h[e] = ph[e];
  }
  for (int i = 1; i < K; ++i) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      L.mx_w[e] = max_step(L.mx_w[e], pw[i * kChunk + e]);
      L.mx_h[e] = max_step(L.mx_h[e], ph[i * kChunk + e]);
    }
  }
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) L.inv_w[e] = L.inv_h[e] = T(0);  // sums of exp first
  for (int i = 0; i < K; ++i) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      pw[i * kChunk + e] = exp_(pw[i * kChunk + e] - L.mx_w[e]);
      ph[i * kChunk + e] = exp_(ph[i * kChunk + e] - L.mx_h[e]);
      L.inv_w[e] += pw[i * kChunk + e];
      L.inv_h[e] += ph[i * kChunk + e];
    }
  }
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    L.inv_w[e] = T(1) / L.inv_w[e];
    L.inv_h[e] = T(1) / L.inv_h[e];
    const Scan<T> s = scan_start(c);
    L.cw[e] = s.cw, L.ch[e] = s.ch, L.pw[e] = s.pw, L.ph[e] = s.ph, L.X[e] = s.X, L.Y[e] = s.Y;
    L.set_bin(e, Bin<T>{});
  }
  for (int i = 0; i < K; ++i) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      pw[i * kChunk + e] *= L.inv_w[e];
      ph[i * kChunk + e] *= L.inv_h[e];
    }
  }
  // the scan reads only the sizes' min and spread, the same for the whole chunk (kept out of the
  // loop: a per-element BinSizes temporary stopped gcc 12 from vectorising it)
  const BinSizes<T> W{T(0), T(1), c.min_bin_width, L.spread_w}, H{T(0), T(1), c.min_bin_height, L.spread_h};
  for (int i = 0; i < K; ++i) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      Scan<T> s{L.cw[e], L.ch[e], L.pw[e], L.ph[e], L.X[e], L.Y[e]};
      Bin<T> b = L.bin(e);
      scan_step<kInv>(i, pw[i * kChunk + e], ph[i * kChunk + e], L.v[e], W, H, c, s, b);
      L.cw[e] = s.cw, L.ch[e] = s.ch, L.pw[e] = s.pw, L.ph[e] = s.ph, L.X[e] = s.X, L.Y[e] = s.Y;
      L.set_bin(e, b);
    }
  }
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) L.u0[e] = L.u1[e] = T(0);
  for (int j = 0; j < c.num_derivs; ++j) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) derivative_step<kLin>(j, ud[j * kChunk + e], L.k[e], K, L.u0[e], L.u1[e]);
  }
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    Bin<T> b = L.bin(e);
    finish_bin<kLin>(L.u0[e], L.u1[e], c, b);
    L.set_bin(e, b);
  }
}

template <bool kInv, bool kLin, typename T>
void forward_chunk(int64_t n, const T* MFK_RESTRICT x, const SplineConfig<T>& config, const Lanes<T>& L,
                   T* MFK_RESTRICT out, T* MFK_RESTRICT logabsdet) {
  const SplineConfig<T> c = config;  // a local copy: stores to the lanes cannot alias it
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    T lad;
    const Bin<T> b = L.bin(e);
    const T y = kInv ? inverse_value(b, L.v[e], lad) : forward_value(b, L.v[e], lad);
    const bool inside = in_domain(x[e], c);
    out[e] = inside ? y : outside_value<kLin>(x[e]);
    logabsdet[e] = inside ? lad : outside_value<kLin>(T(0));
  }
}

template <bool kInv, bool kLin, typename T>
void backward_chunk(int64_t n, const T* MFK_RESTRICT go, const T* MFK_RESTRICT gl, const T* MFK_RESTRICT x,
                    const T* MFK_RESTRICT pw, const T* MFK_RESTRICT ph, const SplineConfig<T>& config, Lanes<T>& L,
                    T* MFK_RESTRICT g_in, T* MFK_RESTRICT g_uw, T* MFK_RESTRICT g_uh, T* MFK_RESTRICT g_ud) {
  const SplineConfig<T> c = config;  // a local copy: stores to the lanes cannot alias it
  const int K = c.num_bins;
  const T span = T(2) * c.bound;
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    const Bin<T> b = L.bin(e);
    const bool inside = in_domain(x[e], c);
    T gi;
    const Local<T> g = backward_locals<kInv>(b, L.v[e], go[e], gl[e], gi);
    g_in[e] = inside ? gi : outside_value<kLin>(go[e]);
    const KnotGrad<T> gw = knot_grad(g.x0, g.x1, b.k, b.pw0, b.pw1, K, span);
    const KnotGrad<T> gh = knot_grad(g.y0, g.y1, b.k, b.ph0, b.ph1, K, span);
    // outside the domain every parameter gradient is 0: zero the pieces they are made of
    L.a0_w[e] = inside ? gw.a0 : T(0), L.a1_w[e] = inside ? gw.a1 : T(0), L.mean_w[e] = inside ? gw.mean : T(0);
    L.a0_h[e] = inside ? gh.a0 : T(0), L.a1_h[e] = inside ? gh.a1 : T(0), L.mean_h[e] = inside ? gh.mean : T(0);
    L.gd0[e] = inside ? g.d0 * sigmoid_(b.u0) : T(0);
    L.gd1[e] = inside ? g.d1 * sigmoid_(b.u1) : T(0);
  }
  for (int i = 0; i < K; ++i) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      g_uw[i * kChunk + e] =
          logit_grad(i, L.k[e], KnotGrad<T>{L.a0_w[e], L.a1_w[e], L.mean_w[e]}, L.spread_w, pw[i * kChunk + e]);
      g_uh[i * kChunk + e] =
          logit_grad(i, L.k[e], KnotGrad<T>{L.a0_h[e], L.a1_h[e], L.mean_h[e]}, L.spread_h, ph[i * kChunk + e]);
    }
  }
  for (int j = 0; j < c.num_derivs; ++j) {
    const T knot = static_cast<T>(knot_of_derivative_param<kLin>(j, K));
#pragma omp simd
    for (int64_t e = 0; e < n; ++e)
      g_ud[j * kChunk + e] = (knot == L.k[e] ? L.gd0[e] : T(0)) + (knot == L.k[e] + T(1) ? L.gd1[e] : T(0));
  }
}

template <bool kInv, bool kLin, typename T>
void jvp_chunk(int64_t n, const T* MFK_RESTRICT x, const T* MFK_RESTRICT pw, const T* MFK_RESTRICT ph,
               const T* MFK_RESTRICT xd, const T* MFK_RESTRICT uwd, const T* MFK_RESTRICT uhd,
               const T* MFK_RESTRICT udd, const SplineConfig<T>& config, Lanes<T>& L, T* MFK_RESTRICT out_dot,
               T* MFK_RESTRICT logabsdet_dot) {
  const SplineConfig<T> c = config;  // a local copy: stores to the lanes cannot alias it
  const int K = c.num_bins;
  const T span = T(2) * c.bound;
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    L.bw[e] = L.tw[e] = L.sw[e] = L.bh[e] = L.th[e] = L.sh[e] = T(0);
    L.gd0[e] = L.gd1[e] = T(0);  // the derivative logits' tangents
  }
  for (int i = 0; i < K; ++i) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      KnotTangentSums<T> w{L.bw[e], L.tw[e], L.sw[e]}, h{L.bh[e], L.th[e], L.sh[e]};
      knot_tangent_step(i, L.k[e], pw[i * kChunk + e] * uwd[i * kChunk + e], w);
      knot_tangent_step(i, L.k[e], ph[i * kChunk + e] * uhd[i * kChunk + e], h);
      L.bw[e] = w.before_k, L.tw[e] = w.through_k, L.sw[e] = w.total;
      L.bh[e] = h.before_k, L.th[e] = h.through_k, L.sh[e] = h.total;
    }
  }
  for (int j = 0; j < c.num_derivs; ++j) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) derivative_step<kLin>(j, udd[j * kChunk + e], L.k[e], K, L.gd0[e], L.gd1[e]);
  }
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    const Bin<T> b = L.bin(e);
    Local<T> t{xd[e], T(0), T(0), T(0), T(0), L.gd0[e], L.gd1[e]};
    knot_tangent_finish(b.k, b.pw0, b.pw1, KnotTangentSums<T>{L.bw[e], L.tw[e], L.sw[e]}, K, span, L.spread_w, t.x0,
                        t.x1);
    knot_tangent_finish(b.k, b.ph0, b.ph1, KnotTangentSums<T>{L.bh[e], L.th[e], L.sh[e]}, K, span, L.spread_h, t.y0,
                        t.y1);
    T yd, ld;
    tangent_finish<kInv, kLin>(b, L.v[e], t, K, yd, ld);
    const bool inside = in_domain(x[e], c);
    out_dot[e] = inside ? yd : outside_value<kLin>(xd[e]);
    logabsdet_dot[e] = inside ? ld : outside_value<kLin>(T(0));
  }
}

// Runs chunk(c0, n, columns, lanes) over consecutive chunks of the N elements, in parallel;
// `columns` has room for `columns_per_element` transposed values per element.
template <typename T, typename F>
void for_each_chunk(int64_t N, int64_t columns_per_element, const F& chunk) {
  at::parallel_for(0, N, kGrain, [&](int64_t e0, int64_t e1) {
    std::vector<T> columns(static_cast<size_t>(kChunk * std::max<int64_t>(columns_per_element, 1)));
    auto lanes = std::make_unique<Lanes<T>>();
    for (int64_t c0 = e0; c0 < e1; c0 += kChunk) chunk(c0, std::min(kChunk, e1 - c0), columns.data(), *lanes);
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rq_forward_cpu(const at::Tensor& inputs, const at::Tensor& uw, const at::Tensor& uh,
                                                  const at::Tensor& ud, SplineOptions o) {
  at::Tensor out = at::empty_like(inputs), logabsdet = at::empty_like(inputs);
  const int64_t N = inputs.numel(), K = uw.size(-1), Kd = ud.size(-1);
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline (cpu)", [&] {
    using T = scalar_t;
    const SplineConfig<T> c = make_config<T>(o, K, Kd);
    const T *in = inputs.const_data_ptr<T>(), *w = uw.const_data_ptr<T>(), *h = uh.const_data_ptr<T>(),
            *d = ud.const_data_ptr<T>();
    T *op = out.mutable_data_ptr<T>(), *lp = logabsdet.mutable_data_ptr<T>();
    for_each_chunk<T>(N, 2 * K + Kd, [&](int64_t c0, int64_t n, T* cols, Lanes<T>& L) {
      T *cw = cols, *ch = cw + K * kChunk, *cd = ch + K * kChunk;
      to_columns(w + c0 * K, K, n, cw);
      to_columns(h + c0 * K, K, n, ch);
      to_columns(d + c0 * Kd, Kd, n, cd);
      MFK_WITH_SPLINE_VARIANT(o.inverse, o.linear_tails, kInv, kLin,
                              locate_chunk<kInv, kLin>(n, in + c0, cw, ch, cd, c, L);
                              forward_chunk<kInv, kLin>(n, in + c0, c, L, op + c0, lp + c0))
    });
  });
  return {out, logabsdet};
}

namespace {

// The backward over all N elements in chunks; T is the scalar type, or Dual<scalar_t> for the
// second-order kernel (the same steps on dual numbers: each softmax exp still computed once per bin).
template <typename T>
void backward_elements(int64_t N, int64_t K, int64_t Kd, const SplineConfig<T>& c, bool inverse, bool linear,
                       const T* go, const T* gl, const T* in, const T* w, const T* h, const T* d, T* gi, T* gw, T* gh,
                       T* gd) {
  for_each_chunk<T>(N, 2 * (2 * K + Kd), [&](int64_t c0, int64_t n, T* cols, Lanes<T>& L) {
    T *cw = cols, *ch = cw + K * kChunk, *cd = ch + K * kChunk;
    T *cgw = cd + Kd * kChunk, *cgh = cgw + K * kChunk, *cgd = cgh + K * kChunk;
    to_columns(w + c0 * K, K, n, cw);
    to_columns(h + c0 * K, K, n, ch);
    to_columns(d + c0 * Kd, Kd, n, cd);
    MFK_WITH_SPLINE_VARIANT(
        inverse, linear, kInv, kLin, locate_chunk<kInv, kLin>(n, in + c0, cw, ch, cd, c, L);
        backward_chunk<kInv, kLin>(n, go + c0, gl + c0, in + c0, cw, ch, c, L, gi + c0, cgw, cgh, cgd))
    from_columns(cgw, K, n, gw + c0 * K);
    from_columns(cgh, K, n, gh + c0 * K);
    from_columns(cgd, Kd, n, gd + c0 * Kd);
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_cpu(const at::Tensor& grad_out,
                                                                           const at::Tensor& grad_logabsdet,
                                                                           const at::Tensor& inputs,
                                                                           const at::Tensor& uw, const at::Tensor& uh,
                                                                           const at::Tensor& ud, SplineOptions o) {
  at::Tensor g_in = at::empty_like(inputs), g_w = at::empty_like(uw), g_h = at::empty_like(uh),
             g_d = at::empty_like(ud);
  const int64_t N = inputs.numel(), K = uw.size(-1), Kd = ud.size(-1);
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline_backward (cpu)", [&] {
    using T = scalar_t;
    backward_elements<T>(N, K, Kd, make_config<T>(o, K, Kd), o.inverse, o.linear_tails, grad_out.const_data_ptr<T>(),
                         grad_logabsdet.const_data_ptr<T>(), inputs.const_data_ptr<T>(), uw.const_data_ptr<T>(),
                         uh.const_data_ptr<T>(), ud.const_data_ptr<T>(), g_in.mutable_data_ptr<T>(),
                         g_w.mutable_data_ptr<T>(), g_h.mutable_data_ptr<T>(), g_d.mutable_data_ptr<T>());
  });
  return {g_in, g_w, g_h, g_d};
}

std::tuple<at::Tensor, at::Tensor> rq_jvp_cpu(const at::Tensor& inputs, const at::Tensor& uw, const at::Tensor& uh,
                                              const at::Tensor& ud, const at::Tensor& inputs_dot,
                                              const at::Tensor& uw_dot, const at::Tensor& uh_dot,
                                              const at::Tensor& ud_dot, SplineOptions o) {
  at::Tensor out_dot = at::empty_like(inputs), logabsdet_dot = at::empty_like(inputs);
  const int64_t N = inputs.numel(), K = uw.size(-1), Kd = ud.size(-1);
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline_jvp (cpu)", [&] {
    using T = scalar_t;
    const SplineConfig<T> c = make_config<T>(o, K, Kd);
    const T *in = inputs.const_data_ptr<T>(), *w = uw.const_data_ptr<T>(), *h = uh.const_data_ptr<T>(),
            *d = ud.const_data_ptr<T>(), *ind = inputs_dot.const_data_ptr<T>(), *wd = uw_dot.const_data_ptr<T>(),
            *hd = uh_dot.const_data_ptr<T>(), *dd = ud_dot.const_data_ptr<T>();
    T *op = out_dot.mutable_data_ptr<T>(), *lp = logabsdet_dot.mutable_data_ptr<T>();
    for_each_chunk<T>(N, 2 * (2 * K + Kd), [&](int64_t c0, int64_t n, T* cols, Lanes<T>& L) {
      T *cw = cols, *ch = cw + K * kChunk, *cd = ch + K * kChunk;
      T *cwd = cd + Kd * kChunk, *chd = cwd + K * kChunk, *cdd = chd + K * kChunk;
      to_columns(w + c0 * K, K, n, cw);
      to_columns(h + c0 * K, K, n, ch);
      to_columns(d + c0 * Kd, Kd, n, cd);
      to_columns(wd + c0 * K, K, n, cwd);
      to_columns(hd + c0 * K, K, n, chd);
      to_columns(dd + c0 * Kd, Kd, n, cdd);
      MFK_WITH_SPLINE_VARIANT(
          o.inverse, o.linear_tails, kInv, kLin, locate_chunk<kInv, kLin>(n, in + c0, cw, ch, cd, c, L);
          jvp_chunk<kInv, kLin>(n, in + c0, cw, ch, ind + c0, cwd, chd, cdd, c, L, op + c0, lp + c0))
    });
  });
  return {out_dot, logabsdet_dot};
}

// Second order: the chunked backward on dual numbers, on (..., 2) tensors of values and tangents.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_dual_cpu(
    const at::Tensor& grad_out, const at::Tensor& grad_logabsdet, const at::Tensor& inputs, const at::Tensor& uw,
    const at::Tensor& uh, const at::Tensor& ud, SplineOptions o) {
  at::Tensor g_in = at::empty_like(inputs), g_w = at::empty_like(uw), g_h = at::empty_like(uh),
             g_d = at::empty_like(ud);
  const int64_t N = inputs.numel() / 2, K = uw.size(-2), Kd = ud.size(-2);
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline_backward_jvp (cpu)", [&] {
    using D = Dual<scalar_t>;
    auto in_ptr = [](const at::Tensor& t) { return reinterpret_cast<const D*>(t.const_data_ptr<scalar_t>()); };
    auto out_ptr = [](at::Tensor& t) { return reinterpret_cast<D*>(t.mutable_data_ptr<scalar_t>()); };
    backward_elements<D>(N, K, Kd, make_config<D>(o, K, Kd), o.inverse, o.linear_tails, in_ptr(grad_out),
                         in_ptr(grad_logabsdet), in_ptr(inputs), in_ptr(uw), in_ptr(uh), in_ptr(ud), out_ptr(g_in),
                         out_ptr(g_w), out_ptr(g_h), out_ptr(g_d));
  });
  return {g_in, g_w, g_h, g_d};
}

const Kernels kCpuKernels{rq_forward_cpu, rq_backward_cpu, rq_jvp_cpu, rq_backward_dual_cpu};

}  // namespace rq_spline
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CPU, m) { mfk::rq_spline::register_drivers<mfk::rq_spline::kCpuKernels>(m); }
