// engine/stats.hpp - the statistics safemap-bench reports.
//
//  - Repeats are summarized by median, min and max (the median of an even count is the mean of
//    the two middle values). The median, not the mean: on a shared machine one repeat that
//    lost its core to another process should not move the result.
//  - Latency percentiles use the nearest-rank definition: the p-th percentile of n sorted
//    samples is the sample of rank ceil(p / 100 * n) (1-based). It is always a measured value,
//    never an interpolation.
//  - Latency is sampled, not measured for every operation: a thread times one operation every
//    `interval` operations (64 at first). Its reservoir has a fixed capacity allocated before
//    the clock starts; when it fills, every other sample is dropped and the interval doubles,
//    so the samples stay evenly spread over the whole run however long it lasts, and the timed
//    loop never allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace safemap_bench {

struct summary {
  double median = 0;
  double min = 0;
  double max = 0;
};

// Median, min and max of values (not empty).
summary summarize(std::vector<double> values);

// Nearest-rank percentile of sorted values (not empty); p in (0, 100].
std::uint64_t percentile_sorted(std::span<const std::uint64_t> sorted, double p) noexcept;

struct latency_summary {
  std::size_t samples = 0;
  std::uint64_t p50 = 0;
  std::uint64_t p99 = 0;
  std::uint64_t p999 = 0;
  std::uint64_t max = 0;
};

// Percentiles of unsorted samples (all zero when there are none).
latency_summary latency_percentiles(std::vector<std::uint64_t> samples);

// The per-thread latency reservoir described at the top of this file.
class sample_reservoir {
 public:
  explicit sample_reservoir(std::size_t capacity = 1 << 14, std::uint64_t interval = 64);

  // Whether the operation with this 0-based per-thread index is to be timed.
  bool wants(std::uint64_t op_index) const noexcept { return (op_index & (interval_ - 1)) == 0; }
  // Records the latency of a timed operation. Never allocates.
  void add(std::uint64_t ns) noexcept;

  std::uint64_t interval() const noexcept { return interval_; }
  std::span<const std::uint64_t> samples() const noexcept { return {data_.data(), size_}; }

 private:
  std::vector<std::uint64_t> data_;  // capacity fixed at construction (even, >= 2)
  std::size_t size_ = 0;
  std::uint64_t interval_;  // a power of two
};

// Sum of g(j mod P) for j in [start, start + n), where prefix[j] = g(0) + ... + g(j - 1) and
// P = prefix.size() - 1. Wraps modulo 2^64 like the checksums it predicts.
std::uint64_t periodic_sum(std::span<const std::uint64_t> prefix, std::uint64_t start,
                           std::uint64_t n) noexcept;

}  // namespace safemap_bench
