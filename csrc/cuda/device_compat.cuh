// What the kernel headers (csrc/cuda/*.cuh) need beyond the shared math: spellings that differ between
// nvcc and the CPU emulation of csrc/tests/cuda_emulation.h (which defines them itself when included
// first, so that CTest runs the same kernels on the CPU).
#pragma once

#ifndef MFK_EXTERN_SHARED
// The launch's dynamic shared memory as a `type*` named `name`.
#define MFK_EXTERN_SHARED(type, name) extern __shared__ type name[]
#endif
