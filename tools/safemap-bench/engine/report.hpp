// engine/report.hpp - turning rows of results into what a person reads: the table on stdout,
// CSV and JSON files, gnuplot PNGs, a recommendation per workload and the advice table.
//
// Nothing here is hard-coded about which map is good at what: every recommendation is
// computed from the rows given, so a run on another machine can recommend other maps.
//
// Ratios are speedups: best peer ns/op divided by the map's ns/op (> 1: the map is faster).
// "Peers" are the C++ maps safemap is compared with; Go's maps (imported rows, family "go")
// are shown but never chosen as the peer to beat: a C++ program cannot use them.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "results.hpp"

namespace safemap_bench {

struct machine_info {
  unsigned cores = 0;
  std::string cpu_model;
  std::string compiler;
  std::string build_type;
  std::string kernel;
  std::string date;  // UTC, ISO 8601
  std::uint64_t clock_overhead_ns = 0;
  double load_average = 0;  // 1-minute load average when the run started (/proc/loadavg)
};

// The 1-minute load average (0 when /proc/loadavg cannot be read).
double load_average();

// Reads /proc/cpuinfo, uname and the clock; build_type is the CMake build type.
machine_info probe_machine(const std::string& build_type);

// The steady_clock cost of one timed region (median of back-to-back reads), subtracted from
// latency samples.
std::uint64_t measure_clock_overhead_ns();

struct map_column {
  std::string name;
  std::string label;
  std::string family;  // safemap, peer, go
};

struct report {
  machine_info machine;
  std::string settings;             // one line: duration/ops, repeats, keys, dists
  std::vector<map_column> columns;  // in table order
  std::vector<cell_result> rows;
  std::vector<std::string> notes;                // maps skipped at build time, etc.
  std::map<std::string, std::string> summaries;  // workload -> one line (plot titles)
};

struct recommendation {
  std::string workload;
  unsigned threads = 0;
  std::string map;  // the fastest safemap map
  double ns_per_op = 0;
  std::string best_peer;  // empty when no peer ran
  double best_peer_ns = 0;
  double vs_best_peer = 0;            // best_peer_ns / ns_per_op
  std::optional<double> vs_baseline;  // std+shared_mutex ns / ns_per_op
  std::string text;                   // the sentence printed
};

struct advice_row {
  std::string use;  // workload class
  // The map to choose: the best geometric mean of (fastest ns/op in the row / its ns/op) over
  // the class's rows, among safemap's maps and the peers alike.
  std::string fastest;
  std::string fastest_family;  // "safemap" or "peer"
  // safemap's best map, and what it gives up: its geometric-mean speed relative to `fastest`
  // over the rows both ran (1 when it is the fastest; 0.32 means 0.32x the fastest's speed).
  std::string map;
  double vs_fastest = 1;
  double geomean_vs_best_peer = 0;
  std::optional<double> geomean_vs_baseline;
  std::string runner_up;  // safemap's second best
  double runner_up_vs_best_peer = 0;
  unsigned rows = 0;  // (workload, threads) rows it summarizes
};

inline constexpr const char* baseline_map = "std+shared_mutex";

// Per (workload, threads) row where a safemap map ran: the fastest safemap map and how it
// compares with the best peer and with std+shared_mutex.
std::vector<recommendation> recommend(const report& r);

// Per workload class, over the rows with 2 or more threads (all rows when no run used 2
// threads): the fastest map, peer or safemap, and safemap's best map with what it gives up
// against that one.
std::vector<advice_row> advise(const report& r, const std::map<std::string, std::string>& classes);

std::string format_header(const report& r);
std::string format_table(const report& r);
std::string format_recommendations(const std::vector<recommendation>& recs);
std::string format_advice(const std::vector<advice_row>& advice);

// When a map that crosses processes ran (family "remote": RedisMap), one paragraph saying when
// it is the point and what it costs: its geometric-mean ns/op over the rows it ran against the
// fastest safemap map of each row. Empty when no remote map ran.
std::string format_remote_advice(const report& r);

// A number of nanoseconds in at most 5 characters: 3.21, 45.6, 789, 12.3k, 4.56M.
std::string format_ns(double ns);

// CSV: one header line (csv_columns), one line per row; RFC 4180 quoting where needed.
extern const char* const csv_header;
void write_csv(std::ostream& out, const std::vector<cell_result>& rows);
// Reads rows written by write_csv (or by the Go program). Throws std::runtime_error naming
// the line of a malformed row or a header that is not csv_header.
std::vector<cell_result> read_csv(std::istream& in);

void write_json(std::ostream& out, const report& r, const std::vector<recommendation>& recs,
                const std::vector<advice_row>& advice);

// Runs argv[0] (looked up in PATH) with these arguments, without a shell, so no character of
// a path or name can be taken as shell syntax; stderr goes to `stderr_path` when not empty.
// Returns the exit status (0: success), or -1 when it could not be started.
int run_program(const std::vector<std::string>& argv, const std::string& stderr_path = {});

// Writes gnuplot data and scripts under dir/img and runs gnuplot when it is installed: one PNG
// per workload (throughput against threads; latency percentiles at the given thread count).
// Returns the PNG files written; `message` says why none were (gnuplot missing, ...).
std::vector<std::string> write_plots(const report& r, const std::string& dir,
                                     unsigned latency_threads, std::string& message);

}  // namespace safemap_bench
