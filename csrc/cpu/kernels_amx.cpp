// The WDSR-A and WDSR-B blocks on AMX tiles (block_a_amx.h, block_b_amx.h): bf16 tile products with AVX-512 epilogues. Built with -mamx-tile
// -mamx-bf16 besides the bf16 kernels' flags; ops.cpp runs it only where the bf16 kernels run and permit() said
// yes. This file includes no torch header.
#define WDSR_CPU_AVX512
#define WDSR_CPU_BF16
#define WDSR_CPU_AMX
#include "simd.h"
// simd.h first: the algorithm headers are written against its vector type
#include "block_a_amx.h"
#include "block_b_amx.h"

namespace wdsr_cpu {
const AmxKernelTable kAmxKernels = {"avx512_amx", &avx512_amx::tiles_permitted, &avx512_amx::wdsr_a_block_amx,
                                     &avx512_amx::wdsr_b_block_amx};
}  // namespace wdsr_cpu
