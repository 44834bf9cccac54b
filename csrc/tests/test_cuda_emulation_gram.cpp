// The Gram log-determinant family's real __global__ kernels (csrc/cuda/gram.cuh), run on the CPU
// under csrc/tests/cuda_emulation.h with the launch configuration gram_cuda.cu computes, against the
// CPU path's sequential math (math/gram.h with one thread). The steps are the same arithmetic per
// entry, so factor, permutation and inverse agree bitwise; each launch runs twice, with the block's
// threads started in ascending and descending order, and both runs must agree (a missing barrier
// shows as a difference). Edges: B = 1, D not a multiple of the 16-row tile, d = 1, the largest fused
// d (64) and one past it (65, the in-place kernel on a precomputed G), a rank-deficient J, and a
// saved permutation with indices out of range (the backward kernel must give NaN, not index memory).
#include "cuda_emulation.h"

#include "../cuda/gram.cuh"
#include "expect.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace mfk;
using namespace mfk::gram;
using mfk_emu::Order;
using mfk_test::close;
using mfk_test::same;

template <typename T>
struct Factor {
  std::vector<T> L, out;
  std::vector<int64_t> perm;
};

// The CPU reference: G tile by tile exactly as the fused kernel accumulates it (16-row tiles), then
// the sequential pivoted Cholesky; the half log-determinant summed in double, as the kernel does.
template <typename T>
static Factor<T> reference(const std::vector<T>& J, int B, int D, int d, T rtol, bool fused) {
  Factor<T> f{std::vector<T>(size_t(B) * d * d), std::vector<T>(B), std::vector<int64_t>(size_t(B) * d)};
  for (int b = 0; b < B; ++b) {
    T* G = f.L.data() + size_t(b) * d * d;
    const T* Jb = J.data() + size_t(b) * D * d;
    if (fused) {
      for (int r0 = 0; r0 < D; r0 += device::kTileRows)
        gram_accumulate_rows(Jb + size_t(r0) * d, d, 0, std::min(device::kTileRows, D - r0), d, G, d, 0, 1);
    } else {  // the in-place kernel factors a G computed beforehand (by cuBLAS on the device)
      for (int k = 0; k < d; ++k)
        for (int l = 0; l < d; ++l) {
          T s = 0;
          for (int i = 0; i < D; ++i) s += Jb[i * d + k] * Jb[i * d + l];
          G[k * d + l] = s;
        }
    }
    int64_t* perm = f.perm.data() + size_t(b) * d;
    for (int j = 0; j < d; ++j) perm[j] = j;
    const T tol = rtol * max_diagonal(G, d, d);
    double acc = 0;
    FactorStatus status = is_nan_(max_diagonal(G, d, d)) ? kFactorNonFinite : kFactorOk;
    for (int j = 0; j < d && status == kFactorOk; ++j) {
      int k = j;
      status = cholesky_choose_pivot(G, d, d, j, tol, perm, &k);
      if (status != kFactorOk) break;
      cholesky_swap(G, d, d, j, k, 0, 1);
      cholesky_take_root(G, d, j);
      acc += static_cast<double>(log_(G[j * d + j]));
      cholesky_scale_column(G, d, d, j, 0, 1);
      cholesky_update_trailing(G, d, d, j, 0, 1);
    }
    finalize_factor(G, d, d, status, 0, 1);
    f.out[b] = half_logdet_output(status, static_cast<T>(acc));
  }
  return f;
}

template <typename T>
static Factor<T> emulated(const std::vector<T>& J, int B, int D, int d, T rtol, bool fused, Order order) {
  Factor<T> f{std::vector<T>(size_t(B) * d * d, T(-7)), std::vector<T>(B, T(-7)),
              std::vector<int64_t>(size_t(B) * d, -7)};
  const int threads = device::threads_for(d);  // gram_cuda.cu's factor_cuda
  if (fused) {
    const size_t smem = sizeof(T) * (size_t(d) * d + size_t(device::kTileRows) * d);
    mfk_emu::launch(dim3(B), dim3(threads), smem, order, device::factor_fused_kernel<T>, J.data(), D, d, f.L.data(),
                    f.perm.data(), f.out.data(), rtol);
  } else {
    for (int b = 0; b < B; ++b)  // G as the driver's matmul computes it
      for (int k = 0; k < d; ++k)
        for (int l = 0; l < d; ++l) {
          T s = 0;
          for (int i = 0; i < D; ++i) s += J[size_t(b) * D * d + i * d + k] * J[size_t(b) * D * d + i * d + l];
          f.L[size_t(b) * d * d + k * d + l] = s;
        }
    mfk_emu::launch(dim3(B), dim3(threads), 0, order, device::factor_inplace_kernel<T>, f.L.data(), d, f.perm.data(),
                    f.out.data(), rtol);
  }
  return f;
}

// W = scale * G^{-1} by the backward kernel, against the sequential steps.
template <typename T>
static void check_inverse(const Factor<T>& f, int B, int d, const char* what) {
  std::vector<T> scale(B);
  for (int b = 0; b < B; ++b) scale[b] = T(0.5 + b);
  std::vector<T> want(size_t(B) * d * d), X(size_t(B) * d * d);
  std::vector<unsigned char> seen(d);
  for (int b = 0; b < B; ++b) {
    const size_t off = size_t(b) * d * d;
    if (!factor_is_valid(f.L.data() + off) || !is_permutation(f.perm.data() + size_t(b) * d, d, seen.data())) {
      fill_invalid_inverse(d, scale[b], want.data() + off, d, 0, 1);
      continue;
    }
    lower_inverse_columns(f.L.data() + off, d, d, X.data() + off, d, 0, 1);
    scaled_inverse_from_lower_inverse(X.data() + off, d, d, f.perm.data() + size_t(b) * d, scale[b], want.data() + off,
                                      d, 0, 1);
  }
  for (Order order : {Order::kAscending, Order::kDescending}) {
    std::vector<T> W(size_t(B) * d * d, T(-7)), Xd(size_t(B) * d * d, T(-7));
    mfk_emu::launch(dim3(B), dim3(device::threads_for(d)), device::inverse_shared_bytes(d), order,
                    device::scaled_inverse_kernel<T>, f.L.data(), f.perm.data(), scale.data(), d, Xd.data(), W.data());
    EXPECT(same(W, want), "%s: scaled inverse differs from the sequential steps", what);
  }
}

template <typename T>
static void check_case(int B, int D, int d, bool rank_deficient, std::mt19937& gen) {
  char what[96];
  std::snprintf(what, sizeof what, "%s B=%d D=%d d=%d%s", sizeof(T) == 4 ? "float" : "double", B, D, d,
                rank_deficient ? " rank-deficient" : "");
  std::normal_distribution<double> normal;
  std::vector<T> J(size_t(B) * D * d);
  for (auto& x : J) x = static_cast<T>(normal(gen));
  if (rank_deficient && d > 1)  // column 1 = 2 * column 0 in every matrix
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < D; ++i) J[size_t(b) * D * d + i * d + 1] = 2 * J[size_t(b) * D * d + i * d];
  const T rtol = T(d) * std::numeric_limits<T>::epsilon();
  const bool fused = d <= device::kFusedMaxD;
  const Factor<T> want = reference(J, B, D, d, rtol, fused);
  const Factor<T> up = emulated(J, B, D, d, rtol, fused, Order::kAscending);
  const Factor<T> down = emulated(J, B, D, d, rtol, fused, Order::kDescending);
  for (const Factor<T>* got : {&up, &down}) {
    EXPECT(same(got->L, want.L), "%s: factor differs from the sequential Cholesky", what);
    EXPECT(got->perm == want.perm, "%s: permutation differs", what);
    EXPECT(same(got->out, want.out), "%s: half log-determinant %g vs %g", what, double(got->out[0]),
           double(want.out[0]));
  }
  if (rank_deficient && d > 1) EXPECT(std::isinf(double(up.out[0])) && up.out[0] < 0, "%s: not -inf", what);
  check_inverse(up, B, d, what);
  if (d > 1 && !rank_deficient) {  // a perm that is not a permutation: NaN, no access through it
    Factor<T> bad = up;
    bad.perm[0] = d;  // one past the end
    bad.perm[1] = -1;
    check_inverse(bad, B, d, what);
  }
}

int main() {
  std::mt19937 gen(7);
  const int shapes[][3] = {{1, 3, 1}, {2, 37, 5}, {3, 16, 16}, {1, 70, 64}, {2, 70, 65}, {1, 2, 2}};
  for (const auto& s : shapes) {
    check_case<float>(s[0], s[1], s[2], false, gen);
    check_case<double>(s[0], s[1], s[2], false, gen);
  }
  check_case<double>(2, 20, 6, true, gen);
  check_case<float>(1, 70, 65, true, gen);
  return mfk_test::finish("cuda emulation: gram kernels");
}
