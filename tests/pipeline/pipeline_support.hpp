// tests/pipeline/pipeline_support.hpp - what the pipeline tests (and the crash helper) share.
//
//  - versioned_map<K, V>: a test-only concurrent map with version(): a safemap::Map behind a
//    mutex plus a version counter. It offers read_view (so json.hpp, save_snapshot and the
//    pipeline can serialize it) and update(f), which applies f to the whole map under one lock
//    and bumps the version once, so every serialized view is one consistent state.
//    (LockedMap and CowMap have version() but no read_view, so json.hpp cannot serialize them;
//    see the pipeline tests' report.)
//  - gated_sink: a snapshot_sink whose write() blocks until open() (or, when cooperative,
//    until its job's stop token is requested), recording which maps reached it. It is how the
//    tests hold a worker busy and fill the queue without any timing assumption.
//  - eventually(pred): polls pred until it holds or a generous hang guard expires; only ever
//    used to wait for something that must happen, never to measure how fast it happens.
//  - run_threads(n, fn): n threads released together by a std::latch, joined on return.
//  - status_tally: the handles' final statuses counted, compared field by field with stats().
//  - scoped_temp_dir, thread_count(): a private directory per test; entries of /proc/self/task.
//  - hang_watchdog: fails the test process (instead of hanging it) when a test that could
//    deadlock has not finished within its limit.
//
// Concurrency: versioned_map and gated_sink are thread-safe; the rest is used from one thread.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <latch>
#include <mutex>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "safemap/map.hpp"
#include "safemap/pipeline.hpp"
#include "../support/watchdog.hpp"  // crash_helper.cpp includes this file without tests/ on its path

namespace safemap_test::pipeline {

// A hang guard: long enough that a loaded sanitizer build never reaches it unless something
// really hangs.
inline constexpr std::chrono::seconds hang_guard{30};

// ---- versioned_map -------------------------------------------------------------------------

template <class K, class V>
class versioned_map {
 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = safemap::Hash<K>;
  using key_equal = std::equal_to<>;
  using map_type = safemap::Map<K, V>;

  versioned_map() = default;
  explicit versioned_map(map_type&& m) : map_(std::move(m)) {}

  // json.hpp's view of a concurrent map: walk(g) calls g(key, value) for every entry, under
  // the lock for the whole of body.
  template <class F>
  void read_view(F&& body) const {
    std::lock_guard lock(mu_);
    body([this](auto&& g) { map_.for_each([&g](const K& k, const V& v) { g(k, v); }); });
  }

  // Applies f(map_type&) under the lock; one version step for the whole change.
  template <class F>
  void update(F&& f) {
    std::lock_guard lock(mu_);
    f(map_);
    version_.fetch_add(1, std::memory_order_release);
  }

  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

  map_type snapshot() const {
    std::lock_guard lock(mu_);
    return map_;
  }

 private:
  mutable std::mutex mu_;
  map_type map_;                           // guarded by mu_
  std::atomic<std::uint64_t> version_{0};  // written under mu_
};

// ---- gated_sink ----------------------------------------------------------------------------

class gated_sink final : public safemap::snapshot_sink {
 public:
  // cooperative: write() also returns as soon as its stop token is requested.
  // on_enter: called (without the sink's lock) at the start of every write().
  explicit gated_sink(bool cooperative = false,
                      std::function<void(const safemap::snapshot_data&)> on_enter = {})
      : cooperative_(cooperative), on_enter_(std::move(on_enter)) {}

  void write(const safemap::snapshot_data& data, std::stop_token stop) override {
    if (on_enter_) on_enter_(data);
    std::unique_lock lock(mu_);
    maps_.push_back(data.map);
    cv_.notify_all();
    const auto deadline = std::chrono::steady_clock::now() + hang_guard;
    if (cooperative_) {
      cv_.wait_until(lock, stop, deadline, [&] { return open_; });
    } else {
      cv_.wait_until(lock, deadline, [&] { return open_; });
    }
    if (stop.stop_requested()) ++saw_stop_;
    if (!open_ && !stop.stop_requested()) ++hang_guard_expired_;
  }

  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

  // Waits until write() was entered n times in all (false if the hang guard expired).
  bool wait_entered(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, hang_guard, [&] { return maps_.size() >= n; });
  }

  std::vector<const void*> maps() const {
    std::lock_guard lock(mu_);
    return maps_;
  }
  std::size_t entered() const {
    std::lock_guard lock(mu_);
    return maps_.size();
  }
  std::size_t saw_stop() const {
    std::lock_guard lock(mu_);
    return saw_stop_;
  }
  std::size_t hang_guard_expired() const {
    std::lock_guard lock(mu_);
    return hang_guard_expired_;
  }

 private:
  const bool cooperative_;
  const std::function<void(const safemap::snapshot_data&)> on_enter_;
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  bool open_ = false;                   // guarded by mu_
  std::vector<const void*> maps_;       // guarded by mu_: data.map of every write, in order
  std::size_t saw_stop_ = 0;            // guarded by mu_
  std::size_t hang_guard_expired_ = 0;  // guarded by mu_
};

// Opens a gated_sink on scope exit, so that a failed ASSERT cannot leave threads blocked behind
// it and hang the test in a jthread destructor. Declare it after the threads it must release.
class open_on_exit {
 public:
  explicit open_on_exit(gated_sink& sink) : sink_(sink) {}
  ~open_on_exit() { sink_.open(); }
  open_on_exit(const open_on_exit&) = delete;
  open_on_exit& operator=(const open_on_exit&) = delete;

 private:
  gated_sink& sink_;
};

// ---- hang_watchdog -------------------------------------------------------------------------

// A deadlocked thread can be neither joined nor interrupted, so a test that could deadlock
// cannot fail in the ordinary way: it would hang the suite until ctest's timeout. A
// hang_watchdog declared first in such a test waits for the test to finish (its destructor);
// if `limit` passes first it prints what hung and ends the process with a failure status.
// Each TEST is its own ctest process (gtest_discover_tests), so only that test fails.
struct hang_watchdog : safemap_test::watchdog {
  explicit hang_watchdog(std::string what, std::chrono::seconds limit = hang_guard)
      : watchdog(std::move(what), limit) {}
};

// ---- small helpers -------------------------------------------------------------------------

// Polls pred every millisecond until it holds; false if the hang guard expired first.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::milliseconds guard = hang_guard) {
  const auto until = std::chrono::steady_clock::now() + guard;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Runs fn(i) for i in [0, n) on n threads released together by a latch; joins them all.
template <class Fn>
void run_threads(int n, Fn fn) {
  std::latch start(n);
  std::vector<std::jthread> threads;
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      fn(i);
    });
  }
}

// How many of the handles ended in each status.
struct status_tally {
  std::uint64_t done = 0, dropped = 0, coalesced = 0, cancelled = 0, timed_out = 0, failed = 0,
                rejected = 0, other = 0;

  void add(safemap::job_status s) {
    using js = safemap::job_status;
    switch (s) {
      case js::done:
        ++done;
        break;
      case js::dropped:
        ++dropped;
        break;
      case js::coalesced:
        ++coalesced;
        break;
      case js::cancelled:
        ++cancelled;
        break;
      case js::timed_out:
        ++timed_out;
        break;
      case js::failed:
        ++failed;
        break;
      case js::rejected:
        ++rejected;
        break;
      default:
        ++other;
        break;
    }
  }
  std::uint64_t total() const {
    return done + dropped + coalesced + cancelled + timed_out + failed + rejected + other;
  }
};

inline status_tally tally(const std::vector<safemap::job_handle>& handles) {
  status_tally t;
  for (const auto& h : handles) t.add(h.wait());
  return t;
}

inline std::uint64_t outcomes(const safemap::pipeline_stats& s) {
  return s.done + s.dropped + s.coalesced + s.cancelled + s.timed_out + s.failed + s.rejected;
}

// A fresh directory under the test temp dir, removed with everything in it on destruction.
class scoped_temp_dir {
 public:
  scoped_temp_dir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "safemap-pipeline-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    path_ = pattern;
  }
  ~scoped_temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scoped_temp_dir(const scoped_temp_dir&) = delete;
  scoped_temp_dir& operator=(const scoped_temp_dir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Threads of this process now (entries of /proc/self/task).
inline std::size_t thread_count() {
  std::size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)entry;
    ++n;
  }
  return n;
}

}  // namespace safemap_test::pipeline
