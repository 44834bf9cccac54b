// Portability layer for the shared math headers: one spelling of __host__ __device__ and of the few
// scalar functions they need, so the same header compiles under g++ (CPU build, run by CI) and nvcc.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MFK_HD __host__ __device__
#define MFK_HD_INLINE __host__ __device__ __forceinline__
#else
#define MFK_HD
// Forced: the CPU kernels vectorise loops whose bodies are chains of these small functions, and a
// call the compiler chose not to inline stops that.
#define MFK_HD_INLINE inline __attribute__((always_inline))
#endif

// Promise of no aliasing (g++ and nvcc both spell it __restrict__): lets the contiguous inner loops of
// the single-thread paths vectorise instead of reloading through memory on every iteration.
#define MFK_RESTRICT __restrict__

namespace mfk {

MFK_HD_INLINE float sqrt_(float x) { return sqrtf(x); }
MFK_HD_INLINE double sqrt_(double x) { return sqrt(x); }

// exp(x) written branch-free so that compilers vectorise the loops that call it (libm's exp is an
// opaque call per element; with -fno-trapping-math gcc turns the selects below into SIMD blends).
// The CPU and GPU builds run this same code. x = n ln2 + r, |r| <= ln2 / 2 (Cody-Waite split of
// ln2), exp(r) by its Taylor polynomial (degree 7 for float, 13 for double: truncation below one ulp),
// 2^n assembled in the exponent bits. Overflow gives +inf; results below the smallest normal
// number flush to 0; NaN propagates. Accuracy: a few ulp (checked against libm in csrc/tests).
// p * 2^n for an integer-valued n in [1 - kBias, kBias + 1], with 2^n assembled in the exponent
// bits: adding kRound (1.5 * 2^mantissa) leaves n + kBias as an integer in the low mantissa bits,
// and shifting it up by the mantissa width moves it into the exponent field. No float-to-int
// conversion, so it vectorises and NaN cannot reach undefined behaviour. Shared by both exp_.
template <typename T, typename Bits, int kMantissaBits, int kBias>
MFK_HD_INLINE T times_pow2_(T p, T n, T kRound) {
  const bool top = n > T(kBias);  // 2^(kBias + 1) is not representable: use 2^kBias * 2
  p = top ? p * T(2) : p;
  n = top ? T(kBias) : n;
  const T biased = (n + T(kBias)) + kRound;
  Bits bits;
  memcpy(&bits, &biased, sizeof bits);
  bits <<= kMantissaBits;
  T scale;
  memcpy(&scale, &bits, sizeof scale);
  const T y = p * scale;
  return n < T(1 - kBias) ? T(0) : y;  // below the smallest normal number: flush to zero
}

MFK_HD_INLINE float exp_(float x) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  float n = (x * 1.44269504088896341f + kRound) - kRound;
  n = n > 128.0f ? 128.0f : (n < -127.0f ? -127.0f : n);  // keeps r small and the bits below in range
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  float y = times_pow2_<float, uint32_t, 23, 127>(p, n, kRound);
  y = x > 88.72283935546875f ? std::numeric_limits<float>::infinity() : y;
  return x != x ? x : y;
}

MFK_HD_INLINE double exp_(double x) {
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  double n = (x * 1.4426950408889634074 + kRound) - kRound;
  n = n > 1024.0 ? 1024.0 : (n < -1023.0 ? -1023.0 : n);
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  double y = times_pow2_<double, uint64_t, 52, 1023>(p, n, kRound);
  y = x > 709.782712893383973096 ? std::numeric_limits<double>::infinity() : y;
  return x != x ? x : y;
}
MFK_HD_INLINE float log_series_(float s);
MFK_HD_INLINE double log_series_(double s);

// log(x), branch-free for the same reason as exp_. x = m 2^k with m in [sqrt(1/2), sqrt(2)):
// offsetting the bits by those of sqrt(1/2) puts that boundary at an exponent step (musl's trick);
// k reaches floating point through the mantissa, as in times_pow2_ (AVX2 has no 64-bit integer to
// double conversion); log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, by its odd series
// (to s^9 for float, s^25 for double: truncation below one ulp). Subnormal x is scaled up first;
// 0 gives -inf, negative x NaN, +inf +inf, NaN propagates. Accuracy: a few ulp (csrc/tests).
template <typename T, typename Bits, int kMantissaBits, int kBias>
MFK_HD_INLINE T log_impl_(T x, Bits sqrt_half_bits, T min_normal, T subnormal_scale) {
  const bool sub = x < min_normal;
  const T xs = sub ? x * subnormal_scale : x;
  Bits bits;
  memcpy(&bits, &xs, sizeof bits);
  const Bits ix = bits - sqrt_half_bits;
  constexpr Bits kMantissaMask = (Bits(1) << kMantissaBits) - 1;
  const Bits mbits = (ix & kMantissaMask) + sqrt_half_bits;
  T m;
  memcpy(&m, &mbits, sizeof m);
  // floor(ix / 2^mantissa) as a signed value is (ix + 2^(total - 2)) >> mantissa minus the offset
  constexpr int kTotal = 8 * sizeof(Bits);
  constexpr Bits kOffset = Bits(1) << (kTotal - 2);
  constexpr Bits kOffsetUnits = Bits(1) << (kTotal - 2 - kMantissaBits);
  const Bits kbits = ((ix + kOffset) >> kMantissaBits) | (Bits(kBias + kMantissaBits) << kMantissaBits);
  T k;
  memcpy(&k, &kbits, sizeof k);
  const T two_pow_mantissa = T(Bits(1) << kMantissaBits);
  k = k - (two_pow_mantissa + T(kOffsetUnits)) - (sub ? T(kMantissaBits) : T(0));
  const T f = m - T(1);
  const T s = f / (T(2) + f);
  const T y = k * T(6.93147180369123816490e-01) + (log_series_(s) + k * T(1.90821492927058770002e-10));
  const T inf = std::numeric_limits<T>::infinity();
  T r = x == T(0) ? -inf : y;
  r = x < T(0) ? std::numeric_limits<T>::quiet_NaN() : r;
  r = x == inf ? inf : r;
  return x != x ? x : r;
}

// 2 atanh(s) = 2s + s z (2/3 + z (2/5 + ...)), z = s^2
MFK_HD_INLINE float log_series_(float s) {
  const float z = s * s;
  float r = 2.0f / 9.0f;
  r = r * z + 2.0f / 7.0f;
  r = r * z + 2.0f / 5.0f;
  r = r * z + 2.0f / 3.0f;
  return 2.0f * s + s * z * r;
}

MFK_HD_INLINE double log_series_(double s) {
  const double z = s * s;
  double r = 2.0 / 25.0;
  r = r * z + 2.0 / 23.0;
  r = r * z + 2.0 / 21.0;
  r = r * z + 2.0 / 19.0;
  r = r * z + 2.0 / 17.0;
  r = r * z + 2.0 / 15.0;
  r = r * z + 2.0 / 13.0;
  r = r * z + 2.0 / 11.0;
  r = r * z + 2.0 / 9.0;
  r = r * z + 2.0 / 7.0;
  r = r * z + 2.0 / 5.0;
  r = r * z + 2.0 / 3.0;
  return 2.0 * s + s * z * r;
}

MFK_HD_INLINE float log_(float x) {
  return log_impl_<float, uint32_t, 23, 127>(x, 0x3f3504f3u, 1.17549435e-38f, 8388608.0f);
}

MFK_HD_INLINE double log_(double x) {
  return log_impl_<double, uint64_t, 52, 1023>(x, 0x3fe6a09e667f3bcdull, 2.2250738585072014e-308, 4503599627370496.0);
}

// log(1 + x) without cancellation for small x (Goldberg): log(u) * x / (u - 1) with u = 1 + x
// rounded, exact to a few ulp; branch-free like log_.
template <typename T>
MFK_HD_INLINE T log1p_(T x) {
  const T u = T(1) + x;
  const T r = u == T(1) ? x : log_(u) * (x / (u - T(1)));
  return x == std::numeric_limits<T>::infinity() ? x : r;
}

MFK_HD_INLINE float tanh_(float x) { return tanhf(x); }
MFK_HD_INLINE double tanh_(double x) { return tanh(x); }

// NaN test that survives -ffast-math style flags and works on device without <cmath> overloads.
template <typename T>
MFK_HD_INLINE bool is_nan_(T x) {
  return x != x;
}

template <typename T>
MFK_HD_INLINE T quiet_nan_() {
  return std::numeric_limits<T>::quiet_NaN();
}

template <typename T>
MFK_HD_INLINE T neg_inf_() {
  return -std::numeric_limits<T>::infinity();
}

// Runs the statement(s) for i = tid, tid + nthreads, ... < n. One thread (the CPU) gets a plain
// unit-stride loop, which compilers vectorise (a runtime stride of 1 would hide that from them). A
// macro rather than a lambda: captured pointers lose __restrict__, and without it gcc needs more
// runtime alias checks than it allows for loops over many arrays, and gives up vectorising.
#define MFK_FOR_STRIDED(i, n, tid, nthreads, ...)       \
  if ((nthreads) == 1) {                                \
    for (int64_t i = 0; i < (n); ++i) {                 \
      __VA_ARGS__;                                      \
    }                                                   \
  } else {                                              \
    for (int64_t i = (tid); i < (n); i += (nthreads)) { \
      __VA_ARGS__;                                      \
    }                                                   \
  }

// Walks the packed lower triangle (k, l), l <= k, in row-major packed order p = k(k+1)/2 + l,
// visiting p = start, start + step, ...  Threads of a block share the triangle without a sqrt per
// element: the index is unpacked once and then advanced incrementally.
struct LowerTriangleCursor {
  int k;
  int l;
  MFK_HD_INLINE explicit LowerTriangleCursor(int p) {
    int kk = static_cast<int>((sqrt_(8.0 * p + 1.0) - 1.0) * 0.5);
    while ((kk + 1) * (kk + 2) / 2 <= p) ++kk;
    while (kk * (kk + 1) / 2 > p) --kk;
    k = kk;
    l = p - kk * (kk + 1) / 2;
  }
  MFK_HD_INLINE void advance(int step) {
    l += step;
    while (l > k) {
      l -= k + 1;
      ++k;
    }
  }
};

}  // namespace mfk
