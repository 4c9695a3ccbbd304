// bench/shared_table_probe.cpp - what threads sharing one table cost on this machine, apart
// from the lock: the figures behind docs/benchmarks.md, "Ninth pass" (issue 10).
//
// Runs a mix of loads and stores (uniform keys, values that never change, as safemap-bench's
// mixes) on one LockedMap or ShardedMap for a fixed time, and prints ns per op over all threads
// in three setups:
//   alone     one thread
//   shared    --threads threads on one map, placed by the OS
//   one-cpu   the same threads all pinned to the first CPU the process may use (Linux), so
//             they take turns on one core's caches, as Go's scheduler makes two goroutines do
//   separate  --threads threads, each on a map of its own (nothing shared)
// If "shared" is far above "alone" while "one-cpu" and "separate" are not, the cost is cache
// lines of the table moving between cores, which no lock can remove. Run on a quiet machine:
//   build/release/bench/safemap_shared_table_probe [--map=locked|sharded] [--threads=2]
//       [--writes=50] [--keys=65536] [--ms=300] [--runs=3]
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "peer_hash.hpp"  // fmix64, the benchmarks' key mixer
#include "safemap/locked_map.hpp"
#include "safemap/sharded_map.hpp"

namespace {

using safemap_bench::fmix64;

struct options {
  std::string map = "locked";
  unsigned threads = 2;
  unsigned writes = 50;
  unsigned keys = 65536;
  unsigned ms = 300;
  unsigned runs = 3;
};

// One op stream shared by every thread (each starts at its own offset): bit 31 says store.
std::vector<std::uint32_t> make_ops(const options& o) {
  std::vector<std::uint32_t> ops(1u << 20);
  std::uint64_t s = 0x2545f4914f6cdd1dULL;
  for (auto& op : ops) {
    s = fmix64(s + 0x9e3779b97f4a7c15ULL);
    op = static_cast<std::uint32_t>(s % o.keys) | ((s >> 40) % 100 < o.writes ? 1u << 31 : 0u);
  }
  return ops;
}

template <class M>
std::unique_ptr<M> filled(const options& o) {
  auto m = std::make_unique<M>();
  for (std::uint32_t k = 0; k < o.keys; ++k) m->store(fmix64(k), k + 1);
  return m;
}

// Runs `threads` threads for o.ms; thread t uses maps[t % maps.size()]. Returns ns per op.
template <class M>
double run(const options& o, const std::vector<std::uint32_t>& ops, std::vector<M*> maps,
           unsigned threads, bool one_cpu) {
  std::atomic<bool> stop{false};
  std::atomic<unsigned> ready{0};
  std::vector<std::uint64_t> done(threads * 8, 0);
  cpu_set_t first{};
  if (one_cpu) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    sched_getaffinity(0, sizeof allowed, &allowed);
    CPU_ZERO(&first);
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &allowed)) {
        CPU_SET(c, &first);
        break;
      }
    }
  }
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      if (one_cpu) sched_setaffinity(0, sizeof first, &first);
      M& m = *maps[t % maps.size()];
      std::uint64_t i = t * (ops.size() / threads), n = 0, sum = 0;
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        for (int b = 0; b < 64; ++b, ++i, ++n) {
          const std::uint32_t op = ops[i & (ops.size() - 1)];
          const std::uint32_t k = op & 0x7fffffffu;
          if (op >> 31) {
            m.store(fmix64(k), k + 1);
          } else if (auto v = m.load(fmix64(k))) {
            sum += *v;
          }
        }
      }
      done[t * 8] = n + (sum == 1 ? 1 : 0);  // keeps the loads
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(o.ms));  // the run's length, not a sync
  stop = true;
  for (auto& th : ts) th.join();
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  std::uint64_t total = 0;
  for (unsigned t = 0; t < threads; ++t) total += done[t * 8];
  return ns / static_cast<double>(total);
}

template <class M>
void probe(const options& o) {
  const auto ops = make_ops(o);
  auto shared = filled<M>(o);
  std::vector<std::unique_ptr<M>> own;
  std::vector<M*> own_ptrs;
  for (unsigned t = 0; t < o.threads; ++t) {
    own.push_back(filled<M>(o));
    own_ptrs.push_back(own.back().get());
  }
  std::printf("%s, %u threads, %u%% stores, %u keys, %u ms per run: ns/op over all threads\n",
              o.map.c_str(), o.threads, o.writes, o.keys, o.ms);
  std::printf("%-4s %10s %10s %10s %10s\n", "run", "alone", "shared", "one-cpu", "separate");
  for (unsigned r = 0; r < o.runs; ++r) {
    const double alone = run<M>(o, ops, {shared.get()}, 1, false);
    const double together = run<M>(o, ops, {shared.get()}, o.threads, false);
    const double pinned = run<M>(o, ops, {shared.get()}, o.threads, true);
    const double apart = run<M>(o, ops, own_ptrs, o.threads, false);
    std::printf("%-4u %10.1f %10.1f %10.1f %10.1f\n", r + 1, alone, together, pinned, apart);
  }
}

bool flag(const char* arg, const char* name, std::string& value) {
  const std::size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (flag(argv[i], "--map", v)) {
      o.map = v;
    } else if (flag(argv[i], "--threads", v)) {
      o.threads = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (flag(argv[i], "--writes", v)) {
      o.writes = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (flag(argv[i], "--keys", v)) {
      o.keys = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (flag(argv[i], "--ms", v)) {
      o.ms = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (flag(argv[i], "--runs", v)) {
      o.runs = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--map=locked|sharded] [--threads=N] [--writes=PCT] [--keys=N] "
                   "[--ms=N] [--runs=N]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.threads == 0 || o.keys == 0 || o.keys > 0x7fffffffu || o.writes > 100) {
    std::fprintf(stderr, "%s: threads and keys must be positive, writes at most 100\n", argv[0]);
    return 2;
  }
  if (o.map == "locked") {
    probe<safemap::LockedMap<std::uint64_t, std::uint64_t>>(o);
  } else if (o.map == "sharded") {
    probe<safemap::ShardedMap<std::uint64_t, std::uint64_t>>(o);
  } else {
    std::fprintf(stderr, "%s: --map is locked or sharded\n", argv[0]);
    return 2;
  }
  return 0;
}
