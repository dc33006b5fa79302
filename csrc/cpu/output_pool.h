// The output buffers of the CPU ops, kept for reuse (the binding's allocator for them; ops.cpp only).
//
// Why: a forward frees one feature map per block as it allocates the next of the same size, and glibc's malloc
// hands a freed map of about 1 MB back to the system (mmap) only for the next op to page-fault it in again: 2,700
// minor faults and 6 ms of the 43 ms WDSR-B bf16 forward at 128x128 on one Zen 4 core (4 ms of 22 on two),
// measured. The pool keeps the kMaxFree buffers freed last (at most kMaxFreeBytes in all; older ones go back to the
// system) and hands the newest of the size asked for back (likely still in cache); other sizes come from the
// system as before. Thread-safe: tensors are freed anywhere.
#pragma once
#include <c10/core/Allocator.h>

#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <new>
#include <vector>

namespace wdsr_cpu_binding {

class OutputPool final : public c10::Allocator {
 public:
  static constexpr size_t kMaxFree = 4;
  static constexpr size_t kMaxFreeBytes = size_t{512} << 20;

  // The process's pool, never destroyed: tensors may be freed after static destructors ran.
  static OutputPool& instance() {
    static OutputPool* pool = new OutputPool();
    return *pool;
  }

  c10::DataPtr allocate(size_t bytes) override {
    if (bytes == 0) return {nullptr, nullptr, nullptr, c10::Device(c10::DeviceType::CPU)};
    Buffer* buffer = take(bytes);
    return {buffer->data, buffer, &release, c10::Device(c10::DeviceType::CPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  struct Buffer {
    void* data;
    size_t bytes;
  };

  Buffer* take(size_t bytes) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = free_.rbegin(); it != free_.rend(); ++it) {  // newest first
        if ((*it)->bytes != bytes) continue;
        Buffer* buffer = *it;
        free_.erase(std::next(it).base());
        free_bytes_ -= bytes;
        return buffer;
      }
    }
    void* data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (data == nullptr) throw std::bad_alloc();
    return new Buffer{data, bytes};
  }

  static void release(void* context) {
    Buffer* buffer = static_cast<Buffer*>(context);
    if (buffer->bytes > kMaxFreeBytes) {
      discard(buffer);
      return;
    }
    OutputPool& pool = instance();
    const std::lock_guard<std::mutex> lock(pool.mutex_);
    pool.free_.push_back(buffer);
    pool.free_bytes_ += buffer->bytes;
    while (pool.free_.size() > kMaxFree || pool.free_bytes_ > kMaxFreeBytes) {  // the oldest back to the system
      pool.free_bytes_ -= pool.free_.front()->bytes;
      discard(pool.free_.front());
      pool.free_.erase(pool.free_.begin());
    }
  }

  static void discard(Buffer* buffer) {
    std::free(buffer->data);
    delete buffer;
  }

  std::mutex mutex_;
  std::vector<Buffer*> free_;
  size_t free_bytes_ = 0;
};

}  // namespace wdsr_cpu_binding
