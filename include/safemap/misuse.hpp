// safemap/misuse.hpp - reports of a map used in a way that would corrupt it.
//
// safemap::Map, like Go's map, is for one writer at a time. Go's runtime notices the classic
// races cheaply (a "writing" bit in the map header, checked on every access) and stops the
// program with "fatal error: concurrent map writes" instead of corrupting memory silently.
// safemap does the same and routes the report through a settable handler:
//
//   kind                         message (exactly Go's)
//   concurrent_writes            "concurrent map writes"
//   concurrent_read_write        "concurrent map read and map write"
//   concurrent_iteration_write   "concurrent map iteration and map write"
//   reentrant_call               a callback re-entered a concurrent map that cannot allow it
//
// Detection is best-effort, like Go's: a race is reported when the accesses overlap in time,
// which a test can force and a production race hits often enough to be found; a race that
// never overlaps is not seen. It never reports a correct program. Exactly what Map promises
// is listed in map.hpp ("# Misuse detection"): overlapping writes are always reported before
// the second one touches the table; reads and iteration steps are checked at their edges.
//
// The default handler prints "fatal error: <message>" and a stack trace to stderr, then
// aborts. A handler may instead throw (safemap::misuse_error is provided for that); every
// call that can report lets the exception propagate, and the operation that detected the
// misuse has not touched the table when it throws. A handler that returns lets the operation
// proceed as if nothing had been detected: useful for counting, not for production.
//
// Concurrency: set_misuse_handler and reports may run on any thread at any time.
#pragma once

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "safemap/detail/config.hpp"

namespace safemap {

enum class misuse_kind {
  concurrent_writes,
  concurrent_read_write,
  concurrent_iteration_write,
  reentrant_call,  // §4: a callback re-entered a map that cannot allow it
};

struct misuse_report {
  misuse_kind kind;
  const char* message;  // static storage; for the first three kinds exactly Go's text
};

using misuse_handler = void (*)(const misuse_report&);

// Thrown by handlers that prefer an exception to abort (tests, servers that isolate requests).
struct misuse_error : std::logic_error {
  misuse_kind kind;
  explicit misuse_error(const misuse_report& r) : std::logic_error(r.message), kind(r.kind) {}
};

// The message Go's runtime prints for each kind (reentrant_call is safemap's own).
constexpr const char* misuse_message(misuse_kind kind) noexcept {
  switch (kind) {
    case misuse_kind::concurrent_writes:
      return "concurrent map writes";
    case misuse_kind::concurrent_read_write:
      return "concurrent map read and map write";
    case misuse_kind::concurrent_iteration_write:
      return "concurrent map iteration and map write";
    case misuse_kind::reentrant_call:
      return "reentrant map call from a callback that holds the map's lock";
  }
  return "map misuse";
}

// The default handler: "fatal error: <message>", a stack trace, abort. Async-signal-safe
// functions only (write, backtrace_symbols_fd), so it works even when the heap is corrupt.
[[noreturn]] inline void default_misuse_handler(const misuse_report& r) {
  const char prefix[] = "fatal error: ";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, prefix, sizeof prefix - 1);
  n = ::write(STDERR_FILENO, r.message, std::char_traits<char>::length(r.message));
  const char trace[] = "\n\nstack trace:\n";
  n = ::write(STDERR_FILENO, trace, sizeof trace - 1);
  void* frames[64];
  const int depth = ::backtrace(frames, 64);
  ::backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  std::abort();
}

namespace detail {
inline std::atomic<misuse_handler> g_misuse_handler{nullptr};  // nullptr = default handler
}  // namespace detail

// Installs h (nullptr restores the default) and returns the previous handler.
inline misuse_handler set_misuse_handler(misuse_handler h) noexcept {
  misuse_handler prev = detail::g_misuse_handler.exchange(h, std::memory_order_acq_rel);
  return prev ? prev : &default_misuse_handler;
}

// The handler in force now.
inline misuse_handler get_misuse_handler() noexcept {
  misuse_handler h = detail::g_misuse_handler.load(std::memory_order_acquire);
  return h ? h : &default_misuse_handler;
}

namespace detail {
// Out of line so the cold path costs the callers nothing but a call.
SAFEMAP_NOINLINE inline void report_misuse(misuse_kind kind) {
  const misuse_report r{kind, misuse_message(kind)};
  get_misuse_handler()(r);
}
}  // namespace detail

}  // namespace safemap
