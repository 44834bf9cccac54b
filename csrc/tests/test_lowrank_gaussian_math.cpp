// Unit test of the shared math header math/lowrank_gaussian.h, built by CMake and run by CTest (no
// torch): the fused backward pass over row segments against the two formulas it replaces,
// sum_n g_n alpha_n^2 and -g_n alpha_n, with signed and zero gradients, split into column segments
// the way the CPU driver splits them over threads.
#include "../math/lowrank_gaussian.h"

#include "expect.h"

#include <cmath>
#include <random>
#include <vector>

using namespace mfk::lowrank_gaussian;

int main() {
  std::mt19937 gen(5);
  std::normal_distribution<double> normal;
  const int N = 7, D = 11, split = 4;  // segments [0, 4) and [4, 11)
  std::vector<double> alpha(N * D), g(N);
  for (auto& v : alpha) v = normal(gen);
  for (auto& v : g) v = normal(gen);
  g[2] = 0.0;
  std::vector<double> expected_sq(D, 0.0), expected_grad(N * D);
  for (int n = 0; n < N; ++n) {
    for (int d = 0; d < D; ++d) {
      expected_sq[d] += g[n] * alpha[n * D + d] * alpha[n * D + d];
      expected_grad[n * D + d] = -g[n] * alpha[n * D + d];
    }
  }
  std::vector<double> acc(D, 0.0);
  for (int n = 0; n < N; ++n) {
    residual_grad_segment(alpha.data() + n * D, g[n], acc.data(), split);
    residual_grad_segment(alpha.data() + n * D + split, g[n], acc.data() + split, D - split);
  }
  for (int d = 0; d < D; ++d)
    EXPECT(std::fabs(acc[d] - expected_sq[d]) < 1e-12, "sum g a^2 [%d] %g vs %g", d, acc[d], expected_sq[d]);
  for (int i = 0; i < N * D; ++i)
    EXPECT(alpha[i] == expected_grad[i], "grad [%d] %g vs %g", i, alpha[i], expected_grad[i]);
  for (int d = 0; d < D; ++d) EXPECT(alpha[2 * D + d] == 0.0, "zero gradient row [%d] %g", d, alpha[2 * D + d]);
  return mfk_test::finish("lowrank_gaussian_math");
}
