// Unit tests of the shared math header math/gram.h, built by CMake and run by CTest (no torch).
//
// Besides checking the maths against independent computations, they emulate a CUDA thread block on
// the CPU: each cooperative step is run for tid = 0..nt-1 in turn between "barriers". Threads of a
// step touch disjoint entries, so the emulation must agree bitwise with the sequential path; this
// is how the work split used by the GPU kernels is verified on machines without a GPU.
#include "../math/gram.h"

#include "expect.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace mfk;
using namespace mfk::gram;

static std::vector<double> random_matrix(int rows, int cols, std::mt19937& gen) {
  std::normal_distribution<double> normal;
  std::vector<double> m(static_cast<size_t>(rows) * cols);
  for (auto& x : m) x = normal(gen);
  return m;
}

// Full G = J^T J by the textbook triple loop, independent of gram_accumulate_rows.
static std::vector<double> naive_gram(const std::vector<double>& J, int D, int d) {
  std::vector<double> G(static_cast<size_t>(d) * d, 0.0);
  for (int k = 0; k < d; ++k)
    for (int l = 0; l < d; ++l)
      for (int i = 0; i < D; ++i) G[k * d + l] += J[i * d + k] * J[i * d + l];
  return G;
}

// log|det A| by Gaussian elimination with partial pivoting in long double.
static double naive_logdet(std::vector<double> A, int d) {
  std::vector<long double> a(A.begin(), A.end());
  long double logdet = 0;
  for (int c = 0; c < d; ++c) {
    int p = c;
    for (int r = c + 1; r < d; ++r)
      if (std::fabs(static_cast<double>(a[r * d + c])) > std::fabs(static_cast<double>(a[p * d + c]))) p = r;
    for (int k = 0; k < d; ++k) std::swap(a[c * d + k], a[p * d + k]);
    logdet += std::log(std::fabs(static_cast<double>(a[c * d + c])));
    for (int r = c + 1; r < d; ++r) {
      const long double f = a[r * d + c] / a[c * d + c];
      for (int k = c; k < d; ++k) a[r * d + k] -= f * a[c * d + k];
    }
  }
  return static_cast<double>(logdet);
}

static void test_cursor_covers_triangle_once() {
  for (int d : {1, 2, 5, 17, 64}) {
    for (int nt : {1, 3, 7, 32, 256}) {
      std::vector<int> seen(static_cast<size_t>(d) * d, 0);
      const int entries = d * (d + 1) / 2;
      for (int tid = 0; tid < nt && tid < entries; ++tid) {
        LowerTriangleCursor c(tid);
        for (int p = tid; p < entries; p += nt, c.advance(nt)) ++seen[c.k * d + c.l];
      }
      for (int k = 0; k < d; ++k)
        for (int l = 0; l < d; ++l)
          EXPECT(seen[k * d + l] == (l <= k ? 1 : 0), "d=%d nt=%d (k,l)=(%d,%d) seen %d", d, nt, k, l, seen[k * d + l]);
    }
  }
}

// Sequential factorisation; returns status, fills L, perm, half_logdet.
static FactorStatus factor_sequential(const std::vector<double>& J, int D, int d, double rtol, std::vector<double>& L,
                                      std::vector<int64_t>& perm, double& h) {
  L.assign(static_cast<size_t>(d) * d, 0.0);
  perm.assign(d, -1);
  gram_accumulate_rows(J.data(), d, 0, D, d, L.data(), d, 0, 1);
  h = 0;
  const FactorStatus s = cholesky_pivoted(L.data(), d, d, rtol, perm.data(), &h);
  finalize_factor(L.data(), d, d, s, 0, 1);
  return s;
}

// The CUDA kernel's step sequence with nt emulated threads (see cuda/gram_cuda.cu).
static FactorStatus factor_emulated_block(const std::vector<double>& J, int D, int d, double rtol, int nt, int tile,
                                          std::vector<double>& L, std::vector<int64_t>& perm, double& h) {
  L.assign(static_cast<size_t>(d) * d, 0.0);
  perm.assign(d, -1);
  for (int r0 = 0; r0 < D; r0 += tile) {
    const int rows = std::min(tile, D - r0);
    for (int tid = 0; tid < nt; ++tid)
      gram_accumulate_rows(J.data() + static_cast<size_t>(r0) * d, d, 0, rows, d, L.data(), d, tid, nt);
  }
  for (int j = 0; j < d; ++j) perm[j] = j;
  const double scale = max_diagonal(L.data(), d, d);
  FactorStatus status = is_nan_(scale) ? kFactorNonFinite : kFactorOk;
  const double tol = rtol * scale;
  double acc = 0;
  for (int j = 0; j < d && status == kFactorOk; ++j) {
    int k = j;
    status = cholesky_choose_pivot(L.data(), d, d, j, tol, perm.data(), &k);
    if (status != kFactorOk) break;
    for (int tid = 0; tid < nt; ++tid) cholesky_swap(L.data(), d, d, j, k, tid, nt);
    cholesky_take_root(L.data(), d, j);
    acc += log_(L[j * d + j]);  // as cholesky_pivoted
    for (int tid = 0; tid < nt; ++tid) cholesky_scale_column(L.data(), d, d, j, tid, nt);
    for (int tid = 0; tid < nt; ++tid) cholesky_update_trailing(L.data(), d, d, j, tid, nt);
  }
  h = acc;
  for (int tid = 0; tid < nt; ++tid) finalize_factor(L.data(), d, d, status, tid, nt);
  return status;
}

static void test_factor_matches_independent_logdet_and_reconstructs() {
  std::mt19937 gen(1);
  const int shapes[][2] = {{1, 1}, {3, 2}, {5, 5}, {64, 8}, {40, 33}, {100, 64}};
  for (const auto& s : shapes) {
    const int D = s[0], d = s[1];
    const auto J = random_matrix(D, d, gen);
    std::vector<double> L;
    std::vector<int64_t> perm;
    double h;
    EXPECT(factor_sequential(J, D, d, d * 2.2e-16, L, perm, h) == kFactorOk, "D=%d d=%d", D, d);
    const auto G = naive_gram(J, D, d);
    const double expected = 0.5 * naive_logdet(G, d);
    EXPECT(std::fabs(h - expected) <= 1e-10 * (1 + std::fabs(expected)), "D=%d d=%d h=%.17g expected=%.17g", D, d, h,
           expected);
    // P^T G P == L L^T, i.e. G[perm a][perm b] == sum_m L[a][m] L[b][m]
    double err = 0, gmax = 0;
    for (int a = 0; a < d; ++a)
      for (int b = 0; b < d; ++b) {
        double llt = 0;
        for (int m = 0; m < d; ++m) llt += L[a * d + m] * L[b * d + m];
        err = std::max(err, std::fabs(llt - G[perm[a] * d + perm[b]]));
        gmax = std::max(gmax, std::fabs(G[a * d + b]));
        if (b > a) EXPECT(L[a * d + b] == 0.0, "upper triangle not cleared at (%d,%d)", a, b);
      }
    EXPECT(err <= 1e-12 * gmax * d, "D=%d d=%d reconstruction error %g", D, d, err);
  }
}

static void test_emulated_block_agrees_bitwise() {
  std::mt19937 gen(2);
  const int shapes[][2] = {{3, 2}, {64, 8}, {37, 20}, {100, 64}};
  for (const auto& s : shapes) {
    const int D = s[0], d = s[1];
    const auto J = random_matrix(D, d, gen);
    std::vector<double> L1, L2;
    std::vector<int64_t> p1, p2;
    double h1, h2;
    factor_sequential(J, D, d, d * 2.2e-16, L1, p1, h1);
    for (int nt : {2, 5, 32, 256}) {
      // Same row tiling as the sequential path: the thread split alone must not change a bit.
      factor_emulated_block(J, D, d, d * 2.2e-16, nt, D, L2, p2, h2);
      EXPECT(h1 == h2 && L1 == L2 && p1 == p2, "D=%d d=%d nt=%d differs (%.17g vs %.17g)", D, d, nt, h1, h2);
      // The kernel's 16-row tiles only reorder the sums of J^T J.
      factor_emulated_block(J, D, d, d * 2.2e-16, nt, 16, L2, p2, h2);
      EXPECT(std::fabs(h1 - h2) <= 1e-12 * (1 + std::fabs(h1)), "D=%d d=%d nt=%d tiled %.17g vs %.17g", D, d, nt, h1,
             h2);
    }
  }
}

static void test_singular_and_nonfinite() {
  std::mt19937 gen(3);
  for (int d : {2, 3, 8, 30}) {
    const int D = 2 * d + 1;
    auto J = random_matrix(D, d, gen);
    for (int i = 0; i < D; ++i) J[i * d + d - 1] = J[i * d];  // duplicate column
    std::vector<double> L;
    std::vector<int64_t> perm;
    double h;
    EXPECT(factor_sequential(J, D, d, d * 2.2e-16, L, perm, h) == kFactorSingular, "duplicate column, d=%d", d);
    EXPECT(!factor_is_valid(L.data()), "singular factor must be marked invalid, d=%d", d);
    EXPECT(half_logdet_output(kFactorSingular, 1.0) == -std::numeric_limits<double>::infinity(), "-inf");
    auto Jn = random_matrix(D, d, gen);
    Jn[d / 2] = std::nan("");
    EXPECT(factor_sequential(Jn, D, d, d * 2.2e-16, L, perm, h) == kFactorNonFinite, "NaN input, d=%d", d);
    EXPECT(is_nan_(L[0]) && !factor_is_valid(L.data()), "non-finite factor must be NaN-filled, d=%d", d);
  }
}

static void test_inverse_and_gradient_product() {
  std::mt19937 gen(4);
  for (int d : {1, 4, 9, 33}) {
    const int D = d + 7;
    const auto J = random_matrix(D, d, gen);
    std::vector<double> L, X(static_cast<size_t>(d) * d), W(static_cast<size_t>(d) * d);
    std::vector<int64_t> perm;
    double h;
    factor_sequential(J, D, d, d * 2.2e-16, L, perm, h);
    lower_inverse_columns(L.data(), d, d, X.data(), d, 0, 1);
    scaled_inverse_from_lower_inverse(X.data(), d, d, perm.data(), 2.0, W.data(), d, 0, 1);
    const auto G = naive_gram(J, D, d);
    double err = 0;
    for (int a = 0; a < d; ++a)
      for (int b = 0; b < d; ++b) {
        double s = 0;
        for (int m = 0; m < d; ++m) s += G[a * d + m] * W[m * d + b];
        err = std::max(err, std::fabs(s - (a == b ? 2.0 : 0.0)));
      }
    EXPECT(err < 1e-10, "G * (2 G^-1) != 2 I for d=%d, error %g", d, err);
    // The CPU's column-layout routines against the textbook products.
    std::vector<double> Jt(static_cast<size_t>(D) * d), Ot(Jt.size()), out(Jt.size());
    transpose_to_columns(J.data(), d, D, d, Jt.data(), D);
    columns_times_symmetric(Jt.data(), D, D, d, W.data(), d, Ot.data(), out.data(), d);
    double diff = 0;
    for (int i = 0; i < D; ++i)
      for (int l = 0; l < d; ++l) {
        double s = 0;
        for (int k = 0; k < d; ++k) s += J[i * d + k] * W[k * d + l];
        diff = std::max(diff, std::fabs(out[i * d + l] - s));
      }
    EXPECT(diff < 1e-12, "columns_times_symmetric differs from J W for d=%d by %g", d, diff);
    std::vector<double> Gc(static_cast<size_t>(d) * d, 0.0);
    gram_from_columns(Jt.data(), D, D, d, Gc.data(), d);
    double gdiff = 0;
    for (int k = 0; k < d; ++k)
      for (int l = 0; l <= k; ++l) gdiff = std::max(gdiff, std::fabs(Gc[k * d + l] - G[k * d + l]));
    EXPECT(gdiff < 1e-12 * D, "gram_from_columns differs from J^T J for d=%d by %g", d, gdiff);
    std::vector<double> Wz(static_cast<size_t>(d) * d);
    fill_invalid_inverse(d, 0.0, Wz.data(), d, 0, 1);
    EXPECT(Wz[d * d - 1] == 0.0, "zero incoming gradient must give a zero inverse, d=%d", d);
    fill_invalid_inverse(d, 1.0, Wz.data(), d, 0, 1);
    EXPECT(is_nan_(Wz[d * d - 1]), "non-zero incoming gradient at a singular row must give NaN, d=%d", d);
  }
}

int main() {
  test_cursor_covers_triangle_once();
  test_factor_matches_independent_logdet_and_reconstructs();
  test_emulated_block_agrees_bitwise();
  test_singular_and_nonfinite();
  test_inverse_and_gradient_product();
  return mfk_test::finish("gram math");
}
