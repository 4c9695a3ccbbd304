// tests/support/counted.hpp - value types that count their instances.
//
// counted<Tag> wraps an int and keeps per-Tag counters of live instances, constructions,
// copies, moves and bad destructions (destroying an object that is not alive: a double
// destruction, or destroying raw memory that never held one). A test that ends with
// live() == 0 and bad_destroys() == 0 proves the container neither leaked nor destroyed
// anything twice; comparing live() with the container's size at quiet points proves it keeps
// no stray copies. Use a distinct Tag per test so counters do not mix.
//
// move_only<T> is a move-only wrapper (noexcept move) for keys and values.
//
// Concurrency: the counters are atomics; instances follow the usual rules of a value type.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <utility>

namespace safemap_test {

// Counters shared by every counted<Tag> of one Tag.
struct instance_counters {
  std::atomic<long> live{0};
  std::atomic<long> constructed{0};        // every constructor, copies and moves included
  std::atomic<long> value_constructed{0};  // from an int or by default (not copies or moves)
  std::atomic<long> copies{0};
  std::atomic<long> moves{0};
  std::atomic<long> bad_destroys{0};

  void reset() {
    live = 0;
    constructed = 0;
    value_constructed = 0;
    copies = 0;
    moves = 0;
    bad_destroys = 0;
  }
};

template <class Tag = void>
class counted {
  static constexpr std::uint32_t k_alive = 0xa11fe11a;
  static constexpr std::uint32_t k_dead = 0xdeadd00d;

 public:
  static instance_counters& counters() {
    static instance_counters c;
    return c;
  }

  counted() : counted(0) {}
  counted(int value) : value_(value) {  // NOLINT(google-explicit-constructor): test convenience
    born();
    ++counters().value_constructed;
  }
  counted(const counted& o) : value_(o.value_) {
    born();
    ++counters().copies;
  }
  counted(counted&& o) noexcept : value_(o.value_) {
    born();
    ++counters().moves;
  }
  counted& operator=(const counted& o) {
    value_ = o.value_;
    return *this;
  }
  counted& operator=(counted&& o) noexcept {
    value_ = o.value_;
    return *this;
  }
  ~counted() {
    // Reading magic_ of a dead object is formally undefined, which is the point: a slot
    // destroyed twice still holds k_dead, raw memory holds neither marker.
    if (magic_ != k_alive) ++counters().bad_destroys;
    magic_ = k_dead;
    --counters().live;
  }

  int value() const noexcept { return value_; }
  bool alive() const noexcept { return magic_ == k_alive; }

  friend bool operator==(const counted& a, const counted& b) noexcept {
    return a.value_ == b.value_;
  }
  friend std::ostream& operator<<(std::ostream& os, const counted& c) {
    return os << "counted(" << c.value_ << ")";
  }

 private:
  void born() {
    magic_ = k_alive;
    ++counters().live;
    ++counters().constructed;
  }

  int value_;
  std::uint32_t magic_ = k_alive;
};

// Hashes anything with an int value() (counted, move_only<int>, the throwing types).
struct value_hash {
  template <class T>
  std::size_t operator()(const T& x) const noexcept {
    return std::hash<int>{}(x.value());
  }
};

template <class T>
class move_only {
 public:
  move_only() = default;
  explicit move_only(T v) : v_(std::move(v)) {}
  move_only(const move_only&) = delete;
  move_only& operator=(const move_only&) = delete;
  move_only(move_only&& o) noexcept : v_(std::move(o.v_)) {}
  move_only& operator=(move_only&& o) noexcept {
    v_ = std::move(o.v_);
    return *this;
  }

  const T& value() const noexcept { return v_; }
  friend bool operator==(const move_only& a, const move_only& b) { return a.v_ == b.v_; }
  friend std::ostream& operator<<(std::ostream& os, const move_only& m) {
    return os << "move_only(" << m.v_ << ")";
  }

 private:
  T v_{};
};

}  // namespace safemap_test
