// safemap/reclaim.hpp - deferred reclamation (RCU) for the lock-free read paths of SyncMap and
// CowMap.
//
// A lock-free reader loads a pointer (a published snapshot, an entry, a boxed value) and uses
// the object behind it without taking any lock. A writer that unlinks such an object must not
// free it while a reader may still be using it. RCU solves this: readers mark a read-side
// critical section (rcu::read_guard); a writer hands the unlinked object to rcu::retire(), which
// frees it only after a grace period, i.e. once every critical section that was running at the
// time of the retire has ended. Readers never wait and never write shared memory (they write
// only their own thread's counter, which the grace-period detector reads).
//
// # Implementation
// Normal builds use liburcu (Debian liburcu-dev), the "memb" flavour: the membarrier() system
// call moves the cost of the memory barriers to the rare grace-period detection, and retire()
// is call_rcu(), whose callbacks a liburcu worker thread runs after each grace period.
//
// The read side is inlined: an empty read_guard is one thread-local load (the registration
// check), a load of liburcu's global grace-period counter, a store to this thread's own reader
// counter, and on exit a load of liburcu's futex word; no function call, no atomic
// read-modify-write, no shared write. liburcu's exported calls (urcu_memb_read_lock/unlock)
// cost two out-of-line calls per read: 7.1 ns of CPU time per empty guard against 0.9 ns
// inlined (bench/reclaim_bench.cpp, one thread, loaded 2-core machine; 13-31 ns wall-clock
// had been measured for the calls).
//
// ## Licence of the inlined read side
// liburcu is LGPL-2.1. Its read-lock and read-unlock fast paths live in
// <urcu/static/urcu-memb.h>, whose code section "can only be included in LGPL 2.1 compatible
// source code" (_LGPL_SOURCE). safemap does NOT define _LGPL_SOURCE and does not include that
// header: programs using safemap link liburcu
// dynamically and call its exported functions for everything else. What safemap compiles in
// is covered by LGPL-2.1 section 5: "If such an object file uses only numerical parameters,
// data structure layouts and accessors, and small macros and small inline functions (ten
// lines or less in length), then the use of the object file is unrestricted". It uses:
//  - the data structure layouts of struct urcu_reader and struct urcu_gp and the
//    URCU_GP_COUNT / URCU_GP_CTR_NEST_MASK constants, from <urcu/static/urcu-common.h>;
//  - the exported objects urcu_memb_gp, urcu_memb_reader (thread-local) and
//    urcu_memb_has_sys_membarrier: liburcu's ABI, which its README promises for inlined small
//    functions "as long as the library major version is unchanged" (liburcu.so.8);
//  - the algorithm of _urcu_memb_read_lock and _urcu_memb_read_unlock, of which liburcu's
//    header (urcu/static/urcu-memb.h, 0.13.2) says "This function and its helper are both less
//    than 10 lines long. The intent is that this function meets the 10-line criterion in
//    LGPL, allowing this function to be invoked directly from non-LGPL code" and "intended to
//    be usable by non-LGPL code, as called out in LGPL". liburcu's README takes the same
//    position for the small functions it inlines on request (URCU_INLINE_SMALL_FUNCTIONS):
//    they "can be used by applications distributed under any kind of license, and does *not*
//    make the application a derived work of Userspace RCU".
//    read_lock_inline and read_unlock_inline below are that algorithm, written with C++
//    atomics (liburcu's header declares the thread-local with C++ thread_local, which makes
//    every access test a TLS-init hook; safemap declares it with __thread instead).
// A program that prefers no inlined liburcu code at all defines SAFEMAP_RCU_OUT_OF_LINE: the
// guard then calls urcu_memb_read_lock/unlock (two calls per read, as before).
//
// Threads are registered with liburcu automatically, the first time they enter a read-side
// critical section or retire something; a thread that never calls safemap pays nothing. A
// registered thread unregisters when it exits (a thread_local destructor). A thread that uses
// safemap from its own thread_local destructors after that is registered around each call.
//
// ThreadSanitizer cannot see the ordering liburcu gets from membarrier(), so under TSan a
// simple epoch-based fallback with the same interface is compiled instead (plain std::atomic
// and std::mutex, which TSan models); TSan then checks safemap's map algorithms themselves.
//
// # Bounding retired memory
// call_rcu never makes a writer wait: if writers retire faster than grace periods end and the
// worker frees, retired objects pile up (a 1 MB CowMap with two writers held 30-260 MB). An
// object derived from sized_node may be retired with its size (retire(n, bytes));
// retired_bytes() is the total waiting to be freed. throttle() makes the caller wait, like
// liburcu's call_rcu throttling, when that total is above retired_bytes_limit() (tunable with
// set_retired_bytes_limit; default 16 MiB): it waits until every object retired before it has been
// freed (rcu::barrier). A caller inside a read_guard cannot wait (its own critical section would
// block the grace period), so throttle() then returns at once. With W threads retiring and
// throttling, the bytes waiting stay below the limit plus the W objects retired since each thread's
// last check.
//
// # Batched retirement (rcu::defer)
// retire(n) needs an rcu::node inside every retired object (24 bytes: liburcu's rcu_head and the
// reclaim function) and costs one call_rcu, which may wake liburcu's worker, per object. For
// small, numerous objects (TrieMap's 24-byte entries) that header is as big as the object.
// defer(p, fn, bytes) instead appends (p, fn) to this thread's retire buffer; a full buffer is
// handed to call_rcu as ONE batch (defer_batch_capacity objects), whose callback calls fn(p) for
// each. The buffer is flushed when full, when its thread exits, by flush(), and by barrier()
// (which flushes every thread's buffer first, so "everything retired before the call is freed"
// holds for deferred objects too). reserve(n) makes room for n defer() calls ahead of time and
// is the only call that may throw (std::bad_alloc for a new batch): a map reserves before it
// publishes, so the defer() calls after publication never allocate and never fail.
// `bytes` go to retired_bytes() when the batch is flushed (one atomic add per batch, not one
// global add per object), so with W threads deferring, throttle() bounds the total to the
// limit plus W buffers (each at most defer_batch_capacity objects) plus what # Bounding says.
// An object sits in a buffer until its batch is flushed: at most defer_batch_capacity objects
// per thread that stopped writing, until that thread writes again, exits, or a barrier runs.
//
// # Rules for users of this header (safemap's maps)
//  - every dereference of a pointer loaded lock-free happens inside a read_guard;
//  - an object is retired only after it is unreachable for new readers;
//  - never wait for a grace period (rcu::barrier) while inside a read_guard, nor while holding
//    a lock that a reader may wait for inside its read_guard (throttle() included);
//  - callbacks of retired (and deferred) objects must not enter read-side critical sections,
//    retire or defer.
//
// Concurrency: every function here is thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <new>
#include <utility>

#include "safemap/detail/config.hpp"

#if !SAFEMAP_TSAN
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <urcu/urcu-memb.h>
#if !defined(SAFEMAP_RCU_OUT_OF_LINE)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <urcu/static/urcu-common.h>  // struct urcu_reader, struct urcu_gp, URCU_GP_* (layouts)
#include <cerrno>
extern "C" {
// liburcu-memb's exported state (declared by urcu/static/urcu-memb.h for LGPL code).
extern struct urcu_gp urcu_memb_gp;
extern int urcu_memb_has_sys_membarrier;
extern __thread struct urcu_reader urcu_memb_reader;
}
#endif
#pragma GCC diagnostic pop
#else
#include <chrono>
#include <thread>
#include <vector>
#endif

namespace safemap::rcu {

// Base of every object that is retired through RCU: the intrusive link liburcu (or the
// fallback) uses, and the function that frees the object after the grace period.
struct node {
  using reclaim_fn = void (*)(node*) noexcept;
  explicit node(reclaim_fn f) noexcept : reclaim(f) {}
#if !SAFEMAP_TSAN
  ::rcu_head head{};
#else
  node* next = nullptr;
  std::uint64_t epoch = 0;
#endif
  reclaim_fn reclaim;
#if SAFEMAP_TSAN
  std::size_t bytes = 0;  // sized_node's count (the fallback frees every node one way)
#endif
};

// A node whose size is counted in retired_bytes() from retire(n, bytes) until it is freed.
// Separate from node so that the many small objects SyncMap retires stay 24 bytes.
struct sized_node : node {
  using node::node;
#if !SAFEMAP_TSAN
  std::size_t bytes = 0;
#endif
};

namespace detail {

// Bytes retired with retire(n, bytes) and not yet freed, and the limit throttle() keeps.
inline std::atomic<std::size_t> retired_bytes{0};
inline std::atomic<std::size_t> retired_bytes_limit{std::size_t{16} << 20};

// Frees n and takes its bytes off the count (read before n is gone).
inline void reclaim_sized(sized_node* n) noexcept {
  const std::size_t bytes = n->bytes;
  n->reclaim(n);
  if (bytes != 0) retired_bytes.fetch_sub(bytes, std::memory_order_relaxed);
}

#if !SAFEMAP_TSAN

// Per-thread registration: 0 = not registered, 1 = registered, 2 = thread is exiting (its
// thread_local registration object is gone), 3 = exiting and registered for the duration of
// an outer call (a guard, retire or barrier, which unregisters at its end). Constant-initialized,
// so reading it is one thread-local load with no TLS-init call.
inline thread_local int tls_state = 0;

// True while this thread is registered (tls_state 1) and liburcu uses membarrier(): a guard
// may then take the read side inline with compiler barriers only (read_guard). Checked once per
// guard instead of urcu_memb_has_sys_membarrier three times (one per barrier of the lock and
// unlock: 12 of a CowMap lookup's ~140 instructions, cachegrind of bench/read_bench --fixed).
// liburcu-memb settles has_sys_membarrier in its library constructor, before any thread can
// register, and never changes it.
inline thread_local bool tls_fast_reader = false;

struct registration {
  ~registration() {
    tls_fast_reader = false;
    ::urcu_memb_unregister_thread();
    tls_state = 2;
  }
};

SAFEMAP_NOINLINE inline void register_slow() {
  ::urcu_memb_register_thread();
  tls_state = 1;
  tls_fast_reader = __atomic_load_n(&::urcu_memb_has_sys_membarrier, __ATOMIC_RELAXED) != 0;
  thread_local registration reg;  // unregisters at thread exit
  (void)reg;
}

// Slow path of ensure_registered. Returns true if the caller must unregister after its
// critical section (a thread_local destructor running after this thread's unregistration);
// a call nested in such a call (a guard inside a guard) finds the thread registered.
SAFEMAP_NOINLINE inline bool register_for_call() {
  if (tls_state == 0) {
    register_slow();
    return false;
  }
  if (tls_state == 3) return false;
  ::urcu_memb_register_thread();
  tls_state = 3;
  return true;
}

// Ends what register_for_call started for an exiting thread.
SAFEMAP_NOINLINE inline void unregister_after_call() {
  ::urcu_memb_unregister_thread();
  tls_state = 2;
}

SAFEMAP_ALWAYS_INLINE bool ensure_registered() {
  if (SAFEMAP_LIKELY(tls_state == 1)) return false;
  return register_for_call();
}

inline node* node_of(::rcu_head* h) noexcept {
  return reinterpret_cast<node*>(reinterpret_cast<char*>(h) - offsetof(node, head));
}
inline void rcu_callback(::rcu_head* h) {
  node_of(h)->reclaim(node_of(h));
}
inline void rcu_sized_callback(::rcu_head* h) {
  reclaim_sized(static_cast<sized_node*>(node_of(h)));
}

#if !defined(SAFEMAP_RCU_OUT_OF_LINE)
// liburcu-memb's "slave" barrier: a compiler barrier when the kernel has membarrier() (the
// grace-period side then issues the real barrier on every CPU), a full fence otherwise.
SAFEMAP_ALWAYS_INLINE void reader_barrier() noexcept {
  if (SAFEMAP_LIKELY(__atomic_load_n(&::urcu_memb_has_sys_membarrier, __ATOMIC_RELAXED))) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

// A grace period waits on the futex for this reader: wake it (liburcu's urcu_common_wake_up_gp).
SAFEMAP_NOINLINE inline void wake_up_gp() noexcept {
  __atomic_store_n(&::urcu_memb_gp.futex, 0, __ATOMIC_RELAXED);
  if (::syscall(SYS_futex, &::urcu_memb_gp.futex, FUTEX_WAKE, 1, nullptr, nullptr, 0) < 0 &&
      errno == ENOSYS) {
    ::compat_futex_async(&::urcu_memb_gp.futex, FUTEX_WAKE, 1, nullptr, nullptr, 0);
  }
}

// The reader's barrier: a compiler barrier when the caller already knows liburcu uses
// membarrier() (a thread with tls_fast_reader set), else reader_barrier's test of
// urcu_memb_has_sys_membarrier.
template <bool KnownMembarrier>
SAFEMAP_ALWAYS_INLINE void read_side_barrier() noexcept {
  if constexpr (KnownMembarrier) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    reader_barrier();
  }
}

// _urcu_memb_read_lock: the outermost lock snapshots the grace-period counter (its phase and a
// nesting count of 1); nested locks add one.
template <bool KnownMembarrier = false>
SAFEMAP_ALWAYS_INLINE void read_lock_inline() noexcept {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  unsigned long* ctr = &::urcu_memb_reader.ctr;
  const unsigned long tmp = __atomic_load_n(ctr, __ATOMIC_RELAXED);
  if (SAFEMAP_LIKELY(!(tmp & URCU_GP_CTR_NEST_MASK))) {
    __atomic_store_n(ctr, __atomic_load_n(&::urcu_memb_gp.ctr, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    read_side_barrier<KnownMembarrier>();
  } else {
    __atomic_store_n(ctr, tmp + URCU_GP_COUNT, __ATOMIC_RELAXED);
  }
}

// _urcu_memb_read_unlock: the outermost unlock clears the nesting count, then wakes a grace
// period that went to sleep waiting for this reader.
template <bool KnownMembarrier = false>
SAFEMAP_ALWAYS_INLINE void read_unlock_inline() noexcept {
  unsigned long* ctr = &::urcu_memb_reader.ctr;
  const unsigned long tmp = __atomic_load_n(ctr, __ATOMIC_RELAXED);
  if (SAFEMAP_LIKELY((tmp & URCU_GP_CTR_NEST_MASK) == URCU_GP_COUNT)) {
    read_side_barrier<KnownMembarrier>();
    __atomic_store_n(ctr, tmp - URCU_GP_COUNT, __ATOMIC_RELAXED);
    read_side_barrier<KnownMembarrier>();
    if (SAFEMAP_UNLIKELY(__atomic_load_n(&::urcu_memb_gp.futex, __ATOMIC_RELAXED) == -1)) {
      wake_up_gp();
    }
  } else {
    __atomic_store_n(ctr, tmp - URCU_GP_COUNT, __ATOMIC_RELAXED);
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// The guard's other path: registers the thread when needed, then takes the read side with
// the barriers liburcu chooses. Returns 2 when the guard must unregister at its end, else 1.
SAFEMAP_NOINLINE inline unsigned char read_lock_slow() noexcept {
  const bool unregister = ensure_registered();
  read_lock_inline();
  return unregister ? 2 : 1;
}
SAFEMAP_NOINLINE inline void read_unlock_slow(unsigned char mode) noexcept {
  read_unlock_inline();
  if (mode == 2) unregister_after_call();
}
#endif

// Whether this thread is inside a read_guard (it then must not wait for a grace period).
inline bool in_read_section() noexcept {
  if (tls_state != 1 && tls_state != 3) return false;  // not registered: not inside a guard
  return ::urcu_memb_read_ongoing() != 0;
}

#else  // SAFEMAP_TSAN: epoch-based fallback

// Readers publish the global epoch they saw when entering; an object retired at epoch E is
// freed once every active reader published an epoch > E (it entered after the object was
// unlinked). All accesses are std::atomic / std::mutex so ThreadSanitizer sees every
// happens-before edge: a free happens after the reader's unlock (release store of 0) that
// the reclaimer observed (acquire load).
struct thread_rec {
  std::atomic<std::uint64_t> local{0};  // 0 = not in a critical section
  bool in_use = false;                  // guarded by domain::mu
  thread_rec* next = nullptr;           // guarded by domain::mu
};

struct domain {
  std::atomic<std::uint64_t> epoch{1};
  std::mutex mu;
  thread_rec* threads = nullptr;  // never freed: records are reused by later threads
  node* retired = nullptr;
  std::size_t pending = 0;

  // Detaches every retired node whose epoch is below the oldest active reader's.
  node* collect_locked() {
    std::uint64_t min_active = UINT64_MAX;
    for (thread_rec* r = threads; r; r = r->next) {
      const std::uint64_t l = r->local.load(std::memory_order_acquire);
      if (l != 0 && l < min_active) min_active = l;
    }
    node* freeable = nullptr;
    node** link = &retired;
    while (*link) {
      node* n = *link;
      if (n->epoch < min_active) {
        *link = n->next;
        n->next = freeable;
        freeable = n;
        --pending;
      } else {
        link = &n->next;
      }
    }
    return freeable;
  }
};

inline domain& get_domain() {
  static domain* d = new domain;  // outlives every thread_local destructor
  return *d;
}

inline void free_list(node* n) noexcept {
  while (n) {
    node* next = n->next;
    const std::size_t bytes = n->bytes;
    n->reclaim(n);
    if (bytes != 0) retired_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    n = next;
  }
}

struct thread_state {
  thread_rec* rec = nullptr;
  unsigned nesting = 0;
  // A guard used from a later thread_local destructor takes a fresh record, never released
  // (records are never freed; an unused one with local == 0 holds back nothing).
  ~thread_state() {
    if (rec) {
      rec->local.store(0, std::memory_order_release);
      std::lock_guard lock(get_domain().mu);
      rec->in_use = false;
      rec = nullptr;
    }
  }
  thread_rec* get() {
    if (!rec) {
      domain& d = get_domain();
      std::lock_guard lock(d.mu);
      for (thread_rec* r = d.threads; r; r = r->next) {
        if (!r->in_use) {
          rec = r;
          break;
        }
      }
      if (!rec) {
        rec = new thread_rec;
        rec->next = d.threads;
        d.threads = rec;
      }
      rec->in_use = true;
    }
    return rec;
  }
};

inline thread_local thread_state tls_thread;

inline bool in_read_section() noexcept {
  return tls_thread.nesting != 0;
}

#endif

}  // namespace detail

// Marks a read-side critical section; nests. Objects loaded inside stay valid until the
// outermost guard ends. Cheap: thread-local state only (see # Implementation).
class read_guard {
 public:
#if !SAFEMAP_TSAN
  // Forced inline: GCC judged these "cold" in some callers and left them as two calls per
  // read (cachegrind of CowMap/SyncMap loads, bench/read_bench.cpp --fixed), which is what the
  // inline read side exists to avoid.
#if !defined(SAFEMAP_RCU_OUT_OF_LINE)
  // One thread-local test, then the read side inline with compiler barriers only, for a
  // registered thread on a kernel with membarrier(); anything else (first use on this thread,
  // a thread that is exiting, no membarrier) goes through read_lock_slow.
  SAFEMAP_ALWAYS_INLINE read_guard() noexcept {
    if (SAFEMAP_LIKELY(detail::tls_fast_reader)) {
      mode_ = 0;
      detail::read_lock_inline<true>();
    } else {
      mode_ = detail::read_lock_slow();
    }
  }
  SAFEMAP_ALWAYS_INLINE ~read_guard() {
    if (SAFEMAP_LIKELY(mode_ == 0)) {
      detail::read_unlock_inline<true>();
    } else {
      detail::read_unlock_slow(mode_);
    }
  }

 private:
  unsigned char mode_;  // 0 inline, 1 slow path, 2 slow path and unregister at the end
#else
  read_guard() noexcept : unregister_(detail::ensure_registered()) {
    ::urcu_memb_read_lock();
  }
  ~read_guard() {
    ::urcu_memb_read_unlock();
    if (SAFEMAP_UNLIKELY(unregister_)) detail::unregister_after_call();
  }

 private:
  bool unregister_;
#endif

 public:
#else
  read_guard() {
    detail::thread_state& t = detail::tls_thread;
    if (t.nesting++ == 0) {
      // Publish the epoch, then confirm it is still current (Dekker with retire's fetch_add:
      // either the retirer sees our epoch, or we see its increment and the unlink before it).
      detail::thread_rec* r = t.get();
      std::atomic<std::uint64_t>& epoch = detail::get_domain().epoch;
      std::uint64_t e = epoch.load(std::memory_order_seq_cst);
      for (;;) {
        r->local.store(e, std::memory_order_seq_cst);
        const std::uint64_t now = epoch.load(std::memory_order_seq_cst);
        if (now == e) break;
        e = now;
      }
    }
  }
  ~read_guard() {
    detail::thread_state& t = detail::tls_thread;
    if (--t.nesting == 0) t.rec->local.store(0, std::memory_order_release);
  }
#endif
  read_guard(const read_guard&) = delete;
  read_guard& operator=(const read_guard&) = delete;
};

// Frees n (through n->reclaim) after a grace period. n must already be unreachable for
// readers that start from now on. Never blocks on readers.
inline void retire(node* n) noexcept {
#if !SAFEMAP_TSAN
  const bool unregister = detail::ensure_registered();
  ::urcu_memb_call_rcu(&n->head, &detail::rcu_callback);
  if (SAFEMAP_UNLIKELY(unregister)) detail::unregister_after_call();
#else
  detail::domain& d = detail::get_domain();
  node* freeable = nullptr;
  {
    std::lock_guard lock(d.mu);
    n->epoch = d.epoch.fetch_add(1, std::memory_order_seq_cst);
    n->next = d.retired;
    d.retired = n;
    if (++d.pending >= 64) freeable = d.collect_locked();
  }
  detail::free_list(freeable);
#endif
}

// As retire(n), and counts `bytes` (the memory n's reclaim frees) in retired_bytes() until n
// is freed. Never blocks; call throttle() afterwards, where waiting is allowed, to bound the
// total.
inline void retire(sized_node* n, std::size_t bytes) noexcept {
  n->bytes = bytes;
  if (bytes != 0) detail::retired_bytes.fetch_add(bytes, std::memory_order_relaxed);
#if !SAFEMAP_TSAN
  const bool unregister = detail::ensure_registered();
  ::urcu_memb_call_rcu(&n->head, &detail::rcu_sized_callback);
  if (SAFEMAP_UNLIKELY(unregister)) detail::unregister_after_call();
#else
  retire(static_cast<node*>(n));
#endif
}

// ---- batched retirement (see # Batched retirement) ------------------------------------------

// Frees a deferred object after its grace period; must not throw (nor read_guard, retire, defer).
using deleter = void (*)(void*) noexcept;

// Objects per batch (one call_rcu each): 1 KiB of (pointer, deleter) pairs.
inline constexpr std::size_t defer_batch_capacity = 64;

namespace detail {

struct deferred {
  void* object;
  deleter free;
};

// One call_rcu's worth of deferred objects; the pairs follow the header in the same allocation.
struct defer_batch final : sized_node {
  explicit defer_batch(std::size_t cap) noexcept : sized_node(&reclaim_batch), capacity(cap) {}
  const std::size_t capacity;
  std::size_t count = 0;
  std::size_t pending_bytes = 0;       // bytes of the objects, counted in retired_bytes on flush
  defer_batch* stolen_next = nullptr;  // barrier's list of batches it took from other threads

  deferred* items() noexcept { return reinterpret_cast<deferred*>(this + 1); }
  bool full() const noexcept { return count == capacity; }

  static std::size_t alloc_size(std::size_t cap) noexcept {
    return sizeof(defer_batch) + cap * sizeof(deferred);
  }
  static defer_batch* make(std::size_t cap) {
    return new (::operator new(alloc_size(cap))) defer_batch(cap);
  }
  static defer_batch* try_make(std::size_t cap) noexcept {
    void* mem = ::operator new(alloc_size(cap), std::nothrow);
    return mem == nullptr ? nullptr : new (mem) defer_batch(cap);
  }
  static void destroy(defer_batch* b) noexcept {
    b->~defer_batch();
    ::operator delete(b);
  }
  // The grace period of the whole batch has ended: free every object, then the batch.
  static void reclaim_batch(node* n) noexcept {
    auto* b = static_cast<defer_batch*>(n);
    deferred* it = b->items();
    for (std::size_t i = 0; i < b->count; ++i) it[i].free(it[i].object);
    destroy(b);
  }
};
static_assert(sizeof(defer_batch) % alignof(deferred) == 0, "the pairs follow the header");

// Hands a batch to RCU (one call_rcu); its bytes join retired_bytes until it is freed. An
// empty batch is freed at once. Never blocks.
inline void flush_batch(defer_batch* b) noexcept {
  if (b == nullptr) return;
  if (b->count == 0) {
    defer_batch::destroy(b);
    return;
  }
  const std::size_t bytes = b->pending_bytes;
  b->bytes = bytes;  // reclaim_sized / free_list take them off the count when b is freed
  if (bytes != 0) retired_bytes.fetch_add(bytes, std::memory_order_relaxed);
#if !SAFEMAP_TSAN
  const bool unregister = ensure_registered();
  ::urcu_memb_call_rcu(&b->head, &rcu_sized_callback);
  if (SAFEMAP_UNLIKELY(unregister)) unregister_after_call();
#else
  retire(static_cast<node*>(b));
#endif
}

// One thread's retire buffer. The owner appends under mu (uncontended: only barrier() takes it
// from another thread); registered in the defer registry so barrier() can flush it.
struct defer_buffer {
  std::mutex mu;
  defer_batch* batch = nullptr;  // guarded by mu
  defer_buffer* prev = nullptr;  // guarded by defer_registry::mu
  defer_buffer* next = nullptr;  // guarded by defer_registry::mu
};

struct defer_registry {
  std::mutex mu;
  defer_buffer* head = nullptr;
};

inline defer_registry& get_defer_registry() {
  static defer_registry* r = new defer_registry;  // outlives every thread_local destructor
  return *r;
}

// This thread's buffer; null before first use and after the thread's exit began (tls state
// below). Constant-initialized: reading it is one thread-local load.
inline thread_local defer_buffer* tls_defer = nullptr;
inline thread_local bool tls_defer_exited = false;

// Flushes and unregisters the thread's buffer at thread exit.
struct defer_owner {
  ~defer_owner() {
    defer_buffer* buf = tls_defer;
    tls_defer = nullptr;
    tls_defer_exited = true;
    if (buf == nullptr) return;
    defer_batch* b = nullptr;
    {
      defer_registry& r = get_defer_registry();
      std::lock_guard lock(r.mu);  // registry before buffer, as in barrier
      if (buf->prev != nullptr) buf->prev->next = buf->next;
      if (buf->next != nullptr) buf->next->prev = buf->prev;
      if (r.head == buf) r.head = buf->next;
      std::lock_guard block(buf->mu);
      b = std::exchange(buf->batch, nullptr);
    }
    delete buf;
    flush_batch(b);
  }
};

// Creates and registers this thread's buffer. Throws std::bad_alloc (nothing changed). Returns
// null on a thread whose thread_local destructors are running (its defers go out one by one).
SAFEMAP_NOINLINE inline defer_buffer* make_defer_buffer() {
  if (tls_defer_exited) return nullptr;
  auto* buf = new defer_buffer;
  {
    defer_registry& r = get_defer_registry();
    std::lock_guard lock(r.mu);
    buf->next = r.head;
    if (r.head != nullptr) r.head->prev = buf;
    r.head = buf;
  }
  tls_defer = buf;
  thread_local defer_owner owner;  // flushes and unregisters at thread exit
  (void)owner;
  return buf;
}

// Takes every thread's pending batch (replacing it by an empty one where memory allows, so a
// thread that reserved room keeps it) and hands them to RCU.
inline void flush_all_buffers() {
  defer_batch* stolen = nullptr;
  {
    defer_registry& r = get_defer_registry();
    std::lock_guard lock(r.mu);
    for (defer_buffer* buf = r.head; buf != nullptr; buf = buf->next) {
      std::lock_guard block(buf->mu);
      defer_batch* b = buf->batch;
      if (b == nullptr || b->count == 0) continue;
      buf->batch = defer_batch::try_make(b->capacity);  // null: the owner's defer allocates
      b->stolen_next = stolen;
      stolen = b;
    }
  }
  while (stolen != nullptr) {
    defer_batch* next = stolen->stolen_next;
    flush_batch(stolen);
    stolen = next;
  }
}

// The number of threads with a retire buffer (for tests: a thread's goes away at its exit).
inline std::size_t registered_buffers() {
  defer_registry& r = get_defer_registry();
  std::lock_guard lock(r.mu);
  std::size_t n = 0;
  for (defer_buffer* buf = r.head; buf != nullptr; buf = buf->next) ++n;
  return n;
}

}  // namespace detail

// Makes room in this thread's retire buffer for n more defer() calls, so that they cannot fail
// (a concurrent barrier() that cannot allocate is the one exception: defer then allocates).
// Flushes a buffer that lacks room. Throws std::bad_alloc, having changed nothing. Never waits.
inline void reserve(std::size_t n) {
  detail::defer_buffer* buf = detail::tls_defer;
  if (SAFEMAP_UNLIKELY(buf == nullptr)) {
    buf = detail::make_defer_buffer();
    if (buf == nullptr) return;  // exiting thread: each defer makes its own batch
  }
  detail::defer_batch* full = nullptr;
  {
    std::lock_guard lock(buf->mu);
    detail::defer_batch* b = buf->batch;
    if (SAFEMAP_LIKELY(b != nullptr && b->capacity - b->count >= n)) return;
    detail::defer_batch* fresh =
        detail::defer_batch::make(n > defer_batch_capacity ? n : defer_batch_capacity);
    full = std::exchange(buf->batch, fresh);
  }
  detail::flush_batch(full);
}

// Frees `object` with free(object) after a grace period, like retire() but without an rcu::node
// in the object: it joins this thread's retire buffer, which goes to RCU as one batch (see
// # Batched retirement). `bytes` (what free releases) count in retired_bytes() from the flush
// until the batch is freed. object must already be unreachable for readers that start from now
// on. Never blocks. Does not allocate when reserve() made room; otherwise allocates a batch and,
// if memory is exhausted, terminates (there is no way to defer without memory, and freeing now
// could free under a reader).
inline void defer(void* object, deleter free, std::size_t bytes = 0) noexcept {
  detail::defer_buffer* buf = detail::tls_defer;
  if (SAFEMAP_UNLIKELY(buf == nullptr)) {
    try {
      buf = detail::make_defer_buffer();
    } catch (...) {
      buf = nullptr;
    }
    if (buf == nullptr) {
      // Exiting thread (or no memory for a buffer): a batch of one, flushed at once.
      detail::defer_batch* b = detail::defer_batch::try_make(1);
      if (b == nullptr) std::terminate();
      b->items()[0] = {object, free};
      b->count = 1;
      b->pending_bytes = bytes;
      detail::flush_batch(b);
      return;
    }
  }
  detail::defer_batch* full = nullptr;
  {
    std::lock_guard lock(buf->mu);
    detail::defer_batch* b = buf->batch;
    if (SAFEMAP_UNLIKELY(b == nullptr || b->full())) {
      detail::defer_batch* fresh = detail::defer_batch::try_make(defer_batch_capacity);
      if (fresh == nullptr) std::terminate();
      full = std::exchange(buf->batch, fresh);
      b = fresh;
    }
    b->items()[b->count++] = {object, free};
    b->pending_bytes += bytes;
  }
  detail::flush_batch(full);
}

// Hands this thread's retire buffer to RCU now (barrier() flushes every thread's).
inline void flush() noexcept {
  detail::defer_buffer* buf = detail::tls_defer;
  if (buf == nullptr) return;
  detail::defer_batch* b = nullptr;
  {
    std::lock_guard lock(buf->mu);
    if (buf->batch == nullptr || buf->batch->count == 0) return;
    b = std::exchange(buf->batch, detail::defer_batch::try_make(buf->batch->capacity));
  }
  detail::flush_batch(b);
}

// Deferred objects waiting in this thread's buffer (not yet handed to RCU). For tests.
inline std::size_t buffered() noexcept {
  detail::defer_buffer* buf = detail::tls_defer;
  if (buf == nullptr) return 0;
  std::lock_guard lock(buf->mu);
  return buf->batch == nullptr ? 0 : buf->batch->count;
}

// Bytes retired with retire(n, bytes) and not freed yet (all threads, all maps).
inline std::size_t retired_bytes() noexcept {
  return detail::retired_bytes.load(std::memory_order_relaxed);
}

// The bound throttle() keeps retired_bytes() to (see # Bounding retired memory). Default
// 16 MiB. 0 makes every throttle() wait while anything is retired.
inline std::size_t retired_bytes_limit() noexcept {
  return detail::retired_bytes_limit.load(std::memory_order_relaxed);
}
inline void set_retired_bytes_limit(std::size_t bytes) noexcept {
  detail::retired_bytes_limit.store(bytes, std::memory_order_relaxed);
}

namespace detail {
// barrier() without flushing the retire buffers: waits for what was handed to RCU before the
// call (for tests of the buffers themselves).
inline void barrier_unflushed() {
#if !SAFEMAP_TSAN
  const bool unregister = ensure_registered();
  ::urcu_memb_barrier();
  if (SAFEMAP_UNLIKELY(unregister)) unregister_after_call();
#else
  domain& d = get_domain();
  const std::uint64_t target = d.epoch.load(std::memory_order_seq_cst);
  for (;;) {
    node* freeable = nullptr;
    bool done = true;
    {
      std::lock_guard lock(d.mu);
      freeable = d.collect_locked();
      for (node* n = d.retired; n; n = n->next) done = done && n->epoch >= target;
    }
    free_list(freeable);
    if (done) return;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
#endif
}
}  // namespace detail

// Waits until every object retired or deferred before the call has been freed (every thread's
// retire buffer is flushed first). Must not be called inside a read_guard. For tests and orderly
// shutdown; maps never call it on their hot paths.
inline void barrier() {
  detail::flush_all_buffers();
  detail::barrier_unflushed();
}

// If retired_bytes() is above retired_bytes_limit(), waits (rcu::barrier) until everything
// retired before the call has been freed; returns whether it waited. Inside a read_guard it
// returns false at once: waiting there would wait for itself. The caller must hold no lock
// that a thread may wait for inside a read_guard.
inline bool throttle() {
  if (SAFEMAP_LIKELY(retired_bytes() <= retired_bytes_limit())) return false;
  if (detail::in_read_section()) return false;
  barrier();
  return true;
}

// Retires a heap object of type T allocated with new: delete runs after the grace period.
template <class T>
struct retirable : node {
  retirable() noexcept : node(&reclaim_delete) {}

 private:
  static void reclaim_delete(node* n) noexcept { delete static_cast<T*>(n); }
};

// As retirable, for objects retired with their size (retire(n, bytes)).
template <class T>
struct sized_retirable : sized_node {
  sized_retirable() noexcept : sized_node(&reclaim_delete) {}

 private:
  static void reclaim_delete(node* n) noexcept { delete static_cast<T*>(n); }
};

}  // namespace safemap::rcu
