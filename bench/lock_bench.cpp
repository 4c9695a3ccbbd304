// lock_bench.cpp - the lock behind LockedMap and ShardedMap (detail::rw_lock) against the
// locks it could have been: a Go sync.Mutex-style mutex (barging, bounded PAUSE spin, then a
// futex wait, FIFO handoff after 1 ms), rw_lock used as a plain mutex, absl::Mutex, oneTBB's
// spin_rw_mutex and queuing_rw_mutex, and std::shared_mutex (glibc's pthread_rwlock).
//
// What one op is: take the lock (shared for a read, exclusive for a write, write_pct% writes
// drawn from a per-thread xorshift), read a "header" word (the map's bucket pointer), touch one
// random word of a 2 MiB table (a bucket: a cache miss, as in LockedMap's 65536-key mix),
// writers also bump two counters (size and version), release. That is the shape of a LockedMap
// op, so the lock's own cost shows against the critical section it really guards.
//
// The header and counters live either on the lock's own 128-byte line ("/same_line", the shard
// layout before issue 10) or on the next one ("/own_line"): waiters that spin on or RMW the
// lock word steal the line from the holder, who then misses on its own header and counters.
//
// ns/op is Go's: wall time over the ops of all threads (the "ns_per_op" counter). Threads 1
// (uncontended), 2, 4 and 8 (oversubscribed on a 2-core machine). Results and the command:
// docs/benchmarks.md and the lock.hpp header.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "safemap/detail/lock.hpp"

#if SAFEMAP_BENCH_HAVE_ABSL_SYNC
#include "absl/synchronization/mutex.h"
#endif
#if SAFEMAP_BENCH_HAVE_TBB
#include <oneapi/tbb/queuing_rw_mutex.h>
#include <oneapi/tbb/spin_rw_mutex.h>
#endif

namespace {

using safemap::detail::cpu_relax;
using safemap::detail::lock_waiter;

// Go's sync.Mutex in a 32-bit word: barging fast path, a bounded spin on plain loads (4 rounds
// of 30 PAUSE, as Go's active_spin), then a futex wait; a waiter that has waited 1 ms sets
// starving and newcomers stop barging, so it gets the lock at the next release (Go hands the
// lock over directly; a word lock lets the starving waiter take it instead).
class go_mutex {
 public:
  static constexpr std::uint32_t locked = 1;
  static constexpr std::uint32_t starving = 2;
  static constexpr std::uint32_t parked = 4;

  void lock() noexcept {
    std::uint32_t s = 0;
    if (state_.compare_exchange_strong(s, locked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return;
    }
    lock_slow();
  }
  void unlock() noexcept {
    const std::uint32_t prev = state_.fetch_and(~(locked | parked), std::memory_order_release);
    if (prev & parked) state_.notify_all();
  }

 private:
  void lock_slow() noexcept {
    unsigned spins = 0;
    std::chrono::steady_clock::time_point since{};  // read once the spin is over
    bool me_starving = false;
    for (;;) {
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if ((s & locked) == 0 && (me_starving || (s & starving) == 0)) {
        if (state_.compare_exchange_weak(s, (s | locked) & ~(me_starving ? starving : 0u),
                                         std::memory_order_acquire, std::memory_order_relaxed)) {
          return;
        }
        continue;
      }
      if (spins < 4) {
        for (int i = 0; i < 30; ++i) cpu_relax();
        if (++spins == 4) since = std::chrono::steady_clock::now();
        continue;
      }
      if (!me_starving) {
        me_starving = std::chrono::steady_clock::now() - since >= lock_waiter::starve_after;
      }
      if (me_starving && (s & starving) == 0) {
        state_.compare_exchange_weak(s, s | starving, std::memory_order_relaxed);
        continue;
      }
      if ((s & parked) == 0 &&
          !state_.compare_exchange_weak(s, s | parked, std::memory_order_relaxed)) {
        continue;
      }
      state_.wait(s | parked, std::memory_order_relaxed);
    }
  }

  std::atomic<std::uint32_t> state_{0};
};

// rw_lock taken exclusively for reads too: what a plain-mutex LockedMap would do with it.
struct rw_as_mutex {
  safemap::detail::rw_lock l;
  void lock() noexcept { l.lock(); }
  void unlock() noexcept { l.unlock(); }
  void lock_shared() noexcept { l.lock(); }
  void unlock_shared() noexcept { l.unlock(); }
};

template <class M>
struct mutex_only {  // shared = exclusive
  M m;
  void lock() noexcept { m.lock(); }
  void unlock() noexcept { m.unlock(); }
  void lock_shared() noexcept { m.lock(); }
  void unlock_shared() noexcept { m.unlock(); }
};

#if SAFEMAP_BENCH_HAVE_ABSL_SYNC
struct absl_rw {
  absl::Mutex m;
  void lock() noexcept { m.Lock(); }
  void unlock() noexcept { m.Unlock(); }
  void lock_shared() noexcept { m.ReaderLock(); }
  void unlock_shared() noexcept { m.ReaderUnlock(); }
};
struct absl_mutex {
  absl::Mutex m;
  void lock() noexcept { m.Lock(); }
  void unlock() noexcept { m.Unlock(); }
  void lock_shared() noexcept { m.Lock(); }
  void unlock_shared() noexcept { m.Unlock(); }
};
#endif

#if SAFEMAP_BENCH_HAVE_TBB
struct tbb_spin_rw {
  tbb::spin_rw_mutex m;
  void lock() noexcept { m.lock(); }
  void unlock() noexcept { m.unlock(); }
  void lock_shared() noexcept { m.lock_shared(); }
  void unlock_shared() noexcept { m.unlock_shared(); }
};
#endif

// The guarded state: lock, header and counters (same line or next line), and the table.
template <class Lock, bool SameLine>
struct guarded {
  struct alignas(128) same_line_t {
    Lock lock;
    const std::uint64_t* table = nullptr;
    std::uint64_t size = 0;
    std::uint64_t version = 0;
  };
  struct own_line_t {
    alignas(128) Lock lock;
    alignas(128) const std::uint64_t* table = nullptr;
    std::uint64_t size = 0;
    std::uint64_t version = 0;
  };
  std::conditional_t<SameLine, same_line_t, own_line_t> s;
  std::vector<std::uint64_t> data = std::vector<std::uint64_t>(std::size_t{1} << 18, 1);
  guarded() { s.table = data.data(); }
};

constexpr std::uint64_t table_mask = (std::uint64_t{1} << 18) - 1;

template <class G>
G& shared_state() {
  static G g;
  return g;
}

// A shared acquisition and its release. rw_lock's readers go the way the maps' read guard
// (detail::rw_guard) takes them: biased once readers on several threads overlap; rw_word
// below measures its word-only readers (what the whole-map guards use).
template <class Lock>
unsigned read_lock(Lock& l) {
  l.lock_shared();
  return 0;
}
template <class Lock>
void read_unlock(Lock& l, unsigned) {
  l.unlock_shared();
}
inline unsigned read_lock(safemap::detail::rw_lock& l) {
  return l.lock_shared_biased();
}
inline void read_unlock(safemap::detail::rw_lock& l, unsigned ticket) {
  l.unlock_shared(ticket);
}

template <class Lock, bool SameLine>
void one_op(guarded<Lock, SameLine>& g, std::uint64_t r, bool write, std::uint64_t& sink) {
  auto& s = g.s;
  if (write) {
    s.lock.lock();
    auto* t = const_cast<std::uint64_t*>(s.table);
    t[r & table_mask] += 1;
    s.size = s.size + 1;
    s.version = s.version + 1;
    s.lock.unlock();
  } else {
    const unsigned ticket = read_lock(s.lock);
    sink += s.table[r & table_mask];
    read_unlock(s.lock, ticket);
  }
}

// rw_lock with readers on the word only (no bias).
struct rw_word {
  safemap::detail::rw_lock l;
  void lock() noexcept { l.lock(); }
  void unlock() noexcept { l.unlock(); }
  void lock_shared() noexcept { l.lock_shared(); }
  void unlock_shared() noexcept { l.unlock_shared(); }
};

// Shared: locks that take a scoped_lock (queuing_rw_mutex needs its node on the stack).
#if SAFEMAP_BENCH_HAVE_TBB
struct tbb_queuing_rw {
  tbb::queuing_rw_mutex m;
};
template <bool SameLine>
void one_op(guarded<tbb_queuing_rw, SameLine>& g, std::uint64_t r, bool write,
            std::uint64_t& sink) {
  auto& s = g.s;
  tbb::queuing_rw_mutex::scoped_lock l(s.lock.m, write);
  if (write) {
    auto* t = const_cast<std::uint64_t*>(s.table);
    t[r & table_mask] += 1;
    s.size = s.size + 1;
    s.version = s.version + 1;
  } else {
    sink += s.table[r & table_mask];
  }
}
#endif

// state.range(0): percent of writes.
template <class Lock, bool SameLine>
void BM_Lock(benchmark::State& state) {
  using G = guarded<Lock, SameLine>;
  G& g = shared_state<G>();
  const auto write_pct = static_cast<std::uint64_t>(state.range(0));
  std::uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(state.thread_index() + 1);
  std::uint64_t sink = 0;
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    one_op(g, x >> 8, (x % 100) < write_pct, sink);
  }
  benchmark::DoNotOptimize(sink);
  state.counters["ns_per_op"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

#define SAFEMAP_LOCK_BENCH(LOCK, SAME)                                                 \
  BENCHMARK_TEMPLATE(BM_Lock, LOCK, SAME)                                              \
      ->Name(std::string("BM_Lock<" #LOCK ">/") + ((SAME) ? "same_line" : "own_line")) \
      ->ArgName("write_pct")                                                           \
      ->Arg(50)                                                                        \
      ->Arg(10)                                                                        \
      ->Threads(1)                                                                     \
      ->Threads(2)                                                                     \
      ->Threads(4)                                                                     \
      ->Threads(8)                                                                     \
      ->UseRealTime()

SAFEMAP_LOCK_BENCH(safemap::detail::rw_lock, true);
SAFEMAP_LOCK_BENCH(safemap::detail::rw_lock, false);
SAFEMAP_LOCK_BENCH(rw_word, false);
SAFEMAP_LOCK_BENCH(rw_as_mutex, false);
SAFEMAP_LOCK_BENCH(mutex_only<go_mutex>, false);
#if SAFEMAP_BENCH_HAVE_ABSL_SYNC
SAFEMAP_LOCK_BENCH(absl_rw, false);
SAFEMAP_LOCK_BENCH(absl_mutex, false);
#endif
#if SAFEMAP_BENCH_HAVE_TBB
SAFEMAP_LOCK_BENCH(tbb_spin_rw, false);
SAFEMAP_LOCK_BENCH(tbb_queuing_rw, false);
#endif
SAFEMAP_LOCK_BENCH(std::shared_mutex, false);

}  // namespace

BENCHMARK_MAIN();
