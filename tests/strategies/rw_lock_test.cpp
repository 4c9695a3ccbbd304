// Tests of safemap::detail::rw_lock (include/safemap/detail/lock.hpp), the lock of LockedMap
// and ShardedMap: mutual exclusion, shared/exclusive and try_lock semantics, bounded waits
// both ways (a writer under constant readers, readers under constant writers), and a
// lost-wake-up stress with more threads than cores. Every test that could hang if the lock
// were wrong runs under a watchdog that aborts the binary (a failure) instead of hanging, and
// the progress tests bound the other side's iterations instead of timing anything.
#include "safemap/detail/lock.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "safemap/detail/config.hpp"
#include "support/lock_suite.hpp"
#include "support/watchdog.hpp"

namespace {

using safemap::detail::rw_lock;
namespace lk = safemap_test::lock;

// Fewer iterations under sanitizers (each lock operation is instrumented).
constexpr long scale = (SAFEMAP_TSAN != 0) ? 8 : 1;

using safemap_test::watchdog;  // fails the binary instead of hanging it

// xorshift64: the tests' cheap random numbers.
std::uint64_t xorshift(std::uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

// A thread that takes l exclusively, marks `in`, checks that no biased reader is counted while
// it holds the lock (invariant 1), and lets go.
std::thread writer_entering(rw_lock& l, std::atomic<bool>& in) {
  return std::thread([&l, &in] {
    l.lock();
    in = true;
    EXPECT_EQ(l.biased_readers(), 0u);
    l.unlock();
  });
}

// The spin and backoff are counted in PAUSE converted from time: a calibration that read
// PAUSE as slower than it is (one preempted round did, 90 ns instead of 19) would cut every
// wait short. Spinning the count for a time must last at least most of that time; a busy
// machine only makes it longer.
TEST(PauseClock, ACountForATimeSpinsAtLeastMostOfIt) {
  using safemap::detail::pause_clock;
  constexpr std::chrono::microseconds want{200};
  const unsigned n = pause_clock::pauses_for(want);
  ASSERT_GE(n, 1u);
  auto fastest = std::chrono::steady_clock::duration::max();
  for (int round = 0; round < 5; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned i = 0; i < n; ++i) safemap::detail::cpu_relax();
    fastest = std::min(fastest, std::chrono::steady_clock::now() - t0);
  }
#if defined(__x86_64__) || defined(__i386__)
  // Elsewhere a "PAUSE" may be far under the 1 ns floor the calibration assumes.
  EXPECT_GE(fastest, want * 3 / 4) << n << " PAUSE";
#endif
  // Counts grow with the time asked for and stay within the cap.
  EXPECT_LE(pause_clock::pauses_for(std::chrono::microseconds(10)), n);
  EXPECT_EQ(pause_clock::pauses_for(std::chrono::nanoseconds(0)), 1u);
  EXPECT_EQ(pause_clock::pauses_for(std::chrono::seconds(10)), 65536u);
}

TEST(RwLock, TryLockSeesExclusiveAndSharedHolders) {
  rw_lock l;
  EXPECT_TRUE(l.try_lock());
  EXPECT_FALSE(l.try_lock());
  EXPECT_FALSE(l.try_lock_shared());
  l.unlock();
  EXPECT_TRUE(l.try_lock_shared());
  EXPECT_TRUE(l.try_lock_shared()) << "readers share the lock";
  EXPECT_FALSE(l.try_lock()) << "a writer must wait for the readers";
  l.unlock_shared();
  EXPECT_FALSE(l.try_lock()) << "one reader still holds it";
  l.unlock_shared();
  EXPECT_TRUE(l.try_lock());
  l.unlock();
  EXPECT_EQ(l.state(), 0u);
  EXPECT_EQ(l.contended(), 0u) << "try_lock never waits, so it is never counted";
}

TEST(RwLock, UncontendedLockAndUnlockLeaveTheWordClearAndCountNothing) {
  rw_lock l;
  for (int i = 0; i < 1000; ++i) {
    l.lock();
    EXPECT_EQ(l.state(), rw_lock::writer);
    l.unlock();
    l.lock_shared();
    l.lock_shared();
    EXPECT_EQ(l.state(), 2 * rw_lock::reader);
    l.unlock_shared();
    l.unlock_shared();
  }
  EXPECT_EQ(l.state(), 0u);
  EXPECT_EQ(l.contended(), 0u);
}

TEST(RwLock, ReadersHoldTheLockTogetherAndAWriterWaitsForBoth) {
  watchdog dog(std::chrono::seconds(60));
  rw_lock l;
  std::atomic<int> inside{0};
  std::atomic<bool> release{false};
  std::atomic<bool> writer_in{false};
  lk::run_threads(3, [&](int t) {
    if (t < 2) {
      l.lock_shared();
      ++inside;
      while (inside.load() < 2) std::this_thread::yield();  // both readers in at once
      while (!release.load()) std::this_thread::yield();
      EXPECT_FALSE(writer_in.load()) << "the writer got in while a reader held the lock";
      l.unlock_shared();
      return;
    }
    while (inside.load() < 2) std::this_thread::yield();
    std::thread writer = writer_entering(l, writer_in);
    // The writer must be waiting: it cannot have entered while both readers are inside.
    EXPECT_FALSE(writer_in.load());
    release = true;
    writer.join();
    EXPECT_TRUE(writer_in.load());
  });
  EXPECT_EQ(l.state(), 0u);
}

// Writers and readers increment and check plain (non-atomic) data under the lock: a writer
// must see no one else inside, a reader no writer inside.
// How a test's readers take the lock: on the word (lock_shared, what shard_locks uses) or
// biased (lock_shared_biased, what the maps' read guards use).
enum class readers { word, biased };

// Takes and releases the lock shared the given way.
struct reader_hold {
  rw_lock& l;
  readers how;
  std::atomic<long>* biased_reads = nullptr;  // counts the acquisitions that were biased
  unsigned ticket = 0;
  void lock() {
    if (how == readers::biased) {
      ticket = l.lock_shared_biased();
      if (ticket != 0 && biased_reads != nullptr) biased_reads->fetch_add(1);
    } else {
      l.lock_shared();
    }
  }
  void unlock() {
    if (how == readers::biased) {
      l.unlock_shared(ticket);
    } else {
      l.unlock_shared();
    }
  }
};

// A thread that takes l shared (how), is inside when the constructor returns, and holds the
// lock until leave() (or destruction). Given writer_in, it checks that no writer entered while
// it was inside.
class reader_inside {
 public:
  reader_inside(rw_lock& l, readers how, const std::atomic<bool>* writer_in = nullptr)
      : thread_([this, &l, how, writer_in] {
          reader_hold r{l, how};
          r.lock();
          ticket_ = r.ticket;
          inside_ = true;
          while (!release_.load()) std::this_thread::yield();
          if (writer_in != nullptr) {
            EXPECT_FALSE(writer_in->load()) << "a writer entered while a reader was inside";
          }
          r.unlock();
        }) {
    while (!inside_.load()) std::this_thread::yield();
  }
  reader_inside(const reader_inside&) = delete;
  reader_inside& operator=(const reader_inside&) = delete;
  ~reader_inside() { leave(); }

  void leave() {
    release_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // lock_shared_biased's ticket (0: the reader took the word).
  unsigned ticket() const { return ticket_.load(); }

 private:
  std::atomic<bool> inside_{false};
  std::atomic<bool> release_{false};
  std::atomic<unsigned> ticket_{0};
  std::thread thread_;  // last: it starts once the flags exist
};

void make_biased(rw_lock& l);

void mutual_exclusion_under_contention(readers how) {
  watchdog dog(std::chrono::seconds(120));
  rw_lock l;
  std::atomic<long> biased_reads{0};
  if (how == readers::biased) {
    ASSERT_NO_FATAL_FAILURE(make_biased(l));
  }
  long counter = 0;  // guarded by l
  std::atomic<int> writers_inside{0};
  std::atomic<int> readers_inside{0};
  std::atomic<long> violations{0};
  const long per_thread = 40'000 / scale;
  const int threads = 6;
  lk::run_threads(threads, [&](int t) {
    for (long i = 0; i < per_thread; ++i) {
      if ((i + t) % 3 == 0) {
        reader_hold r{l, how, &biased_reads};
        r.lock();
        ++readers_inside;
        if (writers_inside.load() != 0) ++violations;
        const long seen = counter;
        if (seen < 0) ++violations;
        --readers_inside;
        r.unlock();
      } else {
        l.lock();
        if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0) ++violations;
        ++counter;
        writers_inside.fetch_sub(1);
        l.unlock();
      }
    }
  });
  EXPECT_EQ(violations.load(), 0);
  long writes = 0;
  for (int t = 0; t < threads; ++t) {
    for (long i = 0; i < per_thread; ++i) writes += (i + t) % 3 != 0 ? 1 : 0;
  }
  EXPECT_EQ(counter, writes);
  EXPECT_EQ(l.state(), 0u) << "no flag or reader count may be left behind";
  EXPECT_EQ(l.biased_readers(), 0u);
  // Informative: on a loaded machine the threads may even run one after another.
  testing::Test::RecordProperty("contended", std::to_string(l.contended()));
  testing::Test::RecordProperty("biased_reads", std::to_string(biased_reads.load()));
}

TEST(RwLock, MutualExclusionUnderContention) {
  mutual_exclusion_under_contention(readers::word);
}

TEST(RwLock, MutualExclusionUnderContentionWithBiasedReaders) {
  mutual_exclusion_under_contention(readers::biased);
}

// A writer gets in while readers hold the lock continuously (each reader re-enters at once,
// overlapping the others). Readers give up after a bound so a starved writer fails the test.
TEST(RwLock, WriterCompletesUnderConstantReaders) {
  watchdog dog(std::chrono::seconds(120));
  rw_lock l;
  lk::writer_completes_under_reader_stream(
      [&](int, long) {
        l.lock_shared();
        l.unlock_shared();
      },
      [&](int) {
        l.lock();
        l.unlock();
      },
      /*readers=*/4, /*stores=*/200, /*reader_iteration_bound=*/20'000'000 / scale);
  EXPECT_EQ(l.state(), 0u);
}

// Readers get in while writers take the lock back to back. A writer-preferring lock without a
// bound (glibc's PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP, the lock before this one) keeps
// them out as long as writers keep coming; here a reader that waited 1 ms is let in at the
// next release. Writers give up after a bound so starved readers fail the test.
TEST(RwLock, ReadersCompleteUnderConstantWriters) {
  watchdog dog(std::chrono::seconds(120));
  rw_lock l;
  const int writers = 3;
  const int readers = 2;
  const int reads = 50;
  const long writer_iteration_bound = 50'000'000 / scale;
  std::atomic<int> looping{0};
  std::atomic<int> readers_done{0};
  std::atomic<int> gave_up{0};
  long guarded = 0;
  lk::run_threads(writers + readers, [&](int t) {
    if (t < writers) {
      long i = 0;
      bool counted_in = false;
      while (readers_done.load(std::memory_order_relaxed) < readers) {
        l.lock();
        ++guarded;
        l.unlock();
        if (!counted_in) {
          counted_in = true;
          ++looping;
        }
        if (++i == writer_iteration_bound) {
          ++gave_up;
          break;
        }
      }
      return;
    }
    while (looping.load() < writers) std::this_thread::yield();
    for (int i = 0; i < reads; ++i) {
      l.lock_shared();
      l.unlock_shared();
    }
    ++readers_done;
  });
  EXPECT_EQ(gave_up.load(), 0) << "writers ran " << writer_iteration_bound
                               << " iterations each while readers waited";
  EXPECT_EQ(readers_done.load(), readers);
  EXPECT_GT(guarded, 0);
  EXPECT_EQ(l.state(), 0u);
}

// Lost wake-ups: 8 threads on (typically) 2 cores, critical sections that yield inside so
// waiters exhaust their spin and park. A release that forgets to wake a sleeper leaves it
// parked forever: the watchdog turns that into a failure. Run once with writers only (every
// wake-up must come from unlock) and once with shared and exclusive mixed (wake-ups from the
// last reader out, and from readers undoing an increment that found a writer).
void lost_wake_up_stress(int read_percent, readers how = readers::word, int threads = 8) {
  watchdog dog(std::chrono::seconds(240));
  rw_lock l;
  std::atomic<long> biased_reads{0};
  if (how == readers::biased) {
    ASSERT_NO_FATAL_FAILURE(make_biased(l));
  }
  long counter = 0;  // guarded by l
  std::atomic<long> shared_seen{0};
  const long per_thread = 3'000 / scale;
  lk::run_threads(threads, [&](int t) {
    std::uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(t + 1);
    for (long i = 0; i < per_thread; ++i) {
      xorshift(x);
      const bool yield_inside = (x >> 8) % 16 == 0;
      if (static_cast<int>(x % 100) < read_percent) {
        reader_hold r{l, how, &biased_reads};
        r.lock();
        if (yield_inside) std::this_thread::yield();
        shared_seen += counter >= 0 ? 1 : 0;
        r.unlock();
      } else {
        l.lock();
        if (yield_inside) std::this_thread::yield();
        ++counter;
        l.unlock();
      }
    }
  });
  EXPECT_EQ(counter + shared_seen.load(), threads * per_thread);
  EXPECT_EQ(l.state(), 0u);
  EXPECT_EQ(l.biased_readers(), 0u);
  if (how == readers::biased) {
    // The lock starts biased, 90% of the ops read and a read yields inside one time in 16, so
    // readers overlap all along: a run without one biased read did not test the bias.
    EXPECT_GT(biased_reads.load(), 0);
    testing::Test::RecordProperty("biased_reads", std::to_string(biased_reads.load()));
  }
}

TEST(RwLock, EightWritersOnFewCoresNeverLoseAWakeUp) {
  lost_wake_up_stress(0);
}

TEST(RwLock, EightThreadsOnFewCoresNeverLoseAWakeUp) {
  lost_wake_up_stress(25);
}

// Mostly biased reads that yield inside, so revoking writers exhaust their spin and park on a
// reader counter: the reader taking it to 0 must wake them. Twelve threads: more than the
// counters, so some threads have none and read on the word beside the biased ones.
TEST(RwLock, BiasedReadersOnFewCoresNeverLoseAWriterWakeUp) {
  lost_wake_up_stress(90, readers::biased, 12);
}

// A biased reader's counter belongs to one live thread (its release is a plain store, so two
// owners would lose counts): threads alive together hold distinct counters, as many as are
// free and no more; a thread's counter is free again once it has exited; and a thread that
// found none gets one, reclaim_retry_reads reads later, once owners have exited.
TEST(RwLockBias, ReaderCountersBelongToOneLiveThreadAndComeBackWhenItExits) {
  using safemap::detail::no_reader_slot;
  using safemap::detail::reader_slot_count;
  using safemap::detail::reader_slots;
  watchdog dog(std::chrono::seconds(60));
  const unsigned before = reader_slots::taken_mask();  // this thread's, if it has read biased
  const int free_counters = static_cast<int>(reader_slot_count) - std::popcount(before);
  constexpr int threads = 12;
  std::vector<unsigned> got(threads, 0);
  std::latch all_claimed(threads + 1);
  std::atomic<bool> others_gone{false};
  std::atomic<unsigned> late{0};
  auto first_without = [&] {
    for (int u = 0; u < threads; ++u) {
      if (got[u] == no_reader_slot) return u;
    }
    return -1;
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      got[t] = reader_slots::index();
      all_claimed.arrive_and_wait();     // every thread holds its counter until all have one
      if (t != first_without()) return;  // the others exit and give theirs back
      while (!others_gone.load()) std::this_thread::yield();
      unsigned i = no_reader_slot;
      for (unsigned r = 0; r <= reader_slots::reclaim_retry_reads && i == no_reader_slot; ++r) {
        i = reader_slots::index();
      }
      late = i;
    });
  }
  all_claimed.arrive_and_wait();
  const int waiter = first_without();
  for (int t = 0; t < threads; ++t) {
    if (t != waiter) ts[t].join();
  }
  unsigned seen = 0;
  int with_counter = 0;
  for (unsigned i : got) {
    if (i == no_reader_slot) continue;
    ASSERT_LT(i, reader_slot_count);
    EXPECT_EQ(seen & (1u << i), 0u) << "counter " << i << " given to two live threads";
    seen |= 1u << i;
    ++with_counter;
  }
  EXPECT_EQ(with_counter, free_counters) << "every free counter, and no more, is handed out";
  EXPECT_EQ(before & seen, 0u) << "a counter this thread holds went to another thread";
  EXPECT_EQ(reader_slots::taken_mask() & seen, 0u) << "exited threads still hold counters";
  ASSERT_GE(waiter, 0) << "more threads than counters: some must have none";
  others_gone = true;
  ts[waiter].join();
  EXPECT_LT(late.load(), reader_slot_count)
      << "a thread without a counter never got one that exited threads gave back";
  EXPECT_EQ(reader_slots::taken_mask() & ~before, 0u) << "the late claimer kept its counter";
}

// --- reader bias -----------------------------------------------------------------------------

// Turns l's bias on the only way it turns on: shared acquisitions on the word that find another
// reader inside. A second thread holds the lock shared on the word meanwhile.
void make_biased(rw_lock& l) {
  reader_inside holder(l, readers::word);
  // The clock is consulted on every overlaps_per_clock_read-th overlapping acquisition of a
  // thread, and no revocation has inhibited this lock yet: no more are needed.
  for (unsigned i = 0; i < rw_lock::overlaps_per_clock_read && !l.biased(); ++i) {
    const unsigned t = l.lock_shared_biased();
    EXPECT_EQ(t, 0u) << "the bias was off: the reader must have taken the word";
    l.unlock_shared(t);
  }
  holder.leave();
  ASSERT_TRUE(l.biased()) << rw_lock::overlaps_per_clock_read
                          << " overlapping reads did not turn the bias on";
}

TEST(RwLockBias, OneThreadAloneNeverTurnsItOn) {
  rw_lock l;
  for (int i = 0; i < 10'000; ++i) {
    const unsigned t = l.lock_shared_biased();
    ASSERT_EQ(t, 0u);
    l.unlock_shared(t);
    if (i % 100 == 0) {
      l.lock();
      l.unlock();
    }
  }
  EXPECT_FALSE(l.biased());
  EXPECT_EQ(l.state(), 0u);
}

TEST(RwLockBias, BiasedReadersLeaveTheWordAloneAndShareTheLock) {
  watchdog dog(std::chrono::seconds(60));
  rw_lock l;
  ASSERT_NO_FATAL_FAILURE(make_biased(l));
  const unsigned a = l.lock_shared_biased();
  const unsigned b = l.lock_shared_biased();  // not re-entrant use: two guards of one scope
  EXPECT_NE(a, 0u);
  EXPECT_EQ(a, b) << "one thread always counts itself in the same counter";
  EXPECT_EQ(l.state(), 0u) << "a biased reader must not write the state word";
  EXPECT_EQ(l.biased_readers(), 2u);
  EXPECT_TRUE(l.try_lock_shared()) << "word readers still share the lock with biased ones";
  l.unlock_shared();
  l.unlock_shared(b);
  l.unlock_shared(a);
  EXPECT_EQ(l.biased_readers(), 0u);
  EXPECT_TRUE(l.biased());
}

// A writer that finds the bias on turns it off and waits for the biased readers inside: it
// holds the word (new readers stay out) but does not enter until the last one leaves, even
// after it has given up spinning and sleeps on the reader's counter.
TEST(RwLockBias, AWriterRevokesTheBiasAndWaitsForBiasedReadersInside) {
  watchdog dog(std::chrono::seconds(60));
  rw_lock l;
  ASSERT_NO_FATAL_FAILURE(make_biased(l));
  std::atomic<bool> writer_in{false};
  reader_inside reader(l, readers::biased, &writer_in);
  EXPECT_NE(reader.ticket(), 0u);
  std::thread writer = writer_entering(l, writer_in);
  // The writer has taken the word and revoked the bias, then sleeps on the counter.
  while (!l.writer_parked_on_readers()) std::this_thread::yield();
  EXPECT_FALSE(l.biased());
  EXPECT_NE(l.state() & rw_lock::writer, 0u);
  EXPECT_FALSE(writer_in.load());
  // A reader arriving now finds the bias off and waits for the writer on the word.
  EXPECT_FALSE(l.try_lock_shared());
  std::atomic<bool> late_in{false};
  std::thread late([&] {
    const unsigned t = l.lock_shared_biased();
    EXPECT_TRUE(writer_in.load()) << "a reader that came during the drain entered first";
    late_in = true;
    l.unlock_shared(t);
  });
  reader.leave();
  writer.join();
  late.join();
  EXPECT_TRUE(writer_in.load());
  EXPECT_TRUE(late_in.load());
  EXPECT_EQ(l.state(), 0u);
  EXPECT_EQ(l.biased_readers(), 0u);
  EXPECT_FALSE(l.writer_parked_on_readers());
}

// Two threads reading l in strict turns (never inside together) until the bias is on or each
// has read `per_thread` times; returns whether it came on. The turns are handed over through
// an atomic: no overlap, so only the read-run sign (track_read_runs) can turn the bias on.
bool bias_from_turns(rw_lock& l, int per_thread) {
  std::atomic<int> turn{0};
  std::atomic<bool> stop{false};
  auto reader = [&](int me) {
    for (int i = 0; i < per_thread; ++i) {
      while (turn.load(std::memory_order_acquire) != me) {
        if (stop.load(std::memory_order_acquire)) return;
        std::this_thread::yield();
      }
      const unsigned t = l.lock_shared_biased();
      const bool biased = t != 0 || l.biased();
      l.unlock_shared(t);
      if (biased) stop.store(true, std::memory_order_release);
      turn.store(1 - me, std::memory_order_release);
      if (biased) return;
    }
    stop.store(true, std::memory_order_release);
  };
  std::thread other(reader, 1);
  reader(0);
  other.join();
  return l.biased();
}

TEST(RwLockBias, ThreadsTakingTurnsTurnItOnOnlyWhereReadRunsAreTracked) {
  watchdog dog(std::chrono::seconds(60));
  // A run completes every reads_before_bias reads; the completer alternates between the two
  // threads, so the second run's completer differs from the first's.
  constexpr int enough = 4 * static_cast<int>(rw_lock::reads_before_bias);
  rw_lock tracked;
  tracked.track_read_runs();
  EXPECT_TRUE(bias_from_turns(tracked, enough));
  EXPECT_EQ(tracked.state(), 0u);
  // Without the tracking only overlaps count, and turns never overlap.
  rw_lock plain;
  EXPECT_FALSE(bias_from_turns(plain, 20 * enough));
  EXPECT_EQ(plain.state(), 0u);
}

TEST(RwLockBias, ReadRunsWithAWriteInsideOrOneReaderNeverTurnItOn) {
  watchdog dog(std::chrono::seconds(60));
  rw_lock alone;
  alone.track_read_runs();
  for (int i = 0; i < 10'000; ++i) {
    const unsigned t = alone.lock_shared_biased();
    ASSERT_EQ(t, 0u);
    alone.unlock_shared(t);
  }
  EXPECT_FALSE(alone.biased()) << "one thread alone";
  // Two threads in turns, each writing before every (reads_before_bias - 1) / 2 of its reads:
  // fewer than reads_before_bias reads between two writes, so no run completes.
  rw_lock written;
  written.track_read_runs();
  std::atomic<int> turn{0};
  auto reader = [&](int me) {
    for (int i = 0; i < 20 * static_cast<int>(rw_lock::reads_before_bias); ++i) {
      while (turn.load(std::memory_order_acquire) != me) std::this_thread::yield();
      if (i % ((rw_lock::reads_before_bias - 1) / 2) == 0) {
        written.lock();
        written.unlock();
      }
      const unsigned t = written.lock_shared_biased();
      EXPECT_EQ(t, 0u);
      written.unlock_shared(t);
      turn.store(1 - me, std::memory_order_release);
    }
  };
  std::thread other(reader, 1);
  reader(0);
  other.join();
  EXPECT_FALSE(written.biased()) << "runs broken by writes";
}

// A biased reader's release races a writer going to sleep on its counter. On Linux the
// release is a plain store and the writer relies on membarrier between raising the flag and
// its last look; under TSan (and elsewhere) both sides are seq_cst read-modify-writes. The
// reader lets go after a random spin, before, during or after the writer sleeps; a lost
// wake-up hangs the writer, and the watchdog fails the test.
TEST(RwLockBias, AReleaseRacingAWriterGoingToSleepAlwaysWakesIt) {
  watchdog dog(std::chrono::seconds(120));
  std::uint64_t x = 0x2545f4914f6cdd1dULL;
  int parked_seen = 0;
  const std::uint64_t sleeps_before = rw_lock::writer_sleeps();
  for (int round = 0; round < 150; ++round) {
    rw_lock l;
    ASSERT_NO_FATAL_FAILURE(make_biased(l));
    std::atomic<bool> writer_in{false};
    reader_inside reader(l, readers::biased, &writer_in);
    ASSERT_NE(reader.ticket(), 0u);
    std::thread writer = writer_entering(l, writer_in);
    xorshift(x);
    // 0-80 us: the writer spins about 50 us before it parks.
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::microseconds(x % 80'000 / 1000);
    while (std::chrono::steady_clock::now() < until) {
      if (l.writer_parked_on_readers()) ++parked_seen;
    }
    if (round % 3 == 0) {
      while (!l.writer_parked_on_readers()) std::this_thread::yield();
      ++parked_seen;
    }
    reader.leave();
    writer.join();
    EXPECT_TRUE(writer_in.load());
    EXPECT_EQ(l.state(), 0u);
    EXPECT_EQ(l.biased_readers(), 0u);
  }
  EXPECT_GT(parked_seen, 0) << "no round reached the writer's sleep";
  if (!safemap::detail::heavy_barrier::available()) {
    GTEST_SKIP() << "this kernel or sandbox refuses membarrier: writers poll, none sleeps";
  }
  EXPECT_GT(rw_lock::writer_sleeps(), sleeps_before) << "no writer slept on a reader's counter";
}

// After a revocation readers take the word again; overlapping readers turn the bias back on
// once the inhibition (a multiple of the revocation's duration) has passed.
TEST(RwLockBias, ReadersTakeTheWordAfterARevocationUntilOverlapTurnsTheBiasOnAgain) {
  watchdog dog(std::chrono::seconds(60));
  rw_lock l;
  ASSERT_NO_FATAL_FAILURE(make_biased(l));
  l.lock();
  EXPECT_FALSE(l.biased());
  l.unlock();
  const unsigned t = l.lock_shared_biased();
  EXPECT_EQ(t, 0u);
  EXPECT_EQ(l.state(), rw_lock::reader);
  l.unlock_shared(t);
  reader_inside holder(l, readers::word);
  long reads = 0;
  while (!l.biased()) {
    const unsigned u = l.lock_shared_biased();
    l.unlock_shared(u);
    ASSERT_LT(++reads, 100'000'000L) << "the bias never came back";
  }
  holder.leave();
  const unsigned v = l.lock_shared_biased();
  EXPECT_NE(v, 0u);
  l.unlock_shared(v);
}

// try_lock fails while a biased reader is inside, and leaves the lock as it found it: a
// writer's lock() after it must still wait for that reader (a try_lock that left the bias
// cleared let the next writer skip the drain and enter beside the reader).
TEST(RwLockBias, TryLockFailsWhileBiasedReadersAreInsideAndTheNextWriterStillWaits) {
  watchdog dog(std::chrono::seconds(60));
  rw_lock l;
  ASSERT_NO_FATAL_FAILURE(make_biased(l));
  std::atomic<bool> writer_in{false};
  reader_inside reader(l, readers::biased, &writer_in);
  EXPECT_NE(reader.ticket(), 0u);
  EXPECT_FALSE(l.try_lock());
  EXPECT_FALSE(l.try_lock()) << "a second try must fail too";
  EXPECT_EQ(l.state(), 0u) << "try_lock lets go of the word it took";
  EXPECT_TRUE(l.biased());
  std::thread writer = writer_entering(l, writer_in);
  while (!l.writer_parked_on_readers()) std::this_thread::yield();
  EXPECT_FALSE(writer_in.load());
  reader.leave();
  writer.join();
  EXPECT_TRUE(writer_in.load());
  EXPECT_TRUE(l.try_lock()) << "no reader inside: try_lock succeeds";
  EXPECT_FALSE(l.biased());
  l.unlock();
  EXPECT_EQ(l.state(), 0u);
}

// try_lock with the bias on and no reader inside takes the lock and turns the bias off, like
// lock(): readers then wait for it on the word.
TEST(RwLockBias, TryLockSucceedsWithTheBiasOnWhenNoReaderIsInside) {
  rw_lock l;
  ASSERT_NO_FATAL_FAILURE(make_biased(l));
  ASSERT_TRUE(l.try_lock());
  EXPECT_FALSE(l.biased());
  EXPECT_EQ(l.state(), rw_lock::writer);
  EXPECT_FALSE(l.try_lock_shared());
  l.unlock();
  const unsigned t = l.lock_shared_biased();
  EXPECT_EQ(t, 0u) << "the bias was revoked: a lone reader takes the word";
  l.unlock_shared(t);
  EXPECT_EQ(l.state(), 0u);
}

// The maps' read guard carries its ticket: the guard a shared hold was moved into releases
// the counter the reader was counted in, and the moved-from one releases nothing.
TEST(RwLockBias, AMovedReadGuardReleasesTheCounterItWasTakenWith) {
  rw_lock l;
  ASSERT_NO_FATAL_FAILURE(make_biased(l));
  {
    safemap::detail::rw_guard<false> first(l);
    EXPECT_EQ(l.biased_readers(), 1u);
    EXPECT_EQ(l.state(), 0u);
    safemap::detail::rw_guard<false> second(std::move(first));
    EXPECT_FALSE(first.owns_lock());  // NOLINT(bugprone-use-after-move): the point
    EXPECT_TRUE(second.owns_lock());
    EXPECT_EQ(l.biased_readers(), 1u);
  }
  EXPECT_EQ(l.biased_readers(), 0u);
  EXPECT_EQ(l.state(), 0u);
  EXPECT_TRUE(l.try_lock());
  l.unlock();
}

// A writer gets in under a stream of biased readers (each revocation shuts new ones out).
TEST(RwLockBias, WriterCompletesUnderConstantBiasedReaders) {
  watchdog dog(std::chrono::seconds(120));
  rw_lock l;
  ASSERT_NO_FATAL_FAILURE(make_biased(l));
  lk::writer_completes_under_reader_stream(
      [&](int, long) {
        const unsigned t = l.lock_shared_biased();
        l.unlock_shared(t);
      },
      [&](int) {
        l.lock();
        l.unlock();
      },
      /*readers=*/4, /*stores=*/200, /*reader_iteration_bound=*/20'000'000 / scale);
  EXPECT_EQ(l.state(), 0u);
  EXPECT_EQ(l.biased_readers(), 0u);
}

}  // namespace
