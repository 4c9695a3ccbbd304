// safemap-bench - what safemap's concurrent maps do on this machine, against the peers a C++
// programmer would otherwise use. Method and results: docs/benchmarks.md.
//
//   safemap-bench                      every map, Go's sync.Map suite + the 50/50 mix
//   safemap-bench --quick              the same, shorter (under 30 s on 2 cores)
//   safemap-bench --all                every workload, both key distributions, longer runs
//   safemap-bench --list               the maps and workloads this build has
//
// Runs are interleaved (for each workload and thread count, repeat 1 of every map, then
// repeat 2, ...), so a burst of noise from another process spreads over all maps instead of
// landing on one; ratios from the same run are what to compare.
#include <fmt/format.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "engine/registry.hpp"
#include "engine/report.hpp"
#include "engine/results.hpp"
#include "engine/workloads.hpp"

#ifndef SAFEMAP_BENCH_BUILD_TYPE
#define SAFEMAP_BENCH_BUILD_TYPE "unknown"
#endif

namespace safemap_bench {
void register_locked_map(map_registry&);
void register_sharded_map(map_registry&);
void register_sync_map(map_registry&);
void register_trie_map(map_registry&);
void register_cow_map(map_registry&);
void register_std_maps(map_registry&);
void register_tbb(map_registry&);
void register_cuckoo(map_registry&);
void register_flat_maps(map_registry&);
void register_lfht(map_registry&);
void register_redis(map_registry&, const std::string& address);  // maps_redis.cpp
}  // namespace safemap_bench

namespace {

using namespace safemap_bench;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "250ms", "1.5s", "2m", "80" (milliseconds). Throws std::invalid_argument with a message
// meant for the command line.
nanoseconds parse_duration(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return std::invalid_argument(fmt::format(
        "--duration '{}': {} (a positive number with an optional unit ms, s, m or us: 60ms, "
        "1.5s, 2m)",
        text, why));
  };
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(text, &used);
  } catch (const std::exception&) {
    throw bad("not a duration");
  }
  const std::string unit = text.substr(used);
  double ms = x;
  if (unit == "s")
    ms = x * 1e3;
  else if (unit == "m" || unit == "min")
    ms = x * 60e3;
  else if (unit == "us")
    ms = x / 1e3;
  else if (!unit.empty() && unit != "ms")
    throw bad("unknown unit '" + unit + "'");
  if (!(ms > 0)) throw bad("not positive");
  if (ms > 24 * 3600e3) throw bad("longer than a day");
  return nanoseconds(static_cast<std::int64_t>(ms * 1e6));
}

// The most threads one run may start: far past any core count this tool is meant for, low
// enough that a typo (--threads 100000) is an error instead of a machine brought to its knees.
constexpr unsigned max_threads = 1024;

// CLI check of one --threads value: a whole number from 1 to max_threads, said plainly.
std::string check_thread_count(const std::string& text) {
  unsigned v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size() || v < 1 || v > max_threads) {
    return fmt::format("thread count '{}' is not a whole number from 1 to {}", text, max_threads);
  }
  return {};
}

// Creates the output directory (and its parents) and proves a file can be written there,
// before any run: a typo in --out must not cost a whole benchmark. Returns the problem, or "".
std::string prepare_out_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return fmt::format("--out '{}': cannot create the directory: {}", dir.string(), ec.message());
  if (!std::filesystem::is_directory(dir, ec)) {
    return fmt::format("--out '{}': not a directory", dir.string());
  }
  const std::filesystem::path probe = dir / fmt::format(".safemap-bench-probe-{}", ::getpid());
  bool written = false;
  {
    std::ofstream f(probe);
    written = f && (f << "probe\n") && f.flush();
  }
  std::filesystem::remove(probe, ec);
  if (!written) return fmt::format("--out '{}': cannot write a file there", dir.string());
  return {};
}

std::string format_elapsed(double seconds) {
  const auto s = static_cast<long>(seconds + 0.5);
  return s >= 60 ? fmt::format("{}m{:02}s", s / 60, s % 60) : fmt::format("{}s", s);
}

std::vector<const map_entry*> select_maps(const std::vector<std::string>& names) {
  const auto& reg = registry();
  std::vector<const map_entry*> out;
  auto add = [&](const map_entry& m) {
    if (std::find(out.begin(), out.end(), &m) == out.end()) out.push_back(&m);
  };
  for (const std::string& n : names) {
    const std::string l = lower(n);
    if (l == "none") continue;  // only --import rows: re-plot or re-report a CSV
    bool found = false;
    for (const map_entry& m : reg.maps) {
      if (l == "all" || (l == "safemap" && m.family == "safemap") ||
          (l == "peers" && m.family == "peer") || l == lower(m.name) || l == lower(m.label)) {
        add(m);
        found = true;
      }
    }
    if (found || l == "all" || l == "safemap" || l == "peers") continue;
    for (const missing_map& m : reg.missing) {
      if (l == lower(m.name)) {
        std::cerr << fmt::format("safemap-bench: {} is not in this build: {}\n", m.name, m.why);
        found = true;
      }
    }
    if (!found) throw std::invalid_argument(fmt::format("unknown map '{}' (see --list)", n));
  }
  // Registry order, so columns are stable.
  std::vector<const map_entry*> ordered;
  for (const map_entry& m : reg.maps) {
    if (std::find(out.begin(), out.end(), &m) != out.end()) ordered.push_back(&m);
  }
  return ordered;
}

void print_list() {
  const auto& reg = registry();
  std::cout << "Maps in this build (--maps NAME, or all, safemap, peers):\n";
  for (const map_entry& m : reg.maps) {
    std::cout << fmt::format("  {:<20} {:<8} {}\n", m.name, m.family, m.description);
  }
  for (const missing_map& m : reg.missing) {
    std::cout << fmt::format("  {:<20} {:<8} not built: {}\n", m.name, "-", m.why);
  }
  std::cout << "\nWorkloads (--workloads NAME, or go-suite, mixes, extra, all; mixes take "
               "--dist):\n";
  const key_dist both[] = {key_dist::uniform, key_dist::zipf};
  for (const workload& w : all_workloads(both)) {
    std::cout << fmt::format("  {:<28} {:<9} {}{}\n", w.name, w.group, w.summary,
                             w.det == determinism::always ? ""
                             : w.det == determinism::single_thread
                                 ? " [checksum: 1 thread only]"
                                 : " [checksum: timing-dependent]");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned nproc = std::max(1U, std::thread::hardware_concurrency());
  std::vector<unsigned> default_threads;
  for (unsigned t = 1; t <= nproc; ++t) default_threads.push_back(t);
  default_threads.push_back(2 * nproc);  // oversubscribed

  CLI::App app{
      "safemap-bench: safemap's concurrent maps against the maps C++ programs use instead.\n"
      "Default: every map, Go's sync.Map suite and the 50/50 mix, threads 1..nproc and 2*nproc."};
  std::vector<std::string> map_names{"all"};
  std::vector<std::string> workload_names{"go-suite", "mix-50-50"};
  std::vector<unsigned> threads;
  std::size_t keys = 1 << 16;
  std::vector<std::string> dist_names{"uniform"};
  double zipf_s = 0.99;
  std::string duration_text = "60ms";
  std::uint64_t ops = 0;
  unsigned repeat = 3;
  std::string format = "table";
  std::string out_dir = "bench-results";
  std::vector<std::string> imports;
  bool quick = false, all = false, list = false, no_plots = false, verbose = false;
  bool quiet = false;

  app.add_option("--maps", map_names,
                 "maps: names (see --list), all, safemap, peers; none with --import re-reports a "
                 "CSV")
      ->delimiter(',');
  app.add_option("--workloads", workload_names,
                 "workloads: names (see --list), go-suite, mixes, extra, all")
      ->delimiter(',');
  auto* threads_opt =
      app.add_option("--threads", threads,
                     fmt::format("thread counts (default 1..{} and {})", nproc, 2 * nproc))
          ->delimiter(',')
          ->check(CLI::Validator([](std::string& v) { return check_thread_count(v); },
                                 fmt::format("1..{}", max_threads), "thread count"));
  app.add_option("--keys", keys, "keys in the mixes and the memory measurement")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  auto* dist_opt = app.add_option("--dist", dist_names, "key choice of the mixes: uniform, zipf")
                       ->delimiter(',')
                       ->check(CLI::IsMember({"uniform", "zipf"}));
  app.add_option("--zipf-s", zipf_s, "Zipf exponent")->check(CLI::PositiveNumber);
  auto* duration_opt =
      app.add_option("--duration", duration_text, "time per run, e.g. 60ms, 1s (default 60ms)")
          ->check(CLI::Validator(
              [](std::string& v) {
                try {
                  (void)parse_duration(v);
                  return std::string();
                } catch (const std::invalid_argument& e) {
                  return std::string(e.what());
                }
              },
              "DURATION", "duration"));
  app.add_option("--ops", ops,
                 "ops per thread per run instead of a duration (same ops for "
                 "every map: checksums of deterministic workloads are equal)");
  auto* repeat_opt = app.add_option("--repeat", repeat, "runs per cell; the median is reported")
                         ->check(CLI::Range(1U, 1000U));
  app.add_option("--format", format, "stdout: table, csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}));
  app.add_option("--out", out_dir, "directory for CSV, JSON, report and PNGs");
  app.add_option("--import", imports, "add rows from a CSV in this tool's schema (Go results)");
  std::string go_program;
  app.add_option("--go", go_program,
                 "run this build of tools/safemap-bench/go with the same settings and add its "
                 "rows (scripts/bench --with-go does it)");
  app.add_flag("--quick", quick, "short runs, one repeat, threads 1 and nproc (< 30 s)");
  app.add_flag("--all", all, "every map and workload, both distributions, longer runs");
  app.add_flag("--list", list, "list the maps and workloads of this build");
  app.add_flag("--no-plots", no_plots, "do not run gnuplot");
  app.add_flag("-v,--verbose", verbose, "print every result (with its checksum) as it comes");
  app.add_flag("-q,--quiet", quiet, "no progress on stderr");
  std::string redis_address;
  app.add_option("--redis", redis_address,
                 "host:port (or unix socket path) of a Redis server: adds RedisMap (column redis)");
  CLI11_PARSE(app, argc, argv);

  map_registry& reg = registry();
  register_locked_map(reg);
  register_sharded_map(reg);
  register_sync_map(reg);
  register_trie_map(reg);
  register_cow_map(reg);
  register_std_maps(reg);
  register_tbb(reg);
  register_cuckoo(reg);
  register_flat_maps(reg);
  register_lfht(reg);
  if (!redis_address.empty()) {
    try {
      register_redis(reg, redis_address);
    } catch (const std::exception& e) {
      std::cerr << "safemap-bench: --redis " << redis_address << ": " << e.what() << "\n";
      return 2;
    }
  }
  if (list) {
    print_list();
    return 0;
  }

  // Presets; explicit options win.
  if (all) {
    if (app.count("--maps") == 0) map_names = {"all"};
    if (app.count("--workloads") == 0) workload_names = {"all"};
    if (dist_opt->count() == 0) dist_names = {"uniform", "zipf"};
    if (duration_opt->count() == 0) duration_text = "250ms";
    if (repeat_opt->count() == 0) repeat = 5;
  } else if (quick) {
    if (duration_opt->count() == 0) duration_text = "12ms";
    if (repeat_opt->count() == 0) repeat = 1;
    if (threads_opt->count() == 0)
      threads = nproc > 1 ? std::vector<unsigned>{1, nproc} : std::vector<unsigned>{1, 2};
  }
  if (threads.empty()) threads = default_threads;
  std::sort(threads.begin(), threads.end());
  threads.erase(std::unique(threads.begin(), threads.end()), threads.end());

  std::vector<key_dist> dists;
  for (const auto& d : dist_names) {
    const key_dist k = d == "zipf" ? key_dist::zipf : key_dist::uniform;
    if (std::find(dists.begin(), dists.end(), k) == dists.end()) dists.push_back(k);
  }

  std::vector<const map_entry*> maps;
  std::vector<workload> workloads;
  run_options ropt;
  try {
    maps = select_maps(map_names);
    workloads = select_workloads(workload_names, dists);
    ropt.duration = parse_duration(duration_text);
  } catch (const std::exception& e) {
    std::cerr << "safemap-bench: " << e.what() << "\n";
    return 2;
  }
  ropt.ops_per_thread = ops;
  const bool fixed = ops > 0;
  if (const std::string problem = prepare_out_dir(out_dir); !problem.empty()) {
    std::cerr << "safemap-bench: " << problem << "\n";
    return 2;
  }
  if (threads.back() > 4 * nproc) {
    std::cerr << fmt::format(
        "safemap-bench: warning: --threads {} on {} core{}: that many threads mostly measure "
        "the scheduler (time slices, preemption inside critical sections), not the maps\n",
        threads.back(), nproc, nproc == 1 ? "" : "s");
  }

  report rep;
  rep.machine = probe_machine(SAFEMAP_BENCH_BUILD_TYPE);
  ropt.clock_overhead_ns = rep.machine.clock_overhead_ns;
  std::string dist_text;
  for (auto d : dists) dist_text += (dist_text.empty() ? "" : ",") + std::string(to_string(d));
  std::string thread_text;
  for (auto t : threads) thread_text += (thread_text.empty() ? "" : ",") + std::to_string(t);
  rep.settings = fmt::format(
      "{} per run, median of {}, threads {}, {} keys in mixes ({}{}), latency: 1 op in 64+ "
      "timed",
      fixed ? fmt::format("{} ops per thread", ops)
            : fmt::format("{} ms", duration_cast<milliseconds>(ropt.duration).count()),
      repeat, thread_text, keys, dist_text,
      std::find(dists.begin(), dists.end(), key_dist::zipf) != dists.end()
          ? fmt::format(", zipf s={}", zipf_s)
          : "");
  for (const auto& m : reg.missing) rep.notes.push_back(fmt::format("{}: {}", m.name, m.why));
  if (!heap_counting_active())
    rep.notes.push_back("heap counting inactive: allocs/op not measured");
  for (const map_entry* m : maps) rep.columns.push_back({m->name, m->label, m->family});
  {
    const key_dist both[] = {key_dist::uniform, key_dist::zipf};
    for (const auto& w : all_workloads(both)) rep.summaries[w.name] = w.summary;
  }

  const bool table = format == "table";
  std::ostream& info = table ? std::cout : std::cerr;
  info << format_header(rep) << std::flush;

  // Memory per entry, once per map.
  std::map<std::string, double> memory;
  for (const map_entry* m : maps) memory[m->name] = m->memory_per_entry(keys);

  // The runs.
  struct cell {
    const workload* w;
    unsigned threads;
    const map_entry* m;
    std::vector<repeat_result> repeats;
    std::optional<std::string> skip;
  };
  std::size_t total_runs = 0;
  for (const auto& w : workloads) {
    for (unsigned t : threads) {
      for (const map_entry* m : maps) {
        if (!m->unsupported(w, t, fixed)) total_runs += repeat;
      }
    }
  }
  const auto started = steady_clock::now();
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  auto last_progress = started;
  std::size_t done_runs = 0;
  plan_options popt;
  popt.keys = keys;
  popt.zipf_s = zipf_s;

  for (const auto& w : workloads) {
    const workload_plan plan = make_plan(w, popt);
    for (unsigned t : threads) {
      std::vector<cell> cells;
      for (const map_entry* m : maps) cells.push_back({&w, t, m, {}, m->unsupported(w, t, fixed)});
      for (unsigned rpt = 0; rpt < repeat; ++rpt) {
        for (cell& c : cells) {
          if (c.skip) continue;
          const auto now = steady_clock::now();
          const double elapsed = std::chrono::duration<double>(now - started).count();
          if (!quiet && (tty || now - last_progress >= std::chrono::seconds(2) || done_runs == 0)) {
            const double left = done_runs == 0 ? 0
                                               : elapsed / static_cast<double>(done_runs) *
                                                     static_cast<double>(total_runs - done_runs);
            std::cerr << fmt::format("{}[{:>4}/{}] {} elapsed{}  {} {} {} thread{}{}",
                                     tty ? "\r" : "", done_runs + 1, total_runs,
                                     format_elapsed(elapsed),
                                     done_runs == 0 ? "" : ", ~" + format_elapsed(left) + " left",
                                     w.name, c.m->name, t, t == 1 ? "" : "s", tty ? "\x1b[K" : "\n")
                      << std::flush;
            last_progress = now;
          }
          c.repeats.push_back(c.m->run(w, plan, t, ropt));
          ++done_runs;
        }
      }
      for (cell& c : cells) {
        cell_result row;
        row.map = c.m->name;
        row.family = c.m->family;
        row.workload = w.name;
        row.key_type = std::string(w.key_type());
        row.dist = w.kind == workload_kind::mix ? std::string(to_string(w.dist)) : "-";
        row.threads = t;
        row.keys = plan.keys != 0 ? plan.keys
                   : w.kind == workload_kind::range || w.kind == workload_kind::adversarial_delete
                       ? go_map_size
                       : 0;
        row.mem_per_entry = memory[c.m->name];
        if (c.skip) {
          row.check = "n/a";
          row.note = "skipped: " + *c.skip;
        } else {
          summarize_repeats(row, c.repeats, plan);
          if (w.kind == workload_kind::serialize_json &&
              c.m->description.find("snapshot()") != std::string::npos) {
            row.note = "JSON through snapshot()";
          }
        }
        if (verbose) {
          std::cerr << fmt::format("{}{:<18} {:<26} {:>2} thr  {:>7} ns/op  checksum {} ({})\n",
                                   tty ? "\r\x1b[K" : "", row.map, row.workload, row.threads,
                                   format_ns(row.ns_per_op), row.checksum,
                                   row.skipped() ? row.note : row.check);
        }
        rep.rows.push_back(std::move(row));
      }
    }
  }
  if (!quiet) {
    std::cerr << fmt::format(
        "{}{} runs in {}\n", tty ? "\r\x1b[K" : "", done_runs,
        format_elapsed(std::chrono::duration<double>(steady_clock::now() - started).count()));
  }

  // The Go program, with the settings resolved above.
  if (!go_program.empty()) {
    std::string names;
    for (const auto& w : workloads) names += (names.empty() ? "" : ",") + w.name;
    const std::string go_csv = (std::filesystem::path(out_dir) / "go.csv").string();
    std::vector<std::string> go_argv = {go_program,
                                        "-workloads",
                                        names,
                                        "-threads",
                                        thread_text,
                                        "-duration",
                                        fmt::format("{}ns", ropt.duration.count()),
                                        "-ops",
                                        std::to_string(ops),
                                        "-repeat",
                                        std::to_string(repeat),
                                        "-keys",
                                        std::to_string(keys),
                                        "-dist",
                                        dist_text,
                                        "-zipf-s",
                                        fmt::format("{}", zipf_s),
                                        "-out",
                                        go_csv};
    if (quiet) go_argv.push_back("-q");
    if (!quiet) {
      std::string shown;
      for (const auto& a : go_argv) shown += (shown.empty() ? "" : " ") + a;
      std::cerr << "running the Go program: " << shown << "\n";
    }
    if (run_program(go_argv) != 0) {
      std::cerr << "safemap-bench: the Go program failed; its rows are left out\n";
    } else {
      imports.push_back(go_csv);
    }
  }

  // Imported rows (Go).
  for (const std::string& path : imports) {
    std::ifstream in(path);
    if (!in) {
      std::cerr << "safemap-bench: cannot read " << path << "\n";
      return 2;
    }
    try {
      for (auto& row : read_csv(in)) {
        const bool known = std::any_of(rep.columns.begin(), rep.columns.end(),
                                       [&](const map_column& c) { return c.name == row.map; });
        if (!known) {
          static const std::map<std::string, std::string> go_labels = {
              {"go:sync.Map", "go:sync"}, {"go:RWMutex", "go:rwmtx"}, {"go:map", "go:map"}};
          const auto it = go_labels.find(row.map);
          std::string label = it == go_labels.end() ? row.map : it->second;
          for (const map_entry& m : reg.maps) {
            if (m.name == row.map) label = m.label;  // a re-reported CSV keeps the short labels
          }
          rep.columns.push_back({row.map, label, row.family});
        }
        rep.rows.push_back(std::move(row));
      }
    } catch (const std::exception& e) {
      std::cerr << "safemap-bench: " << path << ": " << e.what() << "\n";
      return 2;
    }
  }

  std::map<std::string, std::string> classes;
  {
    const key_dist both[] = {key_dist::uniform, key_dist::zipf};
    for (const auto& w : all_workloads(both)) classes[w.name] = std::string(to_string(w.klass));
  }
  const auto recs = recommend(rep);
  const auto advice = advise(rep, classes);
  std::string text = format_table(rep) + "\n" + format_recommendations(recs) + "\n" +
                     format_advice(advice) + format_remote_advice(rep);
  const double load_after = load_average();
  if (std::max(rep.machine.load_average, load_after) > 0.5 * rep.machine.cores) {
    text += fmt::format(
        "\nwarning: load average {:.1f} at the start, {:.1f} at the end, on {} cores: other "
        "processes shared the CPUs, so absolute numbers are inflated and noisy; compare maps "
        "within this run, or rerun on an idle machine\n",
        rep.machine.load_average, load_after, rep.machine.cores);
  }

  // Files.
  std::string plot_message;
  std::vector<std::string> pngs;
  if (const std::string problem = prepare_out_dir(out_dir); !problem.empty()) {
    std::cerr << "safemap-bench: " << problem << "\n";  // removed or made read-only meanwhile
    return 2;
  }
  {
    std::ofstream csv(out_dir + "/safemap-bench.csv");
    write_csv(csv, rep.rows);
    std::ofstream json(out_dir + "/safemap-bench.json");
    write_json(json, rep, recs, advice);
    std::ofstream txt(out_dir + "/safemap-bench.txt");
    txt << format_header(rep) << "\n" << text;
  }
  if (!no_plots) pngs = write_plots(rep, out_dir, nproc, plot_message);

  if (table) {
    std::cout << "\n" << text;
  } else if (format == "csv") {
    write_csv(std::cout, rep.rows);
  } else {
    write_json(std::cout, rep, recs, advice);
  }
  info << fmt::format(
      "\nwritten: {0}/safemap-bench.csv, {0}/safemap-bench.json, "
      "{0}/safemap-bench.txt{1}\n",
      out_dir, pngs.empty() ? "" : fmt::format(", {} PNGs in {}/img", pngs.size(), out_dir));
  if (!plot_message.empty()) info << "plots: " << plot_message << "\n";
  const bool mismatch = std::any_of(rep.rows.begin(), rep.rows.end(),
                                    [](const cell_result& r) { return r.check == "MISMATCH"; });
  return mismatch ? 1 : 0;
}
