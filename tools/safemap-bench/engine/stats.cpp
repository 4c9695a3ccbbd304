#include "stats.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace safemap_bench {

summary summarize(std::vector<double> values) {
  if (values.empty()) throw std::invalid_argument("summarize: no values");
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  summary s;
  s.min = values.front();
  s.max = values.back();
  s.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return s;
}

std::uint64_t percentile_sorted(std::span<const std::uint64_t> sorted, double p) noexcept {
  const double n = static_cast<double>(sorted.size());
  // The nearest rank, computed in a way that is exact for p = 50, 99, 99.9 and n up to 2^53.
  auto rank = static_cast<std::size_t>(std::ceil(p * n / 100.0 - 1e-9));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

latency_summary latency_percentiles(std::vector<std::uint64_t> samples) {
  latency_summary s;
  s.samples = samples.size();
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.p50 = percentile_sorted(samples, 50);
  s.p99 = percentile_sorted(samples, 99);
  s.p999 = percentile_sorted(samples, 99.9);
  s.max = samples.back();
  return s;
}

sample_reservoir::sample_reservoir(std::size_t capacity, std::uint64_t interval)
    : data_(std::max<std::size_t>(2, capacity & ~std::size_t{1})), interval_(interval) {
  if (interval == 0 || (interval & (interval - 1)) != 0) {
    throw std::invalid_argument("sample_reservoir: the interval must be a power of two");
  }
}

void sample_reservoir::add(std::uint64_t ns) noexcept {
  if (size_ == data_.size()) {
    // Keep the samples of operations at multiples of 2 * interval: positions 0, 2, 4, ...
    for (std::size_t i = 0; i < size_ / 2; ++i) data_[i] = data_[2 * i];
    size_ /= 2;
    interval_ *= 2;
    // This operation was chosen at the old interval; keep it only if the new one picks it too.
    // Its index is size_before * old interval, i.e. a multiple of the new interval: it is.
  }
  data_[size_++] = ns;
}

std::uint64_t periodic_sum(std::span<const std::uint64_t> prefix, std::uint64_t start,
                           std::uint64_t n) noexcept {
  const std::uint64_t period = prefix.size() - 1;
  const std::uint64_t whole = prefix[period];
  // sum over [0, x) of g(j mod P)
  // (exact modulo 2^64, which is all a wrapping checksum needs)
  auto upto = [&](std::uint64_t x) { return (x / period) * whole + prefix[x % period]; };
  return upto(start + n) - upto(start);
}

}  // namespace safemap_bench
