// Transposes between an op's per-element parameter rows and the CPU kernels' per-parameter columns
// (the layout whose loops over elements vectorise; see rq_spline_cpu.cpp). One element's m values sit
// at src[e * m + i]; as columns they sit at dst[i * ld + e]. Written element by element, the
// rq_spline forward spent about a quarter of its time here (23 scalar loads and stores per element);
// with AVX2 each 8 x 8 float (4 x 4 double) block is moved by 8 (4) vector loads, an in-register
// transpose and 8 (4) vector stores. A block that ends inside an element's row (m not a multiple of
// the width) is loaded and stored through lane masks, so nothing outside the rows is read or written
// (other threads write the neighbouring chunks). Other types (the dual numbers of the second-order
// kernel) and builds without AVX2 take the scalar loops. Tested against them in
// csrc/tests/test_chunk_transpose.cpp.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace mfk {
namespace cpu {

template <typename T>
void to_columns_scalar(const T* __restrict__ src, int64_t m, int64_t n, T* __restrict__ dst, int64_t ld,
                       int64_t e0 = 0) {
  for (int64_t e = e0; e < n; ++e)
    for (int64_t i = 0; i < m; ++i) dst[i * ld + e] = src[e * m + i];
}

template <typename T>
void from_columns_scalar(const T* __restrict__ src, int64_t m, int64_t n, T* __restrict__ dst, int64_t ld,
                         int64_t e0 = 0) {
  for (int64_t e = e0; e < n; ++e)
    for (int64_t i = 0; i < m; ++i) dst[e * m + i] = src[i * ld + e];
}

#if defined(__AVX2__)
namespace simd {

inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

inline void transpose4(__m256d r[4]) {
  const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
  const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
  r[0] = _mm256_permute2f128_pd(t0, t2, 0x20), r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
  r[2] = _mm256_permute2f128_pd(t0, t2, 0x31), r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

// Lane mask of the first `count` lanes (count in 1..width).
inline __m256i first_lanes(int64_t count, float) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i first_lanes(int64_t count, double) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), _mm256_setr_epi64x(0, 1, 2, 3));
}

// The intrinsics per scalar type, overloaded so that one Ops template serves both.
inline __m256 load_all(const float* p) { return _mm256_loadu_ps(p); }
inline __m256d load_all(const double* p) { return _mm256_loadu_pd(p); }
inline __m256 load_masked(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
inline __m256d load_masked(const double* p, __m256i m) { return _mm256_maskload_pd(p, m); }
inline void store_all(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
inline void store_all(double* p, __m256d v) { _mm256_storeu_pd(p, v); }
inline void store_masked(float* p, __m256i m, __m256 v) { _mm256_maskstore_ps(p, m, v); }
inline void store_masked(double* p, __m256i m, __m256d v) { _mm256_maskstore_pd(p, m, v); }
inline void transpose(__m256 r[8]) { transpose8(r); }
inline void transpose(__m256d r[4]) { transpose4(r); }

// The vector and its operations per scalar type (float: 8 lanes, double: 4).
template <typename T>
struct Ops {
  using V = decltype(load_all(static_cast<const T*>(nullptr)));
  static constexpr int kWidth = static_cast<int>(sizeof(V) / sizeof(T));
  static V load(const T* p, int64_t count) {
    return count == kWidth ? load_all(p) : load_masked(p, first_lanes(count, T()));
  }
  static void store(T* p, V v, int64_t count) {
    if (count == kWidth)
      store_all(p, v);
    else
      store_masked(p, first_lanes(count, T()), v);
  }
  static V zero() { return V{}; }
};

// Blocks of width elements x width values, rows to columns (kToColumns) or back; returns the first
// element left to the scalar loop.
template <bool kToColumns, typename T>
int64_t transpose_blocks(const T* src, int64_t m, int64_t n, T* dst, int64_t ld) {
  using O = Ops<T>;
  constexpr int W = O::kWidth;
  int64_t e0 = 0;
  for (; e0 + W <= n; e0 += W)
    for (int64_t i0 = 0; i0 < m; i0 += W) {
      const int64_t count = m - i0 < W ? m - i0 : W;
      typename O::V r[W];
      for (int j = 0; j < W; ++j) {
        if (kToColumns)
          r[j] = O::load(src + (e0 + j) * m + i0, count);  // element e0 + j's values i0 ..
        else
          r[j] = j < count ? O::load(src + (i0 + j) * ld + e0, W) : O::zero();  // value i0 + j of W elements
      }
      transpose(r);
      for (int j = 0; j < (kToColumns ? count : W); ++j) {
        if (kToColumns)
          O::store(dst + (i0 + j) * ld + e0, r[j], W);
        else
          O::store(dst + (e0 + j) * m + i0, r[j], count);
      }
    }
  return e0;
}

}  // namespace simd
#endif

// The SIMD blocks where there are any, the scalar loop for the rest.
template <bool kToColumns, typename T>
void transpose_chunk(const T* __restrict__ src, int64_t m, int64_t n, T* __restrict__ dst, int64_t ld) {
  int64_t e0 = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    e0 = simd::transpose_blocks<kToColumns>(src, m, n, dst, ld);
#endif
  if (kToColumns)
    to_columns_scalar(src, m, n, dst, ld, e0);
  else
    from_columns_scalar(src, m, n, dst, ld, e0);
}

// dst[i * ld + e] = src[e * m + i] for e < n, i < m.
template <typename T>
void to_columns(const T* __restrict__ src, int64_t m, int64_t n, T* __restrict__ dst, int64_t ld) {
  transpose_chunk<true>(src, m, n, dst, ld);
}

// dst[e * m + i] = src[i * ld + e] for e < n, i < m.
template <typename T>
void from_columns(const T* __restrict__ src, int64_t m, int64_t n, T* __restrict__ dst, int64_t ld) {
  transpose_chunk<false>(src, m, n, dst, ld);
}

}  // namespace cpu
}  // namespace mfk
