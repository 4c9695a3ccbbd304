// Tests of safemap/reclaim.hpp: the read-side guard (nesting, registration, thread exit), grace
// periods that readers in tight loops cannot starve, the retired-bytes bound (throttle), and the
// batched retirement (defer: per-thread buffers, flushed when full, at thread exit and by
// barrier).
// Every test that waits for a grace period runs under a watchdog that fails the test (exits the
// process with a message) instead of hanging.
#include "safemap/reclaim.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <latch>
#include <thread>
#include <vector>

#include "support/concurrent_maps.hpp"
#include "support/watchdog.hpp"

namespace {

using safemap_test::scaled;
using safemap_test::watchdog;
namespace rcu = safemap::rcu;

// A retired object that records when it is freed.
struct probe final : rcu::sized_retirable<probe> {
  explicit probe(std::atomic<int>* freed) : freed_(freed) {}
  ~probe() { freed_->fetch_add(1, std::memory_order_release); }
  std::atomic<int>* freed_;
};

TEST(ReclaimTest, NestedGuardsStayInsideUntilTheOutermostEnds) {
  EXPECT_FALSE(rcu::detail::in_read_section());
  {
    rcu::read_guard outer;
    EXPECT_TRUE(rcu::detail::in_read_section());
    {
      rcu::read_guard inner;
      rcu::read_guard innermost;
      EXPECT_TRUE(rcu::detail::in_read_section());
    }
    EXPECT_TRUE(rcu::detail::in_read_section()) << "an inner guard ended the outer section";
  }
  EXPECT_FALSE(rcu::detail::in_read_section());
}

// The object retired while a reader sits in an outer guard (after a nested guard came and went)
// is not freed until the outer guard ends; then a barrier frees it.
TEST(ReclaimTest, ANestedGuardsEndDoesNotEndTheGracePeriodOfTheOuterOne) {
  watchdog dog("nested-guard grace period");
  std::atomic<int> freed{0};
  std::latch inside(1);
  std::latch retired(1);
  std::atomic<bool> release{false};
  std::atomic<bool> seen_freed_inside{false};
  std::thread reader([&] {
    rcu::read_guard outer;
    { rcu::read_guard inner; }
    inside.count_down();
    retired.wait();
    // Every check in this loop happens inside the outer guard, after the retire.
    while (!release.load(std::memory_order_acquire)) {
      if (freed.load(std::memory_order_acquire) != 0) seen_freed_inside.store(true);
      std::this_thread::yield();
    }
  });
  inside.wait();
  rcu::retire(new probe(&freed));
  retired.count_down();
  // Give liburcu's worker many chances to (wrongly) free it while the reader is inside: each
  // barrier from another thread would have to wait for the reader, so drive grace periods
  // through call_rcu instead and watch for a bounded number of iterations.
  for (int i = 0; i < 2000 && freed.load() == 0; ++i) std::this_thread::yield();
  EXPECT_EQ(freed.load(), 0) << "freed while a reader that could see it was inside";
  release.store(true, std::memory_order_release);
  reader.join();
  rcu::barrier();
  EXPECT_EQ(freed.load(), 1);
  EXPECT_FALSE(seen_freed_inside.load());
}

// A thread that used a guard and exits without any explicit unregistration must not block
// later grace periods (its registration ends with it), nor must a thread_local destructor that
// reads after the thread's registration ended.
TEST(ReclaimTest, ThreadsThatExitDoNotBlockGracePeriods) {
  watchdog dog("grace period after thread exits");
  struct late_reader {
    std::atomic<int>* freed = nullptr;
    ~late_reader() {
      if (freed == nullptr) return;
      // Runs after the registration's own thread_local destructor (constructed later, so
      // destroyed earlier): registers around each call again.
      rcu::read_guard guard;
      rcu::read_guard nested;
      rcu::retire(new probe(freed));
    }
  };
  std::atomic<int> freed{0};
  constexpr int threads = 8;
  for (int t = 0; t < threads; ++t) {
    std::thread([&] {
      static thread_local late_reader late;  // constructed before the first guard
      late.freed = &freed;
      rcu::read_guard guard;
      rcu::retire(new probe(&freed));
    }).join();
  }
  rcu::barrier();  // hangs (watchdog) or crashes if an exited thread stayed registered
  EXPECT_EQ(freed.load(), 2 * threads);
}

// Readers that enter and leave guards back to back cannot starve a grace period.
TEST(ReclaimTest, GracePeriodsEndWhileReadersLoop) {
  watchdog dog("grace periods under looping readers");
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        rcu::read_guard guard;
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::atomic<int> freed{0};
  const int rounds = static_cast<int>(scaled(50));
  for (int i = 0; i < rounds; ++i) {
    rcu::retire(new probe(&freed));
    rcu::barrier();
    ASSERT_EQ(freed.load(), i + 1) << "barrier returned before the object was freed";
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_GT(reads.load(), 0);
}

// A thread inside a read_guard from construction until release() (or destruction): nothing
// retired or deferred meanwhile can be freed, so a test can observe counts and waits without
// racing liburcu's worker.
class grace_period_holder {
 public:
  grace_period_holder()
      : thread_([this] {
          rcu::read_guard guard;
          inside_.count_down();
          leave_.wait();
        }) {
    inside_.wait();
  }
  void release() {
    if (!thread_.joinable()) return;
    leave_.count_down();
    thread_.join();
  }
  ~grace_period_holder() { release(); }

 private:
  std::latch inside_{1};
  std::latch leave_{1};
  std::thread thread_;
};

TEST(ReclaimTest, RetiredBytesCountUntilTheObjectIsFreed) {
  watchdog dog("retired bytes");
  rcu::barrier();
  const std::size_t base = rcu::retired_bytes();
  std::atomic<int> freed{0};
  grace_period_holder reader;
  rcu::retire(new probe(&freed), 12345);
  EXPECT_EQ(rcu::retired_bytes(), base + 12345) << "a reader still holds the grace period";
  reader.release();
  rcu::barrier();
  EXPECT_EQ(freed.load(), 1);
  EXPECT_EQ(rcu::retired_bytes(), base);
}

// A deferred object: counts its destruction.
struct deferred_probe {
  explicit deferred_probe(std::atomic<int>* freed) : freed_(freed) {}
  ~deferred_probe() { freed_->fetch_add(1, std::memory_order_release); }
  std::atomic<int>* freed_;
};

void free_probe(void* p) noexcept {
  delete static_cast<deferred_probe*>(p);
}

void defer_probes(std::atomic<int>* freed, std::size_t n, std::size_t bytes = 0) {
  rcu::reserve(n);
  for (std::size_t i = 0; i < n; ++i) rcu::defer(new deferred_probe(freed), &free_probe, bytes);
}

// Shows when a throttle() (or barrier()) started on another thread has passed its checks and
// is waiting for the grace period, without sleeps: its barrier flushes every thread's defer
// buffer. arm() puts one zero-byte object into this thread's buffer BEFORE that thread starts;
// wait() returns once the buffer has been flushed.
struct barrier_marker {
  std::atomic<int> freed{0};
  void arm() { defer_probes(&freed, 1); }
  static void wait() {
    while (rcu::buffered() != 0) std::this_thread::yield();
  }
};

// Above the limit throttle() waits until everything retired so far is freed; inside a guard it
// returns at once (waiting there would wait for itself: the watchdog catches that hang).
TEST(ReclaimTest, ThrottleWaitsPastTheLimitButNeverInsideAGuard) {
  watchdog dog("throttle");
  rcu::barrier();
  const std::size_t saved = rcu::retired_bytes_limit();
  rcu::set_retired_bytes_limit(1000);
  std::atomic<int> freed{0};
  grace_period_holder reader;
  rcu::retire(new probe(&freed), 600);
  EXPECT_FALSE(rcu::throttle()) << "under the limit: no wait";
  rcu::retire(new probe(&freed), 600);
  {
    rcu::read_guard guard;
    EXPECT_FALSE(rcu::throttle()) << "inside a guard: must not wait";
  }
  barrier_marker marker;
  marker.arm();
  bool waited = false;
  std::thread throttler([&] { waited = rcu::throttle(); });
  marker.wait();
  reader.release();
  throttler.join();
  EXPECT_TRUE(waited) << "above the limit outside a guard: must wait";
  EXPECT_EQ(freed.load(), 2) << "throttle returned before the retired objects were freed";
  EXPECT_EQ(rcu::retired_bytes(), 0u);
  rcu::set_retired_bytes_limit(saved);
}

// ---- batched retirement (rcu::defer) ---------------------------------------------------------

// Deferred objects wait in this thread's buffer (a grace period alone does not free them); a
// barrier flushes the buffer and waits for the batch.
TEST(ReclaimBatchTest, DeferredObjectsWaitInTheBufferUntilABarrierFlushesThem) {
  watchdog dog("deferred objects and barrier");
  rcu::barrier();
  std::atomic<int> freed{0};
  defer_probes(&freed, 10);
  EXPECT_EQ(rcu::buffered(), 10u);
  rcu::detail::barrier_unflushed();
  EXPECT_EQ(freed.load(), 0) << "freed while still in the buffer (no grace period was asked for)";
  rcu::barrier();
  EXPECT_EQ(freed.load(), 10) << "barrier returned before the buffered objects were freed";
  EXPECT_EQ(rcu::buffered(), 0u);
}

// A buffer that fills goes to RCU as one batch by itself: the next defer starts a new one.
TEST(ReclaimBatchTest, AFullBufferIsHandedToRcuWithoutABarrier) {
  watchdog dog("full buffer");
  rcu::barrier();
  std::atomic<int> freed{0};
  for (std::size_t i = 0; i < rcu::defer_batch_capacity + 3; ++i) {
    rcu::defer(new deferred_probe(&freed), &free_probe);  // no reserve: defer makes the batches
  }
  EXPECT_EQ(rcu::buffered(), 3u);
  rcu::detail::barrier_unflushed();
  EXPECT_EQ(freed.load(), static_cast<int>(rcu::defer_batch_capacity));
  rcu::barrier();
  EXPECT_EQ(freed.load(), static_cast<int>(rcu::defer_batch_capacity) + 3);
}

// reserve(n) beyond the batch size makes one batch big enough: n defers then land in it.
TEST(ReclaimBatchTest, ReserveMakesRoomForMoreThanABatch) {
  watchdog dog("large reserve");
  rcu::barrier();
  std::atomic<int> freed{0};
  const std::size_t n = 3 * rcu::defer_batch_capacity + 1;
  defer_probes(&freed, n);
  EXPECT_EQ(rcu::buffered(), n) << "the reserved batch did not hold every deferred object";
  rcu::barrier();
  EXPECT_EQ(freed.load(), static_cast<int>(n));
}

// A thread's buffer is flushed when it exits: its objects are freed by a grace period alone,
// and the thread's buffer leaves the registry.
TEST(ReclaimBatchTest, AThreadsBufferIsFlushedAtItsExit) {
  watchdog dog("flush at thread exit");
  rcu::barrier();
  const std::size_t threads_before = rcu::detail::registered_buffers();
  std::atomic<int> freed{0};
  std::thread t([&] {
    defer_probes(&freed, 5);
    EXPECT_EQ(rcu::buffered(), 5u);
    EXPECT_EQ(rcu::detail::registered_buffers(), threads_before + 1);
  });
  t.join();
  EXPECT_EQ(rcu::detail::registered_buffers(), threads_before);
  rcu::detail::barrier_unflushed();
  EXPECT_EQ(freed.load(), 5) << "the exiting thread did not hand its buffer to RCU";
}

// barrier() on one thread flushes another thread's buffer too, and waits for it; the other
// thread's reserved room survives (its defers after the barrier still work).
TEST(ReclaimBatchTest, ABarrierFlushesEveryThreadsBuffer) {
  watchdog dog("barrier flushes other threads");
  rcu::barrier();
  std::atomic<int> freed{0};
  std::latch deferred(1);
  std::latch flushed(1);
  std::thread t([&] {
    rcu::reserve(8);
    for (int i = 0; i < 4; ++i) rcu::defer(new deferred_probe(&freed), &free_probe);
    deferred.count_down();
    flushed.wait();
    EXPECT_EQ(rcu::buffered(), 0u) << "barrier left this thread's objects in its buffer";
    for (int i = 0; i < 4; ++i) rcu::defer(new deferred_probe(&freed), &free_probe);
    EXPECT_EQ(rcu::buffered(), 4u);
  });
  deferred.wait();
  rcu::barrier();
  EXPECT_EQ(freed.load(), 4) << "barrier returned before another thread's buffered objects";
  flushed.count_down();
  t.join();
  rcu::barrier();
  EXPECT_EQ(freed.load(), 8);
}

// A reader inside its guard keeps a deferred object alive across a flush; the barrier after the
// reader leaves frees it.
TEST(ReclaimBatchTest, ABatchWaitsForReadersThatStartedBeforeItsFlush) {
  watchdog dog("batch grace period");
  rcu::barrier();
  std::atomic<int> freed{0};
  grace_period_holder reader;
  defer_probes(&freed, 3);
  rcu::flush();
  EXPECT_EQ(rcu::buffered(), 0u);
  EXPECT_EQ(freed.load(), 0);
  reader.release();
  rcu::barrier();
  EXPECT_EQ(freed.load(), 3);
}

// Deferred bytes count in retired_bytes() from the flush until the batch is freed, so
// throttle() bounds them like retired ones: past the limit it waits until they are freed.
TEST(ReclaimBatchTest, DeferredBytesCountFromTheFlushAndThrottleBoundsThem) {
  watchdog dog("deferred bytes throttle");
  rcu::barrier();
  const std::size_t saved = rcu::retired_bytes_limit();
  const std::size_t base = rcu::retired_bytes();
  ASSERT_EQ(base, 0u);
  rcu::set_retired_bytes_limit(1000);
  std::atomic<int> freed{0};
  grace_period_holder reader;
  defer_probes(&freed, 4, 400);
  EXPECT_EQ(rcu::retired_bytes(), 0u) << "bytes counted before the flush";
  rcu::flush();
  EXPECT_EQ(rcu::retired_bytes(), 1600u);
  {
    rcu::read_guard guard;
    EXPECT_FALSE(rcu::throttle()) << "inside a guard: must not wait";
  }
  // Past the limit, throttle() waits (rcu::barrier) until the batch is freed. It runs on its own
  // thread while the reader still holds the grace period, so it cannot find the batch already
  // freed (which made this test flaky when the reader left first).
  barrier_marker marker;
  marker.arm();
  bool waited = false;
  std::thread throttler([&] { waited = rcu::throttle(); });
  marker.wait();
  EXPECT_EQ(freed.load(), 0) << "freed while a reader held the grace period";
  reader.release();
  throttler.join();
  EXPECT_TRUE(waited) << "above the limit outside a guard: must wait";
  EXPECT_EQ(freed.load(), 4) << "throttle returned before the deferred objects were freed";
  EXPECT_EQ(rcu::retired_bytes(), 0u);
  // Buffered bytes reach the count through barrier's flush as well, and leave it when freed.
  defer_probes(&freed, 2, 700);
  rcu::barrier();
  EXPECT_EQ(rcu::retired_bytes(), 0u);
  EXPECT_EQ(freed.load(), 6);
  rcu::set_retired_bytes_limit(saved);
}

// Many threads deferring while others run barriers: every object freed exactly once.
TEST(ReclaimBatchTest, ConcurrentDefersAndBarriersFreeEveryObjectOnce) {
  watchdog dog("concurrent defers and barriers");
  rcu::barrier();
  std::atomic<int> freed{0};
  const int per_thread = static_cast<int>(scaled(20000));
  constexpr int writers = 6;
  std::atomic<bool> stop{false};
  std::thread barrier_thread([&] {
    while (!stop.load()) rcu::barrier();
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        rcu::read_guard guard;
        if (i % 7 == 0) rcu::reserve(3);
        rcu::defer(new deferred_probe(&freed), &free_probe, 8);
      }
    });
  }
  for (auto& t : threads) t.join();
  stop.store(true);
  barrier_thread.join();
  rcu::barrier();
  EXPECT_EQ(freed.load(), writers * per_thread);
  EXPECT_EQ(rcu::retired_bytes(), 0u);
}

}  // namespace
