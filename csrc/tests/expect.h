// Minimal check macro shared by the C++ header tests: counts failures, prints each with context,
// and finish() turns the count into the process exit code CTest reads.
#pragma once

#include <cmath>
#include <cstdio>
#include <vector>

namespace mfk_test {
inline int failures = 0;

inline int finish(const char* suite) {
  if (failures) {
    std::printf("%s: %d check(s) failed\n", suite, failures);
    return 1;
  }
  std::printf("%s: all checks passed\n", suite);
  return 0;
}
// Element-wise equality, NaN equal to NaN (outputs compared bitwise with a reference).
template <typename T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(double(a[i])) && std::isnan(double(b[i]))))) return false;
  return true;
}

// |a - b| <= tol * (1 + |b|) element-wise.
template <typename T>
bool close(const std::vector<T>& a, const std::vector<T>& b, double tol) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(double(a[i]) - double(b[i])) <= tol * (1 + std::fabs(double(b[i]))))) return false;
  return true;
}
}  // namespace mfk_test

#define EXPECT(cond, ...)                                         \
  do {                                                            \
    if (!(cond)) {                                                \
      ++mfk_test::failures;                                       \
      std::printf("FAIL %s:%d: %s  ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                   \
      std::printf("\n");                                          \
    }                                                             \
  } while (0)
