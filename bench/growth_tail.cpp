// bench/growth_tail.cpp - single-insert latency while a map grows, and memory per entry.
//
// Part 1 (tail latency). Inserts N (default 1e7) distinct random uint64 keys one at a time
// into an empty map (no reserve) and times every insert with std::chrono::steady_clock (the
// TSC through the vDSO on Linux/x86: ~20 ns per read, included in every sample alike). A
// table that rehashes all at once pays for the whole table on one insert; safemap::Map
// evacuates incrementally, so its worst insert should stay far below. Reports p50, p99.9,
// p99.99 and max per map, where the max happened (insert index), and peers' max divided by
// safemap's max. The max of one run also catches whatever the OS does to the thread (page
// faults, preemption): run with --reps to see the spread, and with --clock=cpu on a loaded
// machine to leave preemption out.
//
// Part 2 (memory). Inserts uint64 keys into each map with a counting allocator (safemap::Map
// too) and reports the bytes held per entry at exactly M entries (default 1e6, --mem-n), the
// peak during the fill (old and new arrays coexist while growing), and the average over 8
// sizes spaced geometrically across [M, 2M) (each table's load factor saws up and down with
// size, so one size can flatter or punish a table).
//
// Usage: safemap_growth_tail [--n=10000000] [--reps=1] [--mem-n=1000000] [--maps=a,b,...]
//                            [--clock=wall|cpu] [--no-tail] [--no-mem]
// maps: safemap, absl, boost, std (the peers that were found at build time), trie
// (safemap::TrieMap, tail only).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <time.h>

#include "bench_support.hpp"
#include "peers.hpp"
#include "safemap/map.hpp"
#include "safemap/trie_map.hpp"

namespace {

using namespace safemap_bench;

// Which clock times each insert. "wall" (default): steady_clock, what a caller waits,
// including time the thread is preempted. "cpu": the thread's CPU time
// (CLOCK_THREAD_CPUTIME_ID, a system call: ~0.1-0.3 us more per sample), which excludes
// preemption but still includes page faults and system calls made by the insert; the
// tail of a loaded machine is then the map's own, not the scheduler's.
bool g_thread_cpu_clock = false;

inline std::int64_t now_ns() noexcept {
  if (g_thread_cpu_clock) {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
using u64_key = std::uint64_t;
using pair_t = std::pair<const u64_key, value_t>;
using count_alloc = counting_allocator<pair_t>;

struct options {
  std::size_t n = 10'000'000;
  std::size_t mem_n = 1'000'000;
  int reps = 1;
  std::string maps = "safemap,absl,boost,std,trie";
  bool tail = true;
  bool mem = true;
};

// Whether name is in the comma-separated --maps list. (Compared piece by piece: GCC 12's
// -Wrestrict misfires on "," + std::string + ",".)
bool wanted(const options& o, std::string_view name) {
  std::string_view list = o.maps;
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    if (list.substr(0, comma) == name) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// ---- part 1: tail latency -------------------------------------------------------------------

struct tail_result {
  const char* name;
  double total_s = 0;
  std::uint64_t p50 = 0, p999 = 0, p9999 = 0, max = 0;  // ns
  std::size_t max_at = 0;    // index of the slowest insert (map size before it)
  std::size_t over_1ms = 0;  // inserts slower than 1 ms
};

template <class M>
tail_result run_tail(const char* name, const std::vector<u64_key>& keys,
                     std::vector<std::uint64_t>& lat) {
  tail_result r{name};
  const std::int64_t start = now_ns();
  {
    M m;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::int64_t t0 = now_ns();
      clobber();
      auto res = m.try_emplace(keys[i], value_t(i + 1));
      escape(res);
      clobber();
      const std::int64_t ns = now_ns() - t0;
      lat[i] = static_cast<std::uint64_t>(ns);
    }
    r.total_s = static_cast<double>(now_ns() - start) * 1e-9;
    if (m.size() != keys.size()) {
      std::fprintf(stderr, "%s: size %zu, expected %zu\n", name, m.size(), keys.size());
      std::exit(1);
    }
  }               // destruction is not part of the result
  settle_heap();  // nor the frees glibc would defer into the next map's fill
  const auto max_it = std::max_element(lat.begin(), lat.end());
  r.max = *max_it;
  r.max_at = static_cast<std::size_t>(max_it - lat.begin());
  r.over_1ms = static_cast<std::size_t>(
      std::count_if(lat.begin(), lat.end(), [](std::uint64_t v) { return v > 1'000'000; }));
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    const auto i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(lat.size()))) - 1;
    return lat[std::min(i, lat.size() - 1)];
  };
  r.p50 = pct(0.50);
  r.p999 = pct(0.999);
  r.p9999 = pct(0.9999);
  return r;
}

void print_tail(const std::vector<tail_result>& rs, std::size_t n, int rep) {
  std::printf("\n## growth tail: %zu uint64 inserts, no reserve (rep %d)\n\n", n, rep);
  std::printf(
      "| map | total s | mean ns | p50 ns | p99.9 ns | p99.99 ns | max us | max at insert"
      " | >1ms | max / safemap max |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  double safemap_max = 0;
  for (const auto& r : rs) {
    if (std::strcmp(r.name, "safemap") == 0) safemap_max = r.max;
  }
  for (const auto& r : rs) {
    char ratio[32] = "-";
    if (safemap_max > 0) std::snprintf(ratio, sizeof ratio, "%.1fx", r.max / safemap_max);
    std::printf("| %s | %.3f | %.1f | %" PRIu64 " | %" PRIu64 " | %" PRIu64
                " | %.1f | %zu | %zu | %s |\n",
                r.name, r.total_s, r.total_s * 1e9 / static_cast<double>(n), r.p50, r.p999, r.p9999,
                r.max / 1e3, r.max_at, r.over_1ms, ratio);
  }
  std::fflush(stdout);
}

// ---- part 2: memory per entry ---------------------------------------------------------------

struct mem_result {
  const char* name;
  double at_n = 0;              // live bytes / entries at exactly n entries
  double peak_n = 0;            // peak live bytes during the fill to n, / n
  double avg = 0;               // mean of live bytes / entries over 8 sizes in [n, 2n)
  double stats_n = -1;          // safemap only: Map::stats().bytes / n (cross-check)
  std::size_t allocations = 0;  // allocator calls during the fill to n
};

template <class M>
mem_result run_mem(const char* name, const std::vector<u64_key>& keys, std::size_t n) {
  mem_result r{name};
  alloc_counter counter;
  {
    M m{count_alloc(&counter)};
    std::size_t next_sample = 0;
    double sum = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      m.try_emplace(keys[i], value_t(i + 1));
      const std::size_t size = i + 1;
      if (size == n) {
        r.at_n = static_cast<double>(counter.live) / static_cast<double>(n);
        r.peak_n = static_cast<double>(counter.peak) / static_cast<double>(n);
        r.allocations = counter.allocations;
        if constexpr (requires { m.stats().bytes; }) {
          r.stats_n = static_cast<double>(m.stats().bytes) / static_cast<double>(n);
        }
      }
      // Samples at n * 2^(j/8), j = 0..7.
      if (next_sample < 8 &&
          size == static_cast<std::size_t>(static_cast<double>(n) *
                                           std::exp2(static_cast<double>(next_sample) / 8))) {
        sum += static_cast<double>(counter.live) / static_cast<double>(size);
        ++next_sample;
      }
    }
    r.avg = sum / 8;
  }
  if (counter.live != 0) {
    std::fprintf(stderr, "%s: %zu bytes leaked\n", name, counter.live);
    std::exit(1);
  }
  return r;
}

void print_mem(const std::vector<mem_result>& rs, std::size_t n) {
  std::printf("\n## memory per entry, uint64 -> uint64 (16-byte entries), no reserve\n\n");
  std::printf(
      "| map | bytes/entry at %zu | peak during fill / %zu | mean over [%zu, %zu) |"
      " / absl at %zu | / absl mean | allocations to %zu |\n",
      n, n, n, 2 * n, n, n);
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  const mem_result* absl = nullptr;
  for (const auto& r : rs) {
    if (std::strcmp(r.name, "absl") == 0) absl = &r;
  }
  for (const auto& r : rs) {
    char ra[32] = "-", rb[32] = "-";
    if (absl != nullptr) {
      std::snprintf(ra, sizeof ra, "%.2f", r.at_n / absl->at_n);
      std::snprintf(rb, sizeof rb, "%.2f", r.avg / absl->avg);
    }
    std::printf("| %s | %.1f | %.1f | %.1f | %s | %s | %zu |\n", r.name, r.at_n, r.peak_n, r.avg,
                ra, rb, r.allocations);
  }
  for (const auto& r : rs) {
    if (r.stats_n >= 0) std::printf("\n%s: Map::stats().bytes / entry = %.1f\n", r.name, r.stats_n);
  }
  std::fflush(stdout);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const std::size_t len = std::strlen(flag);
      return a.compare(0, len, flag) == 0 ? a.c_str() + len : nullptr;
    };
    if (const char* v = value("--n=")) {
      o.n = static_cast<std::size_t>(std::strtod(v, nullptr));  // accepts 1e7
    } else if (const char* v = value("--mem-n=")) {
      o.mem_n = static_cast<std::size_t>(std::strtod(v, nullptr));
    } else if (const char* v = value("--reps=")) {
      o.reps = std::max(1, std::atoi(v));
    } else if (const char* v = value("--maps=")) {
      o.maps = v;
    } else if (a == "--no-tail") {
      o.tail = false;
    } else if (const char* v = value("--clock=")) {
      if (std::strcmp(v, "cpu") != 0 && std::strcmp(v, "wall") != 0) {
        std::fprintf(stderr, "--clock must be wall or cpu\n");
        std::exit(2);
      }
      g_thread_cpu_clock = std::strcmp(v, "cpu") == 0;
    } else if (a == "--no-mem") {
      o.mem = false;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--n=10000000] [--reps=1] [--mem-n=1000000] "
                   "[--maps=safemap,absl,boost,std] [--clock=wall|cpu] [--no-tail] [--no-mem]\n",
                   argv[0]);
      std::exit(a == "--help" || a == "-h" ? 0 : 2);
    }
  }
  if (o.n == 0 || o.mem_n == 0) {
    std::fprintf(stderr, "--n and --mem-n must be positive\n");
    std::exit(2);
  }
  return o;
}

// safemap::TrieMap through the try_emplace run_tail calls (load_or_store, from one thread): a
// concurrent map that never resizes, so its worst store is one node expansion. Tail only: it
// takes no allocator (safemap-bench reports its memory per entry).
template <class K>
struct trie_tail_map {
  bool try_emplace(const K& k, value_t v) { return !m.load_or_store(k, v).second; }
  std::size_t size() const { return m.size(); }
  safemap::TrieMap<K, value_t> m;
};

// One map under test: how to run each part on it.
struct contender {
  const char* name;
  tail_result (*tail)(const char*, const std::vector<u64_key>&, std::vector<std::uint64_t>&);
  mem_result (*mem)(const char*, const std::vector<u64_key>&, std::size_t);
};

std::vector<contender> contenders(const options& o) {
  using safemap_counted =
      safemap::Map<u64_key, value_t, safemap::Hash<u64_key>, std::equal_to<>, count_alloc>;
  std::vector<contender> all = {
    {"safemap", &run_tail<safemap::Map<u64_key, value_t>>, &run_mem<safemap_counted>},
#if SAFEMAP_BENCH_HAVE_ABSL
    {"absl", &run_tail<absl_map<u64_key>>, &run_mem<absl_map<u64_key, count_alloc>>},
#endif
#if SAFEMAP_BENCH_HAVE_BOOST
    {"boost", &run_tail<boost_map<u64_key>>, &run_mem<boost_map<u64_key, count_alloc>>},
#endif
    {"std", &run_tail<std_map<u64_key>>, &run_mem<std_map<u64_key, count_alloc>>},
    {"trie", &run_tail<trie_tail_map<u64_key>>, nullptr},
  };
  std::vector<contender> chosen;
  for (const auto& c : all) {
    if (wanted(o, c.name)) chosen.push_back(c);
  }
  return chosen;
}

// Medians over the repetitions, the summary docs/benchmarks.md quotes.
void print_tail_summary(const std::vector<std::vector<tail_result>>& reps, std::size_t n) {
  if (reps.empty()) return;
  const std::size_t maps = reps.front().size();
  auto median = [&](std::size_t m, auto field) {
    std::vector<double> v;
    for (const auto& rep : reps) v.push_back(static_cast<double>(field(rep[m])));
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  auto min_max = [&](std::size_t m) {
    std::uint64_t best = UINT64_MAX;
    for (const auto& rep : reps) best = std::min(best, rep[m].max);
    return best;
  };
  std::printf("\n## growth tail summary: %zu uint64 inserts, median of %zu reps\n\n", n,
              reps.size());
  std::printf(
      "| map | mean ns | p50 ns | p99.9 ns | p99.99 ns | max us (median) | max us (best rep)"
      " | median max / safemap's | best max / safemap's |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  std::size_t s = maps;
  for (std::size_t m = 0; m < maps; ++m) {
    if (std::strcmp(reps.front()[m].name, "safemap") == 0) s = m;
  }
  for (std::size_t m = 0; m < maps; ++m) {
    const double mean =
        median(m, [](const tail_result& r) { return r.total_s; }) * 1e9 / static_cast<double>(n);
    const double mx = median(m, [](const tail_result& r) { return r.max; });
    char r1[32] = "-", r2[32] = "-";
    if (s != maps) {
      std::snprintf(r1, sizeof r1, "%.1fx",
                    mx / median(s, [](const tail_result& r) { return r.max; }));
      std::snprintf(r2, sizeof r2, "%.1fx",
                    static_cast<double>(min_max(m)) / static_cast<double>(min_max(s)));
    }
    std::printf("| %s | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f | %s | %s |\n",
                reps.front()[m].name, mean, median(m, [](const tail_result& r) { return r.p50; }),
                median(m, [](const tail_result& r) { return r.p999; }),
                median(m, [](const tail_result& r) { return r.p9999; }), mx / 1e3, min_max(m) / 1e3,
                r1, r2);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::vector<contender> cs = contenders(o);
  std::printf("# safemap_growth_tail (%s clock):",
              g_thread_cpu_clock ? "thread CPU time" : "steady_clock wall");
  for (const auto& c : cs) std::printf(" %s", c.name);
  std::printf("\n");

  if (o.tail && !cs.empty()) {
    const std::vector<u64_key> keys = make_u64_keys(o.n);
    std::vector<std::uint64_t> lat(o.n, 0);  // touched now, not while timing
    std::vector<std::vector<tail_result>> reps;
    for (int rep = 0; rep < o.reps; ++rep) {
      // Each repetition starts with the next map, so no map always runs first (fresh heap,
      // cold machine) or last.
      std::vector<tail_result> rs(cs.size());
      for (std::size_t k = 0; k < cs.size(); ++k) {
        const std::size_t m = (k + static_cast<std::size_t>(rep)) % cs.size();
        rs[m] = cs[m].tail(cs[m].name, keys, lat);
      }
      print_tail(rs, o.n, rep + 1);
      reps.push_back(rs);
    }
    if (o.reps > 1) print_tail_summary(reps, o.n);
  }

  if (o.mem && !cs.empty()) {
    const std::vector<u64_key> keys = make_u64_keys(2 * o.mem_n);
    std::vector<mem_result> rs;
    for (const auto& c : cs) {
      if (c.mem != nullptr) rs.push_back(c.mem(c.name, keys, o.mem_n));
    }
    print_mem(rs, o.mem_n);
  }
  return 0;
}
