// tests/support/misuse_guard.hpp - observing the misuse detector from tests.
//
//  - scoped_misuse_handler: installs a handler and restores the previous one on scope exit,
//    so a failing test cannot leave a throwing handler behind for the next one.
//  - throw_misuse: a handler that throws safemap::misuse_error (catch it in the test).
//  - record_misuse / misuse_record: a handler that only counts reports per kind and returns
//    (the operation then proceeds: use it only where no real overlap happens).
//  - write_gate + gated_value + while_writing(): force an overlap deterministically. A writer
//    thread inserts a gated_value whose constructor signals that the write is in progress
//    (the map's writing flag is set by then) and blocks until released; the calling thread
//    runs its probe meanwhile. The probe may only touch the map in ways the detector stops
//    before the table is read (that is the contract under test), so ThreadSanitizer sees no
//    race: everything else the two threads do is ordered by the gate's latches.
//
// Concurrency: the handler functions may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <latch>
#include <thread>
#include <utility>

#include "safemap/misuse.hpp"

namespace safemap_test {

class scoped_misuse_handler {
 public:
  explicit scoped_misuse_handler(safemap::misuse_handler h)
      : previous_(safemap::set_misuse_handler(h)) {}
  ~scoped_misuse_handler() { safemap::set_misuse_handler(previous_); }
  scoped_misuse_handler(const scoped_misuse_handler&) = delete;
  scoped_misuse_handler& operator=(const scoped_misuse_handler&) = delete;

  safemap::misuse_handler previous() const noexcept { return previous_; }

 private:
  safemap::misuse_handler previous_;
};

[[noreturn]] inline void throw_misuse(const safemap::misuse_report& r) {
  throw safemap::misuse_error(r);
}

// Reports seen by record_misuse, per kind.
struct misuse_record {
  static constexpr std::size_t kinds = 4;
  std::array<std::atomic<long>, kinds> count{};

  static misuse_record& instance() {
    static misuse_record r;
    return r;
  }
  long of(safemap::misuse_kind k) const { return count[static_cast<std::size_t>(k)].load(); }
  long total() const {
    long n = 0;
    for (const auto& c : count) n += c.load();
    return n;
  }
  void reset() {
    for (auto& c : count) c = 0;
  }
};

inline void record_misuse(const safemap::misuse_report& r) {
  ++misuse_record::instance().count[static_cast<std::size_t>(r.kind)];
}

// Two one-shot latches: the writer announces it is inside the write, then waits for release.
class write_gate {
 public:
  void enter_and_wait() {
    entered_.count_down();
    released_.wait();
  }
  void wait_entered() { entered_.wait(); }
  void release() { released_.count_down(); }

 private:
  std::latch entered_{1};
  std::latch released_{1};
};

// A value whose construction from a gate blocks on it; from an int it is an ordinary value.
struct gated_value {
  int value = 0;

  gated_value() = default;
  gated_value(int v) : value(v) {}  // NOLINT(google-explicit-constructor)
  explicit gated_value(write_gate* gate, int v = -1) : value(v) {
    if (gate != nullptr) gate->enter_and_wait();
  }
  friend bool operator==(const gated_value& a, const gated_value& b) noexcept {
    return a.value == b.value;
  }
};

// Runs probe() on this thread while another thread is inside m.try_emplace(key, gate, value)
// with the map's writing flag set. Returns after the writer finished. M's mapped type must be
// gated_value. Exceptions from probe propagate after the writer was released and joined.
template <class M, class K, class Probe>
void while_writing(M& m, K key, int value, Probe&& probe) {
  write_gate gate;
  std::thread writer([&] { m.try_emplace(std::move(key), &gate, value); });
  gate.wait_entered();
  struct release_on_exit {
    write_gate& gate;
    std::thread& writer;
    ~release_on_exit() {
      gate.release();
      writer.join();
    }
  } guard{gate, writer};
  std::forward<Probe>(probe)();
}

// Blocks inside the comparison of probe_key, once, while a gate is armed: a lookup of
// probe_key then stands in the middle of its probe.
struct probe_gate_eq {
  static constexpr int probe_key = 7;
  static inline std::atomic<write_gate*> gate{nullptr};
  bool operator()(int a, int b) const {
    if (a == probe_key) {
      if (write_gate* g = gate.exchange(nullptr)) g->enter_and_wait();
    }
    return a == b;
  }
};

// Runs read() (a lookup of probe_gate_eq::probe_key in m, which maps int to gated_value and
// compares with probe_gate_eq) on a thread of its own; once the read stands inside its probe,
// starts m.try_emplace(write_key, ...) on another and, once that write holds the writing bit,
// lets the read finish, then the write. Returns what the read saw: 0 not reported, 1 + the
// kind of the misuse_error it threw (a throwing handler must be installed).
template <class M, class Read>
int outcome_of_a_read_overlapped_at_its_end(M& m, int write_key, Read&& read) {
  write_gate reader_gate;
  probe_gate_eq::gate = &reader_gate;
  std::atomic<int> outcome{-1};
  std::thread reader([&] {
    try {
      read();
      outcome = 0;
    } catch (const safemap::misuse_error& e) {
      outcome = 1 + static_cast<int>(e.kind);
    }
  });
  reader_gate.wait_entered();  // the read is past its first check, inside a probe
  write_gate writer_gate;
  std::thread writer([&] { m.try_emplace(write_key, &writer_gate, write_key); });
  writer_gate.wait_entered();  // the write holds the writing bit
  reader_gate.release();
  reader.join();
  writer_gate.release();
  writer.join();
  return outcome.load();
}

}  // namespace safemap_test
