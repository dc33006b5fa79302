// One vector of fp32 lanes for the instruction set this translation unit is compiled for: the only
// ISA-specific code of the CPU kernels. The including file defines exactly one of WDSR_CPU_AVX512,
// WDSR_CPU_AVX2 or WDSR_CPU_GENERIC (and its compiler flags), with WDSR_CPU_AVX512 optionally WDSR_CPU_BF16 (the
// bf16 kernels, -mavx512bf16) and with that WDSR_CPU_AMX (the AMX kernels), then the algorithm headers use:
//   VW            lanes per vector
//   kRegisters    vector registers (32 zmm, 16 ymm; 16 for the portable path, as SSE2 has)
//   kAccumulators vector accumulators a register-blocked micro-kernel may keep live (the rest of the
//                 register file holds its operands: 32 zmm -> 24 + 8, 16 ymm -> 12 + 4)
//   vf, vzero, vset1, vload, vstore, vload_n / vstore_n (the first n lanes, 0 < n <= VW), vfma(a, b, c) = a*b + c,
//   vmax, vmul, vadd, vsub(a, b) = a - b, vgather_n(p, stride, n) (lane i = p[i * stride] for i < n, else 0),
//   vgather_idx_n(p, index, n) (lane i = p[index[i]] for i < n, else 0), prefetch(p) (into L1),
//   vtranspose(p, stride, out) (VW rows of VW floats, row i at p + i * stride, as columns: out[j] lane i =
//   p[i * stride + j]; register shuffles, where VW gathers of a strided column cost several times more),
//   vload_even_odd(p, even, odd) (the 2 VW floats from p: even = p[0], p[2], ..., odd = p[1], p[3], ...),
//   in_register(v) (v, kept in a register: GCC otherwise folds a load that several FMAs reuse into each of them,
//   as a memory operand, and the loads then outnumber the FMAs)
// and the features' precision (the end of this file): feature_t, kPack, vdot, the feature loads and stores.
// Everything lives in namespace wdsr_cpu::<isa> with internal linkage, so that no symbol compiled for one
// instruction set can be picked by the linker for another.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels.h"  // Bf16

#if defined(WDSR_CPU_AVX512)
#include <immintrin.h>
#if defined(WDSR_CPU_AMX)
#define WDSR_CPU_ISA avx512_amx
#elif defined(WDSR_CPU_BF16)
#define WDSR_CPU_ISA avx512_bf16
#else
#define WDSR_CPU_ISA avx512
#endif
namespace wdsr_cpu::WDSR_CPU_ISA {
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
inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf vgather_n(const float* p, int stride, int n) {
  const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(stride));
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes(n), index, p, 4);
}
inline vf vgather_idx_n(const float* p, const int* index, int n) {
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes(n), _mm512_maskz_loadu_epi32(lanes(n), index), p, 4);
}
inline void vtranspose(const float* p, int64_t stride, vf (&out)[VW]) {
  // Four rounds of two-input shuffles: pairs of rows, pairs of pairs within each 128-bit lane, then the lanes.
  vf pairs[16], quads[16], halves[16];
  for (int i = 0; i < 16; i += 2) {
    const vf a = vload(p + i * stride), b = vload(p + (i + 1) * stride);
    pairs[i] = _mm512_unpacklo_ps(a, b);
    pairs[i + 1] = _mm512_unpackhi_ps(a, b);
  }
  // quads[4 g + j], 128-bit lane L: column 4 L + j of rows 4 g .. 4 g + 3
  for (int g = 0; g < 4; ++g) {
    const vf* q = pairs + 4 * g;
    quads[4 * g + 0] = _mm512_shuffle_ps(q[0], q[2], 0x44);
    quads[4 * g + 1] = _mm512_shuffle_ps(q[0], q[2], 0xEE);
    quads[4 * g + 2] = _mm512_shuffle_ps(q[1], q[3], 0x44);
    quads[4 * g + 3] = _mm512_shuffle_ps(q[1], q[3], 0xEE);
  }
  // halves[8 h + 4 e + j]: lanes L = e, e + 2 of the quads of rows 8 h .. 8 h + 7
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j) {
      halves[8 * h + j] = _mm512_shuffle_f32x4(quads[8 * h + j], quads[8 * h + 4 + j], 0x88);
      halves[8 * h + 4 + j] = _mm512_shuffle_f32x4(quads[8 * h + j], quads[8 * h + 4 + j], 0xDD);
    }
  for (int e = 0; e < 2; ++e)
    for (int j = 0; j < 4; ++j) {
      out[4 * e + j] = _mm512_shuffle_f32x4(halves[4 * e + j], halves[8 + 4 * e + j], 0x88);
      out[8 + 4 * e + j] = _mm512_shuffle_f32x4(halves[4 * e + j], halves[8 + 4 * e + j], 0xDD);
    }
}
inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
inline void vload_even_odd(const float* p, vf& even, vf& odd) {
  const vf a = vload(p), b = vload(p + VW);
  even = _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
  odd = _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
}
inline vf in_register(vf v) {
#if defined(__GNUC__)
  asm("" : "+v"(v));
#endif
  return v;
}
}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA

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
inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf vgather_n(const float* p, int stride, int n) {
  const __m256i index = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, index, _mm256_castsi256_ps(lanes(n)), 4);
}
inline vf vgather_idx_n(const float* p, const int* index, int n) {
  const __m256i mask = lanes(n);
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, _mm256_maskload_epi32(index, mask),
                                  _mm256_castsi256_ps(mask), 4);
}
inline void vtranspose(const float* p, int64_t stride, vf (&out)[VW]) {
  // Three rounds of two-input shuffles: pairs of rows, pairs of pairs within each 128-bit lane, then the lanes.
  vf pairs[8], quads[8];
  for (int i = 0; i < 8; i += 2) {
    const vf a = vload(p + i * stride), b = vload(p + (i + 1) * stride);
    pairs[i] = _mm256_unpacklo_ps(a, b);
    pairs[i + 1] = _mm256_unpackhi_ps(a, b);
  }
  for (int g = 0; g < 2; ++g) {  // quads[4 g + j], 128-bit lane L: column 4 L + j of rows 4 g .. 4 g + 3
    const vf* q = pairs + 4 * g;
    quads[4 * g + 0] = _mm256_shuffle_ps(q[0], q[2], 0x44);
    quads[4 * g + 1] = _mm256_shuffle_ps(q[0], q[2], 0xEE);
    quads[4 * g + 2] = _mm256_shuffle_ps(q[1], q[3], 0x44);
    quads[4 * g + 3] = _mm256_shuffle_ps(q[1], q[3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    out[j] = _mm256_permute2f128_ps(quads[j], quads[4 + j], 0x20);
    out[4 + j] = _mm256_permute2f128_ps(quads[j], quads[4 + j], 0x31);
  }
}
inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
inline void vload_even_odd(const float* p, vf& even, vf& odd) {
  const vf a = vload(p), b = vload(p + VW);  // a0..a7, b0..b7 -> [a0 a2 b0 b2 | a4 a6 b4 b6] -> a0 a2 a4 a6 b0 ..
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
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
inline vf vsub(vf a, vf b) { return a - b; }
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
inline vf vsub(vf a, vf b) {
  for (int i = 0; i < VW; ++i) a.lanes[i] -= b.lanes[i];
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
inline void vload_even_odd(const float* p, vf& even, vf& odd) {
  float e[VW], o[VW];
  for (int i = 0; i < VW; ++i) {
    e[i] = p[2 * i];
    o[i] = p[2 * i + 1];
  }
  even = vload(e);
  odd = vload(o);
}
inline vf vgather_idx_n(const float* p, const int* index, int n) {
  float lanes[VW] = {};
  for (int i = 0; i < n && i < VW; ++i) lanes[i] = p[index[i]];
  return vload(lanes);
}
inline void vtranspose(const float* p, int64_t stride, vf (&out)[VW]) {
  for (int j = 0; j < VW; ++j) out[j] = vgather_n(p + j, static_cast<int>(stride), VW);
}
}  // namespace
}  // namespace wdsr_cpu::generic

#else
#error "define WDSR_CPU_AVX512, WDSR_CPU_AVX2 or WDSR_CPU_GENERIC before including simd.h"
#endif

// The features' precision. The convolutions broadcast one 32-bit "word" of their input per (tap, pixel) and
// multiply-add it into every lane: with float features a word is one channel and vdot is an FMA; with bf16
// features (WDSR_CPU_BF16) a word is a pair of neighbouring channels (2k in its low half, 2k + 1 in its high half,
// as NHWC stores them) and vdot is vdpbf16ps (per lane two bf16 products added to an fp32 accumulator), its other
// operand a vector of weight pairs for the same two input channels. Accumulators, biases and epilogues are fp32
// in both; bf16 results are rounded to nearest even.
//   feature_t     the features' element in memory (float or Bf16); kPack channels per word (1 or 2)
//   vdot(a, b, acc)                      acc + the products of a and b, word by word
//   vload_feat(p), vload_feat_n(p, n)    VW features (the first n) as fp32 lanes
//   vstore_feat(p, v), vstore_feat_n(p, v, n)
//   vpack_words(v[kPack])                VW words whose channel j of lane i is v[j] lane i (planar rows -> pairs)
//   vstore_words(p, v[kPack])            the same, stored; vrelu_words(w) max(channel, 0) for each channel of w
//   vsplit_words(w, v[kPack])            the channels of VW words as kPack fp32 vectors (vstore_words' inverse)
//   word_of(w, stride, count)            the word of w[0], w[stride], ... (count of them valid, the rest zero)
namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {
#if defined(WDSR_CPU_BF16)
using feature_t = Bf16;
constexpr int kPack = 2;
inline vf vdot(vf a, vf b, vf acc) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
inline vf widen(__m256i bf16) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16), 16)); }
inline vf vload_feat(const Bf16* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline vf vload_feat_n(const Bf16* p, int n) { return widen(_mm256_maskz_loadu_epi16(lanes(n), p)); }
inline __m256i narrow(vf v) { return (__m256i)_mm512_cvtneps_pbh(v); }
inline void vstore_feat(Bf16* p, vf v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow(v)); }
inline void vstore_feat_n(Bf16* p, vf v, int n) { _mm256_mask_storeu_epi16(p, lanes(n), narrow(v)); }
inline vf vpack_words(const vf (&v)[kPack]) {
  // cvtne2ps2bf16 gives v[0]'s 16 values then v[1]'s; the permutation interleaves them into pairs.
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                              22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0]);
  return _mm512_castsi512_ps(_mm512_permutexvar_epi16(interleave, both));
}
inline void vstore_words(float* p, const vf (&v)[kPack]) { vstore(p, vpack_words(v)); }
// max(w, 0) per bf16 half: a bf16 orders as the int16 of its bits where both are non-negative, and every negative
// one is a negative int16, so one integer max does the ReLU of two channels' words.
inline vf vrelu_words(vf w) {
  return _mm512_castsi512_ps(_mm512_max_epi16(_mm512_castps_si512(w), _mm512_setzero_si512()));
}
// The words of two vectors whose neighbouring lanes 2i, 2i + 1 hold one word's two channels: those of `low` as words
// 0 .. VW / 2 - 1, those of `high` after them (one vcvtne2ps2bf16; vpack_words pairs lanes of two vectors instead).
inline vf vpack_lane_pairs(vf low, vf high) { return _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(high, low)); }
// Pairs of words: vset1_pair(p) the 64 bits of p[0], p[1] in every pair of lanes; vdup_words(v, half) the words
// 8 half .. 8 half + 7 of v, each twice (lanes 2i and 2i + 1 hold word 8 half + i).
inline vf vset1_pair(const float* p) {
  double pair;
  std::memcpy(&pair, p, sizeof pair);
  return _mm512_castpd_ps(_mm512_set1_pd(pair));
}
inline vf vdup_words(vf v, int half) {
  const __m512i low = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return _mm512_permutexvar_ps(half == 0 ? low : _mm512_add_epi32(low, _mm512_set1_epi32(8)), v);
}
inline void vsplit_words(vf w, vf (&v)[kPack]) {  // the inverse of vstore_words' pairing
  const __m512i bits = _mm512_castps_si512(w);
  v[0] = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
  v[1] = _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}
inline uint32_t bf16_bits(float f) {  // round to nearest even (weights are finite)
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}
inline float word_of(const float* w, int64_t stride, int count) {
  const uint32_t bits = (count > 0 ? bf16_bits(w[0]) : 0u) | (count > 1 ? bf16_bits(w[stride]) << 16 : 0u);
  float word;
  std::memcpy(&word, &bits, sizeof word);
  return word;
}
#else
using feature_t = float;
constexpr int kPack = 1;
inline vf vdot(vf a, vf b, vf acc) { return vfma(a, b, acc); }
inline vf vload_feat(const float* p) { return vload(p); }
inline vf vload_feat_n(const float* p, int n) { return vload_n(p, n); }
inline void vstore_feat(float* p, vf v) { vstore(p, v); }
inline void vstore_feat_n(float* p, vf v, int n) { vstore_n(p, v, n); }
inline vf vpack_words(const vf (&v)[kPack]) { return v[0]; }
inline void vstore_words(float* p, const vf (&v)[kPack]) { vstore(p, v[0]); }
inline vf vrelu_words(vf w) { return vmax(w, vzero()); }
inline void vsplit_words(vf w, vf (&v)[kPack]) { v[0] = w; }
inline float word_of(const float* w, int64_t, int count) { return count > 0 ? w[0] : 0.0f; }
#endif
// Features as the words the convolutions broadcast.
inline const float* words(const feature_t* p) { return reinterpret_cast<const float*>(p); }
inline float* words(feature_t* p) { return reinterpret_cast<float*>(p); }
}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
