// Small helpers shared by the kernels of one instruction set (included after simd.h, inside its namespace).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

// Fully unrolls the loop that follows: the register-blocked micro-kernels rely on every accumulator index being a
// constant (unrolled partly, GCC may interchange the loops and keep accumulators in memory).
#if defined(__GNUC__)
#define WDSR_UNROLL _Pragma("GCC unroll 32")
#else
#define WDSR_UNROLL
#endif

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

inline int imin(int a, int b) { return a < b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }
inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
inline int round_up(int a, int b) { return ceil_div(a, b) * b; }

// A 64-byte aligned float buffer (plain malloc: no standard-library template is instantiated with this
// translation unit's instruction set).
class Buffer {
 public:
  explicit Buffer(int64_t floats) : raw_(std::malloc(static_cast<size_t>(floats) * sizeof(float) + 64)) {
    if (raw_ == nullptr) throw std::bad_alloc();
    data_ = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(raw_) + 63) & ~uintptr_t(63));
  }
  ~Buffer() { std::free(raw_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* get() const { return data_; }

 private:
  void* raw_;
  float* data_;
};

// `total` output channels split into `count` register blocks of at most `limit` rows, sizes differing by at
// most one (25 rows with limit 12 -> 9, 8, 8 rather than 12, 12, 1), or with unit 2 by at most one pair of
// rows, total rounded up to whole units (25 rows, limit 12, unit 2 -> 10, 8, 8).
struct RowGroups {
  int count = 0, base = 0, extra = 0, unit = 1;
  static RowGroups split(int total, int limit, int unit = 1) {
    const int units = ceil_div(total, unit), count = ceil_div(units, limit / unit);
    return {count, units / count, units % count, unit};
  }
  int start(int g) const { return (g * base + imin(g, extra)) * unit; }
  int size(int g) const { return (base + (g < extra ? 1 : 0)) * unit; }
};

// The work items of a fused block: a band of rows of one column chunk (at most max_chunk_w pixels wide) of one
// image. Bands are as few as keep every thread busy (each recomputes the two rows of its halo), at most one a row.
struct RowBands {
  int h = 0, w = 0, chunks = 0, chunk_w = 0, bands = 0;
  int64_t items = 0;

  static RowBands plan(int n, int h, int w, int max_chunk_w, int threads) {
    RowBands p;
    p.h = h;
    p.w = w;
    p.chunks = ceil_div(w, max_chunk_w);
    p.chunk_w = ceil_div(w, p.chunks);
    const int64_t base = static_cast<int64_t>(n) * p.chunks;
    p.bands = 1;
    while (threads > 1 && p.bands < h && (base * p.bands) % threads != 0 && base * p.bands < 4 * threads) ++p.bands;
    p.items = base * p.bands;
    return p;
  }
  struct Item {
    int n, x0, x1, r0, r1;  // image n, columns [x0, x1), rows [r0, r1)
  };
  Item item(int64_t i) const {
    const int chunk = static_cast<int>(i % chunks), band = static_cast<int>(i / chunks % bands);
    const int x0 = chunk * chunk_w;
    return {static_cast<int>(i / (static_cast<int64_t>(chunks) * bands)), x0, imin(w, x0 + chunk_w),
            static_cast<int>(static_cast<int64_t>(band) * h / bands),
            static_cast<int>(static_cast<int64_t>(band + 1) * h / bands)};
  }
};

// Calls f(std::integral_constant-like R) for the runtime value r in [1, Max]: a switch over template
// instantiations of a register-blocked micro-kernel.
template <int Max, typename F>
inline void with_rows(int r, F&& f) {
  if constexpr (Max >= 1) {
    if (r == Max) {
      f.template operator()<Max>();
      return;
    }
    with_rows<Max - 1>(r, f);
  }
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
