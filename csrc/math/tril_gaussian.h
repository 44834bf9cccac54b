// Scalar facts of the lower-triangular Gaussian family (ops/tril_gaussian.cpp; spread flows' prior, see
// docs/papers.md): the normalising constant and the block size its blocked linear algebra runs in.
#pragma once

#include "../common/host_device.h"

namespace mfk {
namespace tril_gaussian {

// Rows and columns of one block: GEMMs on 128 x 128 tiles skip the zero blocks of triangular operands
// and stay near the GEMM rate where potrf / trsm on the whole matrix do not.
constexpr int64_t kBlockRows = 128;

MFK_HD_INLINE int64_t block_count(int64_t D) { return (D + kBlockRows - 1) / kBlockRows; }

// D/2 log(2 pi), the normalising constant of a D-dimensional Gaussian.
MFK_HD_INLINE double half_log_2pi_times(int64_t D) { return 0.5 * static_cast<double>(D) * 1.8378770664093453; }

}  // namespace tril_gaussian
}  // namespace mfk
