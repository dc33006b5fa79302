// The CPU kernels (block_b.h, convs.h) in portable C++: 4-lane structs that the compiler vectorises for the
// target's baseline (SSE2, NEON...), for every machine. This file includes no torch header.
#define WDSR_CPU_GENERIC
#include "simd.h"
// simd.h first: the algorithm headers are written against its vector type
#include "block_b.h"
#include "convs.h"

namespace wdsr_cpu {
const KernelTable kGenericKernels = {"generic", &generic::head_conv, &generic::wdsr_b_block, &generic::tail_shuffle};
}  // namespace wdsr_cpu
