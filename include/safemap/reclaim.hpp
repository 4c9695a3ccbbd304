// safemap/reclaim.hpp - deferred reclamation (RCU) for the lock-free read paths of SyncMap and
// CowMap.
//
// A lock-free reader loads a pointer (a published snapshot, an entry, a boxed value) and uses
// the object behind it without taking any lock. A writer that unlinks such an object must not
// free it while a reader may still be using it. RCU solves this: readers mark a read-side
// critical section (rcu::read_guard); a writer hands the unlinked object to rcu::retire(), which
// frees it only after a grace period, i.e. once every critical section that was running at the
// time of the retire has ended. Readers never wait and never write shared memory.
//
// # Implementation
// Normal builds use liburcu (Debian liburcu-dev), the "memb" flavour: read_lock/read_unlock
// touch only thread-local state (the membarrier() system call moves the cost of the memory
// barriers to the rare grace-period detection), and retire() is call_rcu(), whose callbacks a
// liburcu worker thread runs after each grace period. safemap calls the exported functions
// rather than defining _LGPL_SOURCE, so programs using safemap link liburcu dynamically and stay
// clear of the LGPL's terms for inlined code; that costs two function calls per read.
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
// # Rules for users of this header (safemap's maps)
//  - every dereference of a pointer loaded lock-free happens inside a read_guard;
//  - an object is retired only after it is unreachable for new readers;
//  - never wait for a grace period (rcu::barrier) while inside a read_guard;
//  - callbacks of retired objects must not enter read-side critical sections or retire.
//
// Concurrency: every function here is thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "safemap/detail/config.hpp"

#if !SAFEMAP_TSAN
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <urcu/urcu-memb.h>
#pragma GCC diagnostic pop
#else
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
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
};

namespace detail {

#if !SAFEMAP_TSAN

// Per-thread registration: 0 = not registered, 1 = registered, 2 = thread is exiting (its
// thread_local registration object is gone).
inline thread_local int tls_state = 0;

struct registration {
  ~registration() {
    ::urcu_memb_unregister_thread();
    tls_state = 2;
  }
};

SAFEMAP_NOINLINE inline void register_slow() {
  ::urcu_memb_register_thread();
  tls_state = 1;
  thread_local registration reg;  // unregisters at thread exit
  (void)reg;
}

// Returns true if the caller must unregister after its critical section (exiting thread).
inline bool ensure_registered() {
  if (SAFEMAP_LIKELY(tls_state == 1)) return false;
  if (tls_state == 0) {
    register_slow();
    return false;
  }
  ::urcu_memb_register_thread();  // in a thread_local destructor after unregistration
  return true;
}

inline void rcu_callback(::rcu_head* h) {
  node* n = reinterpret_cast<node*>(reinterpret_cast<char*>(h) - offsetof(node, head));
  n->reclaim(n);
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
    n->reclaim(n);
    n = next;
  }
}

struct thread_state {
  thread_rec* rec = nullptr;
  unsigned nesting = 0;
  ~thread_state() {
    if (rec) {
      rec->local.store(0, std::memory_order_release);
      std::lock_guard lock(get_domain().mu);
      rec->in_use = false;
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

#endif

}  // namespace detail

// Marks a read-side critical section; nests. Objects loaded inside stay valid until the
// outermost guard ends. Cheap: thread-local state only (plus two calls into liburcu).
class read_guard {
 public:
#if !SAFEMAP_TSAN
  read_guard() : unregister_(detail::ensure_registered()) {
    ::urcu_memb_read_lock();
  }
  ~read_guard() {
    ::urcu_memb_read_unlock();
    if (SAFEMAP_UNLIKELY(unregister_)) ::urcu_memb_unregister_thread();
  }

 private:
  bool unregister_;

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
  if (SAFEMAP_UNLIKELY(unregister)) ::urcu_memb_unregister_thread();
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

// Waits until every object retired before the call has been freed. Must not be called inside
// a read_guard. For tests and orderly shutdown; maps never call it on their hot paths.
inline void barrier() {
#if !SAFEMAP_TSAN
  const bool unregister = detail::ensure_registered();
  ::urcu_memb_barrier();
  if (SAFEMAP_UNLIKELY(unregister)) ::urcu_memb_unregister_thread();
#else
  detail::domain& d = detail::get_domain();
  const std::uint64_t target = d.epoch.load(std::memory_order_seq_cst);
  for (;;) {
    node* freeable = nullptr;
    bool done = true;
    {
      std::lock_guard lock(d.mu);
      freeable = d.collect_locked();
      for (node* n = d.retired; n; n = n->next) done = done && n->epoch >= target;
    }
    detail::free_list(freeable);
    if (done) return;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
#endif
}

// Retires a heap object of type T allocated with new: delete runs after the grace period.
template <class T>
struct retirable : node {
  retirable() noexcept : node(&reclaim_delete) {}

 private:
  static void reclaim_delete(node* n) noexcept { delete static_cast<T*>(n); }
};

}  // namespace safemap::rcu
