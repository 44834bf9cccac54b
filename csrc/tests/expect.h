// Minimal check macro shared by the C++ header tests: counts failures, prints each with context,
// and finish() turns the count into the process exit code CTest reads.
#pragma once

#include <cstdio>

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
}  // namespace mfk_test

#define EXPECT(cond, ...)                                          \
  do {                                                             \
    if (!(cond)) {                                                 \
      ++mfk_test::failures;                                        \
      std::printf("FAIL %s:%d: %s  ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                    \
      std::printf("\n");                                           \
    }                                                              \
  } while (0)
