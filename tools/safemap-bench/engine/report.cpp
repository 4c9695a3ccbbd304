#include "report.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <istream>
#include <limits>
#include <ostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace safemap_bench {

// ---- machine -----------------------------------------------------------------------------

std::uint64_t measure_clock_overhead_ns() {
  std::vector<std::uint64_t> d(10001);
  for (auto& x : d) {
    const auto a = std::chrono::steady_clock::now();
    const auto b = std::chrono::steady_clock::now();
    x = static_cast<std::uint64_t>(std::chrono::nanoseconds(b - a).count());
  }
  std::nth_element(d.begin(), d.begin() + d.size() / 2, d.end());
  return d[d.size() / 2];
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double x = 0;
  return (in >> x) ? x : 0;
}

machine_info probe_machine(const std::string& build_type) {
  machine_info m;
  m.load_average = load_average();
  m.cores = std::max(1U, std::thread::hardware_concurrency());
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        m.cpu_model = line.substr(line.find_first_not_of(" \t", colon + 1));
      }
      break;
    }
  }
  if (m.cpu_model.empty()) m.cpu_model = "unknown CPU";
#if defined(__clang__)
  m.compiler = fmt::format("clang {}", __clang_version__);
#elif defined(__GNUC__)
  m.compiler = fmt::format("GCC {}", __VERSION__);
#else
  m.compiler = "unknown compiler";
#endif
  m.build_type = build_type.empty() ? "unknown" : build_type;
  struct utsname u {};
  if (::uname(&u) == 0) m.kernel = fmt::format("{} {} {}", u.sysname, u.release, u.machine);
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  m.date = buf;
  m.clock_overhead_ns = measure_clock_overhead_ns();
  return m;
}

// ---- helpers ----------------------------------------------------------------------------

std::string format_ns(double ns) {
  if (std::isnan(ns)) return "-";
  if (ns < 10) return fmt::format("{:.2f}", ns);
  if (ns < 100) return fmt::format("{:.1f}", ns);
  if (ns < 1e4) return fmt::format("{:.0f}", ns);
  if (ns < 1e5) return fmt::format("{:.1f}k", ns / 1e3);
  if (ns < 1e7) return fmt::format("{:.0f}k", ns / 1e3);
  if (ns < 1e8) return fmt::format("{:.1f}M", ns / 1e6);
  return fmt::format("{:.0f}M", ns / 1e6);
}

namespace {

std::string ratio_text(double x) {
  if (x >= 100) return fmt::format("{:.0f}x", x);
  if (x >= 10) return fmt::format("{:.1f}x", x);
  return fmt::format("{:.2f}x", x);
}

struct row_key {
  std::string workload;
  unsigned threads;
};

// (workload, threads) in order of first appearance of the workload, threads ascending.
std::vector<row_key> row_keys(const std::vector<cell_result>& rows) {
  std::vector<std::string> workloads;
  for (const auto& r : rows) {
    if (std::find(workloads.begin(), workloads.end(), r.workload) == workloads.end()) {
      workloads.push_back(r.workload);
    }
  }
  std::vector<row_key> keys;
  for (const auto& w : workloads) {
    std::set<unsigned> threads;
    for (const auto& r : rows) {
      if (r.workload == w) threads.insert(r.threads);
    }
    for (unsigned t : threads) keys.push_back({w, t});
  }
  return keys;
}

const cell_result* find_cell(const std::vector<cell_result>& rows, const std::string& map,
                             const row_key& k) {
  for (const auto& r : rows) {
    if (r.map == map && r.workload == k.workload && r.threads == k.threads) return &r;
  }
  return nullptr;
}

// The fastest cell of a family in one row (nullptr if none ran).
const cell_result* best_of(const report& rep, const row_key& k, const std::string& family) {
  const cell_result* best = nullptr;
  for (const auto& c : rep.columns) {
    if (c.family != family) continue;
    const cell_result* cell = find_cell(rep.rows, c.name, k);
    if (cell == nullptr || cell->skipped()) continue;
    if (best == nullptr || cell->ns_per_op < best->ns_per_op) best = cell;
  }
  return best;
}

std::string label_of(const report& rep, const std::string& name) {
  for (const auto& c : rep.columns) {
    if (c.name == name) return c.label;
  }
  return name;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string num(double x) {
  if (std::isnan(x)) return "";
  return fmt::format("{:.6g}", x);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string json_num(double x) {
  return std::isnan(x) ? "null" : fmt::format("{:.6g}", x);
}

}  // namespace

// ---- recommendations ----------------------------------------------------------------------

std::vector<recommendation> recommend(const report& r) {
  std::vector<recommendation> out;
  for (const row_key& k : row_keys(r.rows)) {
    const cell_result* sm = best_of(r, k, "safemap");
    if (sm == nullptr) continue;
    recommendation rec;
    rec.workload = k.workload;
    rec.threads = k.threads;
    rec.map = sm->map;
    rec.ns_per_op = sm->ns_per_op;
    std::string text = fmt::format("{}, {} thread{}: {} {} ns/op", k.workload, k.threads,
                                   k.threads == 1 ? "" : "s", sm->map, format_ns(sm->ns_per_op));
    const cell_result* base = find_cell(r.rows, baseline_map, k);
    if (base != nullptr && !base->skipped()) {
      rec.vs_baseline = base->ns_per_op / sm->ns_per_op;
      text += fmt::format(", {} {}", ratio_text(*rec.vs_baseline), baseline_map);
    }
    if (const cell_result* peer = best_of(r, k, "peer")) {
      rec.best_peer = peer->map;
      rec.best_peer_ns = peer->ns_per_op;
      rec.vs_best_peer = peer->ns_per_op / sm->ns_per_op;
      if (peer->map != baseline_map) {
        text += fmt::format(", {} the best peer ({}, {} ns/op)", ratio_text(rec.vs_best_peer),
                            peer->map, format_ns(peer->ns_per_op));
      }
      if (rec.vs_best_peer < 1) text += " - a peer is faster here";
    }
    rec.text = std::move(text);
    out.push_back(std::move(rec));
  }
  return out;
}

std::vector<advice_row> advise(const report& r, const std::map<std::string, std::string>& classes) {
  const auto keys = row_keys(r.rows);
  const bool multi =
      std::any_of(keys.begin(), keys.end(), [](const row_key& k) { return k.threads >= 2; });
  std::vector<std::string> uses;
  for (const auto& k : keys) {
    const auto it = classes.find(k.workload);
    const std::string use = it == classes.end() ? "other" : it->second;
    if (std::find(uses.begin(), uses.end(), use) == uses.end()) uses.push_back(use);
  }
  std::vector<advice_row> out;
  for (const std::string& use : uses) {
    struct acc {
      double log_peer = 0;
      unsigned n_peer = 0;
      double log_base = 0;
      unsigned n_base = 0;
    };
    std::map<std::string, acc> per_map;
    std::vector<row_key> class_rows;
    for (const auto& k : keys) {
      const auto it = classes.find(k.workload);
      if ((it == classes.end() ? "other" : it->second) != use) continue;
      if (multi && k.threads < 2) continue;
      class_rows.push_back(k);
      const cell_result* peer = best_of(r, k, "peer");
      const cell_result* base = find_cell(r.rows, baseline_map, k);
      for (const auto& c : r.columns) {
        if (c.family != "safemap") continue;
        const cell_result* cell = find_cell(r.rows, c.name, k);
        if (cell == nullptr || cell->skipped()) continue;
        acc& a = per_map[c.name];
        if (peer != nullptr) {
          a.log_peer += std::log(peer->ns_per_op / cell->ns_per_op);
          ++a.n_peer;
        }
        if (base != nullptr && !base->skipped()) {
          a.log_base += std::log(base->ns_per_op / cell->ns_per_op);
          ++a.n_base;
        }
      }
    }
    std::vector<std::pair<double, std::string>> ranked;
    for (const auto& [name, a] : per_map) {
      if (a.n_peer > 0) ranked.emplace_back(std::exp(a.log_peer / a.n_peer), name);
    }
    if (ranked.empty()) continue;
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& x, const auto& y) { return x.first > y.first; });
    advice_row row;
    row.use = use;
    row.map = ranked[0].second;
    row.geomean_vs_best_peer = ranked[0].first;
    row.rows = per_map[row.map].n_peer;
    if (per_map[row.map].n_base > 0) {
      row.geomean_vs_baseline = std::exp(per_map[row.map].log_base / per_map[row.map].n_base);
    }
    if (ranked.size() > 1) {
      row.runner_up = ranked[1].second;
      row.runner_up_vs_best_peer = ranked[1].first;
    }
    // The fastest map of the class, whatever its family: each map's geometric mean of
    // (fastest ns/op in the row / its own) over the rows it ran. Only maps that ran as many of
    // the class's rows as any map did compete: a peer that skips the rows it cannot run
    // (tbb-unordered has no concurrent erase) must not win on the easier rows alone.
    std::map<std::string, std::pair<double, unsigned>> speed;  // name -> (sum of logs, rows)
    for (const auto& k : class_rows) {
      double row_best = std::numeric_limits<double>::infinity();
      for (const auto& c : r.columns) {
        if (c.family != "safemap" && c.family != "peer") continue;
        const cell_result* cell = find_cell(r.rows, c.name, k);
        if (cell != nullptr && !cell->skipped()) row_best = std::min(row_best, cell->ns_per_op);
      }
      for (const auto& c : r.columns) {
        if (c.family != "safemap" && c.family != "peer") continue;
        const cell_result* cell = find_cell(r.rows, c.name, k);
        if (cell == nullptr || cell->skipped()) continue;
        auto& [log_sum, n] = speed[c.name];
        log_sum += std::log(row_best / cell->ns_per_op);
        ++n;
      }
    }
    unsigned most_rows = 0;
    for (const auto& [name, s] : speed) most_rows = std::max(most_rows, s.second);
    double best_speed = -1;
    for (const auto& c : r.columns) {  // column order breaks ties: safemap's maps come first
      const auto it = speed.find(c.name);
      if (it == speed.end() || it->second.second == 0 || it->second.second < most_rows) continue;
      const double g = std::exp(it->second.first / it->second.second);
      if (g > best_speed) {
        best_speed = g;
        row.fastest = c.name;
        row.fastest_family = c.family;
      }
    }
    // What safemap's best gives up against it, over the rows both ran.
    double log_ratio = 0;
    unsigned both = 0;
    for (const auto& k : class_rows) {
      const cell_result* ours = find_cell(r.rows, row.map, k);
      const cell_result* theirs = find_cell(r.rows, row.fastest, k);
      if (ours == nullptr || ours->skipped() || theirs == nullptr || theirs->skipped()) continue;
      log_ratio += std::log(theirs->ns_per_op / ours->ns_per_op);
      ++both;
    }
    row.vs_fastest = both > 0 ? std::exp(log_ratio / both) : 1;
    out.push_back(std::move(row));
  }
  return out;
}

// ---- text ---------------------------------------------------------------------------------

std::string format_header(const report& r) {
  const machine_info& m = r.machine;
  std::string s;
  s += fmt::format("safemap-bench  {}\n", m.date);
  s += fmt::format("machine   {} cores, {}\n", m.cores, m.cpu_model);
  s += fmt::format("system    {}\n", m.kernel);
  s += fmt::format("compiler  {}, {} build\n", m.compiler, m.build_type);
  s += fmt::format("timing    steady_clock, {} ns per timed region subtracted from latencies\n",
                   m.clock_overhead_ns);
  s += fmt::format("load      {:.1f} (1-minute load average at the start){}\n", m.load_average,
                   m.load_average > 0.5 * m.cores
                       ? ": other processes are using the CPUs; compare ratios within this run only"
                       : "");
  s += fmt::format("settings  {}\n", r.settings);
  for (const auto& n : r.notes) s += fmt::format("note      {}\n", n);
  return s;
}

std::string format_table(const report& r) {
  std::string s;
  const auto keys = row_keys(r.rows);
  std::size_t wl_width = 8;
  for (const auto& k : keys) wl_width = std::max(wl_width, k.workload.size());
  std::vector<std::size_t> widths;
  for (const auto& c : r.columns) widths.push_back(std::max<std::size_t>(c.label.size(), 6) + 1);

  s += "ns/op, median of the repeats (lower is better); '!' = checksum MISMATCH, '-' = not run\n";
  s += fmt::format("{:<{}} {:>3}", "workload", wl_width, "thr");
  for (std::size_t i = 0; i < r.columns.size(); ++i) {
    s += fmt::format(" {:>{}}", r.columns[i].label, widths[i]);
  }
  s += "  check  best safemap vs best peer\n";
  std::string last;
  for (const auto& k : keys) {
    s += fmt::format("{:<{}} {:>3}", k.workload == last ? "" : k.workload, wl_width, k.threads);
    last = k.workload;
    std::string check = "n/a";
    for (std::size_t i = 0; i < r.columns.size(); ++i) {
      const cell_result* cell = find_cell(r.rows, r.columns[i].name, k);
      std::string text = "-";
      if (cell != nullptr && !cell->skipped()) {
        text = format_ns(cell->ns_per_op);
        if (cell->check == "MISMATCH") {
          text += "!";
          check = "MISMATCH";
        } else if (cell->check == "ok" && check == "n/a") {
          check = "ok";
        }
      }
      s += fmt::format(" {:>{}}", text, widths[i]);
    }
    std::string ratio;
    const cell_result* sm = best_of(r, k, "safemap");
    const cell_result* peer = best_of(r, k, "peer");
    if (sm != nullptr && peer != nullptr) {
      ratio = fmt::format("{} {} ({})", label_of(r, sm->map),
                          ratio_text(peer->ns_per_op / sm->ns_per_op), label_of(r, peer->map));
    }
    s += fmt::format("  {:<8} {}\n", check, ratio);
  }
  s += "columns:";
  std::size_t line = 8;
  for (const auto& c : r.columns) {
    std::string item = fmt::format(" {} = {} ({}),", c.label, c.name, c.family);
    if (line + item.size() > 100) {
      s += "\n        ";
      line = 8;
    }
    s += item;
    line += item.size();
  }
  if (!r.columns.empty()) s.pop_back();
  s += "\n";
  s += "ratio: best peer ns/op / best safemap ns/op (> 1: safemap is faster); Go maps are not "
       "peers\n";

  // Memory per entry and allocations at the highest thread count.
  s += "\nmemory per entry (bytes malloc holds per u64 entry, map filled on one thread):\n ";
  for (const auto& c : r.columns) {
    double mem = NAN;
    for (const auto& row : r.rows) {
      if (row.map == c.name && !std::isnan(row.mem_per_entry)) mem = row.mem_per_entry;
    }
    s += fmt::format(" {} {}", c.label, std::isnan(mem) ? "-" : fmt::format("{:.1f}", mem));
  }
  s += "\n";
  unsigned max_threads = 0;
  for (const auto& k : keys) max_threads = std::max(max_threads, k.threads);
  s += fmt::format("\nheap allocations per op | p99 latency (ns) at {} threads:\n{:<{}}",
                   max_threads, "workload", wl_width + 4);
  for (std::size_t i = 0; i < r.columns.size(); ++i) {
    s += fmt::format(" {:>{}}", r.columns[i].label, std::max<std::size_t>(widths[i], 12));
  }
  s += "\n";
  for (const auto& k : keys) {
    if (k.threads != max_threads) continue;
    s += fmt::format("{:<{}}", k.workload, wl_width + 4);
    for (std::size_t i = 0; i < r.columns.size(); ++i) {
      const cell_result* cell = find_cell(r.rows, r.columns[i].name, k);
      std::string text = "-";
      if (cell != nullptr && !cell->skipped()) {
        text = fmt::format(
            "{}|{}",
            std::isnan(cell->allocs_per_op) ? "?" : fmt::format("{:.2f}", cell->allocs_per_op),
            format_ns(cell->p99_ns));
      }
      s += fmt::format(" {:>{}}", text, std::max<std::size_t>(widths[i], 12));
    }
    s += "\n";
  }

  // Checksums.
  unsigned ok = 0, bad = 0, na = 0;
  for (const auto& row : r.rows) {
    if (row.skipped()) continue;
    if (row.check == "ok")
      ++ok;
    else if (row.check == "MISMATCH")
      ++bad;
    else
      ++na;
  }
  s += fmt::format(
      "\nchecksums: {} ok, {} MISMATCH, {} not deterministic (timing-dependent workloads)\n", ok,
      bad, na);
  for (const auto& row : r.rows) {
    if (row.check == "MISMATCH") {
      s += fmt::format("  MISMATCH {} {} {} threads: checksum {} expected {}\n", row.map,
                       row.workload, row.threads, row.checksum,
                       row.expected ? fmt::format("{}", *row.expected) : "?");
    }
  }
  return s;
}

std::string format_recommendations(const std::vector<recommendation>& recs) {
  std::string s = "Recommendations (fastest safemap map per workload and thread count):\n";
  for (const auto& r : recs) s += "  " + r.text + "\n";
  return s;
}

std::string format_advice(const std::vector<advice_row>& advice) {
  std::string s =
      "Advice (rows with 2+ threads, geometric means): the fastest map per use, peer or "
      "safemap, and safemap's best with what it gives up against it:\n";
  s += fmt::format("  {:<20} {:<18} {:<14} {:>10} {:>13} {:>20}  {}\n", "use", "fastest",
                   "safemap's best", "vs fastest", "vs best peer", "vs std+shared_mutex",
                   "runner-up (vs best peer)");
  for (const auto& a : advice) {
    s += fmt::format("  {:<20} {:<18} {:<14} {:>10} {:>13} {:>20}  {}\n", a.use,
                     a.fastest.empty() ? a.map : a.fastest, a.map,
                     a.fastest == a.map ? "-" : ratio_text(a.vs_fastest),
                     ratio_text(a.geomean_vs_best_peer),
                     a.geomean_vs_baseline ? ratio_text(*a.geomean_vs_baseline) : "-",
                     a.runner_up.empty()
                         ? "-"
                         : fmt::format("{} {}", a.runner_up, ratio_text(a.runner_up_vs_best_peer)));
  }
  for (const auto& a : advice) {
    if (a.fastest.empty() || a.fastest == a.map) continue;
    s += fmt::format("  {}: {} ({}) is the fastest; safemap's best, {}, runs at {} of its speed\n",
                     a.use, a.fastest, a.fastest_family, a.map, ratio_text(a.vs_fastest));
  }
  return s;
}

std::string format_remote_advice(const report& r) {
  std::string s;
  for (const auto& c : r.columns) {
    if (c.family != "remote") continue;
    double log_sum = 0;
    unsigned n = 0;
    for (const auto& k : row_keys(r.rows)) {
      const cell_result* remote = find_cell(r.rows, c.name, k);
      const cell_result* ours = best_of(r, k, "safemap");
      if (remote == nullptr || remote->skipped() || ours == nullptr) continue;
      log_sum += std::log(remote->ns_per_op / ours->ns_per_op);
      ++n;
    }
    if (n == 0) continue;
    s += fmt::format(
        "  across processes: {} is the map to use only when one map must be shared by several "
        "processes or hosts (every call is a round trip to its server); over the {} rows it ran "
        "it takes {:.0f}x the time of the fastest in-process safemap map\n",
        c.name, n, std::exp(log_sum / n));
  }
  return s;
}

// ---- CSV ----------------------------------------------------------------------------------

const char* const csv_header =
    "map,family,workload,key_type,dist,threads,keys,repeats,ops,ns_per_op,ns_per_op_min,"
    "ns_per_op_max,mops,allocs_per_op,bytes_per_op,mem_per_entry,p50_ns,p99_ns,p999_ns,"
    "latency_samples,checksum,expected,check,note";

void write_csv(std::ostream& out, const std::vector<cell_result>& rows) {
  out << csv_header << '\n';
  for (const auto& r : rows) {
    out << fmt::format(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        csv_field(r.map), r.family, csv_field(r.workload), r.key_type, r.dist, r.threads, r.keys,
        r.repeats, r.ops, num(r.ns_per_op), num(r.ns_per_op_min), num(r.ns_per_op_max), num(r.mops),
        num(r.allocs_per_op), num(r.bytes_per_op), num(r.mem_per_entry), num(r.p50_ns),
        num(r.p99_ns), num(r.p999_ns), r.latency_samples, r.checksum,
        r.expected ? fmt::format("{}", *r.expected) : "", r.check, csv_field(r.note));
  }
}

namespace {

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> fields;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(cur));
      cur.clear();
    } else if (c != '\r') {
      cur += c;
    }
  }
  fields.push_back(std::move(cur));
  return fields;
}

double parse_double(const std::string& s) {
  return s.empty() ? NAN : std::stod(s);
}
std::uint64_t parse_u64(const std::string& s) {
  return s.empty() ? 0 : std::stoull(s);
}

}  // namespace

std::vector<cell_result> read_csv(std::istream& in) {
  std::string line;
  if (!std::getline(in, line)) throw std::runtime_error("CSV: empty input");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line != csv_header) {
    throw std::runtime_error(
        fmt::format("CSV: unexpected header '{}' (want '{}')", line, csv_header));
  }
  std::vector<cell_result> rows;
  for (std::size_t n = 2; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const auto f = split_csv_line(line);
    if (f.size() != 24) {
      throw std::runtime_error(fmt::format("CSV line {}: {} fields, want 24", n, f.size()));
    }
    try {
      cell_result r;
      r.map = f[0];
      r.family = f[1];
      r.workload = f[2];
      r.key_type = f[3];
      r.dist = f[4];
      r.threads = static_cast<unsigned>(parse_u64(f[5]));
      r.keys = parse_u64(f[6]);
      r.repeats = static_cast<unsigned>(parse_u64(f[7]));
      r.ops = parse_u64(f[8]);
      r.ns_per_op = parse_double(f[9]);
      r.ns_per_op_min = parse_double(f[10]);
      r.ns_per_op_max = parse_double(f[11]);
      r.mops = parse_double(f[12]);
      r.allocs_per_op = parse_double(f[13]);
      r.bytes_per_op = parse_double(f[14]);
      r.mem_per_entry = parse_double(f[15]);
      r.p50_ns = parse_double(f[16]);
      r.p99_ns = parse_double(f[17]);
      r.p999_ns = parse_double(f[18]);
      r.latency_samples = parse_u64(f[19]);
      r.checksum = parse_u64(f[20]);
      if (!f[21].empty()) r.expected = parse_u64(f[21]);
      r.check = f[22];
      r.note = f[23];
      rows.push_back(std::move(r));
    } catch (const std::logic_error& e) {
      throw std::runtime_error(fmt::format("CSV line {}: bad number ({})", n, e.what()));
    }
  }
  return rows;
}

// ---- JSON ---------------------------------------------------------------------------------

void write_json(std::ostream& out, const report& r, const std::vector<recommendation>& recs,
                const std::vector<advice_row>& advice) {
  const machine_info& m = r.machine;
  out << "{\n  \"machine\": {";
  out << fmt::format(
      "\"cores\": {}, \"cpu_model\": {}, \"compiler\": {}, \"build_type\": {}, \"kernel\": {}, "
      "\"date\": {}, \"clock_overhead_ns\": {}, \"load_average\": {}",
      m.cores, json_string(m.cpu_model), json_string(m.compiler), json_string(m.build_type),
      json_string(m.kernel), json_string(m.date), m.clock_overhead_ns, json_num(m.load_average));
  out << "},\n  \"settings\": " << json_string(r.settings) << ",\n  \"notes\": [";
  for (std::size_t i = 0; i < r.notes.size(); ++i) {
    out << (i ? ", " : "") << json_string(r.notes[i]);
  }
  out << "],\n  \"maps\": [";
  for (std::size_t i = 0; i < r.columns.size(); ++i) {
    const auto& c = r.columns[i];
    out << (i ? ",\n    " : "\n    ")
        << fmt::format("{{\"name\": {}, \"label\": {}, \"family\": {}}}", json_string(c.name),
                       json_string(c.label), json_string(c.family));
  }
  out << "\n  ],\n  \"results\": [";
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    const auto& x = r.rows[i];
    out << (i ? ",\n    " : "\n    ")
        << fmt::format(
               "{{\"map\": {}, \"family\": {}, \"workload\": {}, \"key_type\": {}, \"dist\": {}, "
               "\"threads\": {}, \"keys\": {}, \"repeats\": {}, \"ops\": {}, \"ns_per_op\": {}, "
               "\"ns_per_op_min\": {}, \"ns_per_op_max\": {}, \"mops\": {}, \"allocs_per_op\": "
               "{}, \"bytes_per_op\": {}, \"mem_per_entry\": {}, \"p50_ns\": {}, \"p99_ns\": {}, "
               "\"p999_ns\": {}, \"latency_samples\": {}, \"checksum\": {}, \"expected\": {}, "
               "\"check\": {}, \"note\": {}}}",
               json_string(x.map), json_string(x.family), json_string(x.workload),
               json_string(x.key_type), json_string(x.dist), x.threads, x.keys, x.repeats, x.ops,
               json_num(x.ns_per_op), json_num(x.ns_per_op_min), json_num(x.ns_per_op_max),
               json_num(x.mops), json_num(x.allocs_per_op), json_num(x.bytes_per_op),
               json_num(x.mem_per_entry), json_num(x.p50_ns), json_num(x.p99_ns),
               json_num(x.p999_ns), x.latency_samples, x.checksum,
               x.expected ? fmt::format("{}", *x.expected) : "null", json_string(x.check),
               json_string(x.note));
  }
  out << "\n  ],\n  \"recommendations\": [";
  for (std::size_t i = 0; i < recs.size(); ++i) {
    const auto& x = recs[i];
    out << (i ? ",\n    " : "\n    ")
        << fmt::format(
               "{{\"workload\": {}, \"threads\": {}, \"map\": {}, \"ns_per_op\": {}, "
               "\"best_peer\": {}, \"best_peer_ns\": {}, \"vs_best_peer\": {}, \"vs_baseline\": "
               "{}, \"text\": {}}}",
               json_string(x.workload), x.threads, json_string(x.map), json_num(x.ns_per_op),
               json_string(x.best_peer), json_num(x.best_peer_ns), json_num(x.vs_best_peer),
               x.vs_baseline ? json_num(*x.vs_baseline) : "null", json_string(x.text));
  }
  out << "\n  ],\n  \"advice\": [";
  for (std::size_t i = 0; i < advice.size(); ++i) {
    const auto& a = advice[i];
    out << (i ? ",\n    " : "\n    ")
        << fmt::format(
               "{{\"use\": {}, \"map\": {}, \"geomean_vs_best_peer\": {}, "
               "\"geomean_vs_baseline\": {}, \"runner_up\": {}, \"runner_up_vs_best_peer\": {}, "
               "\"rows\": {}, \"fastest\": {}, \"fastest_family\": {}, \"vs_fastest\": {}}}",
               json_string(a.use), json_string(a.map), json_num(a.geomean_vs_best_peer),
               a.geomean_vs_baseline ? json_num(*a.geomean_vs_baseline) : "null",
               json_string(a.runner_up), json_num(a.runner_up_vs_best_peer), a.rows,
               json_string(a.fastest), json_string(a.fastest_family), json_num(a.vs_fastest));
  }
  out << "\n  ]\n}\n";
}

// ---- plots --------------------------------------------------------------------------------

namespace {

// Eleven colours a reader with any common colour-vision deficiency can still tell apart:
// Okabe-Ito's (without its yellow, too faint on white) then Paul Tol's "muted" wine, olive,
// indigo and teal. safemap's maps get the first four. Colour is never the only cue: every
// series also has its own dash pattern and point shape (series_style).
constexpr const char* palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                                   "#000000", "#882255", "#999933", "#332288", "#44AA99"};

// Line and point style of series i: safemap's maps solid and thick, peers in one of four dash
// patterns, Go dotted; each of the first 11 series has its own point shape (filled, then open).
struct series_style {
  const char* color;
  int dash;
  double width;
  int point;
};
series_style style_of(std::size_t i, const std::string& family) {
  static constexpr int peer_dashes[] = {2, 4, 5, 6};
  static constexpr int points[] = {5, 7, 9, 11, 13, 4, 6, 8, 10, 12, 2};
  static_assert(std::size(points) == std::size(palette));
  const bool sm = family == "safemap";
  return {palette[i % std::size(palette)],
          sm ? 1 : (family == "go" ? 3 : peer_dashes[i % std::size(peer_dashes)]), sm ? 2.5 : 1.5,
          points[i % std::size(points)]};
}

// A series whose typical throughput (geometric mean over thread counts) is more than this far
// from the median series' is an outlier: it would stretch the axis over decades and flatten
// every other series. It is left off the axis range and named in a note instead.
constexpr double outlier_factor = 30;

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '_';
  return out;
}

std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace

int run_program(const std::vector<std::string>& argv, const std::string& stderr_path) {
  if (argv.empty()) return -1;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  if (::posix_spawn_file_actions_init(&actions) != 0) return -1;
  if (!stderr_path.empty()) {
    ::posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<std::string> write_plots(const report& r, const std::string& dir,
                                     unsigned latency_threads, std::string& message) {
  std::vector<std::string> pngs;
  const std::string img = dir + "/img";
  std::error_code ec;
  std::filesystem::create_directories(img, ec);
  if (ec) {
    message = "cannot create " + img + ": " + ec.message();
    return pngs;
  }
  const bool have_gnuplot = std::system("command -v gnuplot >/dev/null 2>&1") == 0;

  std::vector<std::string> workloads;
  for (const auto& row : r.rows) {
    if (std::find(workloads.begin(), workloads.end(), row.workload) == workloads.end()) {
      workloads.push_back(row.workload);
    }
  }
  std::string all_scripts;
  for (const std::string& w : workloads) {
    std::set<unsigned> thread_set;
    for (const auto& row : r.rows) {
      if (row.workload == w && !row.skipped()) thread_set.insert(row.threads);
    }
    if (thread_set.empty()) continue;
    const std::vector<unsigned> threads(thread_set.begin(), thread_set.end());
    // Columns that ran at least once.
    std::vector<const map_column*> cols;
    for (const auto& c : r.columns) {
      for (unsigned t : threads) {
        const cell_result* cell = find_cell(r.rows, c.name, {w, t});
        if (cell != nullptr && !cell->skipped()) {
          cols.push_back(&c);
          break;
        }
      }
    }
    const std::string base = img + "/" + file_safe(w);
    const auto sit = r.summaries.find(w);
    const std::string summary = sit == r.summaries.end() ? "" : sit->second;
    // Per series: the median throughput at each thread count and the min-max over repeats
    // (from the slowest and fastest repeat's ns/op; NaN when unknown, e.g. an old CSV).
    struct point {
      double mops = NAN, lo = NAN, hi = NAN;
    };
    std::vector<std::vector<point>> series(cols.size(), std::vector<point>(threads.size()));
    for (std::size_t i = 0; i < cols.size(); ++i) {
      for (std::size_t j = 0; j < threads.size(); ++j) {
        const cell_result* cell = find_cell(r.rows, cols[i]->name, {w, threads[j]});
        if (cell == nullptr || cell->skipped()) continue;
        point& p = series[i][j];
        p.mops = cell->mops;
        p.lo = std::isnan(cell->ns_per_op_max) ? p.mops
                                               : p.mops * cell->ns_per_op / cell->ns_per_op_max;
        p.hi = std::isnan(cell->ns_per_op_min) ? p.mops
                                               : p.mops * cell->ns_per_op / cell->ns_per_op_min;
      }
    }
    // Outliers: far from the median series (needs at least three series to say "typical").
    std::vector<double> typical(cols.size(), NAN);
    for (std::size_t i = 0; i < cols.size(); ++i) {
      double log_sum = 0;
      int n = 0;
      for (const point& p : series[i]) {
        if (!std::isnan(p.mops) && p.mops > 0) {
          log_sum += std::log(p.mops);
          ++n;
        }
      }
      if (n > 0) typical[i] = std::exp(log_sum / n);
    }
    std::vector<double> sorted_typical;
    for (double t : typical) {
      if (!std::isnan(t)) sorted_typical.push_back(t);
    }
    std::sort(sorted_typical.begin(), sorted_typical.end());
    std::vector<bool> outlier(cols.size(), false);
    if (sorted_typical.size() >= 3) {
      const double median = sorted_typical[sorted_typical.size() / 2];
      for (std::size_t i = 0; i < cols.size(); ++i) {
        outlier[i] = !std::isnan(typical[i]) &&
                     (typical[i] < median / outlier_factor || typical[i] > median * outlier_factor);
      }
    }
    // The axis covers the other series, bars included.
    double lo = std::numeric_limits<double>::infinity(), hi = 0;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (outlier[i]) continue;
      for (const point& p : series[i]) {
        if (std::isnan(p.mops)) continue;
        lo = std::min({lo, p.mops, p.lo});
        hi = std::max({hi, p.mops, p.hi});
      }
    }
    {
      std::ofstream dat(base + ".dat");
      dat << "# threads, then per map: median, min, max (million ops/s)\nthreads";
      for (const auto* c : cols) {
        const std::string l = file_safe(c->label);
        dat << ' ' << l << ' ' << l << "_min " << l << "_max";
      }
      dat << '\n';
      for (std::size_t j = 0; j < threads.size(); ++j) {
        dat << threads[j];
        for (std::size_t i = 0; i < cols.size(); ++i) {
          const point& p = series[i][j];
          if (std::isnan(p.mops)) {
            dat << " NaN NaN NaN";
          } else {
            dat << fmt::format(" {:.6g} {:.6g} {:.6g}", p.mops, p.lo, p.hi);
          }
        }
        dat << '\n';
      }
    }
    // Latency at the chosen thread count, or the nearest measured one below it.
    unsigned lt = threads.front();
    for (unsigned t : threads) {
      if (t <= latency_threads) lt = t;
    }
    std::vector<std::string> lat_labels;
    {
      std::ofstream dat(base + "-latency.dat");
      dat << "# map p50 p99 p99.9\n";
      for (const auto* c : cols) {
        const cell_result* cell = find_cell(r.rows, c->name, {w, lt});
        if (cell == nullptr || cell->skipped() || std::isnan(cell->p50_ns)) continue;
        // log scale: a sample below the clock's resolution is drawn at 1 ns
        dat << fmt::format("\"{}\" {:.6g} {:.6g} {:.6g}\n", c->label, std::max(1.0, cell->p50_ns),
                           std::max(1.0, cell->p99_ns), std::max(1.0, cell->p999_ns));
        lat_labels.push_back(c->label);
      }
    }

    std::string gp;
    gp += fmt::format(
        "set terminal pngcairo size 1500,560 font 'DejaVu Sans,11' noenhanced\n"
        "set output {}\n"
        "set datafile missing 'NaN'\n"
        "set multiplot layout 1,2 title {} font 'DejaVu Sans,14'\n",
        gp_quote(base + ".png"),
        gp_quote(fmt::format("{}{}{}   ({}, {} cores)", w, summary.empty() ? "" : ": ", summary,
                             r.machine.cpu_model, r.machine.cores)));
    // Left: throughput against threads.
    gp += "set title 'Throughput (higher is better)'\n";
    gp += "set xlabel 'threads'\nset ylabel 'throughput (million ops/s)'\n";
    gp += "set grid\nset key outside right top vertical spacing 1.1\n";
    gp += "set xtics (";
    for (std::size_t i = 0; i < threads.size(); ++i) {
      gp += fmt::format("{}\"{}{}\" {}", i ? ", " : "", threads[i],
                        threads[i] > r.machine.cores ? "\\n(oversubscribed)" : "", threads[i]);
    }
    gp += ")\n";
    if (threads.back() >= 4 * threads.front()) {
      gp += "set logscale x 2\n";
    }
    gp += fmt::format("set xrange [{}:{}]\n", threads.front() * (threads.size() > 1 ? 0.9 : 0.5),
                      threads.back() * (threads.size() > 1 ? 1.1 : 1.5));
    const bool log_y = hi > 0 && lo > 0 && hi / lo > 10;
    const bool any_outlier = std::find(outlier.begin(), outlier.end(), true) != outlier.end();
    if (log_y) {
      gp += "set logscale y 10\nset format y '%g'\n";
      if (any_outlier) gp += fmt::format("set yrange [{:.6g}:{:.6g}]\n", lo / 1.5, hi * 1.5);
    } else {
      gp += any_outlier ? fmt::format("set yrange [0:{:.6g}]\n", hi * 1.15) : "set yrange [0:*]\n";
    }
    // Off-scale series: named under the plot with their range, and "(off scale)" in the key.
    // On a linear axis a series far below the others is still drawn (near 0) and not clipped.
    std::vector<bool> clipped(cols.size(), false);
    std::string note;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (!outlier[i] || (!log_y && typical[i] < lo)) continue;
      clipped[i] = true;
      double smin = std::numeric_limits<double>::infinity(), smax = 0;
      for (const point& p : series[i]) {
        if (std::isnan(p.mops)) continue;
        smin = std::min(smin, p.mops);
        smax = std::max(smax, p.mops);
      }
      note += fmt::format("{}{} {:.3g}-{:.3g} Mops/s ({} the axis)", note.empty() ? "" : "; ",
                          cols[i]->label, smin, smax, typical[i] < lo ? "below" : "above");
    }
    if (!note.empty()) {
      gp += "set bmargin 8\n";
      gp += fmt::format("set label 2 {} at graph 0,-0.3 left font ',10' textcolor rgb '#333333'\n",
                        gp_quote("Off scale, not drawn: " + note));
    }
    gp += "plot ";
    // Series side by side at each thread count (a small horizontal offset), so their min-max
    // bars do not hide each other.
    const double spread = threads.back() >= 4 * threads.front() ? 0.012 : 0.006;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      const auto* c = cols[i];
      const series_style st = style_of(i, c->family);
      const double shift = 1 + spread * (static_cast<double>(i) - (cols.size() - 1) / 2.0);
      const std::size_t col = 2 + 3 * i;
      gp += fmt::format(
          "{}{} using ($1*{:.4f}):{}:{}:{} with yerrorlines lw {} dt {} pt {} ps 1.1 "
          "lc rgb '{}' title {}",
          i ? ", \\\n     " : "", gp_quote(base + ".dat"), shift, col, col + 1, col + 2, st.width,
          st.dash, st.point, st.color, gp_quote(clipped[i] ? c->label + " (off scale)" : c->label));
    }
    gp += "\n";
    gp += "unset label 2\nunset bmargin\n";
    // Right: latency percentiles.
    gp += "unset logscale\nset xrange [*:*]\nset yrange [*:*]\nset xtics auto\n";
    gp += fmt::format("set title 'Sampled op latency at {} thread{} (lower is better)'\n", lt,
                      lt == 1 ? "" : "s");
    gp += "set xlabel 'p50 under ~20 ns is at the resolution of the clock: compare ns/op there'\n";
    gp += "set ylabel 'latency (ns, log scale)'\nset logscale y 10\nset yrange [1:*]\n";
    gp += "set format y '%.0s%c'\nset key inside left top\n";  // 1, 10, 100, 1k, ..., 10M
    gp += "set style data histogram\nset style histogram cluster gap 1\n";
    gp += "set style fill solid 0.85 border -1\nset boxwidth 0.9\n";
    gp += "set xtics rotate by -35 nomirror\n";
    if (lat_labels.empty()) {
      gp += "set label 1 'no latency samples' at graph 0.4,0.5\nplot NaN notitle\n";
    } else {
      gp += fmt::format(
          "plot {} using 2:xtic(1) title 'p50' lc rgb '#56B4E9', '' using 3 title 'p99' lc rgb "
          "'#E69F00', '' using 4 title 'p99.9' lc rgb '#D55E00'\n",
          gp_quote(base + "-latency.dat"));
    }
    gp += "unset multiplot\n";
    {
      std::ofstream script(base + ".gp");
      script << gp;
    }
    all_scripts += gp;
    if (have_gnuplot) {
      if (run_program({"gnuplot", base + ".gp"}, base + ".gnuplot.log") == 0) {
        pngs.push_back(base + ".png");
      } else {
        message = fmt::format("gnuplot failed for {} (see {}.gnuplot.log)", w, base);
      }
    }
  }
  if (!have_gnuplot) {
    message =
        "gnuplot not found (Debian: gnuplot-nox): data and scripts written to " + img + ", no PNG";
  }
  return pngs;
}

}  // namespace safemap_bench
