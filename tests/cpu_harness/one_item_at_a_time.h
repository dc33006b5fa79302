// The harnesses' Parallel::run: every work item on the calling thread, last first, one at a time (each with fresh
// scratch), while the kernels still plan their items for the `threads` they are told.
#pragma once
#include <cstdint>

namespace {
inline void one_item_at_a_time(int64_t items, void (*body)(const void*, int64_t, int64_t), const void* context) {
  for (int64_t item = items - 1; item >= 0; --item) body(context, item, item + 1);
}
}  // namespace
