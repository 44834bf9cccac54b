// Unit tests of the shared math header math/nif_block.h, built by CMake and run by CTest (no torch):
// the in-register Cholesky / inverse against hand-checked matrices, the NaN convention for a singular
// precision, and one block's forward against the textbook formulas evaluated directly.
#include "../math/nif_block.h"

#include "expect.h"

#include <cmath>
#include <random>
#include <vector>

using namespace mfk;
using namespace mfk::nif_block;

static void test_spd_inverse() {
  // M = [[4, 2, 0], [2, 3, 1], [0, 1, 2]]: det = 4 (3*2 - 1) - 2 (2*2 - 0) = 12
  const double M[9] = {4, 2, 0, 2, 3, 1, 0, 1, 2};
  double K[9], logdet;
  spd_inverse(M, 3, K, logdet);
  EXPECT(std::fabs(logdet - std::log(12.0)) < 1e-12, "logdet %g", logdet);
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += M[i * 3 + k] * K[k * 3 + j];
      EXPECT(std::fabs(s - (i == j)) < 1e-12, "(M K)[%d][%d] = %g", i, j, s);
      EXPECT(K[i * 3 + j] == K[j * 3 + i], "K not symmetric at %d %d", i, j);
    }
  }
  const float singular[4] = {1, 2, 2, 4};  // rank 1
  float Ks[4], ld;
  spd_inverse(singular, 2, Ks, ld);
  EXPECT(std::isnan(ld) && std::isnan(Ks[0]) && std::isnan(Ks[3]), "singular: logdet %g", ld);
}

static void test_block_forward_against_formulas() {
  std::mt19937 gen(3);
  std::normal_distribution<double> normal;
  const int r = 5, c = 2;
  std::vector<double> A(r * c), x(r), b(r), inv_var(r);
  for (auto& v : A) v = normal(gen);
  for (int i = 0; i < r; ++i) {
    x[i] = normal(gen);
    b[i] = 0.3 * normal(gen);
    inv_var[i] = std::exp(0.2 * normal(gen));
  }
  double K1[4], K0[4], logdets[2];
  block_setup(A.data(), inv_var.data(), r, c, K1, K0, logdets);
  double t[5], u[2], zm[2], zp[2], quad, u_zm, u_zp;
  sample_forward<double, 2>(x.data(), b.data(), A.data(), inv_var.data(), K1, K0, r, c, t, u, zm, zp, quad, u_zm, u_zp);
  // Lambda = A^T S A and its 2 x 2 inverse in closed form
  double L[4] = {0, 0, 0, 0}, uu[2] = {0, 0}, q = 0;
  for (int i = 0; i < r; ++i) {
    const double mu = x[i] - b[i];
    q += mu * mu * inv_var[i];
    for (int a = 0; a < 2; ++a) {
      uu[a] += A[i * 2 + a] * inv_var[i] * mu;
      for (int k = 0; k < 2; ++k) L[a * 2 + k] += A[i * 2 + a] * inv_var[i] * A[i * 2 + k];
    }
  }
  const double det0 = L[0] * L[3] - L[1] * L[2];
  const double det1 = (L[0] + 1) * (L[3] + 1) - L[1] * L[2];
  const double zp_want[2] = {(L[3] * uu[0] - L[1] * uu[1]) / det0, (L[0] * uu[1] - L[2] * uu[0]) / det0};
  const double zm_want[2] = {((L[3] + 1) * uu[0] - L[1] * uu[1]) / det1, ((L[0] + 1) * uu[1] - L[2] * uu[0]) / det1};
  EXPECT(std::fabs(logdets[0] - std::log(det1)) < 1e-12 && std::fabs(logdets[1] - std::log(det0)) < 1e-12,
         "logdets %g %g", logdets[0], logdets[1]);
  EXPECT(std::fabs(quad - q) < 1e-12, "quad %g vs %g", quad, q);
  for (int a = 0; a < 2; ++a) {
    EXPECT(std::fabs(u[a] - uu[a]) < 1e-12, "u[%d]", a);
    EXPECT(std::fabs(zm[a] - zm_want[a]) < 1e-10, "z_mean[%d] %g vs %g", a, zm[a], zm_want[a]);
    EXPECT(std::fabs(zp[a] - zp_want[a]) < 1e-10, "z_point[%d] %g vs %g", a, zp[a], zp_want[a]);
  }
  EXPECT(std::fabs(u_zm - (uu[0] * zm_want[0] + uu[1] * zm_want[1])) < 1e-10, "u^T z_mean");
  // the runtime-c instantiation gives the same numbers as the compile-time one
  double zm2[2], zp2[2], t2[5], u2[2], q2, a2, b2;
  sample_forward<double, 0>(x.data(), b.data(), A.data(), inv_var.data(), K1, K0, r, c, t2, u2, zm2, zp2, q2, a2, b2);
  EXPECT(std::fabs(zm2[0] - zm[0]) < 1e-14 && std::fabs(zp2[1] - zp[1]) < 1e-14 && std::fabs(q2 - quad) < 1e-14,
         "runtime c differs");
}

int main() {
  test_spd_inverse();
  test_block_forward_against_formulas();
  return mfk_test::finish("nif_block_math");
}
