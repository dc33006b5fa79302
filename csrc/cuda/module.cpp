// The Python module wdsr_fast._C. Importing it loads the library, whose ops.cpp registers torch.ops.wdsr_cuda.*;
// its functions report what the kernels take (kernels.h), so that wdsr_fast/ops/cuda_backend.py asks for these
// numbers instead of keeping copies. No torch header: tests/cuda_emulator builds this file with the kernels on the
// CPU, and the suite asks that build where no GPU build is there.
#include <Python.h>

#include <cstring>

#include "kernels.h"

namespace {

// limits() -> {"max_feats": n_feats, "max_wide": expansion width, "max_low_rank": low-rank width (the fused WDSR-B
// block's widths), "min_compute_capability": (major, minor)}
PyObject* py_limits(PyObject*, PyObject*) {
  return Py_BuildValue("{s:i,s:i,s:i,s:(ii)}", "max_feats", wdsr::kMaxFeats, "max_wide", wdsr::kMaxWide,
                       "max_low_rank", wdsr::kMaxLowRank, "min_compute_capability",
                       wdsr::kMinComputeCapability / 10, wdsr::kMinComputeCapability % 10);
}

// wdsr_b_block_shared_bytes(dtype, wide, kernel="tiled") -> the dynamic shared memory (bytes) one CTA of the fused
// WDSR-B block's kernel ("tiled" or "persistent") asks for, dtype "float32", "float16" or "bfloat16" (as torch names
// them), wide the expansion width.
PyObject* py_wdsr_b_block_shared_bytes(PyObject*, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"dtype", "wide", "kernel", nullptr};
  const char* name = nullptr;
  const char* kernel_name = "tiled";
  int wide = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "si|s", const_cast<char**>(keywords), &name, &wide, &kernel_name))
    return nullptr;
  wdsr::DType dtype;
  if (std::strcmp(name, "float32") == 0) {
    dtype = wdsr::DType::Float32;
  } else if (std::strcmp(name, "float16") == 0) {
    dtype = wdsr::DType::Float16;
  } else if (std::strcmp(name, "bfloat16") == 0) {
    dtype = wdsr::DType::BFloat16;
  } else {
    return PyErr_Format(PyExc_ValueError, "dtype must be float32, float16 or bfloat16, got %s", name);
  }
  wdsr::BlockKernel kernel;
  if (std::strcmp(kernel_name, "tiled") == 0) {
    kernel = wdsr::BlockKernel::Tiled;
  } else if (std::strcmp(kernel_name, "persistent") == 0) {
    kernel = wdsr::BlockKernel::Persistent;
  } else {
    return PyErr_Format(PyExc_ValueError, "kernel must be tiled or persistent, got %s", kernel_name);
  }
  if (wide < 1 || wide > wdsr::kMaxWide)
    return PyErr_Format(PyExc_ValueError, "wide must be 1 to %d, got %d", wdsr::kMaxWide, wide);
  return PyLong_FromLong(wdsr::wdsr_b_block_shared_bytes(dtype, wide, kernel));
}

}  // namespace

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyMethodDef methods[] = {
      {"limits", py_limits, METH_NOARGS,
       "What the CUDA kernels take: the fused WDSR-B block's widest n_feats, expansion width and low-rank width, "
       "and the oldest compute capability, as a dict."},
      {"wdsr_b_block_shared_bytes", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                                         py_wdsr_b_block_shared_bytes)), METH_VARARGS | METH_KEYWORDS,
       "wdsr_b_block_shared_bytes(dtype, wide, kernel='tiled'): the dynamic shared memory (bytes) one CTA of the "
       "fused WDSR-B block's kernel ('tiled' or 'persistent') asks for in dtype ('float32', 'float16' or "
       "'bfloat16') at expansion width wide (0 for float32, which runs the same CUDA-core kernel for both)."},
      {nullptr, nullptr, 0, nullptr}};
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module);
}
