#include "results.hpp"

#include <algorithm>
#include <numeric>

#include "stats.hpp"

namespace safemap_bench {

void summarize_repeats(cell_result& row, const std::vector<repeat_result>& repeats,
                       const workload_plan& plan) {
  row.repeats = static_cast<unsigned>(repeats.size());
  if (repeats.empty()) return;
  std::vector<double> ns;
  std::uint64_t total_ops = 0;
  double allocs = 0;
  double bytes = 0;
  std::vector<std::uint64_t> samples;
  for (const repeat_result& r : repeats) {
    ns.push_back(r.ops == 0 ? NAN : r.wall_ns / static_cast<double>(r.ops));
    total_ops += r.ops;
    allocs += static_cast<double>(r.heap.allocations);
    bytes += static_cast<double>(r.heap.bytes);
    samples.insert(samples.end(), r.samples.begin(), r.samples.end());
  }
  const summary s = summarize(ns);
  row.ns_per_op = s.median;
  row.ns_per_op_min = s.min;
  row.ns_per_op_max = s.max;
  row.mops = 1e3 / s.median;
  if (total_ops > 0) {
    row.allocs_per_op = allocs / static_cast<double>(total_ops);
    row.bytes_per_op = bytes / static_cast<double>(total_ops);
  }
  const latency_summary lat = latency_percentiles(std::move(samples));
  row.latency_samples = lat.samples;
  if (lat.samples > 0) {
    row.p50_ns = static_cast<double>(lat.p50);
    row.p99_ns = static_cast<double>(lat.p99);
    row.p999_ns = static_cast<double>(lat.p999);
  }

  // The repeat that gave the median (the lower middle one for an even count).
  std::vector<std::size_t> order(repeats.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return ns[a] < ns[b]; });
  const repeat_result& median = repeats[order[(order.size() - 1) / 2]];
  row.ops = median.ops;
  row.checksum = median.checksum;
  row.expected = expected_checksum(plan, median.threads);

  row.check = "n/a";
  if (row.expected) {
    row.check = "ok";
    for (const repeat_result& r : repeats) {
      const auto e = expected_checksum(plan, r.threads);
      if (!e || *e != r.checksum) row.check = "MISMATCH";
    }
  }
}

}  // namespace safemap_bench
