// safemap/detail/lock.hpp - the lock of LockedMap and ShardedMap, and re-entrancy tracking.
//
// # Why a lock of our own
// The maps hold their lock for tens of nanoseconds. glibc's pthread_rwlock (and so
// std::shared_mutex) never spins: every contended acquisition is a futex sleep plus a wake-up,
// microseconds, while the holder would have let go long before the sleeper got there. Under
// two writing threads that made LockedMap 60x slower than Go's map + sync.RWMutex (whose
// sync.Mutex spins 4 rounds of 30 PAUSE before it parks). The lock below does what Go's
// sync.Mutex, folly::SharedMutex and Boost.Unordered's rw_spinlock do:
//  - uncontended lock, unlock, lock_shared, unlock_shared: one atomic read-modify-write each;
//  - contended: a bounded spin on a plain load with PAUSE and exponential backoff (gaps of
//    1, 2, 4 ... PAUSE up to 4 µs, 50 µs in all, timed by a calibrated PAUSE count; why so
//    long: lock_waiter), then a few sched_yield (on an oversubscribed machine the holder may
//    be the thread that is not running), then park on the state word with C++20
//    std::atomic::wait / notify_all (a futex on Linux);
//  - bounded unfairness both ways. Writers are preferred: a writer that has spun without
//    getting in sets writer_waiting and new readers stay out, so readers drain and a writer
//    behind a stream of readers gets in after the readers already inside. Readers are not starved
//    by a stream of writers (or a writer by other writers' barging): a waiter that has waited 1 ms
//    (Go's starvationThresholdNs) becomes "starving" and sets reader_starving / writer_starving;
//    non-starving writers then leave a free lock to it, so it gets in at the next release.
//    The bit is cleared by the starving waiter when it acquires.
//
// # Why this lock and not another (bench/lock_bench.cpp, issue 10)
// Measured beside it, in one Google Benchmark binary, under a LockedMap-shaped critical section
// (a header read, one random word of a 2 MiB table, writers bump two counters): a Go
// sync.Mutex-style mutex (barging, 4 x 30 PAUSE, futex wait, handoff after 1 ms), this lock
// used as a plain mutex, absl::Mutex (reader and exclusive), oneTBB's spin_rw_mutex and
// queuing_rw_mutex, and std::shared_mutex. ns/op (wall / all threads' ops), median of 3,
// 50% writes, threads 1 / 2 / 4 / 8, on the shared 2-core machine at load 5-11 (noisy: the
// uncontended column alone varies 25-80 ns between runs):
//   rw_lock 30 / 52 / 23 / 23      go-style mutex 33 / 48 / 29 / 37
//   rw_lock as mutex 36 / 53 / 56 / 31   tbb::spin_rw_mutex 33 / 49 / 36 / 47
//   absl::Mutex (rw) 163 / 140 / 123 / 134   std::shared_mutex 57 / 122 / 97 / 72
//   tbb::queuing_rw_mutex 63 / 3685 / 9486 / 16246
// and at 10% writes rw_lock 25 / 36 / 28 / 28 against the mutex variants' 30-32 / 27-52 /
// 31-37 / 36-41. The spin-then-park locks (this one, the Go-style mutex, TBB's spin lock) are
// within the noise of each other at 50% writes; absl::Mutex (a waiter list under a spin lock,
// and a dependency of the core on Abseil) and std::shared_mutex (never spins) are 1.5-5x slower;
// queuing_rw_mutex (FIFO hand-off, never parks) collapses as soon as a waiter's successor is
// not running, and spin_rw_mutex never parks either (8 threads on 2 cores burn the slices the
// holder needs). A plain mutex gains nothing measurable at 50% writes and serializes readers,
// which the read-mostly rows cannot afford, so LockedMap keeps this reader/writer lock.
// Re-run on a quiet machine: build/release/bench/safemap_lock_bench
//   --benchmark_min_time=0.1 --benchmark_repetitions=3
//   --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//
// # Reader bias: readers that write nothing another thread reads (issue 10)
// Every shared acquisition on the word read-modify-writes it, so two threads that only read
// still hand its cache line back and forth, ~100-260 ns a transfer on the bench machine:
// ShardedMap's no-op deletes ran at 36-40 ns/op at 2 threads where urcu-lfht, whose lookups
// write nothing shared, ran at 5.7. So the lock also has a reader-biased mode, after BRAVO
// (Dice and Kogan, "BRAVO: Biased Locking for Reader-Writer Locks", USENIX ATC 2019) and
// folly::SharedMutex's deferred readers:
//  - while bias_ is set, lock_shared_biased() counts the reader in one of reader_slot_count
//    counters (a thread always uses the same one; each on its own cache line), then checks
//    bias_ again; the state word is not written. unlock_shared(ticket) decrements that
//    counter. A thread claims its counter index (the same in every lock) at its first biased
//    read and keeps it until it exits: a counter belongs to one live thread at a time, so
//    the release is a plain store (release_slot). For the first 4 live threads the counters
//    lie 128 bytes apart, so each stays in its thread's core; threads 5-8 share prefetch
//    pairs; a ninth live reading thread reads on the word (correct, only slower) and tries
//    again later. Threads that read once and then idle keep theirs;
//  - a writer, once it holds the word, clears bias_ if set (revocation) and waits until every
//    counter is 0. Readers that counted themselves before the clear are inside (the writer
//    waits for them); those after it see bias_ clear, undo their count and take the word,
//    where the writer keeps them out. Why that is enough: both sides use seq_cst (a reader's
//    count, then its load of bias_; the writer's store of bias_, then its loads of the counts),
//    so at least one side sees the other (Dekker). bias_ clear therefore means "no biased
//    reader inside, or a writer holding the word is draining them": a writer that finds it
//    clear after taking the word skips the drain (try_lock, which does not wait, puts the bias
//    back before it lets go);
//  - only a reader holding the word shared sets bias_, so no writer holds it then (the one
//    exception: a failing try_lock puts it back while it holds the word exclusively). It
//    does so when it finds another reader inside with it (as folly starts deferring once two
//    readers hold the word) and no writer waiting, on every 64th such acquisition of its
//    thread (ShardedMap's shards also count runs of reads by different threads: count_read),
//    and only once the last revocation's inhibition has passed: inhibit_factor times
//    the revocation's own duration. That is BRAVO's rule; it bounds the time writers spend
//    revoking to about 1/(inhibit_factor + 1) of theirs. One thread alone never turns the
//    bias on (it would gain nothing, and its writes would pay revocations); under a
//    write-heavy mix revocations come at most that often. A writer's cost while the bias is
//    off: one relaxed load of bias_ on the line it has just taken;
//  - a writer waiting for a counter spins and yields like any waiter, then sleeps on the
//    counter's `parked` flag, and the reader's next release wakes it (drain): a
//    reader may hold the lock for a long callback (LockedMap::range) without a writer burning
//    a core. Readers arriving meanwhile wait on the word for that writer, so they wait for the
//    biased readers' critical sections too (bounded by them, as a writer's own would be; the
//    1 ms starvation rule below does not let a reader past a writer that holds the word, so
//    a cycle through two maps' callbacks, which that rule used to break, now stays
//    deadlocked: calling another map from a callback follows the usual lock-order rules).
// The word-only calls (lock_shared, unlock_shared) stay: the whole-map guards (shard_locks)
// take many locks at once and use them. Cost at one thread (the bias stays off), cachegrind,
// LockedMap<u64,u64> with 1023 keys in a plain loop: load hit 81 -> 84 instructions, a 50/50
// load/store mix 150 -> 156, a no-op erase 103 -> 110; inside safemap-bench's harness
// (`--threads 1 --ops 20000`, per op) load-mostly-hits 98.7 -> 110.3 (LockedMap) and
// 78.1 -> 88.4 (ShardedMap), the rest of the go-suite rows -8% to +10%.
//
// # The state word (std::atomic<std::uint32_t>, so wait/notify use a futex directly)
//   bit 0 writer            held exclusively
//   bit 1 writer_waiting    a writer waits: new readers stay out (writer preference)
//   bit 2 writer_starving   a writer has waited >= 1 ms: other writers and new readers stay out
//   bit 3 reader_starving   a reader has waited >= 1 ms: writers (not starving) stay out
//   bit 4 parked            some thread sleeps in wait(): the releaser must notify
//   bits 5..31              readers holding the lock (reader = 32 each)
// Invariants:
//  1. writer set => no reader holds the lock on the word (readers' transient increments,
//     undone at once when they find writer set, are not "holding"), and, once the writer's
//     revocation (if any) has drained the counters, none holds it biased either.
//  2. A thread sleeps in wait(v) only after a CAS that set parked in v; every release that
//     could let it in (writer released, reader count reaching 0) clears parked and notifies
//     when parked was set. Since the sleeper's CAS was against the exact value it saw, any
//     later change makes wait() return or wakes it: no lost wake-up.
//  3. The starving bits are set only by a thread that keeps waiting, and cleared by the
//     starving thread that gets in; one that another starving thread cleared is set again by
//     the rest at their next look.
//  4. A reader counter's parked flag is set only by the draining writer (one at a time: it
//     holds the word), which then runs heavy_barrier before its last look at the count and
//     sleeps on the flag only if that look saw readers; every release by the counter's owner
//     stores the count, then (in program order, which a compiler fence keeps) loads the
//     flag, and if it is set exchanges it to 0 and notifies. The barrier makes the release
//     either visible to the writer's look or followed by a load that sees the flag; the
//     exchange and wait()'s own registration are locked instructions, so the notify cannot
//     miss a writer on its way to sleep. The writer clears the flag once the count is 0. If
//     the kernel refuses the barrier, the writer polls with sleeps and the flag stays up.
//
// try_lock*/lock* also count contended acquisitions (the first try failed) without putting a
// shared write on the uncontended path.
#pragma once

#include <sched.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>

#include "safemap/detail/config.hpp"
#include "safemap/misuse.hpp"

namespace safemap::detail {

// One PAUSE: tells the core this is a spin-wait (saves power, frees the sibling hyperthread,
// avoids the memory-order mis-speculation on exit).
SAFEMAP_ALWAYS_INLINE void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// How many PAUSE instructions make a given time on this machine, measured once per process
// (on the first contended acquisition). PAUSE costs 19-21 ns on the AMD EPYC the bench runs on,
// ~40 ns on Skylake-and-later Intel cores and a few ns on older ones: a spin counted in PAUSE
// would wait 10x longer on one machine than on another. The measurement is the fastest of
// several short rounds: a preemption, an interrupt or a hypervisor's pause-loop exit during a
// round only makes it slower. (One round of 256 PAUSE read 19 ns in most processes on the
// bench VM and 90 ns in some, which cut every spin and backoff gap there to a fifth.)
class pause_clock {
 public:
  static unsigned pauses_for(std::chrono::nanoseconds t) noexcept {
    static const double ns_per_pause = measure();
    const double n = static_cast<double>(t.count()) / ns_per_pause;
    return n < 1 ? 1u : n > 65536 ? 65536u : static_cast<unsigned>(n);
  }

 private:
  static double measure() noexcept {
    constexpr unsigned rounds = 8;
    constexpr unsigned n = 64;
    double best = 1e9;
    for (unsigned r = 0; r < rounds; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (unsigned i = 0; i < n; ++i) cpu_relax();
      const double ns =
          std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
      if (ns < best) best = ns;
    }
    // A core without PAUSE (or a clock coarser than the round) must not make the spin absurd.
    const double per = best / n;
    return per < 1.0 ? 1.0 : per > 200.0 ? 200.0 : per;
  }
};

// A waiter's progress through spin, yield and park, and whether it starves.
//
// The spin backs off exponentially, 1, 2, 4 ... PAUSE between looks, up to max_gap, for
// spin_for in all. Why gaps this long: handing the lock's line (and the table lines the
// holder just wrote) from one core to another costs ~260 ns on the bench machine (measured
// one way with a two-thread ping-pong), several times a LockedMap critical section. Every look
// by a waiter takes the line from the holder, who then pays that transfer again on its next
// acquire or release; and a waiter that gets the lock moves the working set with it. A waiter
// that looks every few µs lets the running holder do tens of operations on warm lines in
// between (throughput), while the 1 ms starvation rule below bounds how long it can be passed
// over. With the old schedule (gaps capped at 32 PAUSE, ~0.7 µs here) two threads on
// mix-50-50 mostly alternated, paying the transfers on every operation.
class lock_waiter {
 public:
  static constexpr std::chrono::nanoseconds max_gap{4'000};
  static constexpr std::chrono::nanoseconds spin_for{50'000};
  static constexpr unsigned yield_rounds = 4;
  // Go's starvationThresholdNs.
  static constexpr std::chrono::nanoseconds starve_after{1'000'000};

  // Backs off once; false when it is time to park instead.
  bool back_off() noexcept {
    if (!spun()) {
      const unsigned pauses = gap_ < cap_ ? gap_ : cap_;
      for (unsigned i = 0; i < pauses; ++i) cpu_relax();
      spun_ += pauses;
      gap_ = pauses * 2;
      return true;
    }
    if (yields_ < yield_rounds) {
      sched_yield();
      ++yields_;
      return true;
    }
    return false;
  }
  // Whether the spin is over (the waiter now yields or parks).
  bool spun() const noexcept { return spun_ >= budget_; }
  // After a wake-up: half a spin again (the releaser may be about to let us in).
  void woke() noexcept {
    spun_ = budget_ / 2;
    gap_ = 1;
    yields_ = yield_rounds;
  }

  // Becomes (and stays) true once the wait has lasted starve_after. Reads the clock only
  // after the spin (a waiter that gets in while spinning never does).
  bool starving() noexcept {
    if (starving_) return true;
    if (!spun()) return false;
    const auto now = std::chrono::steady_clock::now();
    if (start_ == std::chrono::steady_clock::time_point{}) {
      start_ = now;
      return false;
    }
    starving_ = now - start_ >= starve_after;
    return starving_;
  }

 private:
  // The gap cap and the spin budget in PAUSE, converted once per wait (spun() is asked at
  // every look).
  const unsigned cap_ = pause_clock::pauses_for(max_gap);
  const unsigned budget_ = pause_clock::pauses_for(spin_for);
  unsigned spun_ = 0;  // PAUSE executed so far
  unsigned gap_ = 1;   // PAUSE before the next look
  unsigned yields_ = 0;
  bool starving_ = false;
  std::chrono::steady_clock::time_point start_{};
};

// Whether a biased reader's release is a plain store (see rw_lock::release_slot), with the
// order a sleeping writer needs supplied by heavy_barrier: Linux, outside ThreadSanitizer
// (which cannot see the ordering membarrier gives, like liburcu's in reclaim.hpp).
// Elsewhere the release is a seq_cst read-modify-write, as before.
#if defined(__linux__) && defined(__NR_membarrier) && !SAFEMAP_TSAN
#define SAFEMAP_ASYMMETRIC_READERS 1
#else
#define SAFEMAP_ASYMMETRIC_READERS 0
#endif

// A full memory barrier on every CPU that runs a thread of this process (Linux membarrier,
// MEMBARRIER_CMD_PRIVATE_EXPEDITED, kernel 4.14); false where the kernel or a sandbox refuses
// it. 12-22 us on the bench VM (an IPI per other vCPU), so it runs only where a writer is
// about to sleep on a reader's counter. The commands are the kernel ABI's numbers (enum
// membarrier_cmd), so older kernel headers still compile.
class heavy_barrier {
 public:
  // Registers the process, once. A reader calls it when its thread claims a counter, so a
  // writer that holds a lock does not pay the registration (milliseconds on older kernels).
  static bool available() noexcept {
#if SAFEMAP_ASYMMETRIC_READERS
    static const bool registered = syscall(__NR_membarrier, register_private_expedited, 0, 0) == 0;
    return registered;
#else
    return true;  // the readers' releases are seq_cst RMWs: the flag's seq_cst store suffices
#endif
  }
  static bool run() noexcept {
#if SAFEMAP_ASYMMETRIC_READERS
    return available() && syscall(__NR_membarrier, private_expedited, 0, 0) == 0;
#else
    return true;
#endif
  }

 private:
  static constexpr int private_expedited = 1 << 3;           // MEMBARRIER_CMD_PRIVATE_EXPEDITED
  static constexpr int register_private_expedited = 1 << 4;  // ..._REGISTER_PRIVATE_EXPEDITED
};

// The reader counter a thread uses in every biased lock. A counter belongs to one thread at a
// time (its releases are plain stores: see release_slot), claimed at the thread's first biased
// read and given back when the thread exits. Free counters are taken in the order 0, 2, 4, 6,
// 1, 3, 5, 7, so the first four in use lie 128 bytes apart (an adjacent-line prefetch pair
// each, see shard.hpp) and none shares a line. A thread that finds all eight taken reads on
// the word (correct, only slower), and tries again after reclaim_retry_reads such reads, in
// case a thread has exited. The index is a trivially destructible thread-local: one TLS load
// per biased acquisition in an executable (a __tls_get_addr call in a -fPIC shared library).
inline constexpr unsigned reader_slot_count = 8;
inline constexpr unsigned no_reader_slot = reader_slot_count;

// Default visibility: the mask and the thread's index must be one per process even when
// safemap is compiled into several shared objects built with -fvisibility=hidden (two copies
// could hand one counter to two threads, whose plain-store releases would then lose counts).
// A ticket must be released by the thread that took it (as with any lock here).
class __attribute__((visibility("default"))) reader_slots {
 public:
  static unsigned index() noexcept {
    unsigned& i = current();
    if (SAFEMAP_LIKELY(i < no_reader_slot)) return i;
    i = claim_or_wait(i);
    return i < no_reader_slot ? i : no_reader_slot;
  }
  // Counters held by live threads, for tests.
  static unsigned taken_mask() noexcept { return taken().load(std::memory_order_relaxed); }
  // Reads on the word a thread without a counter makes before it tries to claim one again.
  static constexpr unsigned reclaim_retry_reads = 4096;

 private:
  // no_reader_slot + k: k more word reads before the next try.
  static unsigned& current() noexcept {
    static thread_local unsigned i = no_reader_slot + 1;
    return i;
  }
  static std::atomic<unsigned>& taken() noexcept {
    static std::atomic<unsigned> mask{0};
    return mask;
  }
  // Gives the counter back when its thread exits. Built only by a thread that claimed one
  // (its destructor is registered then), so readers that never claim pay nothing for it.
  // After it the thread reads on the word for good (its index says `exited`): a thread_local
  // destructor that runs later and reads a map must not use a counter another thread may own.
  struct owner {
    unsigned i = no_reader_slot;
    ~owner() {
      current() = exited;
      if (i < no_reader_slot) taken().fetch_and(~(1u << i), std::memory_order_release);
    }
  };
  static constexpr unsigned exited = ~0u;

  SAFEMAP_NOINLINE static unsigned claim_or_wait(unsigned i) noexcept {
    if (i == exited) return exited;
    if (i > no_reader_slot + 1) return i - 1;  // not yet time to try again
    static constexpr unsigned order[reader_slot_count] = {0, 2, 4, 6, 1, 3, 5, 7};
    unsigned mask = taken().load(std::memory_order_relaxed);
    for (;;) {
      unsigned pick = no_reader_slot;
      for (unsigned k : order) {
        if ((mask & (1u << k)) == 0) {
          pick = k;
          break;
        }
      }
      if (pick == no_reader_slot) return no_reader_slot + reclaim_retry_reads;
      // acquire: the counter's last owner's stores (its releases) happen before ours.
      if (taken().compare_exchange_weak(mask, mask | (1u << pick), std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        static thread_local owner o;
        o.i = pick;
        heavy_barrier::available();
        return pick;
      }
    }
  }
};

// The reader/writer lock (see the top of this file). Not recursive: a thread must never take
// it twice, shared or not (the maps make sure of that with held_locks below).
class rw_lock {
  // A biased readers' counter, alone on its cache line, and whether a writer sleeps on it.
  struct alignas(64) slot {
    std::atomic<std::uint32_t> n{0};
    std::atomic<std::uint32_t> parked{0};
  };

 public:
  static constexpr std::uint32_t writer = 1;
  static constexpr std::uint32_t writer_waiting = 2;
  static constexpr std::uint32_t writer_starving = 4;
  static constexpr std::uint32_t reader_starving = 8;
  static constexpr std::uint32_t parked = 16;
  static constexpr std::uint32_t reader = 32;

  rw_lock() noexcept = default;
  rw_lock(const rw_lock&) = delete;
  // Turns on the read-run sign for the bias (see count_read). Call before the lock is shared.
  void track_read_runs() noexcept { track_read_runs_ = true; }
  rw_lock& operator=(const rw_lock&) = delete;

  // One CAS when free, and a load of bias_ on the line the CAS took. Relaxed is enough for
  // that load: bias_ is set only under the word held shared, which our acquire ordered before.
  void lock() noexcept {
    std::uint32_t s = 0;
    if (SAFEMAP_UNLIKELY(!state_.compare_exchange_strong(s, writer, std::memory_order_acquire,
                                                         std::memory_order_relaxed))) {
      lock_slow();
    }
    reads_since_write_.store(0, std::memory_order_relaxed);
    if (SAFEMAP_UNLIKELY(bias_.load(std::memory_order_relaxed))) revoke_bias();
  }
  // Never waits: with biased readers inside it fails, as with readers on the word. It puts
  // the bias back before it lets go of the word: "bias clear" must keep meaning "no biased
  // reader inside", which the next writer's lock() relies on to skip the drain.
  bool try_lock() noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    while (writer_may_enter(s, false)) {
      if (state_.compare_exchange_weak(s, s | writer, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        reads_since_write_.store(0, std::memory_order_relaxed);
        if (SAFEMAP_LIKELY(!bias_.load(std::memory_order_relaxed))) return true;
        const std::int64_t start = now_ns();
        bias_.store(false, std::memory_order_seq_cst);
        if (biased_readers() == 0) {
          inhibit_after_revocation(start);
          return true;
        }
        bias_.store(true, std::memory_order_release);  // held exclusively: as a reader would
        unlock();
        return false;
      }
    }
    return false;
  }
  // One fetch_and; a notify only when someone sleeps.
  void unlock() noexcept {
    const std::uint32_t prev = state_.fetch_and(~(writer | parked), std::memory_order_release);
    if (SAFEMAP_UNLIKELY(prev & parked)) notify_parked();
  }

  // One fetch_add when no writer holds or waits.
  void lock_shared() noexcept {
    const std::uint32_t prev = state_.fetch_add(reader, std::memory_order_acquire);
    if (SAFEMAP_LIKELY((prev & (writer | writer_waiting | writer_starving)) == 0)) return;
    if ((prev & (writer | reader_starving)) == reader_starving) return;  // starving readers' turn
    release_reader();  // undo the increment: a writer may wait for the count to reach 0
    lock_shared_slow();
  }
  bool try_lock_shared() noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    while (reader_may_enter(s, false)) {
      if (state_.compare_exchange_weak(s, s + reader, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  // One fetch_sub; the last reader out wakes sleepers (a writer waits for the count to be 0).
  void unlock_shared() noexcept { release_reader(); }

  // A shared acquisition that, while the lock is biased, writes only this thread's reader
  // counter. Returns the ticket unlock_shared(ticket) takes: the counter's index + 1, or 0 when
  // the reader took the word.
  unsigned lock_shared_biased() noexcept {
    if (bias_.load(std::memory_order_relaxed)) {
      const unsigned i = reader_slots::index();
      if (SAFEMAP_UNLIKELY(i == no_reader_slot)) return lock_shared_without_slot();
      slots_[i].n.fetch_add(1, std::memory_order_seq_cst);
      if (SAFEMAP_LIKELY(bias_.load(std::memory_order_seq_cst))) return i + 1;
      return lock_shared_after_revocation(i);
    }
    const std::uint32_t prev = state_.fetch_add(reader, std::memory_order_acquire);
    if (SAFEMAP_LIKELY((prev & (writer | writer_waiting | writer_starving | readers_mask)) == 0)) {
      if (track_read_runs_) count_read();
      return 0;
    }
    lock_shared_word_slow(prev);
    return 0;
  }
  void unlock_shared(unsigned ticket) noexcept {
    if (ticket != 0) {
      release_slot(ticket - 1);
    } else {
      release_reader();
    }
  }

  // Whether readers currently take the biased path; readers counted in the slots now. For
  // tests and diagnostics.
  bool biased() const noexcept { return bias_.load(std::memory_order_relaxed); }
  std::uint32_t biased_readers() const noexcept {
    std::uint32_t n = 0;
    for (const slot& c : slots_) n += c.n.load(std::memory_order_seq_cst);
    return n;
  }
  // How many times a writer of any lock has gone to sleep on a biased reader's counter (for
  // tests: the plain-store release's wake-up path).
  static std::uint64_t writer_sleeps() noexcept {
    return writer_sleeps_.load(std::memory_order_relaxed);
  }
  // Whether a writer sleeps waiting for biased readers to leave (for tests).
  bool writer_parked_on_readers() const noexcept {
    for (const slot& c : slots_) {
      if (c.parked.load(std::memory_order_relaxed) != 0 &&
          c.n.load(std::memory_order_relaxed) != 0) {
        return true;
      }
    }
    return false;
  }

  // Acquisitions that found the lock taken and had to wait.
  std::uint64_t contended() const noexcept { return contended_.load(std::memory_order_relaxed); }

  // The state word, for tests and diagnostics.
  std::uint32_t state() const noexcept { return state_.load(std::memory_order_relaxed); }

  // Two words of the lock's user, kept on the word's own line: for counters that only an
  // exclusive holder writes and anyone may read without the lock (the shard's size and
  // version). A writer holds this line already (it has just read-modify-written the word) and
  // must hold it exclusively again to release the lock, so writing them there, just before,
  // costs it at most the transfer the release would pay (one, when a waiter polled the word
  // in between), and no other line. On a line of their own, shared with the Map header,
  // every write made the next thread to use that shard fetch one more line from the writer's
  // core. A loop of 2 threads, 50% stores and
  // 50% loads of 65,536 keys, ns/op over 3 alternating runs (load 0.4-0.8): ShardedMap 110-114
  // with the counters beside the header, 81-83 with the header alone, 74-75 with the counters
  // here; LockedMap (one lock, so one core at a time) 85-89 in all three. safemap-bench's
  // rows: docs/benchmarks.md, "Seventh pass".
  static constexpr unsigned holder_word_count = 2;
  std::atomic<std::uint64_t>& holder_word(unsigned i) noexcept { return holder_words_[i]; }
  const std::atomic<std::uint64_t>& holder_word(unsigned i) const noexcept {
    return holder_words_[i];
  }

 private:
  static constexpr std::uint32_t readers_mask = ~(reader - 1);

  static bool writer_may_enter(std::uint32_t s, bool starving) noexcept {
    if ((s & (writer | readers_mask)) != 0) return false;
    return starving || (s & (writer_starving | reader_starving)) == 0;
  }
  static bool reader_may_enter(std::uint32_t s, bool starving) noexcept {
    if ((s & writer) != 0) return false;
    return starving || (s & reader_starving) != 0 || (s & (writer_waiting | writer_starving)) == 0;
  }

  void release_reader() noexcept {
    const std::uint32_t prev = state_.fetch_sub(reader, std::memory_order_release);
    if (SAFEMAP_UNLIKELY((prev & parked) != 0) && (prev & readers_mask) == reader) wake_all();
  }
  // Out of line, like the slow paths: std::atomic::notify_all inlines into a few dozen
  // instructions, which kept unlock and unlock_shared (and the maps' guards) from inlining.
  SAFEMAP_NOINLINE void wake_all() noexcept {
    state_.fetch_and(~parked, std::memory_order_relaxed);
    state_.notify_all();
  }
  SAFEMAP_NOINLINE void notify_parked() noexcept { state_.notify_all(); }

  // --- reader bias (see the top of this file) ---
  // Revocation cost times this is how long the bias stays off after a revocation.
  static constexpr std::int64_t inhibit_factor = 16;

 public:
  // Overlapping shared acquisitions on the word (per thread) between two looks at the clock.
  static constexpr unsigned overlaps_per_clock_read = 64;
  // A run of reads with no write, whose last reader is not the last run's, turns the bias on
  // (locks built with track_read_runs). Prime, so that threads taking turns in a short fixed
  // pattern (A B A B ..., A A B ...) do not complete every run with the same thread.
  static constexpr std::uint32_t reads_before_bias = 61;

 private:
  static std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // A plain release store, no read-modify-write: only this thread writes the counter (the
  // entry's fetch_add is the other write, by the same thread). The entry keeps its RMW: it
  // orders the count before the load of bias_ (the Dekker pair with a revoking writer), on
  // every acquisition. The exit needs no such order on the fast path: a draining writer that
  // polls the counter sees the store when it lands. Only a writer about to sleep needs the
  // reader to see its `parked` (store, then load: an order x86 does not keep without a fence),
  // and it gets that from heavy_barrier, between its store of parked and its last look at
  // the count. Two RMWs cost 11.4 ns per read on the bench machine (a loop on a private
  // line), one RMW and a store 5.7; safemap-bench, LockedMap, five alternating runs:
  // delete-collision 6.75 -> 4.15 ns/op at 2 threads, load-or-store-collision 7.06 -> 4.55,
  // load-mostly-hits 7.48 -> 4.93.
  void release_slot(unsigned i) noexcept {
    slot& c = slots_[i];
#if SAFEMAP_ASYMMETRIC_READERS
    c.n.store(c.n.load(std::memory_order_relaxed) - 1, std::memory_order_release);
    // The compiler must not hoist the load above the store (C++ allows it for a relaxed load
    // after a release store); the CPU may, and heavy_barrier covers that.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (SAFEMAP_UNLIKELY(c.parked.load(std::memory_order_relaxed) != 0)) wake_slot(i);
#else
    c.n.fetch_sub(1, std::memory_order_seq_cst);
    if (SAFEMAP_UNLIKELY(c.parked.load(std::memory_order_seq_cst) != 0)) wake_slot(i);
#endif
  }
  // The writer sleeps on `parked` (not on the count, whose values repeat). A locked exchange
  // here and the waiter's locked registration in std::atomic::wait keep notify_all from
  // missing a waiter that is just going to sleep (a plain store and load on each side could
  // both read stale values: the store-buffer pattern).
  SAFEMAP_NOINLINE void wake_slot(unsigned i) noexcept {
    if (slots_[i].parked.exchange(0, std::memory_order_seq_cst) != 0) slots_[i].parked.notify_all();
  }
  // A reader whose thread has no counter (eight other threads hold them all) while the lock is
  // biased: it reads on the word, beside the biased readers.
  SAFEMAP_NOINLINE unsigned lock_shared_without_slot() noexcept {
    lock_shared();
    return 0;
  }

  // The rest of lock_shared_biased, out of line so that the maps' read guards inline small
  // (with it inline, GCC stopped inlining the per-entry callback of safemap-bench's LockedMap
  // range: 41 -> 59 instructions per entry).
  // A biased reader that found the bias revoked after counting itself: the writer waits for
  // that count, so undo it, then take the word.
  SAFEMAP_NOINLINE unsigned lock_shared_after_revocation(unsigned i) noexcept {
    release_slot(i);
    lock_shared();
    return 0;
  }
  // A reader whose increment of the word found a writer, or other readers, there.
  SAFEMAP_NOINLINE void lock_shared_word_slow(std::uint32_t prev) noexcept {
    if ((prev & (writer | writer_waiting | writer_starving)) == 0) {
      // Another reader inside with us: reads overlap across threads, the case the bias is
      // for (as folly::SharedMutex starts deferring readers once two hold it inline).
      readers_overlap();
      return;
    }
    if ((prev & (writer | reader_starving)) == reader_starving) return;  // starving readers' turn
    release_reader();
    lock_shared_slow();
  }

  // Read runs (locks built with track_read_runs only). Overlapping readers are one sign that
  // several threads read a lock; threads that take turns on it without overlapping show none,
  // and that is how two threads meet on one of ShardedMap's shards (another thread is inside
  // the same shard 1/S as often as it is inside LockedMap's lock). On safemap-bench's
  // adversarial-alloc row (loads of absent keys, a store after 1, 2, 3 ... loads) overlaps
  // turned the bias on 450 times in a 100 ms run at 2 threads, and ShardedMap ran at
  // 29-32 ns/op against LockedMap's 12. So such a lock also counts the reads on the word since
  // the last write, and every reads_before_bias reads in a row, if the reader that completes
  // the run is not the one that completed the last run, turns the bias on (same conditions as
  // an overlap). One thread alone never does (it would gain nothing, and its writes would pay
  // revocations), nor do reads among frequent writes (each write would revoke). The count is a
  // hint: readers inside together may lose each other's increments. Off for LockedMap, whose
  // readers overlap often: the count cost its read-mostly rows 5-8% (mix-99-1, 4 threads,
  // nine alternating runs) and the overlaps already turn its bias on.
  void count_read() noexcept {
    const std::uint32_t n = reads_since_write_.load(std::memory_order_relaxed) + 1;
    reads_since_write_.store(n, std::memory_order_relaxed);
    if (SAFEMAP_UNLIKELY(n % reads_before_bias == 0)) read_run_completed();
  }
  SAFEMAP_NOINLINE void read_run_completed() noexcept {
    const void* prev = last_reader_.exchange(reader_token(), std::memory_order_relaxed);
    if (prev != nullptr && prev != reader_token()) try_bias();
  }
  // The address of a thread_local: an identity for this thread, for as long as it runs.
  static const void* reader_token() noexcept {
    static thread_local const char token = 0;
    return &token;
  }

  // Called by a reader that holds the word shared together with another reader. The clock is
  // read on every overlaps_per_clock_read-th such call of a thread only: with every 4th,
  // readers of a 10% write mix (the bias mostly inhibited, readers overlapping often) paid
  // ~4 ns per read for it (bench/lock_bench.cpp, 2-8 threads).
  SAFEMAP_NOINLINE void readers_overlap() noexcept {
    static thread_local unsigned calls = 0;
    if (++calls % overlaps_per_clock_read != 0) return;
    try_bias();
  }
  // Turns the bias on unless it is on, a writer waits (biased readers would enter past its
  // writer preference, and it would revoke at once), or the last revocation's inhibition has
  // not passed.
  void try_bias() noexcept {
    if (bias_.load(std::memory_order_relaxed)) return;
    if ((state_.load(std::memory_order_relaxed) & (writer_waiting | writer_starving)) != 0) return;
    if (now_ns() < inhibit_until_.load(std::memory_order_relaxed)) return;
    bias_.store(true, std::memory_order_release);
  }

  // Called by a writer that holds the word and found bias_ set.
  SAFEMAP_NOINLINE void revoke_bias() noexcept {
    const std::int64_t start = now_ns();
    bias_.store(false, std::memory_order_seq_cst);
    for (slot& c : slots_) drain(c);
    inhibit_after_revocation(start);
  }
  void inhibit_after_revocation(std::int64_t start) noexcept {
    const std::int64_t end = now_ns();
    inhibit_until_.store(end + inhibit_factor * (end - start), std::memory_order_relaxed);
  }

  // Waits until no biased reader is counted in c: spins and yields like any waiter, then
  // sleeps on c.parked, after setting it and making the reader see it (heavy_barrier): the
  // reader's release that finds it set clears it and wakes us. Where the kernel refuses the
  // barrier, the reader would not know to wake us: then we poll with sleeps of 10 us growing
  // to 1 ms (a reader holds the lock that long only in a long callback, such as a range's).
  void drain(slot& c) noexcept {
    std::uint32_t v = c.n.load(std::memory_order_seq_cst);
    if (SAFEMAP_LIKELY(v == 0)) return;
    lock_waiter w;
    std::chrono::microseconds poll{10};
    for (;;) {
      if (v == 0) break;
      if (w.back_off()) {
        v = c.n.load(std::memory_order_acquire);
        continue;
      }
      c.parked.store(1, std::memory_order_seq_cst);
      if (!heavy_barrier::run()) {
        // The flag stays up (a reader may clear it with a spurious notify): it still says
        // that a writer waits on this counter.
        std::this_thread::sleep_for(poll);
        if (poll < std::chrono::milliseconds(1)) poll *= 2;
        v = c.n.load(std::memory_order_acquire);
        continue;
      }
      // Either the reader's last release landed before the barrier (this load sees it) or
      // its load of parked comes after the barrier (it sees 1 and wakes us).
      v = c.n.load(std::memory_order_seq_cst);
      if (v != 0) {
        writer_sleeps_.fetch_add(1, std::memory_order_relaxed);
        c.parked.wait(1, std::memory_order_acquire);
        w.woke();
        v = c.n.load(std::memory_order_acquire);
      }
    }
    c.parked.store(0, std::memory_order_relaxed);
  }

  // Sleeps until the word changes from s, after marking it parked; false when the word had
  // already changed (look again).
  bool park(std::uint32_t s) noexcept {
    if ((s & parked) == 0 &&
        !state_.compare_exchange_weak(s, s | parked, std::memory_order_relaxed)) {
      return false;
    }
    state_.wait(s | parked, std::memory_order_relaxed);
    return true;
  }

  SAFEMAP_NOINLINE void lock_slow() noexcept {
    contended_.fetch_add(1, std::memory_order_relaxed);
    lock_waiter w;
    for (;;) {
      const bool starving = w.starving();
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (writer_may_enter(s, starving)) {
        // Our own announcements go: others still waiting set them again at their next look.
        const std::uint32_t next =
            (s | writer) & ~(writer_waiting | (starving ? writer_starving : 0u));
        if (state_.compare_exchange_weak(s, next, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          return;
        }
        continue;
      }
      // Announced only once the spin is over: a waiting writer keeps new readers out, and
      // while it spins the holder's own next reads would then wait on a writer that is
      // sleeping in a PAUSE gap. After the spin, readers drain and the writer gets in.
      const std::uint32_t announce = writer_waiting | (starving ? writer_starving : 0u);
      if ((s & announce) != announce && w.spun()) {
        state_.compare_exchange_weak(s, s | announce, std::memory_order_relaxed);
        continue;
      }
      if (w.back_off()) continue;
      if (park(s)) w.woke();
    }
  }

  SAFEMAP_NOINLINE void lock_shared_slow() noexcept {
    contended_.fetch_add(1, std::memory_order_relaxed);
    lock_waiter w;
    for (;;) {
      const bool starving = w.starving();
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (reader_may_enter(s, starving)) {
        const std::uint32_t next = (s + reader) & ~(starving ? reader_starving : 0u);
        if (state_.compare_exchange_weak(s, next, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          return;
        }
        continue;
      }
      if (starving && (s & reader_starving) == 0) {
        state_.compare_exchange_weak(s, s | reader_starving, std::memory_order_relaxed);
        continue;
      }
      if (w.back_off()) continue;
      if (park(s)) w.woke();
    }
  }

  // Read-modify-written by every acquisition on the word; contended_ only on the slow path;
  // bias_ read by every acquisition, written by a revoking writer or a reader turning it on;
  // inhibit_until_ (steady_clock ns) written by a revoking writer, read by readers about to
  // turn the bias on; holder_words_ written by exclusive holders (see holder_word). They
  // share a line: a contended acquirer owns the line anyway, and biased readers only read it.
  std::atomic<std::uint32_t> state_{0};
  std::atomic<bool> bias_{false};
  std::atomic<std::uint64_t> contended_{0};
  std::atomic<std::int64_t> inhibit_until_{0};
  std::atomic<std::uint64_t> holder_words_[holder_word_count]{};
  // Written by readers on the word (count_read) and reset by writers; with
  // track_read_runs_ only (set before the lock is shared, then only read).
  std::atomic<std::uint32_t> reads_since_write_{0};
  bool track_read_runs_ = false;
  std::atomic<const void*> last_reader_{nullptr};

  static inline std::atomic<std::uint64_t> writer_sleeps_{0};

  // The biased readers' counters, one cache line each, after the word's 128-byte unit.
  alignas(128) slot slots_[reader_slot_count];
};

// Holds an rw_lock exclusively (Exclusive) or shared for a scope: the interface the maps used
// from std::unique_lock / std::shared_lock (construct locked or with std::defer_lock, lock,
// unlock, owns_lock, move), without their checks that throw std::system_error on a missing or
// unowned mutex. Those kept std::unique_lock<rw_lock>::unlock an out-of-line call on every op
// (5% of LockedMap's samples at one thread); these inline to the one RMW of the release.
template <bool Exclusive>
class rw_guard {
 public:
  explicit rw_guard(rw_lock& l) noexcept : l_(&l) { lock(); }
  rw_guard(rw_lock& l, std::defer_lock_t) noexcept : l_(&l) {}
  rw_guard(rw_guard&& other) noexcept
      : l_(other.l_), owns_(std::exchange(other.owns_, false)), ticket_(other.ticket_) {}
  rw_guard(const rw_guard&) = delete;
  rw_guard& operator=(const rw_guard&) = delete;
  rw_guard& operator=(rw_guard&&) = delete;
  ~rw_guard() {
    if (owns_) unlock();
  }

  // Precondition: not already held through this guard.
  void lock() noexcept {
    if constexpr (Exclusive) {
      l_->lock();
    } else {
      ticket_ = l_->lock_shared_biased();
    }
    owns_ = true;
  }
  // Precondition: held through this guard.
  void unlock() noexcept {
    owns_ = false;
    if constexpr (Exclusive) {
      l_->unlock();
    } else {
      l_->unlock_shared(ticket_);
    }
  }
  bool owns_lock() const noexcept { return owns_; }

 private:
  rw_lock* l_;
  bool owns_ = false;
  unsigned ticket_ = 0;  // shared: lock_shared_biased()'s ticket
};

// Which maps' locks this thread holds while it runs a user callback (range, visit, compute).
// A call from inside such a callback on the same map must not lock again (a non-recursive
// lock would deadlock); the map consults held_locks to read without relocking, or to report
// misuse_kind::reentrant_call for a write it cannot perform. Empty for threads that never run
// a callback, so the check is one thread-local load on the fast path.
class held_locks {
 public:
  enum class mode : std::uint8_t { none, shared, exclusive };

 private:
  struct entry {
    const void* lock;
    mode m;
    const entry* prev;
  };
  static inline thread_local const entry* top_ = nullptr;

 public:
  static mode held(const void* lock) noexcept {
    for (const entry* e = top_; e != nullptr; e = e->prev) {
      if (e->lock == lock) return e->m;
    }
    return mode::none;
  }
  static bool empty() noexcept { return top_ == nullptr; }

  // Marks `lock` as held by this thread in mode m for the scope's lifetime.
  class scope {
   public:
    scope(const void* lock, mode m) noexcept : e_{lock, m, top_} { top_ = &e_; }
    ~scope() { top_ = e_.prev; }
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;

   private:
    entry e_;
  };
};

// Reports a write attempted from a callback that runs under this map's lock.
[[noreturn]] inline void report_reentrant_write() {
  report_misuse(misuse_kind::reentrant_call);
  // A handler that returns cannot make the write safe: refuse it.
  throw misuse_error(
      misuse_report{misuse_kind::reentrant_call, misuse_message(misuse_kind::reentrant_call)});
}

}  // namespace safemap::detail
