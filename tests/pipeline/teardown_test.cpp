// tests/pipeline/teardown_test.cpp - calls from the caller's threads that race the pipeline's
// destructor, each paused at a chosen point so the race is a fact, not a chance.
//
// This binary replaces the global operator new with one that can pause the calling thread at
// its next allocation (armed per thread, one shot). A canceller armed that way stops inside
// job_handle::cancel() at the first allocation the pipeline makes for it, which is the error
// text of the job it resolves, after it has taken the job out of the queue and released the
// pipeline's mutex: exactly where a destructor that does not wait for it frees the pipeline
// under its feet. The test then lets the destructor run and checks it does not return while
// the canceller is inside (ASan also reports the use after free of a broken pipeline).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>

#include "pipeline_support.hpp"
#include "safemap/map.hpp"
#include "safemap/pipeline.hpp"

// ---- a global operator new that can pause its caller ----------------------------------------
namespace {
thread_local bool tls_pause_at_next_allocation = false;
std::atomic<bool> g_paused{false};  // set by the paused thread
std::atomic<bool> g_resume{false};  // set by the test to let it go on

void pause_here() {
  g_paused.store(true);
  g_paused.notify_all();
  g_resume.wait(false);  // std::atomic::wait allocates nothing
}
}  // namespace

// noinline: inlined into a caller, GCC would pair this malloc with the operator delete's free
// across the call and warn (-Wmismatched-new-delete) about a pairing that is in fact right.
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (tls_pause_at_next_allocation) {
    tls_pause_at_next_allocation = false;
    pause_here();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using namespace std::chrono_literals;
using safemap::job_handle;
using safemap::job_status;
using safemap::snapshot_pipeline;
using safemap_test::pipeline::gated_sink;
using safemap_test::pipeline::hang_watchdog;
using safemap_test::pipeline::open_on_exit;

// Regression (issue 9, item 2): cancel_queued took the job out of the queue, unlocked, then
// went on using the pipeline (finish, count_outcome, notify_if_idle). A destructor that found
// the queue and the running set empty returned and freed the pipeline meanwhile
// (heap-use-after-free under ASan). The destructor now waits for cancels in progress.
TEST(Teardown, DestructorWaitsForACancelThatIsResolvingAQueuedJob) {
  const hang_watchdog watchdog("the destructor racing a paused cancel");
  safemap::Map<int, int> first_map, queued_map;
  first_map.insert_or_assign(1, 1);
  queued_map.insert_or_assign(2, 2);
  auto sink = std::make_shared<gated_sink>();
  const open_on_exit release_on_failure(*sink);
  auto pipe = std::make_unique<snapshot_pipeline>(snapshot_pipeline::options{.workers = 1});
  job_handle running = pipe->submit(first_map, sink);
  ASSERT_TRUE(sink->wait_entered(1));
  job_handle queued = pipe->submit(queued_map, sink);

  std::jthread canceller([&] {
    tls_pause_at_next_allocation = true;
    queued.cancel();
    tls_pause_at_next_allocation = false;
  });
  g_paused.wait(false);
  // The canceller has taken the queued job: the queue is empty, and once the running job
  // finishes nothing but the paused cancel can hold the destructor back.
  EXPECT_EQ(pipe->stats().queued, 0u) << "the canceller paused before taking the queued job";
  sink->open();
  ASSERT_EQ(running.wait(), job_status::done);

  std::atomic<bool> destroyed{false};
  std::jthread destroyer([&] {
    pipe.reset();
    destroyed.store(true);
  });
  // Something that must not happen: a correct destructor waits for the paused canceller and
  // never returns here; a broken one returns within microseconds. The bound only limits how
  // long the test looks (a loaded machine can only make it miss the bug, never invent it).
  const auto look_until = std::chrono::steady_clock::now() + 250ms;
  while (!destroyed.load() && std::chrono::steady_clock::now() < look_until) {
    std::this_thread::yield();
  }
  const bool returned_while_cancel_inside = destroyed.load();
  g_resume.store(true);
  g_resume.notify_all();
  canceller.join();
  destroyer.join();
  EXPECT_FALSE(returned_while_cancel_inside)
      << "the destructor returned while a cancel was still using the pipeline";
  EXPECT_EQ(queued.wait(), job_status::cancelled);
  EXPECT_EQ(sink->entered(), 1u) << "the cancelled job ran";
}

}  // namespace
