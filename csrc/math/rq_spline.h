// Shared math of the rational-quadratic spline op (Durkan et al., "Neural Spline Flows"; the
// elementwise transform of the spline couplings used throughout papers 000-004), one element at a
// time, so the CPU loop and the CUDA thread-per-element kernel run the same code.
//
// One element has K bins on [-B, B] x [-B, B]. Bin sizes are an affine map of softmaxed logits,
// size_i = min + (1 - K min) softmax(u)_i; knots are cumulative sums, X_0 = -B, X_K = B forced
// exactly; knot derivatives are min_derivative + softplus(u_d). Within bin k, with w, h the bin's
// width and height, s = h / w, theta = (x - X_k) / w, q = theta (1 - theta):
//     y = Y_k + h (s theta^2 + d_k q) / (s + (d_k + d_{k+1} - 2 s) q)
//     dy/dx = s^2 (d_{k+1} theta^2 + 2 s q + d_k (1 - theta)^2) / (s + (d_k + d_{k+1} - 2 s) q)^2
// The inverse solves the quadratic in theta with the cancellation-free root 2c / (-b - sqrt(b^2 - 4ac)).
// "linear" tails: identity outside [-B, B], with the outer knot derivatives fixed (nflows' constant
// log(exp(1 - min_d) - 1) through the same softplus, i.e. ~1); bounded (tails=None): no tails, all
// K + 1 derivatives learnable, inputs outside give NaN (the Python layer raises before that).
//
// Gradients: the element's output depends on the parameters only through the seven local values
// (x, X_k, X_{k+1}, Y_k, Y_{k+1}, d_k, d_{k+1}). `local_grad` is the reverse sweep of the formula
// above for them; it is linear in the incoming (gy, gl), so the tangent (jvp) of the seven locals
// is a dot product with local_grad(1, 0) and local_grad(0, 1). Knot values get back to the logits
// through the softmax: for a knot gradient a at X_k, d/du_j = (1 - K min) p_j (a 2B [j < k] - a 2B P_k)
// with P_k = sum_{i<k} p_i, i.e. O(K) per element. The inverse uses the implicit-function rule:
// x = f^-1(y): dx/dy = 1 / f'(x), dx/dparam = -(df/dparam) / f'(x).
//
// Layout and form: parameter i of an element sits at u[i * stride] (the GPU reads the op's layout,
// stride 1; the CPU first transposes a chunk of elements so that stride = chunk length and
// consecutive elements are adjacent). Every function is branch-free (selects, fixed trip counts,
// no early exits, no data-dependent indexing), so the CPU compiler vectorises the loop over
// elements, and GPU threads of a warp never diverge.
#pragma once

#include "../common/host_device.h"

#include <cstdint>

namespace mfk {
namespace rq_spline {

template <typename T>
struct SplineConfig {
  int num_bins;    // K
  int num_derivs;  // derivative parameters per element: K - 1 (linear tails) or K + 1 (bounded)
  T bound;         // the spline maps [-bound, bound] onto itself
  T min_bin_width;
  T min_bin_height;
  T min_derivative;
  T boundary_derivative;  // linear tails: derivative at the outer knots
};

template <typename T>
MFK_HD_INLINE T abs_(T x) {
  return x < T(0) ? -x : x;
}

template <typename T>
MFK_HD_INLINE T softplus_(T u) {
  return (u > T(0) ? u : T(0)) + log1p_(exp_(-abs_(u)));
}

template <typename T>
MFK_HD_INLINE T sigmoid_(T u) {
  const T e = exp_(-abs_(u));
  return (u >= T(0) ? T(1) : e) / (T(1) + e);
}

// Softmax of one element's K logits folded into the bin-size map size_i = min + spread p_i.
template <typename T>
struct BinSizes {
  T max;
  T inv_sum;
  T min;
  T spread;  // 1 - K min
  MFK_HD_INLINE T prob(T u) const { return exp_(u - max) * inv_sum; }
};

// Softmax normaliser from the running max and the sum of exp(u - max) (loops in the callers).
template <typename T>
MFK_HD_INLINE T max_step(T mx, T u) {
  return u > mx ? u : mx;
}

template <typename T>
MFK_HD_INLINE BinSizes<T> make_bin_sizes(T mx, T sum_exp, int K, T min_size) {
  return {mx, T(1) / sum_exp, min_size, T(1) - min_size * static_cast<T>(K)};
}

template <typename T>
MFK_HD_INLINE BinSizes<T> bin_sizes(const T* MFK_RESTRICT u, int64_t stride, int K, T min_size) {
  T mx = u[0];
  for (int i = 1; i < K; ++i) mx = max_step(mx, u[i * stride]);
  T sum = T(0);
  for (int i = 0; i < K; ++i) sum += exp_(u[i * stride] - mx);
  return make_bin_sizes(mx, sum, K, min_size);
}

// The bin holding an element and everything its value and gradients need.
template <typename T>
struct Bin {
  T k;               // bin index (floating point: same lane width as the values, for SIMD)
  T x0, x1, y0, y1;  // knots X_k, X_{k+1}, Y_k, Y_{k+1}
  T u0, u1;          // derivative logits of knots k and k + 1 (unused for a fixed outer knot)
  T d0, d1;          // derivatives at those knots
  T pw0, pw1;        // sum of width probabilities before knot k, before knot k + 1
  T ph0, ph1;        // same for heights
};

// Knot of derivative parameter j (linear tails fix knots 0 and K, so parameter j is knot j + 1).
template <bool kLinear>
MFK_HD_INLINE int knot_of_derivative_param(int j, int) {
  return kLinear ? j + 1 : j;
}

// Running sums of the bin search.
template <typename T>
struct Scan {
  T cw, ch;  // cumulative bin sizes (fractions of the span)
  T pw, ph;  // cumulative probabilities
  T X, Y;    // the current knot
};

template <typename T>
MFK_HD_INLINE Scan<T> scan_start(const SplineConfig<T>& c) {
  return {T(0), T(0), T(0), T(0), -c.bound, -c.bound};
}

// Bin search as nflows does it: the bin is the last knot among 0..K-1 whose position (X forward,
// Y inverse) is <= v (v inside the domain). Knots are accumulated in nflows' order: cumulative sum
// of sizes, times 2B, minus B, the last one forced to B. Step i visits knot i; the bin's values are
// kept by select, so every element runs the same instructions. p_w, p_h: the softmax probabilities
// of bin i (callers compute each exp once and reuse it).
template <bool kInverse, typename T>
MFK_HD_INLINE void scan_step(int i, T p_w, T p_h, T v, const BinSizes<T>& W, const BinSizes<T>& H,
                             const SplineConfig<T>& c, Scan<T>& s, Bin<T>& b) {
  const T span = T(2) * c.bound;
  s.cw += W.min + W.spread * p_w;
  s.ch += H.min + H.spread * p_h;
  const bool last = i == c.num_bins - 1;
  const T X_next = last ? c.bound : span * s.cw - c.bound;
  const T Y_next = last ? c.bound : span * s.ch - c.bound;
  const bool take = (i == 0) | ((kInverse ? s.Y : s.X) <= v);  // | not ||: no branch
  b.k = take ? static_cast<T>(i) : b.k;
  b.x0 = take ? s.X : b.x0;
  b.x1 = take ? X_next : b.x1;
  b.y0 = take ? s.Y : b.y0;
  b.y1 = take ? Y_next : b.y1;
  b.pw0 = take ? s.pw : b.pw0;
  b.pw1 = take ? s.pw + p_w : b.pw1;
  b.ph0 = take ? s.ph : b.ph0;
  b.ph1 = take ? s.ph + p_h : b.ph1;
  s.X = X_next;
  s.Y = Y_next;
  s.pw += p_w;
  s.ph += p_h;
}

// Picks the derivative logits of knots k and k + 1 by select over j (no data-dependent load).
template <bool kLinear, typename T>
MFK_HD_INLINE void derivative_step(int j, T ud_j, T k, int K, T& u0, T& u1) {
  const T knot = static_cast<T>(knot_of_derivative_param<kLinear>(j, K));
  u0 = knot == k ? ud_j : u0;
  u1 = knot == k + T(1) ? ud_j : u1;
}

template <bool kLinear, typename T>
MFK_HD_INLINE void finish_bin(T u0, T u1, const SplineConfig<T>& c, Bin<T>& b) {
  b.u0 = u0;
  b.u1 = u1;
  // linear tails: knots 0 and K have fixed derivatives
  const bool fixed0 = kLinear && b.k == T(0), fixed1 = kLinear && b.k + T(1) == static_cast<T>(c.num_bins);
  b.d0 = fixed0 ? c.boundary_derivative : c.min_derivative + softplus_(u0);
  b.d1 = fixed1 ? c.boundary_derivative : c.min_derivative + softplus_(u1);
}

// The bin of one element, parameters at u[i * stride] (the per-element composition of the steps).
template <bool kInverse, bool kLinear, typename T>
MFK_HD_INLINE Bin<T> locate(T v, const T* MFK_RESTRICT uw, const T* MFK_RESTRICT uh, const T* MFK_RESTRICT ud,
                            int64_t stride, const BinSizes<T>& W, const BinSizes<T>& H, const SplineConfig<T>& c) {
  Scan<T> s = scan_start(c);
  Bin<T> b{};
  for (int i = 0; i < c.num_bins; ++i)
    scan_step<kInverse>(i, W.prob(uw[i * stride]), H.prob(uh[i * stride]), v, W, H, c, s, b);
  T u0 = T(0), u1 = T(0);
  for (int j = 0; j < c.num_derivs; ++j) derivative_step<kLinear>(j, ud[j * stride], b.k, c.num_bins, u0, u1);
  finish_bin<kLinear>(u0, u1, c, b);
  return b;
}

// Gradients (or, by linearity, tangent weights) of the seven local values.
template <typename T>
struct Local {
  T x, x0, x1, y0, y1, d0, d1;
};

template <typename T>
MFK_HD_INLINE T dot_params(const Local<T>& a, const Local<T>& b) {
  return a.x0 * b.x0 + a.x1 * b.x1 + a.y0 * b.y0 + a.y1 * b.y1 + a.d0 * b.d0 + a.d1 * b.d1;
}

// y = f(x) within the bin and log f'(x).
template <typename T>
MFK_HD_INLINE T forward_value(const Bin<T>& b, T x, T& logabsdet) {
  const T w = b.x1 - b.x0, h = b.y1 - b.y0, s = h / w;
  const T theta = (x - b.x0) / w, omt = T(1) - theta, q = theta * omt;
  const T num = h * (s * theta * theta + b.d0 * q);
  const T den = s + (b.d0 + b.d1 - T(2) * s) * q;
  const T dnum = s * s * (b.d1 * theta * theta + T(2) * s * q + b.d0 * omt * omt);
  logabsdet = log_(dnum) - T(2) * log_(den);
  return b.y0 + num / den;
}

// x = f^-1(y) within the bin and log |d f^-1 / dy| = -log f'(x).
template <typename T>
MFK_HD_INLINE T inverse_value(const Bin<T>& b, T y, T& logabsdet) {
  const T w = b.x1 - b.x0, h = b.y1 - b.y0, s = h / w;
  const T dy = y - b.y0, m = b.d0 + b.d1 - T(2) * s;
  const T qa = dy * m + h * (s - b.d0);
  const T qb = h * b.d0 - dy * m;
  const T qc = -s * dy;
  T disc = qb * qb - T(4) * qa * qc;
  disc = disc < T(0) ? T(0) : disc;  // >= 0 in exact arithmetic; rounding may dip below
  const T theta = (T(2) * qc) / (-qb - sqrt_(disc));
  const T omt = T(1) - theta, q = theta * omt;
  const T den = s + m * q;
  const T dnum = s * s * (b.d1 * theta * theta + T(2) * s * q + b.d0 * omt * omt);
  logabsdet = -(log_(dnum) - T(2) * log_(den));
  return theta * w + b.x0;
}

// Reverse sweep of forward_value: gy * d(y)/d(local) + gl * d(logabsdet)/d(local).
template <typename T>
MFK_HD_INLINE Local<T> local_grad(const Bin<T>& b, T x, T gy, T gl) {
  const T w = b.x1 - b.x0, h = b.y1 - b.y0, s = h / w;
  const T theta = (x - b.x0) / w, omt = T(1) - theta, q = theta * omt;
  const T m = b.d0 + b.d1 - T(2) * s;
  const T num = h * (s * theta * theta + b.d0 * q);
  const T den = s + m * q;
  const T inner = b.d1 * theta * theta + T(2) * s * q + b.d0 * omt * omt;  // dnum = s^2 inner
  const T g_num = gy / den;
  const T g_den = -(gy * num / den + T(2) * gl) / den;
  const T gl_inner = gl / inner;
  // log dnum = 2 log s + log inner
  T g_s = T(2) * gl / s + gl_inner * T(2) * q;
  T g_d1 = gl_inner * theta * theta;
  T g_d0 = gl_inner * omt * omt;
  T g_theta = gl_inner * T(2) * (b.d1 * theta - b.d0 * omt);
  T g_q = gl_inner * T(2) * s;
  // den = s + m q, m = d0 + d1 - 2 s
  g_s += g_den * (T(1) - T(2) * q);
  g_d0 += g_den * q;
  g_d1 += g_den * q;
  g_q += g_den * m;
  // num = h (s theta^2 + d0 q)
  T g_h = g_num * (s * theta * theta + b.d0 * q);
  g_s += g_num * h * theta * theta;
  g_theta += g_num * h * T(2) * s * theta;
  g_d0 += g_num * h * q;
  g_q += g_num * h * b.d0;
  g_theta += g_q * (T(1) - T(2) * theta);
  // theta = (x - x0) / w, s = h / w, w = x1 - x0, h = y1 - y0, y = y0 + num / den
  const T g_x = g_theta / w;
  const T g_w = -(g_theta * theta + g_s * s) / w;
  g_h += g_s / w;
  return {g_x, -g_x - g_w, g_w, gy - g_h, g_h, g_d0, g_d1};
}

// ---- gradient and tangent pieces (loop-free; the callers loop over bins) ----

// Gradients of the seven locals and of the input, for forward or inverse direction.
template <bool kInverse, typename T>
MFK_HD_INLINE Local<T> backward_locals(const Bin<T>& b, T v, T g_out, T g_logabsdet, T& g_in) {
  if (!kInverse) {
    const Local<T> g = local_grad(b, v, g_out, g_logabsdet);
    g_in = g.x;
    return g;
  }
  T unused;
  const T x = inverse_value(b, v, unused);
  const T slope = local_grad(b, x, T(1), T(0)).x;    // f'(x)
  const T dlad_dx = local_grad(b, x, T(0), T(1)).x;  // d log f'(x) / dx
  g_in = (g_out - g_logabsdet * dlad_dx) / slope;    // total d loss / dy through x(y)
  return local_grad(b, x, -g_in, -g_logabsdet);
}

// A knot-gradient pair (knots k, k + 1) turned into d loss / d size_i = a0 [i < k] + a1 [i <= k]
// and its probability-weighted mean; the outer knots are constants.
template <typename T>
struct KnotGrad {
  T a0, a1, mean;
};

template <typename T>
MFK_HD_INLINE KnotGrad<T> knot_grad(T g0, T g1, T k, T P0, T P1, int K, T span) {
  const T a0 = k > T(0) ? g0 * span : T(0);
  const T a1 = k + T(1) < static_cast<T>(K) ? g1 * span : T(0);
  return {a0, a1, a0 * P0 + a1 * P1};
}

// d loss / d u_i through the softmax: spread p_i (d loss / d size_i - mean), p_i the probability.
template <typename T>
MFK_HD_INLINE T logit_grad(int i, T k, const KnotGrad<T>& g, T spread, T p_i) {
  const T fi = static_cast<T>(i);
  const T d_size = (fi < k ? g.a0 : T(0)) + (fi <= k ? g.a1 : T(0));
  return spread * p_i * (d_size - g.mean);
}

// Tangent of knots k and k + 1 from the logits' tangent:
// span * spread * (sum_{i<k} p_i du_i - P_k sum_i p_i du_i), accumulated over i.
template <typename T>
struct KnotTangentSums {
  T before_k, through_k, total;
};

template <typename T>
MFK_HD_INLINE void knot_tangent_step(int i, T k, T p_du, KnotTangentSums<T>& a) {
  const T fi = static_cast<T>(i);
  a.before_k += fi < k ? p_du : T(0);
  a.through_k += fi <= k ? p_du : T(0);
  a.total += p_du;
}

template <typename T>
MFK_HD_INLINE void knot_tangent_finish(T k, T P0, T P1, const KnotTangentSums<T>& a, int K, T span, T spread, T& t0,
                                       T& t1) {
  const T scale = span * spread;
  t0 = k > T(0) ? scale * (a.before_k - P0 * a.total) : T(0);
  t1 = k + T(1) < static_cast<T>(K) ? scale * (a.through_k - P1 * a.total) : T(0);
}

// (outputs_dot, logabsdet_dot) from the locals' tangent t (t.d0, t.d1 still the logit tangents).
template <bool kInverse, bool kLinear, typename T>
MFK_HD_INLINE void tangent_finish(const Bin<T>& b, T v, Local<T> t, int K, T& out_dot, T& logabsdet_dot) {
  const bool fixed0 = kLinear && b.k == T(0), fixed1 = kLinear && b.k + T(1) == static_cast<T>(K);
  t.d0 = fixed0 ? T(0) : sigmoid_(b.u0) * t.d0;
  t.d1 = fixed1 ? T(0) : sigmoid_(b.u1) * t.d1;
  T unused;
  const T x = kInverse ? inverse_value(b, v, unused) : v;
  const Local<T> dy = local_grad(b, x, T(1), T(0));
  const Local<T> dlad = local_grad(b, x, T(0), T(1));
  if (!kInverse) {
    out_dot = dy.x * t.x + dot_params(dy, t);
    logabsdet_dot = dlad.x * t.x + dot_params(dlad, t);
  } else {
    out_dot = (t.x - dot_params(dy, t)) / dy.x;
    logabsdet_dot = -(dlad.x * out_dot + dot_params(dlad, t));
  }
}

// ---- per-element entry points (the GPU's thread-per-element form) ----
// Elements outside [-B, B] (and NaN) are evaluated at 0, inside the domain, and their results
// replaced by select: identity for linear tails, NaN for the bounded spline.

template <typename T>
MFK_HD_INLINE bool in_domain(T v, const SplineConfig<T>& c) {
  return v >= -c.bound && v <= c.bound;  // false for NaN
}

template <bool kLinear, typename T>
MFK_HD_INLINE T outside_value(T if_linear) {
  return kLinear ? if_linear : quiet_nan_<T>();
}

template <bool kInverse, bool kLinear, typename T>
MFK_HD_INLINE void element_forward(T v, const T* MFK_RESTRICT uw, const T* MFK_RESTRICT uh, const T* MFK_RESTRICT ud,
                                   int64_t stride, const SplineConfig<T>& c, T& out, T& logabsdet) {
  const bool inside = in_domain(v, c);
  const T vi = inside ? v : T(0);
  const BinSizes<T> W = bin_sizes(uw, stride, c.num_bins, c.min_bin_width);
  const BinSizes<T> H = bin_sizes(uh, stride, c.num_bins, c.min_bin_height);
  const Bin<T> b = locate<kInverse, kLinear>(vi, uw, uh, ud, stride, W, H, c);
  T lad;
  const T y = kInverse ? inverse_value(b, vi, lad) : forward_value(b, vi, lad);
  out = inside ? y : outside_value<kLinear>(v);
  logabsdet = inside ? lad : outside_value<kLinear>(T(0));
}

template <bool kInverse, bool kLinear, typename T>
MFK_HD_INLINE void element_backward(T g_out, T g_logabsdet, T v, const T* MFK_RESTRICT uw, const T* MFK_RESTRICT uh,
                                    const T* MFK_RESTRICT ud, int64_t stride, const SplineConfig<T>& c, T& g_in,
                                    T* MFK_RESTRICT g_uw, T* MFK_RESTRICT g_uh, T* MFK_RESTRICT g_ud) {
  const int K = c.num_bins;
  const bool inside = in_domain(v, c);
  const T vi = inside ? v : T(0);
  const BinSizes<T> W = bin_sizes(uw, stride, K, c.min_bin_width);
  const BinSizes<T> H = bin_sizes(uh, stride, K, c.min_bin_height);
  const Bin<T> b = locate<kInverse, kLinear>(vi, uw, uh, ud, stride, W, H, c);
  T gi;
  const Local<T> g = backward_locals<kInverse>(b, vi, g_out, g_logabsdet, gi);
  g_in = inside ? gi : outside_value<kLinear>(g_out);
  const T span = T(2) * c.bound;
  const KnotGrad<T> gw = knot_grad(g.x0, g.x1, b.k, b.pw0, b.pw1, K, span);
  const KnotGrad<T> gh = knot_grad(g.y0, g.y1, b.k, b.ph0, b.ph1, K, span);
  for (int i = 0; i < K; ++i) {
    g_uw[i * stride] = inside ? logit_grad(i, b.k, gw, W.spread, W.prob(uw[i * stride])) : T(0);
    g_uh[i * stride] = inside ? logit_grad(i, b.k, gh, H.spread, H.prob(uh[i * stride])) : T(0);
  }
  const T gd0 = inside ? g.d0 * sigmoid_(b.u0) : T(0);
  const T gd1 = inside ? g.d1 * sigmoid_(b.u1) : T(0);
  for (int j = 0; j < c.num_derivs; ++j) {
    const T knot = static_cast<T>(knot_of_derivative_param<kLinear>(j, K));
    g_ud[j * stride] = (knot == b.k ? gd0 : T(0)) + (knot == b.k + T(1) ? gd1 : T(0));
  }
}

template <bool kInverse, bool kLinear, typename T>
MFK_HD_INLINE void element_jvp(T v, const T* MFK_RESTRICT uw, const T* MFK_RESTRICT uh, const T* MFK_RESTRICT ud,
                               T v_dot, const T* MFK_RESTRICT uw_dot, const T* MFK_RESTRICT uh_dot,
                               const T* MFK_RESTRICT ud_dot, int64_t stride, const SplineConfig<T>& c, T& out_dot,
                               T& logabsdet_dot) {
  const int K = c.num_bins;
  const bool inside = in_domain(v, c);
  const T vi = inside ? v : T(0);
  const BinSizes<T> W = bin_sizes(uw, stride, K, c.min_bin_width);
  const BinSizes<T> H = bin_sizes(uh, stride, K, c.min_bin_height);
  const Bin<T> b = locate<kInverse, kLinear>(vi, uw, uh, ud, stride, W, H, c);
  KnotTangentSums<T> sw{}, sh{};
  for (int i = 0; i < K; ++i) {
    knot_tangent_step(i, b.k, W.prob(uw[i * stride]) * uw_dot[i * stride], sw);
    knot_tangent_step(i, b.k, H.prob(uh[i * stride]) * uh_dot[i * stride], sh);
  }
  const T span = T(2) * c.bound;
  Local<T> t{v_dot, T(0), T(0), T(0), T(0), T(0), T(0)};
  knot_tangent_finish(b.k, b.pw0, b.pw1, sw, K, span, W.spread, t.x0, t.x1);
  knot_tangent_finish(b.k, b.ph0, b.ph1, sh, K, span, H.spread, t.y0, t.y1);
  for (int j = 0; j < c.num_derivs; ++j) derivative_step<kLinear>(j, ud_dot[j * stride], b.k, K, t.d0, t.d1);
  T yd, ld;
  tangent_finish<kInverse, kLinear>(b, vi, t, K, yd, ld);
  out_dot = inside ? yd : outside_value<kLinear>(v_dot);
  logabsdet_dot = inside ? ld : outside_value<kLinear>(T(0));
}

// Runs the trailing statements compiled twice: with `name` a constexpr true where `value` holds, false
// otherwise, so one runtime flag selects a specialised kernel body.
#define MFK_WITH_CONSTEXPR_BOOL(value, name, ...) \
  if (value) {                                    \
    constexpr bool name = true;                   \
    __VA_ARGS__;                                  \
  } else {                                        \
    constexpr bool name = false;                  \
    __VA_ARGS__;                                  \
  }

// Runs `body` with the compile-time direction and tails of an element function.
#define MFK_WITH_SPLINE_VARIANT(inverse, linear, kInv, kLin, ...) \
  MFK_WITH_CONSTEXPR_BOOL(inverse, kInv, MFK_WITH_CONSTEXPR_BOOL(linear, kLin, __VA_ARGS__))

}  // namespace rq_spline
}  // namespace mfk
