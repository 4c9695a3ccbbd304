// engine/results.hpp - what one run produces, and one row of the report.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "heap.hpp"
#include "workloads.hpp"

namespace safemap_bench {

// One repeat of one (map, workload, threads) cell.
struct repeat_result {
  double wall_ns = 0;  // from the start latch to the last thread's end
  std::uint64_t ops = 0;
  std::uint64_t checksum = 0;
  std::vector<thread_ops> threads;
  std::vector<std::uint64_t> samples;  // sampled op latencies, ns
  heap_totals_t heap;                  // heap calls during the timed phase, every thread
};

// One row of the CSV: a (map, workload, threads) cell summarized over its repeats.
struct cell_result {
  std::string map;
  std::string family;  // safemap, peer, go
  std::string workload;
  std::string key_type;  // u64, string
  std::string dist;      // uniform, zipf, - (not a mix)
  unsigned threads = 0;
  std::size_t keys = 0;  // key count of the mixes; the fixed size of other workloads
  unsigned repeats = 0;
  std::uint64_t ops = 0;   // of the median repeat
  double ns_per_op = NAN;  // median over repeats (wall time / total ops)
  double ns_per_op_min = NAN;
  double ns_per_op_max = NAN;
  double mops = NAN;  // million ops per second, from the median
  double allocs_per_op = NAN;
  double bytes_per_op = NAN;
  double mem_per_entry = NAN;  // bytes, the map filled with --keys u64 keys
  double p50_ns = NAN;
  double p99_ns = NAN;
  double p999_ns = NAN;
  std::size_t latency_samples = 0;
  std::uint64_t checksum = 0;             // of the median repeat
  std::optional<std::uint64_t> expected;  // the checksum it must have, if deterministic
  std::string check;                      // ok, MISMATCH, n/a
  std::string note;                       // e.g. skipped: why

  bool skipped() const noexcept { return std::isnan(ns_per_op); }
};

// Summarizes the repeats of one cell (fills the measurement fields of `row`).
void summarize_repeats(cell_result& row, const std::vector<repeat_result>& repeats,
                       const workload_plan& plan);

}  // namespace safemap_bench
