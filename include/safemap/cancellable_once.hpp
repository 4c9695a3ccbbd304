// safemap/cancellable_once.hpp - run an initializer once for many threads, each of which may
// give up waiting.
//
//   safemap::cancellable_once<Config> config;
//   Config& c = config.get([] { return load_config(); });            // waits as long as it takes
//   Config* p = config.get(load_config, stop_token, now + 100ms);     // nullptr if it gave up
//
// std::call_once lets one thread run an initializer while the others wait, but a waiter cannot
// stop waiting, and an initializer that throws leaves the flag unset without telling the
// waiters why. cancellable_once keeps call_once's guarantee (one init at a time, its result
// shared by all) and adds: a waiter can give up through its own std::stop_token or a deadline
// without disturbing the init or the other waiters; an exception reaches the thread that ran
// init and every thread that waited on that attempt, and the next caller tries again.
//
// # Invariants
// 1. value_ is written only by the thread that set running_, and read only after ready_ was
//    seen under mu_: it is built outside the lock, so waiters are never held up by init.
// 2. attempt_ bumps once per finished attempt (success or failure), under mu_; a waiter waits
//    for the attempt it saw to end, so it never sleeps through the end of its attempt.
//
// Used by lazy_snapshot_map (restore.hpp) to load a snapshot file on first use.
#pragma once

#include "safemap/detail/config.hpp"
#if !SAFEMAP_HAS_PIPELINE
#error \
    "safemap/cancellable_once.hpp needs C++20 std::stop_token (libstdc++ 10+, libc++ 18+); this standard library lacks it. Every header but this one and pipeline.hpp works here."
#endif

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

namespace safemap {

// Runs an initializer exactly once even when many threads need its result at the same moment:
// one runs init, the others wait. Each waiter may give up through its own std::stop_token or
// deadline without affecting the init or the other waiters. If init throws, the exception is
// rethrown to the thread that ran it and to every thread waiting on that attempt, and the next
// caller tries again: a failure is never cached as success.
// Concurrency: all members are thread-safe. T need not be movable (init's result is
// constructed in place).
template <class T>
class cancellable_once {
 public:
  // The value, running init() if nobody has succeeded yet. Blocks while another thread runs it.
  template <class F>
  T& get(F&& init) {
    return *get(std::forward<F>(init), std::stop_token{},
                std::chrono::steady_clock::time_point::max());
  }

  // As above, but returns nullptr if `stop` is requested or `deadline` passes while waiting for
  // another thread's init (the init goes on). The calling thread runs init itself if no
  // attempt is in progress; that run is not interruptible through `stop`.
  template <class F>
  T* get(F&& init, std::stop_token stop,
         std::chrono::steady_clock::time_point deadline =
             std::chrono::steady_clock::time_point::max()) {
    std::unique_lock lock(mu_);
    for (;;) {
      if (ready_) return &*value_;
      if (!running_) break;
      const std::uint64_t attempt = attempt_;
      const auto attempt_over = [&] { return attempt_ != attempt; };
      ++waiting_;
      const bool over = deadline == std::chrono::steady_clock::time_point::max()
                            ? cv_.wait(lock, stop, attempt_over)
                            : cv_.wait_until(lock, stop, deadline, attempt_over);
      --waiting_;
      if (!over) return nullptr;  // gave up: stop requested or deadline passed
      if (ready_) return &*value_;
      if (failed_attempt_ == attempt && error_) std::rethrow_exception(error_);
    }
    running_ = true;
    ++runs_;
    lock.unlock();
    try {
      // value_ is written only by the thread that set running_, and read only after ready_
      // is seen under mu_, so it is built outside the lock (waiters are not held up).
      struct deferred {
        F& f;
        operator T() { return f(); }  // guaranteed elision: T is constructed in place
      };
      value_.emplace(deferred{init});
    } catch (...) {
      lock.lock();
      error_ = std::current_exception();
      failed_attempt_ = attempt_;
      running_ = false;
      ++attempt_;
      cv_.notify_all();
      throw;
    }
    lock.lock();
    ready_ = true;
    running_ = false;
    ++attempt_;
    cv_.notify_all();
    return &*value_;
  }

  bool ready() const {
    std::lock_guard lock(mu_);
    return ready_;
  }
  // How many times an init ran (tests: exactly one success under a thundering herd).
  std::uint64_t runs() const {
    std::lock_guard lock(mu_);
    return runs_;
  }
  // How many threads wait for another thread's init now (tests: every waiter of a herd is
  // known to wait on the attempt in progress before it ends).
  std::size_t waiting() const {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::optional<T> value_;     // written by the running thread, read once ready_
  bool ready_ = false;         // guarded by mu_
  bool running_ = false;       // guarded by mu_
  std::uint64_t attempt_ = 0;  // guarded by mu_; bumps when an attempt ends
  std::uint64_t failed_attempt_ = ~std::uint64_t{0};  // guarded by mu_
  std::exception_ptr error_;  // guarded by mu_: the last failed attempt's exception
  std::uint64_t runs_ = 0;    // guarded by mu_
  std::size_t waiting_ = 0;   // guarded by mu_
};

}  // namespace safemap
