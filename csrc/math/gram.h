// Shared math of the Gram log-determinant op family: 0.5 * log det(J^T J) for J of shape (D, d).
//
// This is the log volume factor of an injective map g: R^d -> R^D with Jacobian J, the term
// -0.5 log det(J^T J) in M-flow's and the chart flows' densities (papers 000, eq. for p(x) with
// det(J^T J)^(-1/2); 004 eq. 2). The CPU build and the CUDA build both call these functions; every
// routine is a *cooperative step*: thread `tid` of `nthreads` does its share, and the caller
// synchronises between steps (the CPU passes tid = 0, nthreads = 1 and needs no synchronisation).
//
// Matrices are row-major with an explicit leading dimension. Only lower triangles are read.
#pragma once

#include "../common/host_device.h"

#include <cstdint>

namespace mfk {
namespace gram {

// Outcome of a factorisation; the CPU and CUDA drivers turn it into the op's output convention.
enum FactorStatus : int { kFactorOk = 0, kFactorSingular = 1, kFactorNonFinite = 2 };

// G[k][l] += sum_{i in [r0, r1)} J[i][k] * J[i][l] over the lower triangle, entries split over
// threads. Every entry is owned by exactly one thread, so no atomics are needed.
template <typename T>
MFK_HD void gram_accumulate_rows(const T* J, int ldj, int r0, int r1, int d, T* G, int ldg, int tid, int nthreads) {
  const int entries = d * (d + 1) / 2;
  if (tid >= entries) return;
  LowerTriangleCursor c(tid);
  for (int p = tid; p < entries; p += nthreads, c.advance(nthreads)) {
    // Four independent partial sums: the dot product is otherwise one serial chain of adds.
    const T* a = J + static_cast<int64_t>(r0) * ldj + c.k;
    const T* b = J + static_cast<int64_t>(r0) * ldj + c.l;
    T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0);
    const int n = r1 - r0;
    int i = 0;
    for (; i + 3 < n; i += 4, a += 4 * ldj, b += 4 * ldj) {
      s0 += a[0] * b[0];
      s1 += a[ldj] * b[ldj];
      s2 += a[2 * ldj] * b[2 * ldj];
      s3 += a[3 * ldj] * b[3 * ldj];
    }
    for (; i < n; ++i, a += ldj, b += ldj) s0 += a[0] * b[0];
    G[c.k * ldg + c.l] += (s0 + s1) + (s2 + s3);
  }
}

// The same Gram product from a column-major copy Jt (Jt[k * ldt + i] = J[i][k]), for one thread:
// each entry is a dot product of two contiguous columns with eight independent partial sums, which
// the compiler turns into SIMD lanes. The CPU's fused path uses this layout; GPU blocks keep rows,
// where consecutive threads reading consecutive k avoid shared-memory bank conflicts.
template <typename T>
MFK_HD void gram_from_columns(const T* Jt, int ldt, int n, int d, T* G, int ldg) {
  for (int k = 0; k < d; ++k) {
    const T* MFK_RESTRICT a = Jt + static_cast<int64_t>(k) * ldt;
    for (int l = 0; l <= k; ++l) {
      const T* MFK_RESTRICT b = Jt + static_cast<int64_t>(l) * ldt;
      T s[8] = {};
      int i = 0;
      for (; i + 7 < n; i += 8)
        for (int u = 0; u < 8; ++u) s[u] += a[i + u] * b[i + u];
      T acc = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
      for (; i < n; ++i) acc += a[i] * b[i];
      G[k * ldg + l] += acc;
    }
  }
}

// Column-major copy of the row-major D x d matrix J (one thread), for gram_from_columns.
template <typename T>
MFK_HD void transpose_to_columns(const T* J, int ldj, int D, int d, T* Jt, int ldt) {
  for (int i = 0; i < D; ++i)
    for (int k = 0; k < d; ++k) Jt[static_cast<int64_t>(k) * ldt + i] = J[static_cast<int64_t>(i) * ldj + k];
}

// Largest diagonal entry: the scale against which a pivot counts as numerically zero.
template <typename T>
MFK_HD T max_diagonal(const T* A, int lda, int d) {
  T m = T(0);
  for (int j = 0; j < d; ++j) {
    const T a = A[j * lda + j];
    if (is_nan_(a)) return a;
    m = a > m ? a : m;
  }
  return m;
}

// The factorisation is diagonally pivoted Cholesky, P^T A P = L L^T (LAPACK ?pstrf's algorithm),
// because pivoting is what makes the rank test reliable: for a rank-deficient J the remaining
// pivots are rounding noise of a few eps * max diag, far below the default tolerance d * eps *
// max diag (?pstrf's default), while unpivoted elimination can amplify that noise a million-fold.
// perm[a] is the original index of position a.

// Step j, part 1 (one thread): choose the largest remaining diagonal entry as pivot, record the
// swap in perm, and return which index k >= j moves to position j (or a failure status).
template <typename T>
MFK_HD FactorStatus cholesky_choose_pivot(const T* A, int lda, int d, int j, T tol, int64_t* perm, int* k_out) {
  int k = j;
  T best = A[j * lda + j];
  for (int i = j; i < d; ++i) {
    const T a = A[i * lda + i];
    if (is_nan_(a) || a == std::numeric_limits<T>::infinity()) return kFactorNonFinite;
    if (a > best) {
      best = a;
      k = i;
    }
  }
  if (!(best > tol)) return kFactorSingular;
  const int64_t t = perm[j];
  perm[j] = perm[k];
  perm[k] = t;
  *k_out = k;
  return kFactorOk;
}

// Step j, part 2 (cooperative): symmetric swap of indices j < k in the lower-stored trailing
// matrix, and of rows j, k in the finished columns. Every c touches its own pair of entries.
template <typename T>
MFK_HD void cholesky_swap(T* A, int lda, int d, int j, int k, int tid, int nthreads) {
  if (k == j) return;
  for (int c = tid; c < d; c += nthreads) {
    T* a;
    T* b;
    if (c < j) {
      a = &A[j * lda + c];
      b = &A[k * lda + c];
    } else if (c == j) {
      a = &A[j * lda + j];
      b = &A[k * lda + k];
    } else if (c < k) {
      a = &A[c * lda + j];
      b = &A[k * lda + c];
    } else if (c == k) {
      continue;
    } else {
      a = &A[c * lda + j];
      b = &A[c * lda + k];
    }
    const T t = *a;
    *a = *b;
    *b = t;
  }
}

// Step j, part 3 (one thread): replace the (already chosen) pivot by its square root.
template <typename T>
MFK_HD_INLINE void cholesky_take_root(T* A, int lda, int j) {
  A[j * lda + j] = sqrt_(A[j * lda + j]);
}

// Step j, part 4 (cooperative): scale column j below the pivot. The column is mirrored into row j's
// unused upper part so the trailing update reads it contiguously; finalize_factor clears it.
template <typename T>
MFK_HD void cholesky_scale_column(T* A, int lda, int d, int j, int tid, int nthreads) {
  const T inv = T(1) / A[j * lda + j];
  for (int i = j + 1 + tid; i < d; i += nthreads) {
    const T v = A[i * lda + j] * inv;
    A[i * lda + j] = v;
    A[j * lda + i] = v;
  }
}

// Step j, part 5 (cooperative): rank-1 update of the trailing lower triangle.
template <typename T>
MFK_HD void cholesky_update_trailing(T* A, int lda, int d, int j, int tid, int nthreads) {
  const int o = j + 1;
  const T* mirrored = A + j * lda;  // mirrored[k] == A[k][j] for k > j
  if (nthreads == 1) {
    for (int i = o; i < d; ++i) {
      const T aij = A[i * lda + j];
      T* Ai = A + i * lda;
      for (int k = o; k <= i; ++k) Ai[k] -= aij * mirrored[k];
    }
    return;
  }
  const int m = d - o;
  const int entries = m * (m + 1) / 2;
  if (tid >= entries) return;
  LowerTriangleCursor c(tid);
  for (int p = tid; p < entries; p += nthreads, c.advance(nthreads)) {
    const int i = o + c.k;
    const int k = o + c.l;
    A[i * lda + k] -= A[i * lda + j] * mirrored[k];
  }
}

// Sequential pivoted Cholesky composed of the steps above. On success returns kFactorOk and sets
// *half_logdet = sum_j log L_jj = 0.5 log det(A). `rtol` is relative to the largest diagonal entry.
template <typename T>
MFK_HD FactorStatus cholesky_pivoted(T* A, int lda, int d, T rtol, int64_t* perm, T* half_logdet) {
  for (int j = 0; j < d; ++j) perm[j] = j;
  const T scale = max_diagonal(A, lda, d);
  if (is_nan_(scale)) return kFactorNonFinite;
  const T tol = rtol * scale;
  T acc = T(0);
  for (int j = 0; j < d; ++j) {
    int k = j;
    const FactorStatus s = cholesky_choose_pivot(A, lda, d, j, tol, perm, &k);
    if (s != kFactorOk) return s;
    cholesky_swap(A, lda, d, j, k, 0, 1);
    cholesky_take_root(A, lda, j);
    acc += log_(A[j * lda + j]);
    cholesky_scale_column(A, lda, d, j, 0, 1);
    cholesky_update_trailing(A, lda, d, j, 0, 1);
  }
  *half_logdet = acc;
  return kFactorOk;
}

// Writes the op's factor output for one batch element from the factorised lower triangle: zeros
// above the diagonal; a singular factor is marked by L[0][0] = 0 (a valid factor has a positive
// diagonal) and a non-finite one is filled with NaN, so backward kernels need only the factor.
template <typename T>
MFK_HD void finalize_factor(T* L, int ldl, int d, FactorStatus status, int tid, int nthreads) {
  // (i, k) advance incrementally: a division per entry costs more than the factorisation at d = 8.
  int i = tid / d, k = tid % d;
  while (i < d) {
    if (status == kFactorNonFinite) {
      L[i * ldl + k] = quiet_nan_<T>();
    } else if (k > i || (status == kFactorSingular && i == 0 && k == 0)) {
      L[i * ldl + k] = T(0);
    }
    k += nthreads;
    while (k >= d) {
      k -= d;
      ++i;
    }
  }
}

// Op output for one element given the factorisation status.
template <typename T>
MFK_HD_INLINE T half_logdet_output(FactorStatus status, T half_logdet) {
  if (status == kFactorOk) return half_logdet;
  if (status == kFactorSingular) return neg_inf_<T>();
  return quiet_nan_<T>();
}

// X = L^{-1} (lower triangular), one column per thread: column c solves L x = e_c by forward
// substitution. X's strict upper triangle is left untouched (never read).
template <typename T>
MFK_HD void lower_inverse_columns(const T* L, int ldl, int d, T* X, int ldx, int tid, int nthreads) {
  for (int c = tid; c < d; c += nthreads) {
    X[c * ldx + c] = T(1) / L[c * ldl + c];
    for (int i = c + 1; i < d; ++i) {
      T s = T(0);
      for (int m = c; m < i; ++m) s += L[i * ldl + m] * X[m * ldx + c];
      X[i * ldx + c] = -s / L[i * ldl + i];
    }
  }
}

// W = scale * G^{-1} = scale * P X^T X P^T with X = L^{-1} (P^T G P = L L^T); both triangles of W
// are written, in the original (unpermuted) index order.
template <typename T>
MFK_HD void scaled_inverse_from_lower_inverse(const T* X, int ldx, int d, const int64_t* perm, T scale, T* W, int ldw,
                                              int tid, int nthreads) {
  const int entries = d * (d + 1) / 2;
  if (tid >= entries) return;
  LowerTriangleCursor c(tid);
  for (int p = tid; p < entries; p += nthreads, c.advance(nthreads)) {
    T s = T(0);
    for (int m = c.k; m < d; ++m) s += X[m * ldx + c.k] * X[m * ldx + c.l];
    const int64_t a = perm[c.k], b = perm[c.l];
    W[a * ldw + b] = scale * s;
    W[b * ldw + a] = scale * s;
  }
}

// out = J W for symmetric W, from the column-major copy Jt (one thread): computes out^T = W J^T
// column by column, so every inner loop runs over n contiguous rows (SIMD lanes), then writes out
// row-major. Ot is an n x d scratch (column-major).
template <typename T>
MFK_HD void columns_times_symmetric(const T* Jt, int ldt, int n, int d, const T* W, int ldw, T* Ot, T* out, int ldo) {
  for (int l = 0; l < d; ++l) {
    T* MFK_RESTRICT o = Ot + static_cast<int64_t>(l) * n;
    for (int i = 0; i < n; ++i) o[i] = T(0);
    for (int k = 0; k < d; ++k) {
      const T w = W[l * ldw + k];
      const T* MFK_RESTRICT jt = Jt + static_cast<int64_t>(k) * ldt;
      for (int i = 0; i < n; ++i) o[i] += w * jt[i];
    }
  }
  for (int i = 0; i < n; ++i)
    for (int l = 0; l < d; ++l) out[static_cast<int64_t>(i) * ldo + l] = Ot[static_cast<int64_t>(l) * n + i];
}

// Whether a factor produced by finalize_factor is usable (not marked singular or non-finite).
template <typename T>
MFK_HD_INLINE bool factor_is_valid(const T* L) {
  return L[0] > T(0);
}

// Whether perm holds each of 0..d-1 once (`seen`: d bytes of scratch). The backward writes W through
// perm, so a perm that did not come from the forward (the ops are public through torch.ops) must be
// refused before it indexes memory. O(d) on one thread: small next to the O(d^3) inverse it guards.
MFK_HD inline bool is_permutation(const int64_t* perm, int d, unsigned char* seen) {
  for (int a = 0; a < d; ++a) seen[a] = 0;
  for (int a = 0; a < d; ++a) {
    const int64_t p = perm[a];
    if (p < 0 || p >= d || seen[p]) return false;
    seen[p] = 1;
  }
  return true;
}

// W for an unusable factor: the gradient of -inf/NaN. A zero incoming gradient stays zero so a
// masked-out singular row does not poison a batch; otherwise the derivative does not exist (NaN).
template <typename T>
MFK_HD void fill_invalid_inverse(int d, T scale, T* W, int ldw, int tid, int nthreads) {
  const T v = scale == T(0) ? T(0) : quiet_nan_<T>();
  for (int i = 0; i < d; ++i)
    for (int k = tid; k < d; k += nthreads) W[i * ldw + k] = v;
}

}  // namespace gram
}  // namespace mfk
