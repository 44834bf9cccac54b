// Unit tests of math/coupling.h, built by CMake and run by CTest. The row functions are checked
// against a direct evaluation of the formulas, and run as an emulated CUDA block (tid = 0..nt-1 in turn, partial sums
// combined) against the single-thread path.
#include "../math/coupling.h"

#include "expect.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace mfk;
using namespace mfk::coupling;

template <int kMode>
static double direct_log_scale(double s, double clamp, double mean) {
  if (kMode == kSoftclamp) return clamp * std::tanh(s / clamp);
  if (kMode == kSigmoid) return -std::log1p(std::exp(-(s + 2)));
  if (kMode == kVolumePreserving) return s - mean;
  return s;
}

template <int kMode>
static void check_mode(std::mt19937& gen) {
  std::normal_distribution<double> normal;
  const int n = 37;
  std::vector<double> x(n), t(n), s(n), g(n), xd(n), td(n), sd(n);
  for (int i = 0; i < n; ++i) {
    x[i] = normal(gen), t[i] = normal(gen), s[i] = normal(gen), g[i] = normal(gen);
    xd[i] = normal(gen), td[i] = normal(gen), sd[i] = normal(gen);
  }
  const double clamp = 1.7, gl = 0.3;
  double mean = 0, sd_mean = 0;
  for (int i = 0; i < n; ++i) mean += s[i] / n, sd_mean += sd[i] / n;
  if (kMode != kVolumePreserving) mean = sd_mean = 0;
  for (bool inverse : {false, true}) {
    std::vector<double> out(n), gx(n), gt(n), gs(n), od(n);
    const double sum_a = affine_forward<kMode>(x.data(), t.data(), s.data(), out.data(), n, clamp, mean, inverse, 0, 1);
    double expect_sum = 0, err = 0;
    for (int i = 0; i < n; ++i) {
      const double a = direct_log_scale<kMode>(s[i], clamp, mean);
      expect_sum += a;
      const double want = inverse ? (x[i] - t[i]) * std::exp(-a) : x[i] * std::exp(a) + t[i];
      err = std::max(err, std::fabs(out[i] - want) / (1 + std::fabs(want)));
    }
    EXPECT(err < 1e-13 && std::fabs(sum_a - expect_sum) < 1e-12, "mode %d inverse %d forward err %g", kMode, inverse,
           err);
    // Block emulation: same outputs, partial sums add up to the single-thread sum.
    for (int nt : {3, 32}) {
      std::vector<double> out2(n);
      double total = 0;
      for (int tid = 0; tid < nt; ++tid)
        total += affine_forward<kMode>(x.data(), t.data(), s.data(), out2.data(), n, clamp, mean, inverse, tid, nt);
      EXPECT(out2 == out && std::fabs(total - sum_a) < 1e-12, "mode %d nt %d split differs", kMode, nt);
    }
    // Backward against central differences of L = sum g * out + gl * logabsdet in s.
    affine_backward<kMode>(g.data(), gl, x.data(), t.data(), s.data(), gx.data(), gt.data(), gs.data(), n, clamp, mean,
                           inverse, 0, 1);
    double gsum = 0;
    for (int i = 0; i < n; ++i) gsum += gs[i];
    if (kMode == kVolumePreserving) subtract_mean(gs.data(), n, gsum / n, 0, 1);
    auto loss = [&](const std::vector<double>& sv) {
      double m = 0;
      for (double v : sv) m += v / n;
      if (kMode != kVolumePreserving) m = 0;
      double L = 0, la = 0;
      for (int i = 0; i < n; ++i) {
        const double a = direct_log_scale<kMode>(sv[i], clamp, m);
        la += a;
        L += g[i] * (inverse ? (x[i] - t[i]) * std::exp(-a) : x[i] * std::exp(a) + t[i]);
      }
      const double ld = kMode == kVolumePreserving ? 0.0 : (inverse ? -la : la);
      return L + gl * ld;
    };
    double gerr = 0;
    for (int i = 0; i < n; ++i) {
      auto sp = s, sm = s;
      sp[i] += 1e-6, sm[i] -= 1e-6;
      gerr = std::max(gerr, std::fabs((loss(sp) - loss(sm)) / 2e-6 - gs[i]));
    }
    EXPECT(gerr < 1e-6, "mode %d inverse %d d/ds error %g", kMode, inverse, gerr);
    // Tangent against a central difference along (xd, td, sd).
    affine_jvp<kMode>(x.data(), t.data(), s.data(), xd.data(), td.data(), sd.data(), od.data(), n, clamp, mean, sd_mean,
                      inverse, 0, 1);
    std::vector<double> xp(n), tp(n), spv(n), xm(n), tm(n), smv(n), op(n), om(n);
    for (int i = 0; i < n; ++i) {
      xp[i] = x[i] + 1e-6 * xd[i], tp[i] = t[i] + 1e-6 * td[i], spv[i] = s[i] + 1e-6 * sd[i];
      xm[i] = x[i] - 1e-6 * xd[i], tm[i] = t[i] - 1e-6 * td[i], smv[i] = s[i] - 1e-6 * sd[i];
    }
    const double mp = kMode == kVolumePreserving ? mean + 1e-6 * sd_mean : 0,
                 mm = kMode == kVolumePreserving ? mean - 1e-6 * sd_mean : 0;
    affine_forward<kMode>(xp.data(), tp.data(), spv.data(), op.data(), n, clamp, mp, inverse, 0, 1);
    affine_forward<kMode>(xm.data(), tm.data(), smv.data(), om.data(), n, clamp, mm, inverse, 0, 1);
    double terr = 0;
    for (int i = 0; i < n; ++i) terr = std::max(terr, std::fabs((op[i] - om[i]) / 2e-6 - od[i]));
    EXPECT(terr < 1e-6, "mode %d inverse %d tangent error %g", kMode, inverse, terr);
  }
}

int main() {
  std::mt19937 gen(5);
  check_mode<kExp>(gen);
  check_mode<kSoftclamp>(gen);
  check_mode<kSigmoid>(gen);
  check_mode<kVolumePreserving>(gen);
  return mfk_test::finish("coupling math");
}
