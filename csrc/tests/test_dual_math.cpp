// Dual numbers (common/dual.h) against central finite differences in double: the scalar functions,
// and the second-order path of the ops (the backward math instantiated on Dual<T>): the tangent part
// of element_backward (rq_spline) and affine_backward (every coupling mode) equals the finite
// difference of the plain double backward along the same direction.
#include "../common/dual.h"
#include "../math/coupling.h"
#include "../math/rq_spline.h"
#include "expect.h"

#include <cmath>
#include <random>
#include <vector>

using namespace mfk;
using D = Dual<double>;

static bool near(double a, double b, double tol) { return std::fabs(a - b) <= tol * (1 + std::fabs(b)); }

template <typename F, typename G>
static void scalar(const char* name, F dual_fn, G plain_fn, double x) {
  const double h = 1e-6;
  const D y = dual_fn(D(x, 1.0));
  EXPECT(y.v == plain_fn(x), "%s(%g): value", name, x);
  EXPECT(near(y.d, (plain_fn(x + h) - plain_fn(x - h)) / (2 * h), 1e-7), "%s(%g): derivative %g", name, x, y.d);
}

static void scalars() {
  for (double x : {0.3, 1.7, 4.0}) {
    scalar("exp_", [](D a) { return exp_(a); }, [](double a) { return exp_(a); }, x - 2);
    scalar("log_", [](D a) { return log_(a); }, [](double a) { return log_(a); }, x);
    scalar("log1p_", [](D a) { return log1p_(a); }, [](double a) { return log1p_(a); }, x - 0.2);
    scalar("sqrt_", [](D a) { return sqrt_(a); }, [](double a) { return sqrt_(a); }, x);
    scalar("tanh_", [](D a) { return tanh_(a); }, [](double a) { return tanh_(a); }, x - 2);
    scalar(
        "softplus_", [](D a) { return rq_spline::softplus_(a); }, [](double a) { return rq_spline::softplus_(a); },
        x - 2);
    scalar(
        "quotient", [](D a) { return (a * a + D(1)) / (D(2) - a); }, [](double a) { return (a * a + 1) / (2 - a); },
        x / 3);
  }
}

template <bool kInv, bool kLin>
static void spline_second_order(int K, std::mt19937& gen) {
  const int Kd = kLin ? K - 1 : K + 1;
  const double min_d = 1e-3, tail = min_d + rq_spline::softplus_(std::log(std::expm1(1.0 - min_d)));
  const rq_spline::SplineConfig<double> c{K, Kd, 2.0, 1e-3, 1e-3, min_d, tail};
  const rq_spline::SplineConfig<D> cd{K, Kd, D(2.0), D(1e-3), D(1e-3), D(min_d), D(tail)};
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 20; ++trial) {
    // one element's inputs: go, gl, x, then w (K), h (K), d (Kd)
    std::vector<double> p(3 + 2 * K + Kd), dir(p.size());
    for (auto& v : p) v = normal(gen);
    for (auto& v : dir) v = normal(gen);
    p[2] = kLin ? 1.5 * normal(gen) : 1.8 * (std::uniform_real_distribution<double>(0, 1)(gen) - 0.5);
    auto backward = [&](const std::vector<double>& q) {
      std::vector<double> out(1 + 2 * K + Kd);
      rq_spline::element_backward<kInv, kLin>(q[0], q[1], q[2], q.data() + 3, q.data() + 3 + K, q.data() + 3 + 2 * K, 1,
                                              c, out[0], out.data() + 1, out.data() + 1 + K, out.data() + 1 + 2 * K);
      return out;
    };
    std::vector<D> pd(p.size()), outd(1 + 2 * K + Kd);
    for (size_t i = 0; i < p.size(); ++i) pd[i] = D(p[i], dir[i]);
    rq_spline::element_backward<kInv, kLin>(pd[0], pd[1], pd[2], pd.data() + 3, pd.data() + 3 + K,
                                            pd.data() + 3 + 2 * K, 1, cd, outd[0], outd.data() + 1, outd.data() + 1 + K,
                                            outd.data() + 1 + 2 * K);
    const double h = 1e-6;
    std::vector<double> plus = p, minus = p;
    for (size_t i = 0; i < p.size(); ++i) plus[i] += h * dir[i], minus[i] -= h * dir[i];
    const std::vector<double> base = backward(p), up = backward(plus), down = backward(minus);
    for (size_t i = 0; i < base.size(); ++i) {
      EXPECT(outd[i].v == base[i], "spline K=%d inv=%d lin=%d: value %zu", K, kInv, kLin, i);
      EXPECT(near(outd[i].d, (up[i] - down[i]) / (2 * h), 2e-5), "spline K=%d inv=%d lin=%d: tangent %zu: %g vs %g", K,
             kInv, kLin, i, outd[i].d, (up[i] - down[i]) / (2 * h));
    }
  }
}

template <int kMode>
static void coupling_second_order(bool inverse, std::mt19937& gen) {
  const int n = 5;
  std::normal_distribution<double> normal;
  // a row: g, x, t, s (n each) and gl; the row mean of s passed in as the drivers do
  std::vector<double> p(4 * n + 1), dir(4 * n + 1);
  for (auto& v : p) v = 0.7 * normal(gen);
  for (auto& v : dir) v = normal(gen);
  auto mean_of = [&](const std::vector<double>& q) {
    double m = 0;
    for (int i = 0; i < n; ++i) m += q[3 * n + i];
    return m / n;
  };
  auto backward = [&](const std::vector<double>& q) {
    std::vector<double> out(3 * n);
    coupling::affine_backward<kMode>(q.data(), q[4 * n], q.data() + n, q.data() + 2 * n, q.data() + 3 * n, out.data(),
                                     out.data() + n, out.data() + 2 * n, n, 1.5,
                                     kMode == coupling::kVolumePreserving ? mean_of(q) : 0.0, inverse, 0, 1);
    return out;
  };
  std::vector<D> pd(p.size()), outd(3 * n);
  for (size_t i = 0; i < p.size(); ++i) pd[i] = D(p[i], dir[i]);
  const D mean = kMode == coupling::kVolumePreserving ? D(mean_of(p), mean_of(dir)) : D(0);
  coupling::affine_backward<kMode>(pd.data(), pd[4 * n], pd.data() + n, pd.data() + 2 * n, pd.data() + 3 * n,
                                   outd.data(), outd.data() + n, outd.data() + 2 * n, n, D(1.5), mean, inverse, 0, 1);
  const double h = 1e-6;
  std::vector<double> plus = p, minus = p;
  for (size_t i = 0; i < p.size(); ++i) plus[i] += h * dir[i], minus[i] -= h * dir[i];
  const std::vector<double> base = backward(p), up = backward(plus), down = backward(minus);
  for (size_t i = 0; i < base.size(); ++i) {
    EXPECT(outd[i].v == base[i], "coupling mode %d inverse %d: value %zu", kMode, inverse, i);
    EXPECT(near(outd[i].d, (up[i] - down[i]) / (2 * h), 1e-6), "coupling mode %d inverse %d: tangent %zu", kMode,
           inverse, i);
  }
}

int main() {
  std::mt19937 gen(11);
  scalars();
  for (int K : {1, 4, 9}) {
    spline_second_order<false, true>(K, gen);
    spline_second_order<true, true>(K, gen);
    spline_second_order<false, false>(K, gen);
    spline_second_order<true, false>(K, gen);
  }
  for (bool inverse : {false, true}) {
    coupling_second_order<coupling::kExp>(inverse, gen);
    coupling_second_order<coupling::kSoftclamp>(inverse, gen);
    coupling_second_order<coupling::kSigmoid>(inverse, gen);
    coupling_second_order<coupling::kVolumePreserving>(inverse, gen);
  }
  return mfk_test::finish("dual numbers: scalar functions and the ops' second-order math");
}
