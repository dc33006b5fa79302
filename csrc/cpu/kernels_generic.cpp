// The CPU kernels (block_b.h, convs.h, block_a.h, block_a_winograd.h) in portable C++ for every machine: 4-lane GNU
// vectors (or structs) that the compiler maps to the target's baseline (SSE2, NEON...). This file includes no torch
// header.
#define WDSR_CPU_GENERIC
#include "simd.h"
// simd.h first: the algorithm headers are written against its vector type
#include "block_b.h"
#include "convs.h"
#include "block_a.h"
#include "block_a_winograd.h"
#include "block_b_winograd.h"

namespace wdsr_cpu {
const KernelTable kGenericKernels = {"generic", &generic::head_conv, &generic::wdsr_b_block, &generic::wdsr_a_block,
                                     &generic::wdsr_a_block_winograd, &generic::tail_shuffle, BlockAPath::onednn,
    &generic::wdsr_b_block_winograd, BlockBPath::winograd};
}  // namespace wdsr_cpu
