// torch.ops.wdsr_cpu.*: the op schemas (../common/op_schemas.h), input validation (../common/checks.h), output
// allocation (../common/tensors.h), the choice of instruction-set path and the threads. The only file of the CPU
// extension that includes torch headers; the kernels (kernels_*.cpp) include none and compile in seconds.
// All four ops run our kernels; float32 wdsr_a_block runs the fused kernel on direct or on Winograd convolutions, or
// oneDNN's convolutions (channels_last, the ReLU and the residual fused into them as post-ops), whichever measured
// fastest on the instruction-set path. bfloat16 features run the bf16 kernels where the CPU has AVX512-BF16 (for the
// blocks an error elsewhere: cpu_backend.py does not pick this backend there; the head and the tail then run in
// float32 on converted copies, as for an odd channel count).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <Python.h>
#include <torch/library.h>

#include <array>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../common/checks.h"
#include "../common/op_schemas.h"
#include "../common/tensors.h"
#include "block_choice.h"
#include "kernels.h"
#include "output_pool.h"

namespace {

using wdsr::channels_last;
using wdsr::new_output;
using wdsr_cpu::KernelTable;

constexpr const char* kIsaEnv = "WDSR_FAST_CPU_ISA";

// The instruction-set paths built into this extension that this CPU runs, fastest first.
const std::vector<const KernelTable*>& available_tables() {
  static const std::vector<const KernelTable*> tables = [] {
    std::vector<const KernelTable*> found;
#if defined(WDSR_CPU_HAVE_AVX512) || defined(WDSR_CPU_HAVE_AVX2)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#ifdef WDSR_CPU_HAVE_AVX512
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
      found.push_back(&wdsr_cpu::kAvx512Kernels);
#endif
#ifdef WDSR_CPU_HAVE_AVX2
    if (avx2) found.push_back(&wdsr_cpu::kAvx2Kernels);
#endif
    found.push_back(&wdsr_cpu::kGenericKernels);
    return found;
  }();
  return tables;
}

// The bf16 block kernels, where built and where the CPU runs them (AVX512-BF16 with the AVX-512 set above).
const wdsr_cpu::Bf16KernelTable* bf16_table() {
  static const wdsr_cpu::Bf16KernelTable* table = []() -> const wdsr_cpu::Bf16KernelTable* {
#ifdef WDSR_CPU_HAVE_AVX512_BF16
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
        available_tables().front() == &wdsr_cpu::kAvx512Kernels)
      return &wdsr_cpu::kAvx512Bf16Kernels;
#endif
    return nullptr;
  }();
  return table;
}

// The blocks on AMX tiles, where built, where the bf16 kernels run and the CPU has AMX-BF16 with the tile
// registers granted to this process.
const wdsr_cpu::AmxKernelTable* amx_table() {
  static const wdsr_cpu::AmxKernelTable* table = []() -> const wdsr_cpu::AmxKernelTable* {
#ifdef WDSR_CPU_HAVE_AMX
    if (bf16_table() != nullptr && wdsr_cpu::kAmxKernels.permit()) return &wdsr_cpu::kAmxKernels;
#endif
    return nullptr;
  }();
  return table;
}

// The bf16 kernels for a block op on bfloat16 x: they take even channel counts (two channels a 32-bit word).
const wdsr_cpu::Bf16KernelTable& bf16_kernels(const char* op, int64_t c, int64_t wide) {
  const wdsr_cpu::Bf16KernelTable* table = bf16_table();
  TORCH_CHECK_TYPE(table != nullptr, op, ": bfloat16 features need the bf16 CPU kernels, which run on CPUs with "
                   "AVX512-BF16 (this CPU or build has none); use float32");
  TORCH_CHECK_VALUE(c % 2 == 0 && wide % 2 == 0, op, ": the bf16 CPU kernels take even channel counts, got ", c,
                    " features and ", wide, " wide channels; use float32");
  return *table;
}

std::string isa_names() {
  std::string names;
  for (const KernelTable* t : available_tables()) names += (names.empty() ? "" : ", ") + std::string(t->isa);
  return names;
}

// The fastest path, or the one WDSR_FAST_CPU_ISA names (read at every call, so tests can switch paths).
const KernelTable& kernels(const char* op) {
  const char* wanted = std::getenv(kIsaEnv);
  if (wanted == nullptr || *wanted == '\0') return *available_tables().front();
  const KernelTable* chosen = nullptr;
  for (const KernelTable* t : available_tables())
    if (std::string(t->isa) == wanted) chosen = t;
  TORCH_CHECK_VALUE(chosen != nullptr, op, ": ", kIsaEnv, "=", wanted, " is not an instruction-set path this CPU "
                    "and build run; choose one of: ", isa_names());
  return *chosen;
}

// at::parallel_for is inline OpenMP code when torch's threads are OpenMP's: built without OpenMP, it runs on the
// calling thread alone whatever torch.set_num_threads says (cpu_backend.py then declines to be picked).
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
constexpr bool kThreaded = false;
#else
constexpr bool kThreaded = true;
#endif

void run_parallel(int64_t items, void (*body)(const void*, int64_t, int64_t), const void* context) {
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) { body(context, begin, end); });
}

wdsr_cpu::Parallel parallel() { return {at::get_num_threads(), &run_parallel}; }

const float* floats(const at::Tensor& t) { return t.data_ptr<float>(); }

// The float32 values of a weight or bias (the kernels take float32 weights): the tensor's own where it is float32
// and contiguous, else a converted copy, for bfloat16 without a tensor op (aten::to on a WDSR-B block's six weights
// and biases took 17 us, 0.6% of the bf16 model at 128x128 on one thread, measured).
class Floats {
 public:
  explicit Floats(const at::Tensor& t) {
    if (t.scalar_type() == at::kFloat && t.is_contiguous()) {
      data_ = t.data_ptr<float>();
    } else if (t.scalar_type() == at::kBFloat16 && t.is_contiguous()) {
      const at::BFloat16* values = t.data_ptr<at::BFloat16>();
      copy_.assign(values, values + t.numel());
      data_ = copy_.data();
    } else {
      kept_ = t.to(at::kFloat).contiguous();
      data_ = kept_.data_ptr<float>();
    }
  }
  const float* get() const { return data_; }

 private:
  const float* data_ = nullptr;
  std::vector<float> copy_;
  at::Tensor kept_;
};

template <typename Feature>
Feature* features_of(const at::Tensor& t) {
  if constexpr (std::is_same_v<Feature, float>) {
    return t.data_ptr<float>();
  } else {
    return reinterpret_cast<Feature*>(t.data_ptr<at::BFloat16>());
  }
}

// A float32 copy of a bfloat16 image or feature map, the tensor itself otherwise.
at::Tensor as_float(const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); }

// The float32 expand and reduce convolutions of a block (1x1 or 3x3), kept alive for its kernel.
struct BlockWeights {
  Floats w_expand, b_expand, w_reduce, b_reduce;
  int wide;
  BlockWeights(const at::Tensor& we, const at::Tensor& be, const at::Tensor& wr, const at::Tensor& br)
      : w_expand(we), b_expand(be), w_reduce(wr), b_reduce(br), wide(static_cast<int>(we.size(0))) {}
};

// The fields of BlockAArgs and BlockBArgs that both block ops set alike: x and y (NHWC), the expand and reduce
// convolutions, the sizes.
template <typename Feature, template <typename> class Args>
void set_block_args(Args<Feature>& args, const at::Tensor& in, const BlockWeights& weights, double res_scale,
                    at::Tensor& y) {
  args.x = features_of<Feature>(in);
  args.w_expand = weights.w_expand.get();
  args.b_expand = weights.b_expand.get();
  args.w_reduce = weights.w_reduce.get();
  args.b_reduce = weights.b_reduce.get();
  args.res_scale = static_cast<float>(res_scale);
  args.y = features_of<Feature>(y);
  args.n = static_cast<int>(in.size(0));
  args.c = static_cast<int>(in.size(1));
  args.h = static_cast<int>(in.size(2));
  args.w = static_cast<int>(in.size(3));
  args.wide = weights.wide;
}

wdsr_cpu::Image image_of(const at::Tensor& image) {
  return {floats(image), image.stride(0), image.stride(1), image.stride(2), image.stride(3)};
}

// The bf16 kernels for the head or the tail on bfloat16 features, where the CPU runs them and the channel count
// is even; else none (the float32 kernels then run on float32 copies).
const wdsr_cpu::Bf16KernelTable* bf16_head_tail(const at::Tensor& features_like, int64_t c) {
  return features_like.scalar_type() == at::kBFloat16 && c % 2 == 0 ? bf16_table() : nullptr;
}

template <typename Feature>
at::Tensor run_head(void (*kernel)(const wdsr_cpu::HeadArgsOf<Feature>&, const wdsr_cpu::Parallel&),
                    const at::Tensor& image, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean,
                    double norm_scale, at::ScalarType feature_type) {
  const int64_t c = weight.size(0);
  const Floats w(weight), b(bias);
  const at::Tensor img = as_float(image);
  at::Tensor features = new_output({image.size(0), c, image.size(2), image.size(3)},
                                   img.options().dtype(feature_type).memory_format(at::MemoryFormat::ChannelsLast),
                                   &wdsr_cpu_binding::OutputPool::instance());
  wdsr_cpu::HeadArgsOf<Feature> args{};
  args.image = image_of(img);
  args.weight = w.get();
  args.bias = b.get();
  args.mean = floats(mean);
  args.norm_scale = static_cast<float>(norm_scale);
  args.features = features_of<Feature>(features);
  args.n = static_cast<int>(image.size(0));
  args.h = static_cast<int>(image.size(2));
  args.w = static_cast<int>(image.size(3));
  args.c = static_cast<int>(c);
  kernel(args, parallel());
  return features;
}

at::Tensor head_conv(const at::Tensor& image, const at::Tensor& weight, const at::Tensor& bias,
                     const at::Tensor& mean, double norm_scale) {
  wdsr::check_head_conv(image, weight, bias, mean, wdsr::kCpuTarget);
  const KernelTable& k = kernels("head_conv");
  if (const auto* k16 = bf16_head_tail(image, weight.size(0)))
    return run_head(k16->head_conv, image, weight, bias, mean, norm_scale, at::kBFloat16);
  return run_head(k.head_conv, image, weight, bias, mean, norm_scale, at::kFloat).to(image.scalar_type());
}

// oneDNN convolutions with a fused post-op: the ops torch.compile's CPU backend emits, which ATen exposes through
// the dispatcher only (mkldnn::_convolution_pointwise); absent where torch was built without oneDNN.
using ScalarList = c10::List<std::optional<at::Scalar>>;
// (input, weight, bias, padding, stride, dilation, groups, attr ("relu"), scalars, algorithm)
using ConvUnary = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, at::IntArrayRef,
                             at::IntArrayRef, at::IntArrayRef, int64_t, std::string_view, ScalarList,
                             std::optional<std::string_view>);
// (input, other, weight, bias, padding, stride, dilation, groups, binary_attr ("add": + other), alpha, unary_attr,
//  unary_scalars, unary_algorithm)
using ConvBinary = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                              at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, std::string_view,
                              std::optional<at::Scalar>, std::optional<std::string_view>, ScalarList,
                              std::optional<std::string_view>);

struct OneDnnConvs {
  c10::TypedOperatorHandle<ConvUnary> unary;
  c10::TypedOperatorHandle<ConvBinary> binary;

  // conv(x, w) + b, then the ReLU where `relu`; stride 1, `padding` on each side.
  at::Tensor conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t padding, bool relu) const {
    const std::vector<int64_t> pad{padding, padding}, one{1, 1};
    return unary.call(x, w, b, pad, one, one, 1, relu ? "relu" : "none", ScalarList(), std::string_view(""));
  }
  // residual + res_scale * (conv(x, w) + b): the residual added by the convolution, the scale folded into w and b.
  at::Tensor conv_residual(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& w, const at::Tensor& b,
                           double res_scale, int64_t padding) const {
    const std::vector<int64_t> pad{padding, padding}, one{1, 1};
    return binary.call(x, residual, w.mul(res_scale), b.mul(res_scale), pad, one, one, 1, "add", std::nullopt,
                       std::nullopt, ScalarList(), std::nullopt);
  }
};

const std::optional<OneDnnConvs>& onednn_convs() {
  static const std::optional<OneDnnConvs> convs = []() -> std::optional<OneDnnConvs> {
    auto& dispatcher = c10::Dispatcher::singleton();
    const auto unary = dispatcher.findSchema({"mkldnn::_convolution_pointwise", ""});
    const auto binary = dispatcher.findSchema({"mkldnn::_convolution_pointwise", "binary"});
    if (!unary || !binary || !unary->hasKernelForDispatchKey(c10::DispatchKey::CPU)) return std::nullopt;
    return OneDnnConvs{unary->typed<ConvUnary>(), binary->typed<ConvBinary>()};
  }();
  return convs;
}

// A block kind's four ways on bfloat16 (bf16) or float32 features (the fused kernel direct, on Winograd, oneDNN, AMX:
// both Path enums), offered where this CPU and build run them, and how this call runs: `measured`, the path's measured
// fastest, unless the env variable says otherwise; on bfloat16 features where the CPU has AMX-BF16 raced at the first
// call against our AMX kernel and oneDNN's convolutions (which run AMX tiles there too), since no race of ours has
// measured either on such a CPU.
struct BlockPlan {
  wdsr_cpu_binding::BlockWays<4> ways;
  wdsr_cpu_binding::BlockChoice choice;
};

template <typename Path>
BlockPlan plan_block(const char* op, const char* block, const char* env, std::array<const char*, 4> names, bool bf16,
                     Path measured) {
  const bool amx = bf16 && amx_table() != nullptr;
  BlockPlan plan{{op, block, bf16 ? "bfloat16" : "float32", env, names, {true, true, onednn_convs().has_value(), amx}},
                 {}};
  std::vector<size_t> unmeasured;
  if (amx) unmeasured = {static_cast<size_t>(Path::onednn), static_cast<size_t>(Path::amx)};
  plan.choice = wdsr_cpu_binding::choose_way(plan.ways, static_cast<size_t>(measured), unmeasured);
  return plan;
}

// WDSR_FAST_CPU_BLOCK_A=fused|winograd|onednn|amx|fastest (read at every call; amx for bfloat16 features on CPUs
// with AMX-BF16): how WDSR-A blocks run (block_choice.h). Default: the path's fastest measured
// (KernelTable::a_block_default, Bf16KernelTable's for bf16; the Winograd kernel where that is oneDNN and torch has
// none: it beats the direct one on every path, 1.85-2.0x with AVX-512 and AVX2, 2.6x on the portable path), raced
// at the first call where plan_block says.
constexpr const char* kBlockAEnv = "WDSR_FAST_CPU_BLOCK_A";

at::Tensor wdsr_a_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, double res_scale) {
  wdsr::check_wdsr_a_block(x, w_expand, b_expand, w_reduce, b_reduce, wdsr::kCpuTarget);
  const KernelTable& k = kernels("wdsr_a_block");
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  const wdsr_cpu::Bf16KernelTable* k16 = bf16 ? &bf16_kernels("wdsr_a_block", x.size(1), w_expand.size(0)) : nullptr;
  const at::Tensor in = channels_last(x);
  const auto& onednn = onednn_convs();
  using Path = wdsr_cpu::BlockAPath;
  const BlockPlan plan = plan_block("wdsr_a_block", "WDSR-A", kBlockAEnv, {"fused", "winograd", "onednn", "amx"}, bf16,
                                    bf16 ? k16->a_block_default : k.a_block_default);
  const BlockWeights weights(w_expand, b_expand, w_reduce, b_reduce);
  return wdsr_cpu_binding::run_choice(plan.ways, plan.choice, x.size(0) * x.size(2) * x.size(3), [&](size_t way) {
    const auto path = static_cast<Path>(way);
    if (path == Path::onednn) {
      // y = conv(relu(conv(x, w_expand) + b_expand), res_scale * w_reduce) + res_scale * b_reduce + x: the ReLU and
      // the residual ride on the convolutions (5% faster per block at 128x128 than separate passes, 2 threads,
      // measured).
      return onednn->conv_residual(onednn->conv(in, w_expand, b_expand, 1, true), in, w_reduce, b_reduce, res_scale,
                                   1);
    }
    at::Tensor y = new_output(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast),
                              &wdsr_cpu_binding::OutputPool::instance());
    const bool winograd = path == Path::winograd;
    if (bf16) {
      wdsr_cpu::BlockAArgsOf<wdsr_cpu::Bf16> args{};
      set_block_args(args, in, weights, res_scale, y);
      (path == Path::amx ? amx_table()->wdsr_a_block
                         : winograd ? k16->wdsr_a_block_winograd : k16->wdsr_a_block)(args, parallel());
    } else {
      wdsr_cpu::BlockAArgs args{};
      set_block_args(args, in, weights, res_scale, y);
      (winograd ? k.wdsr_a_block_winograd : k.wdsr_a_block)(args, parallel());
    }
    return y;
  });
}

// WDSR_FAST_CPU_BLOCK_B=direct|winograd|onednn|amx|fastest: how WDSR-B blocks run, as WDSR_FAST_CPU_BLOCK_A for
// WDSR-A (KernelTable::b_block_default).
constexpr const char* kBlockBEnv = "WDSR_FAST_CPU_BLOCK_B";

template <typename Feature>
void run_block_b(void (*kernel)(const wdsr_cpu::BlockBArgsOf<Feature>&, const wdsr_cpu::Parallel&),
                 const at::Tensor& in, const BlockWeights& weights, const Floats& w_conv, const Floats& b_conv,
                 int low_rank, double res_scale, at::Tensor& y) {
  wdsr_cpu::BlockBArgsOf<Feature> args{};
  set_block_args(args, in, weights, res_scale, y);
  args.w_conv = w_conv.get();
  args.b_conv = b_conv.get();
  args.low_rank = low_rank;
  args.max_chunk_w = wdsr_cpu::kMaxChunkWidth;
  kernel(args, parallel());
}

at::Tensor wdsr_b_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, const at::Tensor& w_conv,
                        const at::Tensor& b_conv, double res_scale) {
  wdsr::check_wdsr_b_block(x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, wdsr::kCpuTarget);
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  const KernelTable& k = kernels("wdsr_b_block");
  const wdsr_cpu::Bf16KernelTable* k16 = bf16 ? &bf16_kernels("wdsr_b_block", x.size(1), w_expand.size(0)) : nullptr;
  const at::Tensor in = channels_last(x);
  const auto& onednn = onednn_convs();
  using Path = wdsr_cpu::BlockBPath;
  const BlockPlan plan = plan_block("wdsr_b_block", "WDSR-B", kBlockBEnv, {"direct", "winograd", "onednn", "amx"},
                                    bf16, bf16 ? k16->b_block_default : k.b_block_default);
  const BlockWeights weights(w_expand, b_expand, w_reduce, b_reduce);
  const Floats wc(w_conv), bc(b_conv);
  const int low_rank = static_cast<int>(w_reduce.size(0));
  return wdsr_cpu_binding::run_choice(plan.ways, plan.choice, x.size(0) * x.size(2) * x.size(3), [&](size_t way) {
    const auto path = static_cast<Path>(way);
    if (path == Path::onednn) {
      // Three convolutions, the ReLU and the residual as their post-ops (as the WDSR-A block's oneDNN path); the
      // wide and the low-rank activations go through memory.
      const at::Tensor wide = onednn->conv(in, w_expand, b_expand, 0, true);
      return onednn->conv_residual(onednn->conv(wide, w_reduce, b_reduce, 0, false), in, w_conv, b_conv, res_scale,
                                   1);
    }
    at::Tensor y = new_output(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast),
                              &wdsr_cpu_binding::OutputPool::instance());
    const bool winograd = path == Path::winograd;
    if (bf16) {
      run_block_b(path == Path::amx ? amx_table()->wdsr_b_block
                                    : winograd ? k16->wdsr_b_block_winograd : k16->wdsr_b_block,
                  in, weights, wc, bc, low_rank, res_scale, y);
    } else {
      run_block_b(winograd ? k.wdsr_b_block_winograd : k.wdsr_b_block, in, weights, wc, bc, low_rank, res_scale, y);
    }
    return y;
  });
}

template <typename Feature>
at::Tensor run_tail(void (*kernel)(const wdsr_cpu::TailArgsOf<Feature>&, const wdsr_cpu::Parallel&),
                    const at::Tensor& in, const at::Tensor& image, const at::Tensor& w_tail, const at::Tensor& b_tail,
                    const at::Tensor& w_skip, const at::Tensor& b_skip, const at::Tensor& mean, double norm_scale,
                    int64_t scale) {
  const int64_t n = in.size(0), c = in.size(1), h = in.size(2), w = in.size(3);
  const at::Tensor img = as_float(image);
  const Floats wt(w_tail), bt(b_tail), ws(w_skip), bs(b_skip);
  at::Tensor out = new_output({n, 3, h * scale, w * scale}, in.options().memory_format(at::MemoryFormat::Contiguous),
                              &wdsr_cpu_binding::OutputPool::instance());
  wdsr_cpu::TailArgsOf<Feature> args{};
  args.features = features_of<Feature>(in);
  args.image = image_of(img);
  args.w_tail = wt.get();
  args.b_tail = bt.get();
  args.w_skip = ws.get();
  args.b_skip = bs.get();
  args.mean = floats(mean);
  args.norm_scale = static_cast<float>(norm_scale);
  args.out = features_of<Feature>(out);
  args.n = static_cast<int>(n);
  args.h = static_cast<int>(h);
  args.w = static_cast<int>(w);
  args.c = static_cast<int>(c);
  args.scale = static_cast<int>(scale);
  kernel(args, parallel());
  return out;
}

at::Tensor tail_shuffle(const at::Tensor& features, const at::Tensor& image, const at::Tensor& w_tail,
                        const at::Tensor& b_tail, const at::Tensor& w_skip, const at::Tensor& b_skip,
                        const at::Tensor& mean, double norm_scale, int64_t scale) {
  wdsr::check_tail_shuffle(features, image, w_tail, b_tail, w_skip, b_skip, mean, scale, wdsr::kCpuTarget);
  const KernelTable& k = kernels("tail_shuffle");
  if (const auto* k16 = bf16_head_tail(features, features.size(1)))
    return run_tail(k16->tail_shuffle, channels_last(features), image, w_tail, b_tail, w_skip, b_skip, mean,
                    norm_scale, scale);
  return run_tail(k.tail_shuffle, channels_last(as_float(features)), image, w_tail, b_tail, w_skip, b_skip, mean,
                  norm_scale, scale)
      .to(features.scalar_type());
}

// isa_paths() -> the instruction-set paths this CPU and build run, fastest first (the first is the default).
PyObject* py_isa_paths(PyObject*, PyObject*) {
  const auto& tables = available_tables();
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(tables.size()));
  if (list == nullptr) return nullptr;
  for (size_t i = 0; i < tables.size(); ++i) {
    PyObject* name = PyUnicode_FromString(tables[i]->isa);
    if (name == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), name);
  }
  return list;
}

// bf16_isa() -> the instruction-set path of the bf16 block kernels on this CPU and build, or None.
PyObject* py_bf16_isa(PyObject*, PyObject*) {
  if (bf16_table() == nullptr) Py_RETURN_NONE;
  return PyUnicode_FromString(bf16_table()->isa);
}

// amx() -> whether blocks on bfloat16 features can run on AMX tiles here (WDSR_FAST_CPU_BLOCK_A / _B=amx).
PyObject* py_amx(PyObject*, PyObject*) { return PyBool_FromLong(amx_table() != nullptr ? 1 : 0); }

// races() -> {"<block> <features>: <ways>": (way chosen, {way: ms}, {way: difference})} for the races run so far
// (block_choice.h).
PyObject* py_races(PyObject*, PyObject*) {
  std::lock_guard<std::mutex> lock(wdsr_cpu_binding::race_mutex());
  PyObject* races = PyDict_New();
  if (races == nullptr) return nullptr;
  for (const auto& [key, record] : wdsr_cpu_binding::race_records()) {
    PyObject* ms = PyDict_New();
    PyObject* difference = PyDict_New();
    bool ok = ms != nullptr && difference != nullptr;
    for (const auto& entry : record.entries) {
      if (!ok) break;
      PyObject* t = PyFloat_FromDouble(entry.ms);
      PyObject* d = PyFloat_FromDouble(entry.difference);
      ok = t != nullptr && d != nullptr && PyDict_SetItemString(ms, entry.way, t) == 0 &&
           PyDict_SetItemString(difference, entry.way, d) == 0;
      Py_XDECREF(t);
      Py_XDECREF(d);
    }
    PyObject* race = ok ? Py_BuildValue("(sOO)", record.chosen, ms, difference) : nullptr;
    Py_XDECREF(ms);
    Py_XDECREF(difference);
    if (race == nullptr || PyDict_SetItemString(races, key.c_str(), race) != 0) {
      Py_XDECREF(race);
      Py_DECREF(races);
      return nullptr;
    }
    Py_DECREF(race);
  }
  return races;
}

// forget_races() -> None: the next call of each block kind races its ways again.
PyObject* py_forget_races(PyObject*, PyObject*) {
  std::lock_guard<std::mutex> lock(wdsr_cpu_binding::race_mutex());
  wdsr_cpu_binding::race_records().clear();
  Py_RETURN_NONE;
}

// threaded() -> whether the ops use torch's intra-op threads (False: built without the OpenMP torch uses).
PyObject* py_threaded(PyObject*, PyObject*) { return PyBool_FromLong(kThreaded ? 1 : 0); }

}  // namespace

TORCH_LIBRARY(wdsr_cpu, m) {
  wdsr::define_ops(m);
}

TORCH_LIBRARY_IMPL(wdsr_cpu, CPU, m) {
  m.impl("head_conv", &head_conv);
  m.impl("wdsr_a_block", &wdsr_a_block);
  m.impl("wdsr_b_block", &wdsr_b_block);
  m.impl("tail_shuffle", &tail_shuffle);
}

// `import wdsr_fast._cpu` loads this library, which runs the registrations above.
extern "C" PyMODINIT_FUNC PyInit__cpu(void) {
  static PyMethodDef methods[] = {
      {"isa_paths", py_isa_paths, METH_NOARGS,
       "The instruction-set paths this CPU and build run, fastest first (the first is the default)."},
      {"bf16_isa", py_bf16_isa, METH_NOARGS,
       "The instruction-set path of the bf16 block kernels on this CPU and build (None: bf16 features unsupported)."},
      {"amx", py_amx, METH_NOARGS,
       "Whether blocks on bfloat16 features can run on AMX tiles here (WDSR_FAST_CPU_BLOCK_A / _B=amx)."},
      {"races", py_races, METH_NOARGS,
       "The ways of running blocks raced at a first call so far: {'<block> <features>: <ways>': (way chosen, "
       "{way: ms}, {way: largest difference from the default way's output, relative})}."},
      {"forget_races", py_forget_races, METH_NOARGS, "Race the ways of each block kind again at its next call."},
      {"threaded", py_threaded, METH_NOARGS,
       "Whether the ops use torch's intra-op threads (False where built without the OpenMP torch uses)."},
      {nullptr, nullptr, 0, nullptr}};
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", nullptr, -1, methods};
  return PyModule_Create(&module);
}
