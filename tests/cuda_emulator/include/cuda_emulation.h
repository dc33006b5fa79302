// A CPU stand-in for the parts of CUDA that csrc/cuda/'s kernels use, so that their source runs here without a GPU.
//
// Each CTA runs as blockDim real threads (std::thread), one CTA after another. __syncthreads and __syncwarp are
// barriers over the CTA's and the warp's threads; a thread that returns drops out of them, as on the hardware.
// Dynamic shared memory is one buffer, refilled with 0xFF bytes (NaN in fp32/fp16/bf16) before every CTA, so
// a read of shared memory that the kernel never wrote shows up as NaN. WMMA is emulated per warp: lane 0 does
// the loads, the multiply-adds (fp32 accumulation) and the stores, so another lane sees a stored tile only
// after a __syncwarp, which the hardware requires too. Launch limits of an sm_90 part are enforced: at most
// 1024 threads, 48 KB of dynamic shared memory unless cudaFuncSetAttribute raised it on the current device, up to
// that device's opt-in limit (227 KB unless a test sets another), grid.x at most 2**31 - 1, grid.y and grid.z at
// most 65535; WMMA pointers must be 32-byte aligned and ldm a multiple of 16 bytes. Devices are numbers: the
// current one (cudaSetDevice, per host thread) keys the kernels' attributes, and every cudaFuncSetAttribute call
// is logged for the tests; each device has its number of SMs (3 unless a test sets another, so that a persistent
// kernel's CTAs each loop over several tiles of a small image).
//
// Asynchronous copies (<cuda_pipeline.h>: __pipeline_memcpy_async, __pipeline_commit, __pipeline_wait_prior) are
// per thread, as on the hardware: a copy takes its source bytes at issue, NaN-fills its destination (its content is
// undefined until the wait), and writes it when a __pipeline_wait_prior of the same thread retires its commit
// group. A kernel that reads a buffer before waiting for its copies, or without the barrier that makes other
// threads' copies visible, reads NaN, which gives NaN or wrong outputs (a ReLU, fmaxf, turns NaN into 0), or, under
// ThreadSanitizer, races with the writing thread. Each copy is
// checked: 4, 8 or 16 bytes, zero fill no larger, the destination inside the launch's dynamic shared memory and the
// source outside it, both aligned to the copy's size; a thread that returns with copies not waited for faults (on
// the hardware they could land in the next CTA's shared memory).
//
// Built with -fsanitize=thread (racecheck.cpp), the barriers and the threads' accesses give ThreadSanitizer a
// happens-before graph: a shared-memory access that no barrier orders is reported whatever the timing.
//
// What it cannot show: timing, the hardware's fragment layouts and instruction selection, memory-model effects
// beyond the barriers, out-of-bounds accesses to static shared memory. It checks the kernels' logic: tiling,
// halos, indexing, strides, padding, synchronisation points and the arithmetic.
#pragma once
#include <math.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one CTA runs at a time, so a static array is "per CTA"
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalAddress = 700,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
using cudaStream_t = struct CUstream_st*;

// ---- storage and vector types --------------------------------------------------------------------------------
struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline __half __ushort_as_half(unsigned short b) { return {b}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return {b}; }
inline float __half2float(__half h) {
  _Float16 f;
  std::memcpy(&f, &h.bits, 2);
  return static_cast<float>(f);
}
inline __half __float2half_rn(float v) {
  const _Float16 f = static_cast<_Float16>(v);  // round to nearest even
  __half h;
  std::memcpy(&h.bits, &f, 2);
  return h;
}
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                                             // nearest even
  return {static_cast<uint16_t>(u >> 16)};
}

namespace cuda_emulation {

constexpr int kWarpSize = 32;
constexpr size_t kDefaultDynamicShared = 48 * 1024;
constexpr size_t kMaxDynamicShared = 227 * 1024;  // sm_90's opt-in limit, the default of every device
constexpr unsigned kMaxGridX = 2147483647u;
constexpr int kDevices = 8;
constexpr int kDefaultSms = 3;
constexpr auto kBarrierTimeout = std::chrono::seconds(60);

// Thrown inside a CTA's thread when the kernel does something the hardware would fault on; ends the launch.
struct Fault {
  cudaError_t error;
  std::string what;
};

// A reusable barrier whose participants can drop out (a thread that returns), and which breaks instead of
// hanging when not every thread arrives (e.g. a __syncthreads inside a branch).
class Barrier {
 public:
  explicit Barrier(int count) : expected_(count) {}
  void arrive_and_wait(const char* name) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (broken_) throw Fault{cudaErrorLaunchFailure, std::string(name) + ": barrier broken by another thread"};
    const uint64_t generation = generation_;
    if (++arrived_ == expected_) return release();
    if (!ready_.wait_for(lock, kBarrierTimeout, [&] { return generation_ != generation || broken_; })) broken_ = true;
    if (broken_) {
      ready_.notify_all();
      throw Fault{cudaErrorLaunchFailure, std::string(name) + ": not every thread arrived (deadlock)"};
    }
  }
  void drop() {
    std::lock_guard<std::mutex> lock(mutex_);
    --expected_;
    if (arrived_ > 0 && arrived_ == expected_) release();
  }
  void abandon() {
    std::lock_guard<std::mutex> lock(mutex_);
    broken_ = true;
    ready_.notify_all();
  }

 private:
  void release() {
    arrived_ = 0;
    ++generation_;
    ready_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable ready_;
  int expected_, arrived_ = 0;
  uint64_t generation_ = 0;
  bool broken_ = false;
};

struct CtaState {
  std::unique_ptr<Barrier> block;
  std::vector<std::unique_ptr<Barrier>> warps;
  size_t shared_bytes = 0;  // the launch's dynamic shared memory
};

// One thread's asynchronous copies (cp.async): the open group, then the committed ones, oldest first.
struct AsyncCopy {
  unsigned char* dst;
  size_t size;
  unsigned char bytes[16];  // the source as it was at issue, zero-filled as asked
};
struct Pipeline {
  std::vector<AsyncCopy> open;
  std::deque<std::vector<AsyncCopy>> committed;
  size_t pending() const {
    size_t count = open.size();
    for (const auto& group : committed) count += group.size();
    return count;
  }
};
inline thread_local Pipeline pipeline;  // a CTA's threads are new threads: each starts empty

struct AttributeCall {
  int device, value;
};

struct Runtime {
  alignas(256) unsigned char dynamic_shared[kMaxDynamicShared];
  std::map<std::pair<int, const void*>, size_t> max_dynamic_shared;  // (device, kernel) -> cudaFuncSetAttribute
  size_t shared_optin[kDevices];                                      // per device, settable by the tests
  int sm_count[kDevices];                                             // per device, settable by the tests
  std::vector<AttributeCall> attribute_calls;                         // every cudaFuncSetAttribute, in order
  unsigned last_grid_x = 0;                                           // of the last launch that ran
  cudaError_t last_error = cudaSuccess;
  std::string last_fault;
  CtaState* cta = nullptr;
  Runtime() {
    std::fill(std::begin(shared_optin), std::end(shared_optin), kMaxDynamicShared);
    std::fill(std::begin(sm_count), std::end(sm_count), kDefaultSms);
  }
};
inline Runtime& runtime() {
  static Runtime instance;
  return instance;
}
inline thread_local int current_device = 0;

inline unsigned char* dynamic_shared() { return runtime().dynamic_shared; }
inline int linear_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

inline void fail(cudaError_t error, const std::string& what) {
  Runtime& rt = runtime();
  rt.last_error = error;
  rt.last_fault = what;
}

template <typename Body>
void run_grid(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes, Body&& body) {
  Runtime& rt = runtime();
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > kMaxGridX ||
      grid.y > 65535 || grid.z > 65535)
    return fail(cudaErrorInvalidConfiguration, "invalid grid or block size");
  const auto raised = rt.max_dynamic_shared.find({current_device, kernel});
  const size_t allowed = raised == rt.max_dynamic_shared.end() ? kDefaultDynamicShared : raised->second;
  if (shared_bytes > allowed)
    return fail(cudaErrorInvalidValue, "dynamic shared memory " + std::to_string(shared_bytes) + " > " +
                                           std::to_string(allowed) + " bytes allowed for this kernel");
  rt.last_grid_x = grid.x;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::memset(rt.dynamic_shared, 0xFF, sizeof rt.dynamic_shared);
        CtaState cta;
        cta.block = std::make_unique<Barrier>(threads);
        cta.shared_bytes = shared_bytes;
        for (unsigned first = 0; first < threads; first += kWarpSize)
          cta.warps.push_back(std::make_unique<Barrier>(std::min<unsigned>(kWarpSize, threads - first)));
        rt.cta = &cta;
        std::mutex fault_mutex;
        std::string fault;
        cudaError_t fault_error = cudaSuccess;
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
            blockIdx = {bx, by, bz};
            blockDim = block;
            gridDim = grid;
            try {
              body();
              if (const size_t pending = pipeline.pending())
                throw Fault{cudaErrorLaunchFailure, "thread " + std::to_string(t) + " returned with " +
                                                        std::to_string(pending) + " cp.async copies not waited for"};
            } catch (const Fault& f) {
              std::lock_guard<std::mutex> lock(fault_mutex);
              if (fault.empty()) fault_error = f.error, fault = f.what;
              cta.block->abandon();
              for (auto& w : cta.warps) w->abandon();
            }
            cta.block->drop();
            cta.warps[t / kWarpSize]->drop();
          });
        for (auto& thread : pool) thread.join();
        rt.cta = nullptr;
        if (!fault.empty())
          return fail(fault_error, fault + " in block (" + std::to_string(bx) + ", " + std::to_string(by) + ")");
      }
}

// kernel<<<grid, block, shared, stream>>>(args...) is rewritten to launch(kernel, grid, block, shared, stream)(args...)
template <typename... Params>
auto launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes = 0, cudaStream_t = nullptr) {
  return [=](auto&&... args) {
    run_grid(reinterpret_cast<const void*>(kernel), grid, block, shared_bytes, [&] { kernel(args...); });
  };
}

}  // namespace cuda_emulation

inline void __syncthreads() { cuda_emulation::runtime().cta->block->arrive_and_wait("__syncthreads"); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) throw cuda_emulation::Fault{cudaErrorInvalidValue, "__syncwarp: partial masks unsupported"};
  cuda_emulation::runtime().cta->warps[cuda_emulation::linear_thread() / cuda_emulation::kWarpSize]->arrive_and_wait(
      "__syncwarp");
}

inline cudaError_t cudaGetDevice(int* device) {
  *device = cuda_emulation::current_device;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= cuda_emulation::kDevices) return cudaErrorInvalidDevice;
  cuda_emulation::current_device = device;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (device < 0 || device >= cuda_emulation::kDevices) return cudaErrorInvalidDevice;
  switch (attribute) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(cuda_emulation::runtime().shared_optin[device]);
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = cuda_emulation::runtime().sm_count[device];
      return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attribute, int value) {
  cuda_emulation::Runtime& rt = cuda_emulation::runtime();
  const int device = cuda_emulation::current_device;
  rt.attribute_calls.push_back({device, value});
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > rt.shared_optin[device])
    return cudaErrorInvalidValue;
  rt.max_dynamic_shared[{device, reinterpret_cast<const void*>(kernel)}] = value;
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t error = cuda_emulation::runtime().last_error;
  cuda_emulation::runtime().last_error = cudaSuccess;
  return error;
}

// ---- asynchronous copies (<cuda_pipeline.h>), per thread -------------------------------------------------------
inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size, size_t zfill = 0) {
  using cuda_emulation::Fault;
  const cuda_emulation::Runtime& rt = cuda_emulation::runtime();
  const unsigned char* shared = rt.dynamic_shared;
  const auto* to = static_cast<const unsigned char*>(dst);
  const auto* from = static_cast<const unsigned char*>(src);
  if ((size != 4 && size != 8 && size != 16) || zfill > size)
    throw Fault{cudaErrorInvalidValue, "__pipeline_memcpy_async: size " + std::to_string(size) + ", zero fill " +
                                           std::to_string(zfill)};
  if (to < shared || to + size > shared + rt.cta->shared_bytes)
    throw Fault{cudaErrorIllegalAddress, "__pipeline_memcpy_async: destination outside the dynamic shared memory"};
  if (from + size > shared && from < shared + sizeof rt.dynamic_shared)
    throw Fault{cudaErrorIllegalAddress, "__pipeline_memcpy_async: source in shared memory, not global"};
  if (reinterpret_cast<uintptr_t>(dst) % size != 0 || reinterpret_cast<uintptr_t>(src) % size != 0)
    throw Fault{cudaErrorMisalignedAddress, "__pipeline_memcpy_async: an address not aligned to the copy's size"};
  cuda_emulation::AsyncCopy copy{static_cast<unsigned char*>(dst), size, {}};
  std::memcpy(copy.bytes, src, size - zfill);
  std::memset(copy.bytes + size - zfill, 0, zfill);
  std::memset(dst, 0xFF, size);  // undefined until the wait: NaN in fp32, fp16 and bf16
  cuda_emulation::pipeline.open.push_back(copy);
}
inline void __pipeline_commit() {
  auto& pipeline = cuda_emulation::pipeline;
  pipeline.committed.push_back(std::move(pipeline.open));
  pipeline.open.clear();
}
// Retires the oldest commit groups of this thread until at most `prior` are in flight.
inline void __pipeline_wait_prior(size_t prior) {
  auto& committed = cuda_emulation::pipeline.committed;
  while (committed.size() > prior) {
    for (const auto& copy : committed.front()) std::memcpy(copy.dst, copy.bytes, copy.size);
    committed.pop_front();
  }
}

// ---- WMMA (nvcuda::wmma), executed once per warp by lane 0 ----------------------------------------------------
namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K>
struct Shape;
template <int M, int N, int K>
struct Shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = Shape<Use, M, N, K>::rows, cols = Shape<Use, M, N, K>::cols;
  float x[rows * cols];  // the whole tile, in fp32 (exact for fp16 / bf16 operands)
};

inline bool warp_leader() { return cuda_emulation::linear_thread() % cuda_emulation::kWarpSize == 0; }

inline void check_operand(const void* p, unsigned ldm, size_t element_bytes, const char* op) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * element_bytes) % 16 != 0)
    throw cuda_emulation::Fault{cudaErrorMisalignedAddress,
                                std::string(op) + ": pointer not 32-byte aligned or ldm not a multiple of 16 bytes"};
}

inline float as_float(float v) { return v; }
inline float as_float(__half v) { return __half2float(v); }
inline float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
  for (float& e : f.x) e = v;
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
  if (!warp_leader()) return;
  check_operand(p, ldm, sizeof(T), "load_matrix_sync");
  using F = fragment<Use, M, N, K, T, Layout>;
  constexpr bool row = std::is_same<Layout, row_major>::value;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = as_float(row ? p[r * ldm + c] : p[c * ldm + r]);
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
  if (!warp_leader()) return;
  check_operand(p, ldm, sizeof(float), "store_matrix_sync");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * N + c];
}

template <int M, int N, int K, typename T, typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LayoutA>& a,
              const fragment<matrix_b, M, N, K, T, LayoutB>& b, const fragment<accumulator, M, N, K, float>& c) {
  if (!warp_leader()) return;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      float acc = c.x[m * N + n];
      for (int k = 0; k < K; ++k) acc += a.x[m * K + k] * b.x[k * N + n];
      d.x[m * N + n] = acc;
    }
}

}  // namespace wmma
}  // namespace nvcuda
