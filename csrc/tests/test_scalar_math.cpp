// Unit tests of common/host_device.h's branch-free exp_, log_ and log1p_ (built by CMake, run by
// CTest): errors in ulps against long-double libm over their ranges, and the special values.
#include "../common/host_device.h"

#include "expect.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace mfk;

template <typename T>
static double ulp_error(T got, long double want) {
  const T w = static_cast<T>(want);
  const long double ulp = std::nextafter(w, std::numeric_limits<T>::infinity()) - w;
  return static_cast<double>(std::fabs(static_cast<long double>(got) - want) / ulp);
}

static void test_exp() {
  double worst_f = 0, worst_d = 0;
  for (int i = 0; i <= 400000; ++i) {
    const float xf = -87.0f + 175.7f * static_cast<float>(i) / 400000.0f;
    worst_f = std::max(worst_f, ulp_error(exp_(xf), std::exp(static_cast<long double>(xf))));
    const double xd = -708.0 + 1417.7 * i / 400000.0;
    worst_d = std::max(worst_d, ulp_error(exp_(xd), std::exp(static_cast<long double>(xd))));
  }
  EXPECT(worst_f <= 2.0, "float exp_ worst error %.2f ulp", worst_f);
  EXPECT(worst_d <= 2.0, "double exp_ worst error %.2f ulp", worst_d);
  EXPECT(exp_(0.0f) == 1.0f && exp_(0.0) == 1.0, "exp(0) must be exactly 1");
  EXPECT(std::isinf(exp_(89.0f)) && std::isinf(exp_(710.0)), "overflow must give +inf");
  EXPECT(exp_(-104.0f) == 0.0f && exp_(-746.0) == 0.0, "deep underflow must give 0");
  EXPECT(std::isnan(exp_(std::nanf(""))) && std::isnan(exp_(std::nan(""))), "NaN must propagate");
  EXPECT(exp_(-std::numeric_limits<double>::infinity()) == 0.0, "exp(-inf) = 0");
}

// Arguments spread log-uniformly over the positive range, subnormals included.
static void test_log() {
  double worst_f = 0, worst_d = 0;
  for (int i = 0; i <= 400000; ++i) {
    const float xf = std::ldexp(1.0f + static_cast<float>(i % 977) / 977.0f, -148 + (i % 275));
    worst_f = std::max(worst_f, ulp_error(log_(xf), std::log(static_cast<long double>(xf))));
    const double xd = std::ldexp(1.0 + (i % 1999) / 1999.0, -1073 + (i % 2096));
    worst_d = std::max(worst_d, ulp_error(log_(xd), std::log(static_cast<long double>(xd))));
  }
  for (int i = -2000; i <= 2000; ++i) {  // around 1, where log is small and relative error matters
    const float xf = 1.0f + static_cast<float>(i) * 1e-4f;
    worst_f = std::max(worst_f, ulp_error(log_(xf), std::log(static_cast<long double>(xf))));
    const double xd = 1.0 + i * 1e-4;
    worst_d = std::max(worst_d, ulp_error(log_(xd), std::log(static_cast<long double>(xd))));
  }
  EXPECT(worst_f <= 2.0, "float log_ worst error %.2f ulp", worst_f);
  EXPECT(worst_d <= 2.0, "double log_ worst error %.2f ulp", worst_d);
  EXPECT(log_(1.0f) == 0.0f && log_(1.0) == 0.0, "log(1) must be exactly 0");
  EXPECT(std::isinf(log_(0.0f)) && log_(0.0f) < 0 && std::isinf(log_(0.0)) && log_(0.0) < 0, "log(0) = -inf");
  EXPECT(std::isnan(log_(-1.0f)) && std::isnan(log_(-1e-300)), "log of a negative number is NaN");
  EXPECT(std::isinf(log_(std::numeric_limits<float>::infinity())) && log_(std::numeric_limits<double>::infinity()) > 0,
         "log(+inf) = +inf");
  EXPECT(std::isnan(log_(std::nanf(""))) && std::isnan(log_(std::nan(""))), "NaN must propagate");
}

static void test_log1p() {
  double worst_f = 0, worst_d = 0;
  for (int i = 0; i <= 200000; ++i) {
    const double t = -30.0 + 60.0 * i / 200000.0;  // x from 1e-13 to 1e13, both signs near 0
    const double xd = (i % 2 ? 1.0 : -0.999) * std::min(std::exp(t), i % 2 ? 1e13 : 0.999);
    const float xf = static_cast<float>(xd);
    worst_f = std::max(worst_f, ulp_error(log1p_(xf), std::log1p(static_cast<long double>(xf))));
    worst_d = std::max(worst_d, ulp_error(log1p_(xd), std::log1p(static_cast<long double>(xd))));
  }
  EXPECT(worst_f <= 4.0, "float log1p_ worst error %.2f ulp", worst_f);
  EXPECT(worst_d <= 4.0, "double log1p_ worst error %.2f ulp", worst_d);
  EXPECT(log1p_(1e-30f) == 1e-30f && log1p_(1e-300) == 1e-300, "log1p(x) = x for tiny x");
  EXPECT(std::isinf(log1p_(-1.0)) && log1p_(-1.0) < 0, "log1p(-1) = -inf");
  EXPECT(std::isinf(log1p_(std::numeric_limits<double>::infinity())), "log1p(+inf) = +inf");
  EXPECT(std::isnan(log1p_(-2.0f)) && std::isnan(log1p_(std::nan(""))), "log1p below -1 and of NaN is NaN");
}

int main() {
  test_exp();
  test_log();
  test_log1p();
  return mfk_test::finish("scalar math");
}
