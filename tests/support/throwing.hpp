// tests/support/throwing.hpp - value types whose constructors throw on demand.
//
// fault_injector decides, from a seeded generator, whether a fault point throws
// injected_fault. It is off by default and per thread; a fault_scope switches it on for one
// container operation, so the test harness's own copies (reference model, comparisons) never
// throw.
//
//  - throwing_ctor_value<Tag>: construction from int and copying may throw; the move
//    constructor is noexcept (a container may relocate by moving).
//  - throwing_copy_value<Tag>: copying may throw and the move constructor is not noexcept and
//    may throw too, so a container that wants the strong guarantee must relocate by copying
//    and destroy the originals only once every copy succeeded.
// Both hold a counted<Tag> and so count their live instances (see counted.hpp).
//
// Concurrency: the injector is thread_local; instances are ordinary values.
#pragma once

#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <utility>

#include "support/counted.hpp"

namespace safemap_test {

struct injected_fault : std::runtime_error {
  injected_fault() : std::runtime_error("injected fault") {}
};

class fault_injector {
 public:
  static fault_injector& local() {
    thread_local fault_injector f;
    return f;
  }

  // Every fault point throws with probability 1/one_in while enabled.
  void configure(std::uint64_t seed, std::uint32_t one_in) {
    state_ = seed;
    one_in_ = one_in == 0 ? 1 : one_in;
  }
  void fault_point() {
    if (!enabled_) return;
    state_ += 0x9e3779b97f4a7c15ULL;  // splitmix64
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    if (z % one_in_ == 0) {
      ++thrown_;
      throw injected_fault();
    }
  }
  bool enabled() const noexcept { return enabled_; }
  void set_enabled(bool on) noexcept { enabled_ = on; }
  std::uint64_t thrown() const noexcept { return thrown_; }

 private:
  std::uint64_t state_ = 1;
  std::uint32_t one_in_ = 16;
  std::uint64_t thrown_ = 0;
  bool enabled_ = false;
};

// Enables fault injection on this thread for its lifetime.
class fault_scope {
 public:
  fault_scope() : prev_(fault_injector::local().enabled()) {
    fault_injector::local().set_enabled(true);
  }
  ~fault_scope() { fault_injector::local().set_enabled(prev_); }
  fault_scope(const fault_scope&) = delete;
  fault_scope& operator=(const fault_scope&) = delete;

 private:
  bool prev_;
};

inline void fault_point() {
  fault_injector::local().fault_point();
}

template <class Tag>
class throwing_ctor_value {
 public:
  static instance_counters& counters() { return counted<Tag>::counters(); }

  throwing_ctor_value() : throwing_ctor_value(0) {}
  throwing_ctor_value(int v) : c_((fault_point(), v)) {}  // NOLINT(google-explicit-constructor)
  throwing_ctor_value(const throwing_ctor_value& o) : c_((fault_point(), o.c_)) {}
  throwing_ctor_value(throwing_ctor_value&& o) noexcept : c_(std::move(o.c_)) {}
  throwing_ctor_value& operator=(const throwing_ctor_value&) = default;
  throwing_ctor_value& operator=(throwing_ctor_value&&) noexcept = default;

  int value() const noexcept { return c_.value(); }
  friend bool operator==(const throwing_ctor_value& a, const throwing_ctor_value& b) noexcept {
    return a.c_ == b.c_;
  }
  friend std::ostream& operator<<(std::ostream& os, const throwing_ctor_value& v) {
    return os << "throwing_ctor_value(" << v.value() << ")";
  }

 private:
  counted<Tag> c_;
};

template <class Tag>
class throwing_copy_value {
 public:
  static instance_counters& counters() { return counted<Tag>::counters(); }

  throwing_copy_value() : throwing_copy_value(0) {}
  throwing_copy_value(int v) : c_(v) {}  // NOLINT(google-explicit-constructor)
  throwing_copy_value(const throwing_copy_value& o) : c_((fault_point(), o.c_)) {}
  // Deliberately not noexcept, and it may throw.
  throwing_copy_value(throwing_copy_value&& o) noexcept(false)
      : c_((fault_point(), std::move(o.c_))) {}
  throwing_copy_value& operator=(const throwing_copy_value&) = default;
  throwing_copy_value& operator=(throwing_copy_value&&) = default;

  int value() const noexcept { return c_.value(); }
  friend bool operator==(const throwing_copy_value& a, const throwing_copy_value& b) noexcept {
    return a.c_ == b.c_;
  }
  friend std::ostream& operator<<(std::ostream& os, const throwing_copy_value& v) {
    return os << "throwing_copy_value(" << v.value() << ")";
  }

 private:
  counted<Tag> c_;
};

}  // namespace safemap_test
