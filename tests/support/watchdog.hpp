// support/watchdog.hpp - fails a test that hangs instead of letting it hang: if the scope is
// not left within the limit, prints the running test, what did not finish, and exits the test
// binary with status 1 (a hung thread cannot be joined, so the process cannot fail any more
// gently). The one watchdog of every race test (lock, map, reclaim and pipeline suites).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace safemap_test {

// Generous: a hang fails well before ctest's own 900 s timeout, and a slow sanitizer run on a
// loaded 2-core machine never trips it.
inline constexpr std::chrono::seconds watchdog_limit{300};

class watchdog {
 public:
  explicit watchdog(std::string what, std::chrono::seconds limit = watchdog_limit)
      : what_(std::move(what)), thread_([this, limit] { watch(limit); }) {}
  explicit watchdog(std::chrono::seconds limit) : watchdog("the test", limit) {}
  ~watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  void watch(std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, limit, [this] { return done_; })) return;
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    std::fprintf(stderr, "FAILED (watchdog): %s.%s: %s did not finish within %llds\n",
                 info != nullptr ? info->test_suite_name() : "?",
                 info != nullptr ? info->name() : "?", what_.c_str(),
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::_Exit(EXIT_FAILURE);
  }

  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the rest is constructed
};

}  // namespace safemap_test
