// The launch API between the torch binding (ops.cpp, the only file here that includes torch headers) and the
// CPU kernels, which are compiled once per instruction set (kernels_avx512.cpp, kernels_avx2.cpp,
// kernels_generic.cpp) from the width-templated algorithm of block_b.h, convs.h, block_a.h and
// block_a_winograd.h.
//
// Tensors are raw pointers: the image and conv weights float32, features float32 or, for the bf16 kernels
// (kernels_avx512_bf16.cpp), bfloat16. Features are NHWC contiguous (channels_last); the image may have any
// strides; conv weights are OIHW contiguous float32 (the binding converts bf16 weights), exactly as the op
// receives them otherwise (each kernel repacks them).
// Threads come from the binding: each kernel splits its work into independent items and hands them to
// Parallel::run, which the binding implements with at::parallel_for (so torch.set_num_threads applies).
#pragma once
#include <cstdint>

namespace wdsr_cpu {

// A bfloat16 value: the upper 16 bits of a float32.
struct Bf16 {
  uint16_t bits;
};

struct Parallel {
  int threads;  // how many threads run() will use, for planning the split
  // Calls body(context, begin, end) over disjoint ranges covering [0, items), possibly from several threads.
  void (*run)(int64_t items, void (*body)(const void* context, int64_t begin, int64_t end), const void* context);
};

struct Image {  // a logical (N, 3, H, W) float32 image with element strides
  const float* data;
  int64_t stride_n, stride_c, stride_h, stride_w;
};

// features (N, H, W, c) = conv3x3((image - mean) / norm_scale, zero padded) + bias, of Feature (float or Bf16)
template <typename Feature>
struct HeadArgsOf {
  Image image;
  const float* weight;  // (c, 3, 3, 3)
  const float* bias;    // (c)
  const float* mean;    // (3)
  float norm_scale;
  Feature* features;    // (N, H, W, c)
  int n, h, w, c;
};

// y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x)))), x and y (N, H, W, c) of Feature
// (float or Bf16; with Bf16, c and wide even)
template <typename Feature>
struct BlockBArgsOf {
  const Feature* x;
  const float* w_expand;  // (wide, c)
  const float* b_expand;  // (wide)
  const float* w_reduce;  // (low_rank, wide)
  const float* b_reduce;  // (low_rank)
  const float* w_conv;    // (c, low_rank, 3, 3)
  const float* b_conv;    // (c)
  float res_scale;
  Feature* y;
  int n, h, w, c, wide, low_rank;
  int max_chunk_w;  // widest column chunk a work item covers (the binding passes kMaxChunkWidth)
};

// y = x + res_scale * (conv3x3(relu(conv3x3(x, w_expand) + b_expand), w_reduce) + b_reduce), x and y (N, H, W, c)
// of Feature (float or Bf16; with Bf16, c and wide even)
template <typename Feature>
struct BlockAArgsOf {
  const Feature* x;
  const float* w_expand;  // (wide, c, 3, 3)
  const float* b_expand;  // (wide)
  const float* w_reduce;  // (c, wide, 3, 3)
  const float* b_reduce;  // (c)
  float res_scale;
  Feature* y;
  int n, h, w, c, wide;
};
// out (N, 3, s*H, s*W) NCHW contiguous = pixel_shuffle(conv3x3(features) + conv5x5((image - mean) / norm_scale))
//                                        * norm_scale + mean, features and out of Feature (float or Bf16; with Bf16,
//                                        c even)
template <typename Feature>
struct TailArgsOf {
  const Feature* features;  // (N, H, W, c)
  Image image;
  const float* w_tail;    // (3 s^2, c, 3, 3)
  const float* b_tail;    // (3 s^2)
  const float* w_skip;    // (3 s^2, 3, 5, 5)
  const float* b_skip;    // (3 s^2)
  const float* mean;      // (3)
  float norm_scale;
  Feature* out;
  int n, h, w, c, scale;
};
using HeadArgs = HeadArgsOf<float>;
using BlockBArgs = BlockBArgsOf<float>;
using BlockAArgs = BlockAArgsOf<float>;
using TailArgs = TailArgsOf<float>;

// Column chunks of the fused block are at most this wide: its ring of three low-rank rows then stays in L2
// (3 rows x 25 channels x 512 columns x 4 bytes = 154 KB for WDSR-B 32).
constexpr int kMaxChunkWidth = 512;

// The ways the binding runs a WDSR-A block: the fused kernel on direct convolutions (block_a.h), the fused kernel on
// Winograd F(2x2, 3x3) convolutions (block_a_winograd.h), oneDNN's convolutions (ops.cpp), or for bf16 features the
// fused kernel on AMX tiles (block_a_amx.h).
enum class BlockAPath { fused, winograd, onednn, amx };
// The ways a WDSR-B block runs: the fused kernel with its 3x3 direct (block_b.h) or on Winograd F(2x2, 3x3)
// (block_b_winograd.h), oneDNN's convolutions (ops.cpp), or for bf16 features the fused kernel on AMX tiles
// (block_b_amx.h).
enum class BlockBPath { direct, winograd, onednn, amx };

struct KernelTable {
  const char* isa;  // "avx512", "avx2" or "generic"
  void (*head_conv)(const HeadArgs&, const Parallel&);
  void (*wdsr_b_block)(const BlockBArgs&, const Parallel&);
  void (*wdsr_a_block)(const BlockAArgs&, const Parallel&);           // direct convolutions
  void (*wdsr_a_block_winograd)(const BlockAArgs&, const Parallel&);  // Winograd F(2x2, 3x3)
  void (*tail_shuffle)(const TailArgs&, const Parallel&);
  // How this path runs WDSR-A blocks unless WDSR_FAST_CPU_BLOCK_A says otherwise: the fastest measured on it
  // (block_a_winograd.h and benchmarks/README.md give the numbers); `onednn` falls back to `winograd` where torch
  // has no oneDNN.
  BlockAPath a_block_default;
  void (*wdsr_b_block_winograd)(const BlockBArgs&, const Parallel&);  // the 3x3 on Winograd F(2x2, 3x3)
  BlockBPath b_block_default;  // unless WDSR_FAST_CPU_BLOCK_B says otherwise: the fastest measured on this path
};

// The ops on bf16 features: bf16 operands, fp32 accumulation, epilogues (bias, ReLU, residual) in fp32; the head
// and the tail's skip convolve the float32 image.
struct Bf16KernelTable {
  const char* isa;  // "avx512_bf16"
  void (*head_conv)(const HeadArgsOf<Bf16>&, const Parallel&);
  void (*tail_shuffle)(const TailArgsOf<Bf16>&, const Parallel&);
  void (*wdsr_b_block)(const BlockBArgsOf<Bf16>&, const Parallel&);
  void (*wdsr_a_block)(const BlockAArgsOf<Bf16>&, const Parallel&);           // direct convolutions
  void (*wdsr_a_block_winograd)(const BlockAArgsOf<Bf16>&, const Parallel&);  // Winograd F(2x2, 3x3)
  BlockAPath a_block_default;  // as KernelTable's
  void (*wdsr_b_block_winograd)(const BlockBArgsOf<Bf16>&, const Parallel&);
  BlockBPath b_block_default;  // as KernelTable's
};

// The blocks on AMX tiles (block_a_amx.h, block_b_amx.h), bf16 features.
struct AmxKernelTable {
  const char* isa;  // "avx512_amx"
  // Call once, where the CPU runs the bf16 kernels: true where it has AMX-TILE and AMX-BF16 and the operating system
  // grants this process the tile registers (afterwards the blocks may run on any thread).
  bool (*permit)();
  void (*wdsr_a_block)(const BlockAArgsOf<Bf16>&, const Parallel&);
  void (*wdsr_b_block)(const BlockBArgsOf<Bf16>&, const Parallel&);
};

// Defined by the per-ISA translation units that were built (see setup.py); constant data, so that naming
// a table runs no code of an instruction set the CPU may lack.
extern const KernelTable kGenericKernels;
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
extern const Bf16KernelTable kAvx512Bf16Kernels;
extern const AmxKernelTable kAmxKernels;

}  // namespace wdsr_cpu
