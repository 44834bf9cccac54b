// Makes the compiled library importable as `mfkernels._C`; importing it runs the static
// TORCH_LIBRARY registrations, after which every op is reachable as torch.ops.mfkernels.<name>.
// Kept free of pybind11 and torch/extension.h: nothing is bound here.
#include <Python.h>

static struct PyModuleDef mfkernels_c_module = {
    PyModuleDef_HEAD_INIT, "_C", "mfkernels compiled ops; they register into torch.ops.mfkernels on import.", -1,
    nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&mfkernels_c_module); }
