// Portability layer for the shared math headers: one spelling of __host__ __device__ and of the few
// scalar functions they need, so the same header compiles under g++ (CPU build, run by CI) and nvcc.
#pragma once

#include <cmath>
#include <limits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MFK_HD __host__ __device__
#define MFK_HD_INLINE __host__ __device__ __forceinline__
#else
#define MFK_HD
#define MFK_HD_INLINE inline
#endif

// Promise of no aliasing (g++ and nvcc both spell it __restrict__): lets the contiguous inner loops of
// the single-thread paths vectorise instead of reloading through memory on every iteration.
#define MFK_RESTRICT __restrict__

namespace mfk {

MFK_HD_INLINE float sqrt_(float x) { return sqrtf(x); }
MFK_HD_INLINE double sqrt_(double x) { return sqrt(x); }
MFK_HD_INLINE float log_(float x) { return logf(x); }
MFK_HD_INLINE double log_(double x) { return log(x); }

// NaN test that survives -ffast-math style flags and works on device without <cmath> overloads.
template <typename T>
MFK_HD_INLINE bool is_nan_(T x) { return x != x; }

template <typename T>
MFK_HD_INLINE T quiet_nan_() { return std::numeric_limits<T>::quiet_NaN(); }

template <typename T>
MFK_HD_INLINE T neg_inf_() { return -std::numeric_limits<T>::infinity(); }

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
