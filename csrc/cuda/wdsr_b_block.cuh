// What the two fused WDSR-B block kernels share: the tile geometry, the shared-memory leading dimensions, the haloed
// tile's pixel coordinates, and the once-per-device raise of a kernel's shared-memory limit.
//
// wdsr_b_block.cu: the "tiled" kernel (one CTA per 16 x 16 output tile, weights staged by every CTA; measured on an
// H100) and the fp32 kernel. wdsr_b_block_persistent.cu: the "persistent" kernel (one CTA per SM looping over tiles,
// weights staged once, the next tile's input copied asynchronously during this tile's compute; not yet measured).
// launch_wdsr_b_block (kernels.h) runs the one WdsrBBlockParams::kernel names.
#pragma once
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "kernel_common.cuh"
#include "launch_grid.cuh"

namespace wdsr {
namespace block {

constexpr int kTile = kBlockTile;            // output tile side (16)
constexpr int kHalo = kTile + 2;             // 18
constexpr int kHaloPixels = kHalo * kHalo;   // 324
constexpr int kHaloRows = 336;               // 21 strips of 16
constexpr int kStrips = kHaloRows / 16;
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kChannels = kMaxFeats;         // C and L padded to 32
constexpr int kChunk = 64;                   // expansion channels per stage-1 chunk

// Leading dimensions (in elements) of the shared-memory tiles. WMMA needs ldm to be a multiple of 16 bytes and
// every fragment pointer to be 32-byte aligned. Within those rules each tile's rows are padded so that the 8
// rows one ldmatrix phase reads (16 bytes each) fall in different banks: rows 64, 128 or 384 bytes apart,
// as unpadded ones would be, share banks (4- to 8-way conflicts).
constexpr int kLdX = 40;        // x tile: fragments start on 16-pixel strips; 80-byte rows, conflict-free
constexpr int kLdT = 48;        // t tile: stage 2's fragments start at any pixel, so rows must stay 32-byte
                                // multiples; 96-byte rows, 2-way
constexpr int kLdWeights = 40;  // w_expand (a row per wide channel) and w_conv (a row per tap and low-rank channel)
constexpr int kLdWide = 72;     // per-warp wide scratch; 144-byte rows, conflict-free
constexpr int kLdAcc = 36;      // per-warp fp32 accumulator scratch; 144-byte rows
__host__ __device__ constexpr int reduce_ld(int wide_pad) { return wide_pad + 8; }  // w_reduce rows
constexpr int kLdT32 = kMaxLowRank + 1;  // fp32 low-rank tile rows: 33 floats, conflict-free (wdsr_b_block.cu's top)

// Image coordinates of haloed tile position p (0 <= p < kHaloPixels).
__device__ __forceinline__ void halo_pixel(const TileOrigin& t, int p, int& gy, int& gx) {
  gy = t.y0 + p / kHalo - 1;
  gx = t.x0 + p % kHalo - 1;
}

// Raises `kernel`'s dynamic shared-memory limit on the current device, once per device and kernel, to `widest`
// bytes (what the widest block needs), capped at the device's opt-in limit so that narrower blocks still run on
// smaller GPUs. Setting it per launch to that launch's size would let host threads running models of different
// widths race.
template <typename Kernel>
cudaError_t raise_shared_memory_limit(Kernel* kernel, int widest) {
  static std::mutex mutex;
  static std::map<std::pair<int, const void*>, bool> raised;  // (device, kernel) -> done
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  const std::lock_guard<std::mutex> lock(mutex);
  bool& done = raised[{device, reinterpret_cast<const void*>(kernel)}];
  if (done) return cudaSuccess;
  int optin = 0;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  const int limit = std::min(widest, optin);
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
  done = err == cudaSuccess;
  return err;
}

}  // namespace block

// wdsr_b_block_persistent.cu: its launch (fp16 / bf16) and the dynamic shared memory one of its CTAs asks for.
cudaError_t launch_wdsr_b_block_persistent(const WdsrBBlockParams& params, cudaStream_t stream);
int wdsr_b_block_persistent_shared_bytes(DType dtype, int wide);

}  // namespace wdsr
