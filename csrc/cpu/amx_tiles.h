// The AMX tile operations of block_b_amx.h: one fixed use of the eight tile registers, as a 2 x 2 register block
// of bf16 tile products (tdpbf16ps):
//   tmm0..3  C: fp32 accumulators, 16 rows (pixels) x 16 columns (output channels), C[2 i + j] = A_i x B_j
//   tmm4, 5  A: bf16, 16 rows (pixels) x 32 input channels (one pixel's 64 bytes a row)
//   tmm6, 7  B: bf16 weight pairs, 16 rows (input-channel pairs) x 16 output channels x 2 (VNNI order:
//            row r, column n holds w[n][2 r], w[n][2 r + 1])
// Every tile is configured 16 rows x 64 bytes (palette 1). tdpbf16ps: C[m][n] += sum over r < 16 of
// A[m][2 r] B[r][n][0] + A[m][2 r + 1] B[r][n][1], in fp32.
//
// With WDSR_CPU_AMX_EMULATED the same functions run in plain C++ on a thread-local copy of the tile registers (for
// tests on CPUs without AMX: tests/cpu_harness/block_b_amx.cpp); otherwise they are the AMX instructions (built with
// -mamx-tile -mamx-bf16; a process runs them after tiles_permitted() returned true, each thread between
// tiles_configure() and tiles_release()). A GEMM step sequence: tiles_init (the C tiles from memory: the biases),
// tiles_step per K tile, tiles_store.
#pragma once
#include <cstdint>
#include <cstring>

#if !defined(WDSR_CPU_AMX_EMULATED)
#include <immintrin.h>
#if defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

constexpr int kTileRows = 16;   // pixels (A, C) or input-channel pairs (B) per tile
constexpr int kTileK = 32;      // bf16 input channels per A tile row
constexpr int kTileN = 16;      // output channels per C tile
constexpr int kTileElems = kTileRows * kTileK;  // bf16 elements of an A or B tile (1 KB)

#if defined(WDSR_CPU_AMX_EMULATED)
struct EmulatedTiles {
  alignas(64) unsigned char bytes[8][kTileRows][64];
};
thread_local EmulatedTiles emulated_tiles;

inline float bf16_value(const unsigned char* p) {
  uint16_t half;
  std::memcpy(&half, p, sizeof half);
  const uint32_t bits = static_cast<uint32_t>(half) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline void tile_load(int t, const void* base, int64_t stride) {
  for (int r = 0; r < kTileRows; ++r)
    std::memcpy(emulated_tiles.bytes[t][r], static_cast<const unsigned char*>(base) + r * stride, 64);
}
inline void tile_dp(int c, int a, int b) {
  for (int m = 0; m < kTileRows; ++m)
    for (int n = 0; n < kTileN; ++n) {
      float acc;
      std::memcpy(&acc, emulated_tiles.bytes[c][m] + 4 * n, sizeof acc);
      for (int r = 0; r < kTileRows; ++r)
        for (int j = 0; j < 2; ++j)
          acc += bf16_value(emulated_tiles.bytes[a][m] + 4 * r + 2 * j) *
                 bf16_value(emulated_tiles.bytes[b][r] + 4 * n + 2 * j);
      std::memcpy(emulated_tiles.bytes[c][m] + 4 * n, &acc, sizeof acc);
    }
}

inline bool tiles_permitted() { return true; }
inline void tiles_configure() {}
inline void tiles_release() {}
// C[2 i] = the tile at c0, C[2 i + 1] the tile at c1 (16 rows of 16 fp32).
inline void tiles_init(const float* c0, const float* c1) {
  tile_load(0, c0, 64);
  tile_load(1, c1, 64);
  tile_load(2, c0, 64);
  tile_load(3, c1, 64);
}
// C += A_i B_j for the A tiles at a0, a1 (rows a_stride bytes apart) and the B tiles at b0, b1 (packed, 64-byte rows).
inline void tiles_step(const void* a0, const void* a1, int64_t a_stride, const void* b0, const void* b1) {
  tile_load(4, a0, a_stride);
  tile_load(5, a1, a_stride);
  tile_load(6, b0, 64);
  tile_load(7, b1, 64);
  tile_dp(0, 4, 6);
  tile_dp(1, 4, 7);
  tile_dp(2, 5, 6);
  tile_dp(3, 5, 7);
}
// The four C tiles into c: 32 rows of 32 fp32 (c_stride bytes apart), C[2 i + j] at rows 16 i, columns 16 j.
inline void tiles_store(float* c, int64_t c_stride) {
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int r = 0; r < kTileRows; ++r)
        std::memcpy(reinterpret_cast<unsigned char*>(c + 16 * j) + (16 * i + r) * c_stride,
                    emulated_tiles.bytes[2 * i + j][r], 64);
}
#else
// Linux hands out the tile registers' state only to processes that ask (arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA, once per process); true where the CPU has AMX-TILE and AMX-BF16 and the request succeeded.
inline bool tiles_permitted() {
#if defined(__linux__)
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24;
  if ((edx & kAmxBf16) == 0 || (edx & kAmxTile) == 0) return false;
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
inline void tiles_configure() {
  TileConfig config{};
  config.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = kTileRows;
  }
  _tile_loadconfig(&config);
}
inline void tiles_release() { _tile_release(); }
inline void tiles_init(const float* c0, const float* c1) {
  _tile_loadd(0, c0, 64);
  _tile_loadd(1, c1, 64);
  _tile_loadd(2, c0, 64);
  _tile_loadd(3, c1, 64);
}
inline void tiles_step(const void* a0, const void* a1, int64_t a_stride, const void* b0, const void* b1) {
  _tile_loadd(4, a0, a_stride);
  _tile_loadd(6, b0, 64);
  _tile_dpbf16ps(0, 4, 6);
  _tile_loadd(7, b1, 64);
  _tile_dpbf16ps(1, 4, 7);
  _tile_loadd(5, a1, a_stride);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}
inline void tiles_store(float* c, int64_t c_stride) {
  auto* bytes = reinterpret_cast<unsigned char*>(c);
  _tile_stored(0, bytes, c_stride);
  _tile_stored(1, bytes + 64, c_stride);
  _tile_stored(2, bytes + 16 * c_stride, c_stride);
  _tile_stored(3, bytes + 16 * c_stride + 64, c_stride);
}
#endif

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
