// safemap/detail/lock.hpp - the locks of LockedMap and ShardedMap, and re-entrancy tracking.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <system_error>

#include "safemap/detail/config.hpp"
#include "safemap/misuse.hpp"

namespace safemap::detail {

// A reader/writer lock that does not starve writers. std::shared_mutex on glibc is a
// pthread_rwlock with the default PTHREAD_RWLOCK_PREFER_READER_NP policy: a steady stream of
// readers can keep a writer waiting forever. PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP makes
// new readers queue behind a waiting writer. (Non-recursive: a thread must never take the
// shared lock twice; the maps make sure of that with held_locks below.) Hand-written as a thin
// RAII wrapper because no standard type exposes the policy.
//
// try_lock*/lock* also count contended acquisitions (the first try failed) without putting a
// shared write on the uncontended path.
class rw_lock {
 public:
  rw_lock() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    const int rc = pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "pthread_rwlock_init");
  }
  ~rw_lock() { pthread_rwlock_destroy(&lock_); }
  rw_lock(const rw_lock&) = delete;
  rw_lock& operator=(const rw_lock&) = delete;

  void lock() noexcept {
    if (SAFEMAP_LIKELY(pthread_rwlock_trywrlock(&lock_) == 0)) return;
    contended_.fetch_add(1, std::memory_order_relaxed);
    pthread_rwlock_wrlock(&lock_);
  }
  void unlock() noexcept { pthread_rwlock_unlock(&lock_); }
  void lock_shared() noexcept {
    if (SAFEMAP_LIKELY(pthread_rwlock_tryrdlock(&lock_) == 0)) return;
    contended_.fetch_add(1, std::memory_order_relaxed);
    pthread_rwlock_rdlock(&lock_);
  }
  void unlock_shared() noexcept { pthread_rwlock_unlock(&lock_); }

  // Acquisitions that found the lock taken and had to wait.
  std::uint64_t contended() const noexcept { return contended_.load(std::memory_order_relaxed); }

 private:
  pthread_rwlock_t lock_;
  std::atomic<std::uint64_t> contended_{0};
};

// Which maps' locks this thread holds while it runs a user callback (range, visit, compute).
// A call from inside such a callback on the same map must not lock again (a non-recursive
// lock would deadlock); the map consults held_locks to read without relocking, or to report
// misuse_kind::reentrant_call for a write it cannot perform. Empty for threads that never run
// a callback, so the check is one thread-local load on the fast path.
class held_locks {
 public:
  enum class mode : std::uint8_t { none, shared, exclusive };

 private:
  struct entry {
    const void* lock;
    mode m;
    const entry* prev;
  };
  static inline thread_local const entry* top_ = nullptr;

 public:
  static mode held(const void* lock) noexcept {
    for (const entry* e = top_; e != nullptr; e = e->prev) {
      if (e->lock == lock) return e->m;
    }
    return mode::none;
  }
  static bool empty() noexcept { return top_ == nullptr; }

  // Marks `lock` as held by this thread in mode m for the scope's lifetime.
  class scope {
   public:
    scope(const void* lock, mode m) noexcept : e_{lock, m, top_} { top_ = &e_; }
    ~scope() { top_ = e_.prev; }
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;

   private:
    entry e_;
  };
};

// Reports a write attempted from a callback that runs under this map's lock.
[[noreturn]] inline void report_reentrant_write() {
  report_misuse(misuse_kind::reentrant_call);
  // A handler that returns cannot make the write safe: refuse it.
  throw misuse_error(misuse_report{misuse_kind::reentrant_call,
                                   misuse_message(misuse_kind::reentrant_call)});
}

}  // namespace safemap::detail
