// `import genet_ops._C_ascend` loads the PrivateUse1 kernels (launcher.cpp registers them
// with TORCH_LIBRARY_IMPL); the ops themselves live in torch.ops.genet_ops. A module of its
// own so that a CANN / torch_npu link problem leaves genet_ops._C (CPU, CUDA) working.
#include <Python.h>

extern "C" PyObject* PyInit__C_ascend(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C_ascend", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
