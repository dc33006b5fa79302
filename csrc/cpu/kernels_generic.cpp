// The CPU kernels (block_b.h, convs.h) in portable C++ for every machine: 4-lane GNU vectors (or structs) that
// the compiler maps to the target's baseline (SSE2, NEON...). This file includes no torch header.
#define WDSR_CPU_GENERIC
#include "simd.h"
// simd.h first: the algorithm headers are written against its vector type
#include "block_b.h"
#include "convs.h"

namespace wdsr_cpu {
const KernelTable kGenericKernels = {"generic", &generic::head_conv, &generic::wdsr_b_block, &generic::tail_shuffle};
}  // namespace wdsr_cpu
