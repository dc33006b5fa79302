// The CPU kernels (block_b.h, convs.h, block_a.h, block_a_winograd.h) compiled for AVX2 + FMA: 8 fp32 lanes, 16 ymm
// registers. Built with -mavx2 -mfma; ops.cpp runs it only where the CPU reports avx2 and fma. This file includes no
// torch header.
#define WDSR_CPU_AVX2
#include "simd.h"
// simd.h first: the algorithm headers are written against its vector type
#include "block_b.h"
#include "convs.h"
#include "block_a.h"
#include "block_a_winograd.h"
#include "block_b_winograd.h"

namespace wdsr_cpu {
const KernelTable kAvx2Kernels = {"avx2", &avx2::head_conv, &avx2::wdsr_b_block, &avx2::wdsr_a_block,
                                     &avx2::wdsr_a_block_winograd, &avx2::tail_shuffle, BlockAPath::winograd,
    &avx2::wdsr_b_block_winograd, BlockBPath::winograd};
}  // namespace wdsr_cpu
