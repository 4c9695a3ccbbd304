// tests/support/counting_allocator.hpp - an allocator that accounts for every block.
//
// allocation_arena owns the bookkeeping: every live block with its size, how many blocks were
// allocated and deallocated, and every deallocation of a block this arena never handed out (a
// container freeing memory through the wrong allocator). Tests assert that an arena ends with
// live_blocks() == 0 and foreign_deallocations() == 0, and that a map's stats().bytes equals
// the arena's live_bytes(). fail_after(n) makes the allocation after the next n throw
// std::bad_alloc, for exception-safety tests.
//
// counting_allocator<T, Policy> is a stateful allocator pointing at an arena; two compare
// equal iff they share the arena. Policy picks the propagate_on_container_* traits, so tests
// can cover both the std::allocator-like case and unequal, non-propagating allocators (the
// std::pmr case). The allocator is cheap to copy and a moved-from one still points at its
// arena, as the Allocator requirements demand.
//
// Memory comes from the global operator new, so freeing through the wrong arena stays memory
// safe: the mistake shows up in the counters instead of as a crash.
//
// Concurrency: an arena is guarded by a mutex; its allocators may be used from any thread.
#pragma once

#include <cstddef>
#include <mutex>
#include <new>
#include <type_traits>
#include <unordered_map>

namespace safemap_test {

class allocation_arena {
 public:
  allocation_arena() = default;
  allocation_arena(const allocation_arena&) = delete;
  allocation_arena& operator=(const allocation_arena&) = delete;

  void* allocate(std::size_t bytes, std::size_t align) {
    std::lock_guard lock(mu_);
    if (fail_countdown_ >= 0 && fail_countdown_-- == 0) throw std::bad_alloc();
    void* p = ::operator new(bytes, std::align_val_t(align));
    // An address can come back while this arena still lists it when a block of ours was
    // freed through another arena (counted there as foreign): forget the stale entry.
    auto [it, fresh] = live_.try_emplace(p, bytes);
    if (!fresh) {
      live_bytes_ -= it->second;
      it->second = bytes;
    }
    ++allocations_;
    live_bytes_ += bytes;
    return p;
  }

  void deallocate(void* p, std::size_t bytes, std::size_t align) noexcept {
    {
      std::lock_guard lock(mu_);
      auto it = live_.find(p);
      if (it == live_.end()) {
        ++foreign_deallocations_;
      } else {
        if (it->second != bytes) ++size_mismatches_;
        live_bytes_ -= it->second;
        live_.erase(it);
        ++deallocations_;
      }
    }
    ::operator delete(p, std::align_val_t(align));
  }

  // The allocation after the next n ones throws std::bad_alloc (once); negative: never.
  void fail_after(long n) {
    std::lock_guard lock(mu_);
    fail_countdown_ = n;
  }

  std::size_t allocations() const { return locked(allocations_); }
  std::size_t deallocations() const { return locked(deallocations_); }
  std::size_t live_blocks() const {
    std::lock_guard lock(mu_);
    return live_.size();
  }
  std::size_t live_bytes() const { return locked(live_bytes_); }
  // Blocks freed through this arena that it never allocated (or freed twice).
  std::size_t foreign_deallocations() const { return locked(foreign_deallocations_); }
  // Blocks freed with a size other than the one they were allocated with.
  std::size_t size_mismatches() const { return locked(size_mismatches_); }

  // The arena of default-constructed counting_allocators.
  static allocation_arena& global() {
    static allocation_arena arena;
    return arena;
  }

 private:
  std::size_t locked(const std::size_t& field) const {
    std::lock_guard lock(mu_);
    return field;
  }

  mutable std::mutex mu_;
  std::unordered_map<void*, std::size_t> live_;  // block -> bytes
  std::size_t allocations_ = 0;
  std::size_t deallocations_ = 0;
  std::size_t live_bytes_ = 0;
  std::size_t foreign_deallocations_ = 0;
  std::size_t size_mismatches_ = 0;
  long fail_countdown_ = -1;
};

// Propagation policies (the propagate_on_container_* traits).
struct propagate_all {
  using on_copy = std::true_type;
  using on_move = std::true_type;
  using on_swap = std::true_type;
};
struct propagate_none {  // like std::pmr::polymorphic_allocator
  using on_copy = std::false_type;
  using on_move = std::false_type;
  using on_swap = std::false_type;
};
struct propagate_on_copy_only {
  using on_copy = std::true_type;
  using on_move = std::false_type;
  using on_swap = std::false_type;
};

template <class T, class Policy = propagate_all>
class counting_allocator {
 public:
  using value_type = T;
  using propagate_on_container_copy_assignment = typename Policy::on_copy;
  using propagate_on_container_move_assignment = typename Policy::on_move;
  using propagate_on_container_swap = typename Policy::on_swap;
  using is_always_equal = std::false_type;
  template <class U>
  struct rebind {
    using other = counting_allocator<U, Policy>;
  };

  counting_allocator() noexcept : arena_(&allocation_arena::global()) {}
  explicit counting_allocator(allocation_arena& arena) noexcept : arena_(&arena) {}
  template <class U>
  counting_allocator(const counting_allocator<U, Policy>& other) noexcept  // NOLINT: rebinding
      : arena_(other.arena()) {}

  T* allocate(std::size_t n) {
    return static_cast<T*>(arena_->allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    arena_->deallocate(p, n * sizeof(T), alignof(T));
  }

  allocation_arena* arena() const noexcept { return arena_; }

  friend bool operator==(const counting_allocator& a, const counting_allocator& b) noexcept {
    return a.arena_ == b.arena_;
  }

 private:
  allocation_arena* arena_;
};

}  // namespace safemap_test
