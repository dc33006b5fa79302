// What both bindings (csrc/cuda/ops.cpp, csrc/cpu/ops.cpp) do with tensors beside validating them: allocate an
// op's output, and lay features out channels_last.
#pragma once
#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <cstdlib>
#include <string>

namespace wdsr {

// The output of an op, uninitialised, or all NaN where WDSR_FAST_POISON_OUTPUTS=1 (set by the tests), so that an
// element a kernel misses shows; from `cpu_allocator` where given (CPU outputs only).
inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options,
                             c10::Allocator* cpu_allocator = nullptr) {
  at::Tensor out = cpu_allocator == nullptr
                       ? at::empty(sizes, options)
                       : at::Tensor(at::detail::empty_generic(sizes, cpu_allocator,
                                                              c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                              options.dtype().toScalarType(),
                                                              options.memory_format_opt()));
  const char* poison = std::getenv("WDSR_FAST_POISON_OUTPUTS");
  if (poison != nullptr && std::string(poison) == "1") out.fill_(NAN);
  return out;
}

inline at::Tensor channels_last(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

}  // namespace wdsr
