// The op contract of wdsr_fast/ops/reference.py as TORCH_LIBRARY schemas, written once for every library that
// registers the four ops: wdsr_cuda (csrc/cuda/ops.cpp), wdsr_cpu (csrc/cpu/ops.cpp) and the CPU build of the CUDA
// ops' input checks (tests/cuda_emulator/checks.cpp). The tests check every registered schema against
// reference.py's signatures (tests/helpers.py, assert_schema_is_the_reference).
#pragma once

#include <torch/library.h>

namespace wdsr {

// The fused WDSR-B block's arguments and result: the op's, and those of wdsr_cuda's second kernel of it
// (wdsr_b_block_persistent, csrc/cuda/ops.cpp).
#define WDSR_B_BLOCK_ARGUMENTS \
  "(Tensor x, Tensor w_expand, Tensor b_expand, Tensor w_reduce, Tensor b_reduce, Tensor w_conv, Tensor b_conv, " \
  "float res_scale) -> Tensor"

inline void define_ops(torch::Library& m) {
  m.def("head_conv(Tensor image, Tensor weight, Tensor bias, Tensor mean, float norm_scale) -> Tensor");
  m.def("wdsr_a_block(Tensor x, Tensor w_expand, Tensor b_expand, Tensor w_reduce, Tensor b_reduce, "
        "float res_scale) -> Tensor");
  m.def("wdsr_b_block" WDSR_B_BLOCK_ARGUMENTS);
  m.def("tail_shuffle(Tensor features, Tensor image, Tensor w_tail, Tensor b_tail, Tensor w_skip, Tensor b_skip, "
        "Tensor mean, float norm_scale, int scale) -> Tensor");
}

}  // namespace wdsr
