// The lower-triangular Gaussian family on CUDA: its device-generic ATen drivers (ops/tril_gaussian.h),
// which run on cuBLAS / cuSOLVER here, registered under the CUDA key.
#include "../ops/tril_gaussian.h"

TORCH_LIBRARY_IMPL(mfkernels, CUDA, m) { mfk::tril_gaussian::register_drivers(m); }
