// Unit test of csrc/cpu/chunk_transpose.h (built by CMake for the building machine's processor, so
// the AVX2 blocks run where the CPU has them): every row length m and element count n of a chunk,
// float and double, against the scalar loops, including that nothing outside the rows is written.
#include "../cpu/chunk_transpose.h"

#include "expect.h"

#include <vector>

using namespace mfk::cpu;

template <typename T>
static void check_sizes(int64_t m, int64_t n, int64_t ld) {
  const T sentinel = T(-12345);
  std::vector<T> rows(static_cast<size_t>(m * n + 16), sentinel), columns(static_cast<size_t>(m * ld + 16), sentinel);
  for (int64_t k = 0; k < m * n; ++k) rows[k] = static_cast<T>(k + 1);
  std::vector<T> want_columns = columns;
  to_columns_scalar(rows.data(), m, n, want_columns.data(), ld);
  to_columns(rows.data(), m, n, columns.data(), ld);
  EXPECT(mfk_test::same(columns, want_columns), "to_columns m=%ld n=%ld ld=%ld (%zu-byte values)", long(m), long(n),
         long(ld), sizeof(T));
  std::vector<T> back(rows.size(), sentinel), want_back(rows.size(), sentinel);
  from_columns_scalar(want_columns.data(), m, n, want_back.data(), ld);
  from_columns(want_columns.data(), m, n, back.data(), ld);
  EXPECT(mfk_test::same(back, want_back), "from_columns m=%ld n=%ld ld=%ld (%zu-byte values)", long(m), long(n),
         long(ld), sizeof(T));
  for (int64_t k = 0; k < m * n; ++k)
    EXPECT(back[k] == rows[k], "round trip m=%ld n=%ld at %ld", long(m), long(n), long(k));
}

int main() {
  for (int64_t m = 0; m <= 20; ++m)
    for (int64_t n = 0; n <= 64; ++n) {
      check_sizes<float>(m, n, 64);
      check_sizes<double>(m, n, 64);
      check_sizes<float>(m, n, n + 3);
      check_sizes<double>(m, n, n + 3);
    }
  return mfk_test::finish("chunk_transpose");
}
