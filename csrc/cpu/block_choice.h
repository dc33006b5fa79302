// How the binding (ops.cpp) picks the way a block op runs: WDSR_FAST_CPU_BLOCK_A / _B name one way or `fastest`
// (measure the ways offered at the first call and keep the fastest whose output agrees with the default's); unset,
// the way measured fastest on the path (kernels.h's tables), except where those races have not measured every way
// offered: there the default is measured the same way at the first call (bfloat16 blocks on CPUs with AMX-BF16: the
// AVX512-BF16 kernels against the AMX ones and oneDNN's convolutions).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace wdsr_cpu_binding {

// The ways a block kind runs on one dtype: way i is names[i] (the block's Path enum value i), offered where this CPU
// and build run it.
template <size_t N>
struct BlockWays {
  const char* op;        // "wdsr_b_block"
  const char* block;     // "WDSR-B"
  const char* features;  // "float32" or "bfloat16"
  const char* env;       // "WDSR_FAST_CPU_BLOCK_B"
  std::array<const char*, N> names;
  std::array<bool, N> offered;
};

// Run `way`; or, where `race` is not empty, measure the ways it lists (`way` among them, the reference).
struct BlockChoice {
  size_t way;
  std::vector<size_t> race;
};

// What the first call of a raced block kind measured: the way chosen and, per way raced, its best of three runs and
// its output's largest difference from the reference way's, relative to the reference output's largest value.
struct RaceRecord {
  struct Entry {
    const char* way;
    double ms, difference;
  };
  size_t way;
  const char* chosen;  // its name (names are string literals)
  std::vector<Entry> entries;
};

// Inputs of fewer pixels (N x H x W) run the reference way without racing: their times are mostly the calls'
// fixed costs (packing weights, starting threads), not those of the images the race should choose for.
constexpr int64_t kRacePixels = 64 * 64;

// Two correct bf16 kernels differ by under 1% of the largest output value (each is within 2x torch's own bf16 error
// of float64: tests/test_cpu_backend.py); a broken one by about as much as the values themselves.
constexpr double kAgreement = 0.05;

inline std::mutex& race_mutex() {
  static std::mutex mutex;
  return mutex;
}
// Keyed by "<block> <features>: <ways raced>" ("WDSR-B bfloat16: winograd onednn amx").
inline std::map<std::string, RaceRecord>& race_records() {
  static std::map<std::string, RaceRecord> records;
  return records;
}

// The way `ways.env` names, or `fastest` (race every way offered); unset: `measured` (the Winograd kernel, way 1,
// where that is not offered), raced against the ways of `unmeasured` that are offered.
template <size_t N>
BlockChoice choose_way(const BlockWays<N>& ways, size_t measured, const std::vector<size_t>& unmeasured) {
  const size_t reference = ways.offered[measured] ? measured : 1;
  const char* wanted = std::getenv(ways.env);
  if (wanted == nullptr || *wanted == '\0') {
    std::vector<size_t> race;
    for (size_t i : unmeasured)
      if (ways.offered[i] && i != reference) race.push_back(i);
    if (!race.empty()) race.insert(race.begin(), reference);
    return {reference, race};
  }
  std::vector<size_t> offered;
  for (size_t i = 0; i < N; ++i)
    if (ways.offered[i]) offered.push_back(i);
  const std::string choice(wanted);
  if (choice == "fastest") return {reference, offered};
  std::optional<size_t> match;
  std::string choices;
  for (size_t i : offered) {
    if (choice == ways.names[i]) match = i;
    choices += std::string(ways.names[i]) + ", ";
  }
  TORCH_CHECK_VALUE(match.has_value(), ways.op, ": ", ways.env, "=", choice, " is not a way this CPU and build run ",
                    ways.block, " blocks on ", ways.features, " features; choose one of: ", choices, "fastest");
  return {*match, {}};
}

// run(way) -> the block's output run that way, for an input of `pixels` pixels. Races the ways of choice.race at the
// first call of this block kind and dtype with at least kRacePixels pixels (each run three times, interleaved, best
// of three; a way whose output disagrees with the reference's is left out with a warning), then runs the way chosen.
template <size_t N, typename Run>
at::Tensor run_choice(const BlockWays<N>& ways, const BlockChoice& choice, int64_t pixels, Run&& run) {
  if (choice.race.empty()) return run(choice.way);
  std::string key = std::string(ways.block) + " " + ways.features + ":";
  for (size_t way : choice.race) key += std::string(" ") + ways.names[way];
  std::lock_guard<std::mutex> lock(race_mutex());  // one race at a time; later calls find its record
  if (const auto found = race_records().find(key); found != race_records().end()) return run(found->second.way);
  if (pixels < kRacePixels) return run(choice.way);
  std::vector<at::Tensor> outputs;
  for (size_t way : choice.race) outputs.push_back(run(way));  // also the warm-up
  size_t chosen = 0;
  while (choice.race[chosen] != choice.way) ++chosen;
  const at::Tensor reference = outputs[chosen].to(at::kFloat);
  const double scale = std::max(reference.abs().max().item<double>(), std::numeric_limits<double>::min());
  std::vector<double> best(choice.race.size(), std::numeric_limits<double>::infinity());
  for (int round = 0; round < 3; ++round)
    for (size_t i = 0; i < choice.race.size(); ++i) {
      const auto start = std::chrono::steady_clock::now();
      run(choice.race[i]);
      best[i] = std::min(best[i], std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                                      .count());
    }
  RaceRecord record;
  for (size_t i = 0; i < choice.race.size(); ++i) {
    const char* name = ways.names[choice.race[i]];
    const double difference = (outputs[i].to(at::kFloat) - reference).abs().max().item<double>() / scale;
    record.entries.push_back({name, best[i], difference});
    if (difference > kAgreement) {
      TORCH_WARN(ways.block, " blocks on ", ways.features, " features: the ", name,
                 " kernel's output differs from the ", ways.names[choice.way], " kernel's by ", difference,
                 " of its largest value; it is not used");
    } else if (best[i] < best[chosen]) {
      chosen = i;
    }
  }
  record.way = choice.race[chosen];
  record.chosen = ways.names[record.way];
  race_records().emplace(key, std::move(record));
  return outputs[chosen];
}

}  // namespace wdsr_cpu_binding
