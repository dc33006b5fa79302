// One vector of fp32 lanes for the instruction set this translation unit is compiled for: the only
// ISA-specific code of the CPU kernels. The including file defines exactly one of WDSR_CPU_AVX512,
// WDSR_CPU_AVX2 or WDSR_CPU_GENERIC (and its compiler flags), then the algorithm headers use:
//   VW            lanes per vector
//   kRegisters    vector registers (32 zmm, 16 ymm; 16 for the portable path, as SSE2 has)
//   kAccumulators vector accumulators a register-blocked micro-kernel may keep live (the rest of the
//                 register file holds its operands: 32 zmm -> 24 + 8, 16 ymm -> 12 + 4)
//   vf, vzero, vset1, vload, vstore, vload_n / vstore_n (the first n lanes, 0 < n <= VW), vfma(a, b, c) = a*b + c,
//   vmax, vmul, vadd, vgather_n(p, stride, n) (lane i = p[i * stride] for i < n, else 0),
//   vgather_idx_n(p, index, n) (lane i = p[index[i]] for i < n, else 0), prefetch(p) (into L1),
//   in_register(v) (v, kept in a register: GCC otherwise folds a load that several FMAs reuse into each of them,
//   as a memory operand, and the loads then outnumber the FMAs)
// Everything lives in namespace wdsr_cpu::<isa> with internal linkage, so that no symbol compiled for one
// instruction set can be picked by the linker for another.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(WDSR_CPU_AVX512)
#include <immintrin.h>
#define WDSR_CPU_ISA avx512
namespace wdsr_cpu::avx512 {
namespace {
constexpr int VW = 16;
constexpr int kRegisters = 32;
constexpr int kAccumulators = 24;
using vf = __m512;
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vset1(float a) { return _mm512_set1_ps(a); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline __mmask16 lanes(int n) { return static_cast<__mmask16>(n >= VW ? 0xFFFFu : (1u << n) - 1u); }
inline vf vload_n(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
inline void vstore_n(float* p, vf v, int n) { _mm512_mask_storeu_ps(p, lanes(n), v); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf vgather_n(const float* p, int stride, int n) {
  const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(stride));
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes(n), index, p, 4);
}
inline vf vgather_idx_n(const float* p, const int* index, int n) {
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes(n), _mm512_maskz_loadu_epi32(lanes(n), index), p, 4);
}
inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
inline vf in_register(vf v) {
#if defined(__GNUC__)
  asm("" : "+v"(v));
#endif
  return v;
}
}  // namespace
}  // namespace wdsr_cpu::avx512

#elif defined(WDSR_CPU_AVX2)
#include <immintrin.h>
#define WDSR_CPU_ISA avx2
namespace wdsr_cpu::avx2 {
namespace {
constexpr int VW = 8;
constexpr int kRegisters = 16;
constexpr int kAccumulators = 12;
using vf = __m256;
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset1(float a) { return _mm256_set1_ps(a); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
alignas(64) constexpr int kLaneMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
inline __m256i lanes(int n) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + VW - (n >= VW ? VW : n)));
}
inline vf vload_n(const float* p, int n) { return _mm256_maskload_ps(p, lanes(n)); }
inline void vstore_n(float* p, vf v, int n) { _mm256_maskstore_ps(p, lanes(n), v); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vgather_n(const float* p, int stride, int n) {
  const __m256i index = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, index, _mm256_castsi256_ps(lanes(n)), 4);
}
inline vf vgather_idx_n(const float* p, const int* index, int n) {
  const __m256i mask = lanes(n);
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, _mm256_maskload_epi32(index, mask),
                                  _mm256_castsi256_ps(mask), 4);
}
inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
inline vf in_register(vf v) {
#if defined(__GNUC__)
  asm("" : "+x"(v));
#endif
  return v;
}
}  // namespace
}  // namespace wdsr_cpu::avx2

#elif defined(WDSR_CPU_GENERIC)
// Portable: 4 lanes, as a GNU vector type where the compiler has them (GCC, clang: SSE2 on x86-64, NEON with
// fused multiply-adds on aarch64), else (or with WDSR_CPU_NO_VECTOR_EXTENSIONS) a struct whose lane loops the
// compiler may vectorise.
#define WDSR_CPU_ISA generic
namespace wdsr_cpu::generic {
namespace {
constexpr int VW = 4;
constexpr int kRegisters = 16;
constexpr int kAccumulators = 12;
#if defined(__GNUC__) && !defined(WDSR_CPU_NO_VECTOR_EXTENSIONS)
typedef float vf __attribute__((vector_size(16)));
inline vf vset1(float a) { return vf{a, a, a, a}; }
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmul(vf a, vf b) { return a * b; }
inline vf vadd(vf a, vf b) { return a + b; }
inline void prefetch(const void* p) { __builtin_prefetch(p); }
#else
struct vf {
  float lanes[VW];
};
inline vf vset1(float a) {
  vf r;
  for (int i = 0; i < VW; ++i) r.lanes[i] = a;
  return r;
}
inline vf vfma(vf a, vf b, vf c) {
  for (int i = 0; i < VW; ++i) c.lanes[i] += a.lanes[i] * b.lanes[i];
  return c;
}
inline vf vmax(vf a, vf b) {
  for (int i = 0; i < VW; ++i) a.lanes[i] = a.lanes[i] > b.lanes[i] ? a.lanes[i] : b.lanes[i];
  return a;
}
inline vf vmul(vf a, vf b) {
  for (int i = 0; i < VW; ++i) a.lanes[i] *= b.lanes[i];
  return a;
}
inline vf vadd(vf a, vf b) {
  for (int i = 0; i < VW; ++i) a.lanes[i] += b.lanes[i];
  return a;
}
inline void prefetch(const void*) {}
#endif
inline vf vzero() { return vset1(0.0f); }
inline vf vload(const float* p) {
  vf r;
  std::memcpy(&r, p, sizeof r);
  return r;
}
inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf vload_n(const float* p, int n) {
  vf r = vzero();
  std::memcpy(&r, p, sizeof(float) * static_cast<unsigned>(n < VW ? n : VW));
  return r;
}
inline void vstore_n(float* p, vf v, int n) {
  std::memcpy(p, &v, sizeof(float) * static_cast<unsigned>(n < VW ? n : VW));
}
inline vf vgather_n(const float* p, int stride, int n) {
  float lanes[VW] = {};
  for (int i = 0; i < n && i < VW; ++i) lanes[i] = p[static_cast<int64_t>(i) * stride];
  return vload(lanes);
}
inline vf in_register(vf v) { return v; }
inline vf vgather_idx_n(const float* p, const int* index, int n) {
  float lanes[VW] = {};
  for (int i = 0; i < n && i < VW; ++i) lanes[i] = p[index[i]];
  return vload(lanes);
}
}  // namespace
}  // namespace wdsr_cpu::generic

#else
#error "define WDSR_CPU_AVX512, WDSR_CPU_AVX2 or WDSR_CPU_GENERIC before including simd.h"
#endif
