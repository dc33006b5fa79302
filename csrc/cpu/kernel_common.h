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
// most one (25 rows with limit 12 -> 9, 8, 8 rather than 12, 12, 1).
struct RowGroups {
  int count = 0, base = 0, extra = 0;
  static RowGroups split(int total, int limit) {
    const int count = ceil_div(total, limit);
    return {count, total / count, total % count};
  }
  int start(int g) const { return g * base + imin(g, extra); }
  int size(int g) const { return base + (g < extra ? 1 : 0); }
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
