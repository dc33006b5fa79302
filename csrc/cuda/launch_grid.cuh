// Which CTA computes what. Every image of a batch goes along grid x (up to 2**31 - 1 CTAs, more than a batch of
// 2**31 elements can need); grid y and z, limited to 65535, stay 1, so a batch of any size launches.
// Host and device functions, so that the arithmetic is checked on the host (tests/test_cuda_emulated.py).
#pragma once
#include "kernel_common.cuh"

namespace wdsr {

constexpr long long kMaxGridX = 2147483647;

// The fused WDSR-B block: one CTA per kBlockTile x kBlockTile output tile; CTA = n * tiles per image + tile,
// tiles row-major.
constexpr int kBlockTile = 16;

struct TileOrigin {
  int n, y0, x0;  // batch index and top-left output pixel of a CTA's tile
};

__host__ __device__ inline long long block_grid_x(int n, int h, int w) {
  return static_cast<long long>(n) * ceil_div(h, kBlockTile) * ceil_div(w, kBlockTile);
}

__host__ __device__ inline TileOrigin block_tile_origin(unsigned cta, int h, int w) {
  const int tiles_w = ceil_div(w, kBlockTile), tiles = ceil_div(h, kBlockTile) * tiles_w;
  const int tile = static_cast<int>(cta % tiles);
  return {static_cast<int>(cta / tiles), tile / tiles_w * kBlockTile, tile % tiles_w * kBlockTile};
}

// The tail: one thread per LR pixel, kTailThreads consecutive pixels (row-major) of one image per CTA.
constexpr int kTailThreads = 128;

struct PixelIndex {
  int n, pixel;  // batch index and y * w + x; pixel >= h * w past the image's last CTA's end
};

__host__ __device__ inline long long tail_grid_x(int n, int h, int w) {
  return static_cast<long long>(n) * ceil_div(h * w, kTailThreads);
}

__host__ __device__ inline PixelIndex tail_pixel(unsigned cta, unsigned thread, int h, int w) {
  const int ctas = ceil_div(h * w, kTailThreads);
  return {static_cast<int>(cta / ctas), static_cast<int>(cta % ctas) * kTailThreads + static_cast<int>(thread)};
}

}  // namespace wdsr
