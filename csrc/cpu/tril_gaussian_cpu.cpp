// The lower-triangular Gaussian family on the CPU: its device-generic ATen drivers (ops/tril_gaussian.h),
// which run on MKL / OpenBLAS here, registered under the CPU key.
#include "../ops/tril_gaussian.h"

TORCH_LIBRARY_IMPL(mfkernels, CPU, m) { mfk::tril_gaussian::register_drivers(m); }
