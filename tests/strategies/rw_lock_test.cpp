// Tests of safemap::detail::rw_lock (include/safemap/detail/lock.hpp), the lock of LockedMap
// and ShardedMap: mutual exclusion, shared/exclusive and try_lock semantics, bounded waits
// both ways (a writer under constant readers, readers under constant writers), and a
// lost-wake-up stress with more threads than cores. Every test that could hang if the lock
// were wrong runs under a watchdog that aborts the binary (a failure) instead of hanging, and
// the progress tests bound the other side's iterations instead of timing anything.
#include "safemap/detail/lock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "safemap/detail/config.hpp"
#include "support/lock_suite.hpp"
#include "support/watchdog.hpp"

namespace {

using safemap::detail::rw_lock;
namespace lk = safemap_test::lock;

// Fewer iterations under sanitizers (each lock operation is instrumented).
constexpr long scale = (SAFEMAP_TSAN != 0) ? 8 : 1;

using safemap_test::watchdog;  // fails the binary instead of hanging it

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
    std::thread writer([&] {
      l.lock();
      writer_in = true;
      l.unlock();
    });
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
TEST(RwLock, MutualExclusionUnderContention) {
  watchdog dog(std::chrono::seconds(120));
  rw_lock l;
  long counter = 0;  // guarded by l
  std::atomic<int> writers_inside{0};
  std::atomic<int> readers_inside{0};
  std::atomic<long> violations{0};
  const long per_thread = 40'000 / scale;
  const int threads = 6;
  lk::run_threads(threads, [&](int t) {
    for (long i = 0; i < per_thread; ++i) {
      if ((i + t) % 3 == 0) {
        l.lock_shared();
        ++readers_inside;
        if (writers_inside.load() != 0) ++violations;
        const long seen = counter;
        if (seen < 0) ++violations;
        --readers_inside;
        l.unlock_shared();
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
  // Informative: on a loaded machine the threads may even run one after another.
  testing::Test::RecordProperty("contended", std::to_string(l.contended()));
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
void lost_wake_up_stress(int read_percent) {
  watchdog dog(std::chrono::seconds(240));
  rw_lock l;
  long counter = 0;  // guarded by l
  std::atomic<long> shared_seen{0};
  const int threads = 8;
  const long per_thread = 3'000 / scale;
  lk::run_threads(threads, [&](int t) {
    std::uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(t + 1);
    for (long i = 0; i < per_thread; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const bool yield_inside = (x >> 8) % 16 == 0;
      if (static_cast<int>(x % 100) < read_percent) {
        l.lock_shared();
        if (yield_inside) std::this_thread::yield();
        shared_seen += counter >= 0 ? 1 : 0;
        l.unlock_shared();
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
}

TEST(RwLock, EightWritersOnFewCoresNeverLoseAWakeUp) {
  lost_wake_up_stress(0);
}

TEST(RwLock, EightThreadsOnFewCoresNeverLoseAWakeUp) {
  lost_wake_up_stress(25);
}

}  // namespace
