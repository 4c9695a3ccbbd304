// tests/pipeline/restore_test.cpp - what pipeline.hpp builds on the pipeline: the periodic
// snapshotter, restore_snapshot_or_empty, lazy_snapshot_map and cancellable_once.
//
//  - periodic_snapshotter saves only when version() moved, stop() joins, and the file it leaves
//    restores to the map at its last saved version;
//  - a process killed with SIGKILL at random moments while it snapshots continuously always
//    leaves a file that loads and satisfies the helper's invariant (crash_helper.cpp);
//  - lazy_snapshot_map loads once under a herd of first callers; a missing file is an empty map;
//  - cancellable_once: one init under a thundering herd, waiters that give up get nullptr
//    while the init goes on, a throwing init reaches its waiters and is retried, a T that
//    can neither be copied nor moved.
// Situations are built with latches and gates; waits are hang guards only.
// The headers split out of pipeline.hpp first: each must compile on its own.
#include "safemap/restore.hpp"  // includes cancellable_once.hpp before anything else
//
#include "safemap/pipeline.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "pipeline_support.hpp"
#include "safemap/map.hpp"
#include "safemap/persist.hpp"
#include "safemap/trie_map.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using safemap::job_handle;
using safemap::job_status;
using safemap::overflow_policy;
using safemap::periodic_snapshotter;
using safemap::snapshot_pipeline;
using safemap_test::pipeline::eventually;
using safemap_test::pipeline::gated_sink;
using safemap_test::pipeline::hang_guard;
using safemap_test::pipeline::open_on_exit;
using safemap_test::pipeline::run_threads;
using safemap_test::pipeline::scoped_temp_dir;
using safemap_test::pipeline::versioned_map;

using int_map = safemap::Map<int, int>;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

void put(versioned_map<int, int>& vm, int key, int value) {
  vm.update([&](int_map& m) { m.insert_or_assign(key, value); });
}

// ---- periodic_snapshotter ------------------------------------------------------------------

TEST(PeriodicSnapshotter, SavesOnlyWhenTheVersionMoved) {
  scoped_temp_dir dir;
  const auto path = dir / "saves.snap";
  versioned_map<int, int> vm;
  put(vm, 1, 10);
  snapshot_pipeline pipe({.workers = 1});
  periodic_snapshotter snap(pipe, vm, path, 2ms);

  ASSERT_TRUE(eventually([&] { return snap.saves() == 1; })) << "no first save";
  // A long stretch without change: many ticks, no new save.
  const auto skipped0 = snap.skipped();
  ASSERT_TRUE(eventually([&] { return snap.skipped() >= skipped0 + 20; }));
  EXPECT_EQ(snap.saves(), 1u);
  EXPECT_EQ(safemap::load_snapshot<int_map>(path), vm.snapshot());

  for (std::uint64_t round = 2; round <= 4; ++round) {
    put(vm, static_cast<int>(round), static_cast<int>(round) * 10);
    ASSERT_TRUE(eventually([&] { return snap.saves() == round; })) << "round " << round;
    // The save read the new version, so the file holds the map as it is now.
    EXPECT_EQ(safemap::load_snapshot<int_map>(path), vm.snapshot()) << "round " << round;
    const auto skipped = snap.skipped();
    ASSERT_TRUE(eventually([&] { return snap.skipped() >= skipped + 5; }));
    EXPECT_EQ(snap.saves(), round) << "saved again without a change, round " << round;
  }
  snap.stop();
  snap.stop();  // idempotent
  const auto saves = snap.saves(), skipped = snap.skipped();
  put(vm, 99, 99);
  EXPECT_EQ(snap.saves(), saves);
  EXPECT_EQ(snap.skipped(), skipped);
  EXPECT_EQ(snap.failures(), 0u);
}

TEST(PeriodicSnapshotter, RestoreGivesTheMapAtItsLastSavedVersion) {
  scoped_temp_dir dir;
  const auto path = dir / "restore.snap";
  versioned_map<int, int> vm;
  {
    snapshot_pipeline pipe({.workers = 2, .capacity = 4});
    periodic_snapshotter snap(pipe, vm, path, 1ms);
    // Writes from several threads at once while the snapshotter saves.
    run_threads(4, [&](int t) {
      for (int i = 0; i < 200; ++i) put(vm, t * 1000 + i % 50, i);
    });
    // Two ticks that skip after the last write: the later one started after it, so the saved
    // version is the final one.
    const auto skipped = snap.skipped();
    ASSERT_TRUE(eventually([&] { return snap.skipped() >= skipped + 2; }));
    EXPECT_GE(snap.saves(), 1u);
    EXPECT_EQ(snap.failures(), 0u);
  }
  const auto restored = safemap::restore_snapshot_or_empty<int_map>(path);
  EXPECT_EQ(restored.size(), 200u);
  EXPECT_EQ(restored, vm.snapshot());
}

// The pipeline serves every concurrent map: a TrieMap written by 4 threads while a periodic
// snapshotter saves it is restored, after the writes stop, as exactly what it holds.
TEST(PeriodicSnapshotter, SavesAndRestoresATrieMap) {
  scoped_temp_dir dir;
  const auto path = dir / "trie.snap";
  using trie = safemap::TrieMap<int, int>;
  trie m;
  {
    snapshot_pipeline pipe({.workers = 2, .capacity = 4});
    periodic_snapshotter snap(pipe, m, path, 1ms);
    run_threads(4, [&](int t) {
      for (int i = 0; i < 200; ++i) m.store(t * 1000 + i % 50, i);
    });
    // Two ticks that skip after the last write: the later one started after it, so the saved
    // version is the final one.
    const auto skipped = snap.skipped();
    ASSERT_TRUE(eventually([&] { return snap.skipped() >= skipped + 2; }));
    EXPECT_GE(snap.saves(), 1u);
    EXPECT_EQ(snap.failures(), 0u);
  }
  const auto restored = safemap::restore_snapshot_or_empty<trie>(path);
  EXPECT_EQ(restored.size(), 200u);
  EXPECT_EQ(restored.snapshot(), m.snapshot());
  EXPECT_EQ(restored.load(3049), 199);
}

// Regression (fixed in 0e056e0): periodic_snapshotter::stop() promises to cancel an in-flight
// save and join. A tick whose submit() waited for room in a shared, full pipeline (policy
// block, held by another producer's slow sink) could not be reached: current_ is set only after
// submit returns, and submit did not watch the timer thread's stop token, so stop() waited for
// as long as the other sink held the pipeline.
TEST(PeriodicSnapshotter, StopReturnsWhileItsSaveWaitsForRoomInAFullPipeline) {
  scoped_temp_dir dir;
  versioned_map<int, int> vm;
  put(vm, 1, 1);
  int_map other_a, other_b;
  other_a.insert_or_assign(1, 1);
  other_b.insert_or_assign(2, 2);
  auto held = std::make_shared<gated_sink>();
  snapshot_pipeline pipe({.workers = 1, .capacity = 1, .policy = overflow_policy::block});
  const open_on_exit release_on_failure(*held);
  job_handle running = pipe.submit(other_a, held);
  ASSERT_TRUE(held->wait_entered(1));
  job_handle queued = pipe.submit(other_b, held);  // the queue is now full

  auto snap = std::make_unique<periodic_snapshotter<versioned_map<int, int>>>(
      pipe, vm, dir / "stop.snap", 1ms);
  // Its first tick is inside submit, waiting for room.
  ASSERT_TRUE(eventually([&] { return pipe.stats().submitted == 3; }));
  auto stopped = std::async(std::launch::async, [&] { snap->stop(); });
  // Hang guard: stop() has nothing to wait for but a thread that should be told to stop.
  const bool returned = stopped.wait_for(5s) == std::future_status::ready;
  held->open();  // let it finish either way
  stopped.wait();
  EXPECT_TRUE(returned) << "periodic_snapshotter::stop() waited for another producer's sink";
  EXPECT_EQ(running.wait(), job_status::done);
  EXPECT_EQ(queued.wait(), job_status::done);
}

// Regression: periodic_snapshotter::stop() promises to cancel an in-flight save and join. A
// save that is queued (not running) behind another producer's slow sink is cancelled through
// its handle, but a cancelled queued job resolves only when a worker pops it, and tick() waits
// for that resolution with an unconditional job_handle::wait(). stop() (and the destructor)
// then wait for as long as the other sink holds the worker.
TEST(PeriodicSnapshotter, StopReturnsWhileItsSaveIsQueuedBehindAnotherSink) {
  scoped_temp_dir dir;
  versioned_map<int, int> vm;
  put(vm, 1, 1);
  int_map other;
  other.insert_or_assign(1, 1);
  auto held = std::make_shared<gated_sink>();
  snapshot_pipeline pipe({.workers = 1, .capacity = 4, .policy = overflow_policy::block});
  const open_on_exit release_on_failure(*held);
  job_handle running = pipe.submit(other, held);
  ASSERT_TRUE(held->wait_entered(1));

  auto snap = std::make_unique<periodic_snapshotter<versioned_map<int, int>>>(
      pipe, vm, dir / "queued.snap", 1ms);
  // Its first save is queued behind the held sink.
  ASSERT_TRUE(eventually([&] { return pipe.stats().queued == 1; }));
  auto stopped = std::async(std::launch::async, [&] { snap->stop(); });
  // Hang guard: stop() has nothing to wait for but a save it should have cancelled.
  const bool returned = stopped.wait_for(5s) == std::future_status::ready;
  held->open();  // let it finish either way
  stopped.wait();
  EXPECT_TRUE(returned) << "periodic_snapshotter::stop() waited for another producer's sink";
  EXPECT_EQ(running.wait(), job_status::done);
  EXPECT_EQ(snap->saves(), 0u) << "the cancelled save ran";
}

// Regression (issue 9, item 4): a save counted only when its job resolved done, so a stop()
// that arrived after the file was replaced but before the job resolved (the directory fsync,
// the sink's return) left a saved file with saves() == 0. The sink counts the save where it
// made it. Each trial catches the file the moment it appears and stops at once; the map never
// changes, so exactly one save is ever made.
TEST(PeriodicSnapshotter, StopJustAfterASaveStillCountsIt) {
  const int trials = sanitized ? 10 : 40;
  int uncounted = 0;
  for (int trial = 0; trial < trials; ++trial) {
    scoped_temp_dir dir;
    const auto path = dir / "late-stop.snap";
    versioned_map<int, int> vm;
    put(vm, 1, 1);
    snapshot_pipeline pipe({.workers = 1});
    periodic_snapshotter snap(pipe, vm, path, 1ms);
    const auto give_up = std::chrono::steady_clock::now() + hang_guard;
    while (!std::filesystem::exists(path)) {
      ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "no save in trial " << trial;
    }
    snap.stop();
    if (snap.saves() != 1) ++uncounted;
    EXPECT_EQ(snap.failures(), 0u);
  }
  EXPECT_EQ(uncounted, 0) << uncounted << " of " << trials
                          << " saves that replaced the file were not counted by saves()";
}

// Item 5 of issue 9: the timer waits on its thread's stop token, so stop() during a long
// interval returns at once instead of after the interval.
TEST(PeriodicSnapshotter, StopDuringALongIntervalReturnsAtOnce) {
  scoped_temp_dir dir;
  versioned_map<int, int> vm;
  put(vm, 1, 1);
  snapshot_pipeline pipe({.workers = 1});
  auto snap = std::make_unique<periodic_snapshotter<versioned_map<int, int>>>(
      pipe, vm, dir / "interval.snap", std::chrono::hours(1));
  auto stopped = std::async(std::launch::async, [&] { snap->stop(); });
  ASSERT_EQ(stopped.wait_for(hang_guard), std::future_status::ready)
      << "stop() waited for the interval";
  EXPECT_EQ(snap->saves(), 0u) << "a save ran before the first interval passed";
}

TEST(Restore, MissingFileGivesAnEmptyMap) {
  scoped_temp_dir dir;
  const auto restored = safemap::restore_snapshot_or_empty<int_map>(dir / "never-written.snap");
  EXPECT_TRUE(restored.empty());
  // Anything else wrong with the file still throws.
  {
    std::FILE* f = std::fopen((dir / "garbage.snap").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("not a snapshot\n", f);
    std::fclose(f);
  }
  EXPECT_THROW((void)safemap::restore_snapshot_or_empty<int_map>(dir / "garbage.snap"),
               safemap::snapshot_error);
}

// Regression (fixed in 0e056e0): restore_snapshot_or_empty ignored the error_code of
// std::filesystem::exists, so a path whose status cannot be read (here a symlink loop, ELOOP)
// counted as "no file yet" and restored an empty map, although any problem other than a
// missing file must throw. A periodic snapshotter started on that empty map would then
// overwrite whatever the path leads to.
TEST(Restore, PathThatCannotBeCheckedThrowsInsteadOfGivingAnEmptyMap) {
  scoped_temp_dir dir;
  const auto loop = dir / "loop.snap";
  std::filesystem::create_symlink(loop, loop);  // loop.snap -> loop.snap
  EXPECT_THROW((void)safemap::restore_snapshot_or_empty<int_map>(loop), std::exception)
      << "a symlink loop was taken for a missing file";
  // load_snapshot itself does report it.
  EXPECT_THROW((void)safemap::load_snapshot<int_map>(loop), safemap::snapshot_error);
}

// Loads the helper's file: its generation, or -1 when it breaks the invariant.
long long helper_generation(const std::filesystem::path& path, int keys) {
  const auto m = safemap::load_snapshot<int_map>(path);
  if (m.size() != static_cast<std::size_t>(keys)) return -1;
  const int* first = m.find(0);
  if (first == nullptr) return -1;
  for (int k = 0; k < keys; ++k) {
    const int* v = m.find(k);
    if (v == nullptr || *v != *first) return -1;
  }
  return *first;
}

TEST(Restore, FileSurvivesSigkillAtRandomMomentsMidRun) {
  scoped_temp_dir dir;
  const auto path = dir / "crash.snap";
  constexpr int keys = 64;
  const std::string keys_arg = std::to_string(keys);
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_us(0, 5000);

  long long last = -1;
  for (int kill = 0; kill < 8; ++kill) {
    SCOPED_TRACE("kill " + std::to_string(kill));
    pid_t pid = 0;
    const std::string helper = SAFEMAP_PIPELINE_CRASH_HELPER;
    std::string path_arg = path.string();
    char* argv[] = {const_cast<char*>(helper.c_str()), path_arg.data(),
                    const_cast<char*>(keys_arg.c_str()), nullptr};
    ASSERT_EQ(::posix_spawn(&pid, helper.c_str(), nullptr, nullptr, argv, environ), 0);

    // Wait until this run has saved something newer than what it restored, then kill it at a
    // random moment of its save loop.
    bool exited = false;
    int status = 0;
    const bool progressed = eventually([&] {
      if (::waitpid(pid, &status, WNOHANG) == pid) return exited = true;  // checked below
      std::error_code ec;
      if (!std::filesystem::exists(path, ec)) return false;
      try {
        return helper_generation(path, keys) > last;
      } catch (const std::exception&) {
        return true;  // a file that does not load: reported below
      }
    });
    if (!exited) {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
      ::kill(pid, SIGKILL);
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    }
    ASSERT_TRUE(progressed) << "the helper never saved a newer generation";
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the helper exited on its own (status " << status
        << "): 3 = restored file broke the invariant, 4 = restore threw";

    long long g = -1;
    ASSERT_NO_THROW(g = helper_generation(path, keys)) << "the file does not load after SIGKILL";
    ASSERT_GE(g, 0) << "the file loads but breaks the invariant (a torn or mixed state)";
    EXPECT_GT(g, last) << "a restart went back in time";
    last = g;
  }
  const auto restored = safemap::restore_snapshot_or_empty<int_map>(path);
  EXPECT_EQ(restored.size(), static_cast<std::size_t>(keys));
}

// ---- lazy_snapshot_map -------------------------------------------------------------------------

std::atomic<int> slow_loads{0};

// A map that counts how often it is built from a loaded snapshot, and takes a while doing it
// so that a herd of first callers really overlaps the load.
class slow_loading_map {
 public:
  using key_type = int;
  using mapped_type = int;
  using hasher = safemap::Hash<int>;
  using key_equal = std::equal_to<>;

  slow_loading_map() = default;
  explicit slow_loading_map(int_map&& m) : m_(std::move(m)) {
    ++slow_loads;
    std::this_thread::sleep_for(20ms);
  }
  template <class F>
  void for_each(F&& f) const {
    m_.for_each(std::forward<F>(f));
  }
  const int_map& map() const { return m_; }

 private:
  int_map m_;
};

TEST(LazySnapshotMap, FirstGetLoadsTheFileOnceUnderManyConcurrentCallers) {
  scoped_temp_dir dir;
  const auto path = dir / "lazy.snap";
  int_map m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, i * i);
  safemap::save_snapshot(m, path);

  slow_loads = 0;
  safemap::lazy_snapshot_map<slow_loading_map> lazy(path);
  EXPECT_FALSE(lazy.loaded());
  constexpr int callers = 16;
  std::vector<const slow_loading_map*> got(callers, nullptr);
  run_threads(callers, [&](int i) { got[static_cast<std::size_t>(i)] = &lazy.get(); });
  EXPECT_EQ(slow_loads.load(), 1) << "the file was loaded more than once";
  EXPECT_TRUE(lazy.loaded());
  for (const auto* p : got) EXPECT_EQ(p, got[0]);
  EXPECT_EQ(got[0]->map(), m);
  // Later callers get the cached map; the file is not read again.
  std::filesystem::remove(path);
  EXPECT_EQ(&lazy.get(), got[0]);
  EXPECT_EQ(slow_loads.load(), 1);
}

TEST(LazySnapshotMap, MissingFileGivesAnEmptyMap) {
  scoped_temp_dir dir;
  safemap::lazy_snapshot_map<int_map> lazy(dir / "absent.snap");
  EXPECT_TRUE(lazy.get().empty());
  EXPECT_TRUE(lazy.loaded());
  EXPECT_EQ(lazy.path(), dir / "absent.snap");
}

// ---- cancellable_once ----------------------------------------------------------------------

// Opened once; waiting on it is a hang guard.
class gate {
 public:
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, hang_guard, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct built {
  explicit built(int v) : value(v) {}
  int value;
};

TEST(CancellableOnce, ThunderingHerdRunsInitExactlyOnceAndAllShareTheObject) {
  safemap::cancellable_once<built> once;
  constexpr int threads = 32;
  std::atomic<int> inits{0};
  std::vector<built*> got(threads, nullptr);
  run_threads(threads, [&](int i) {
    got[static_cast<std::size_t>(i)] = &once.get([&] {
      ++inits;
      std::this_thread::sleep_for(20ms);
      return built(42);
    });
  });
  EXPECT_EQ(once.runs(), 1u);
  EXPECT_EQ(inits.load(), 1);
  EXPECT_TRUE(once.ready());
  for (built* p : got) EXPECT_EQ(p, got[0]);
  EXPECT_EQ(got[0]->value, 42);
}

TEST(CancellableOnce, WaitersThatCancelOrTimeOutGetNullptrWhileInitContinues) {
  safemap::cancellable_once<built> once;
  gate init_may_finish;
  std::latch init_entered(1);
  std::atomic<bool> gate_ok{true};
  std::jthread runner([&] {
    built& b = once.get([&] {
      init_entered.count_down();
      gate_ok = init_may_finish.wait();
      return built(7);
    });
    EXPECT_EQ(b.value, 7);
  });
  init_entered.wait();

  auto never_run = [] {
    ADD_FAILURE() << "a waiter ran init while another thread's init was in progress";
    return built(-1);
  };
  // A waiter whose stop_token is requested while it waits.
  std::stop_source stop;
  auto cancelled =
      std::async(std::launch::async, [&] { return once.get(never_run, stop.get_token()); });
  // A waiter whose deadline passes while it waits.
  auto timed_out = std::async(std::launch::async, [&] {
    return once.get(never_run, std::stop_token{}, safemap::pipeline_clock::now() + 20ms);
  });
  stop.request_stop();
  ASSERT_EQ(cancelled.wait_for(hang_guard), std::future_status::ready);
  EXPECT_EQ(cancelled.get(), nullptr);
  ASSERT_EQ(timed_out.wait_for(hang_guard), std::future_status::ready);
  EXPECT_EQ(timed_out.get(), nullptr);
  // The init is still running: giving up did not disturb it.
  EXPECT_FALSE(once.ready());
  EXPECT_EQ(once.runs(), 1u);

  init_may_finish.open();
  runner.join();
  EXPECT_TRUE(gate_ok.load());
  built* later = once.get(never_run, std::stop_token{});
  ASSERT_NE(later, nullptr);
  EXPECT_EQ(later->value, 7);
  EXPECT_EQ(&once.get(never_run), later);
  EXPECT_EQ(once.runs(), 1u);
}

TEST(CancellableOnce, ThrowingInitReachesItsWaitersAndTheNextCallerRetries) {
  safemap::cancellable_once<built> once;
  constexpr int waiters = 6;
  gate fail_now;
  std::latch init_entered(1);
  std::atomic<int> attempts{0};
  // Every attempt made while `failing` throws "attempt <n>".
  std::atomic<bool> failing{true};
  auto init = [&] {
    const int n = ++attempts;
    if (n == 1) {
      init_entered.count_down();
      fail_now.wait();
    }
    if (failing.load()) throw std::runtime_error("attempt " + std::to_string(n));
    return built(100 + n);
  };

  std::promise<std::string> runner_error;
  std::jthread runner([&] {
    try {
      (void)once.get(init);
      runner_error.set_value("no exception");
    } catch (const std::runtime_error& e) {
      runner_error.set_value(e.what());
    }
  });
  init_entered.wait();
  std::vector<std::future<std::string>> waiter_errors;
  for (int i = 0; i < waiters; ++i) {
    waiter_errors.push_back(std::async(std::launch::async, [&] {
      try {
        (void)once.get(init);
        return std::string("no exception");
      } catch (const std::runtime_error& e) {
        return std::string(e.what());
      }
    }));
  }
  // Issue 9, item 16: this waited 50 ms and hoped the waiters were inside get() by then. Now
  // it knows: waiting() counts the threads waiting on the attempt in progress, and attempt 1
  // cannot end before fail_now opens, so every waiter waits on attempt 1.
  ASSERT_TRUE(eventually([&] { return once.waiting() == static_cast<std::size_t>(waiters); }));
  fail_now.open();

  EXPECT_EQ(runner_error.get_future().get(), "attempt 1");
  runner.join();
  int got_attempt_1 = 0;
  for (auto& f : waiter_errors) {
    ASSERT_EQ(f.wait_for(hang_guard), std::future_status::ready);
    const std::string e = f.get();
    // Every waiter waited on attempt 1 (see above) and gets its exception, never a value.
    EXPECT_EQ(e, "attempt 1");
    if (e == "attempt 1") ++got_attempt_1;
  }
  EXPECT_EQ(got_attempt_1, waiters) << "a waiter did not receive the failing attempt's exception";
  EXPECT_EQ(once.runs(), 1u) << "a waiter ran init while attempt 1 was in progress";
  EXPECT_EQ(attempts.load(), 1);
  EXPECT_EQ(once.waiting(), 0u);
  EXPECT_FALSE(once.ready()) << "a failure was cached";

  // The next caller retries and succeeds.
  failing = false;
  const std::uint64_t runs_before = once.runs();
  built& b = once.get(init);
  EXPECT_EQ(once.runs(), runs_before + 1);
  EXPECT_EQ(b.value, 100 + attempts.load());
  EXPECT_TRUE(once.ready());
  EXPECT_EQ(&once.get(init), &b);
  EXPECT_EQ(once.runs(), runs_before + 1);
}

// Neither copyable nor movable: cancellable_once must build it in place.
struct pinned {
  explicit pinned(int v) : value(v) {}
  pinned(const pinned&) = delete;
  pinned(pinned&&) = delete;
  pinned& operator=(const pinned&) = delete;
  pinned& operator=(pinned&&) = delete;
  int value;
  std::mutex mu;  // typical reason for being pinned
};

TEST(CancellableOnce, NonMovableValueIsConstructedInPlace) {
  safemap::cancellable_once<pinned> once;
  std::vector<pinned*> got(8, nullptr);
  run_threads(
      8, [&](int i) { got[static_cast<std::size_t>(i)] = &once.get([] { return pinned(5); }); });
  EXPECT_EQ(once.runs(), 1u);
  for (pinned* p : got) EXPECT_EQ(p, got[0]);
  EXPECT_EQ(got[0]->value, 5);
}

}  // namespace
