// safemap/detail/map_iterator.hpp - the iterator of safemap::Map (Map::iterator and
// Map::const_iterator are aliases of map_iterator<Map, Const>).
//
// # Go's iteration, and why an iterator pins its map
// The walk visits the 2^B logical buckets of the current array from a random start, each chain
// from a random slot offset (so the order is unspecified on every begin(), as in Go). Where a
// growth is in progress and logical bucket j's old bucket is not evacuated yet, the walk reads
// the old bucket instead and keeps only the entries that belong to j (Go's checkBucket: in a
// doubling an old bucket splits into j and j + half). Go's iterator survives growth because its
// garbage collector keeps the old array alive and evacuation never reuses a slot the walk may
// still visit; safemap has no collector, so a live iterator pins its map: the map counts its
// live iterators (iterators_) and, while any exists, starts no growth and evacuates or frees
// nothing (see grow_work). So the table's shape (B, growth state, evacuation marks) is fixed
// for the iterator's whole life and positions computed earlier stay meaningful.
//
// Invariants:
//  1. m_ != nullptr exactly while the iterator is counted in m_->iterators_; an iterator at
//     end() (reached, or default-constructed) holds no pin, so reaching end releases it early.
//  2. cur_ is the entry the iterator stands on (nullptr at end); two iterators compare equal
//     when they stand on the same entry.
//  3. b_, i_ are the next position to read: slot (i_ + offset_) mod 8 of bucket b_ of logical
//     bucket (start_ + step_ - 1) mod 2^B; check_bucket_ is that logical bucket when b_ is an
//     old bucket of a doubling, else no_check.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>

#include "safemap/detail/bucket.hpp"
#include "safemap/detail/config.hpp"
#include "safemap/detail/random.hpp"

namespace safemap::detail {

// Map is the safemap::Map it walks; it befriends this template (the walk reads the table's
// arrays and calls the map's misuse check).
template <class Map, bool Const>
class map_iterator {
  using map_ptr = const Map*;
  using table = typename Map::table;  // Map's private base: the arrays the walk reads
  using slot_type = typename Map::value_type;

 public:
  using iterator_category = std::forward_iterator_tag;
  using value_type = typename Map::value_type;
  using difference_type = std::ptrdiff_t;
  using reference = std::conditional_t<Const, const value_type&, value_type&>;
  using pointer = std::conditional_t<Const, const value_type*, value_type*>;

  map_iterator() noexcept = default;
  map_iterator(const map_iterator& o) noexcept { copy(o); }
  map_iterator(map_iterator&& o) noexcept {
    copy(o);
    o.release();
  }
  // iterator -> const_iterator
  template <bool C = Const>
  requires C map_iterator(const map_iterator<Map, false>& o)
  noexcept {  // NOLINT(google-explicit-constructor)
    copy(o);
  }
  map_iterator& operator=(const map_iterator& o) noexcept {
    if (this != &o) {
      release();
      copy(o);
    }
    return *this;
  }
  map_iterator& operator=(map_iterator&& o) noexcept {
    if (this != &o) {
      release();
      copy(o);
      o.release();
    }
    return *this;
  }
  ~map_iterator() { release(); }

  reference operator*() const noexcept { return *cur_; }
  pointer operator->() const noexcept { return cur_; }
  map_iterator& operator++() {
    advance();
    return *this;
  }
  map_iterator operator++(int) {
    map_iterator tmp(*this);
    advance();
    return tmp;
  }
  friend bool operator==(const map_iterator& a, const map_iterator& b) noexcept {
    return a.cur_ == b.cur_;
  }

 private:
  friend Map;
  template <class, bool>
  friend class map_iterator;

  static constexpr std::size_t no_check = ~std::size_t{0};

  // begin(): the first entry of a fresh walk, or end() for an empty map.
  explicit map_iterator(map_ptr m) {
    m->iteration_check();
    if (m->count_ == 0) return;  // end
    m_ = m;
    acquire();
    const std::uint64_t r = random_u64();
    start_ = static_cast<std::size_t>(r) & static_cast<const table&>(*m).bucket_mask();
    offset_ = static_cast<unsigned>(r >> 58) & (bucket_cnt - 1);
    // The first step may hash (an old bucket mid-growth) and the hasher may throw. A
    // constructor that throws runs no destructor, so the pin is dropped here: a leaked
    // pin would stop the map from ever growing again.
    try {
      advance_unchecked();
    } catch (...) {
      release();
      throw;
    }
  }

  template <bool C>
  void copy(const map_iterator<Map, C>& o) noexcept {
    m_ = o.m_;
    b_ = o.b_;
    cur_ = o.cur_;
    start_ = o.start_;
    step_ = o.step_;
    check_bucket_ = o.check_bucket_;
    i_ = o.i_;
    offset_ = o.offset_;
    acquire();
  }
  // The pin (invariant 1): one count in the map's iterators_ per live iterator or walk.
  static void pin(map_ptr m) noexcept {
    if (m != nullptr) m->iterators_.fetch_add(1, std::memory_order_relaxed);
  }
  static void unpin(map_ptr m) noexcept {
    if (m != nullptr) m->iterators_.fetch_sub(1, std::memory_order_relaxed);
  }
  void acquire() const noexcept { pin(m_); }
  void release() noexcept {
    unpin(m_);
    m_ = nullptr;
    cur_ = nullptr;
  }

  void advance() {
    if (m_ == nullptr) return;  // at end (incrementing end is a precondition violation)
    m_->iteration_check();
    advance_unchecked();
  }

  // The table's shape cannot change while this iterator is live (invariant 1 and the top of
  // this file), so positions computed earlier stay meaningful.
  void advance_unchecked() {
    const table* m = m_;
    const std::size_t n = m->nbuckets();
    for (;;) {
      if (!b_) {
        if (step_ == n) {
          release();  // end: stop pinning the table
          return;
        }
        b_ = chain_of(m, (start_ + step_++) & (n - 1), check_bucket_);
        i_ = 0;
      }
      for (; i_ < bucket_cnt; ++i_) {
        slot_type* s = entry_at(m, b_, (i_ + offset_) & (bucket_cnt - 1), check_bucket_, n);
        if (s == nullptr) continue;
        cur_ = s;
        ++i_;
        return;
      }
      b_ = b_.next();
      i_ = 0;
    }
  }

  // The chain that holds logical bucket j's entries: the old bucket while it is not evacuated
  // (check: j when only part of it belongs to j, in a doubling), else the new bucket (check:
  // no_check).
  SAFEMAP_ALWAYS_INLINE static bucket_ref<slot_type> chain_of(const table* m, std::size_t j,
                                                              std::size_t& check) {
    check = no_check;
    const std::size_t k = j & m->old_bucket_mask();
    if (m->olddir_ != nullptr && !m->old_evacuated(k)) {
      if (!m->same_size_grow_) check = j;
      return m->old_at(k);
    }
    return m->new_at(j);  // initialized: its segment is allocated
  }
  // The entry in slot i of b, or nullptr when the slot is empty or (check) its entry belongs
  // to the other half of the new array. May hash (check), and so throw.
  SAFEMAP_ALWAYS_INLINE static slot_type* entry_at(const table* m, bucket_ref<slot_type> b,
                                                   unsigned i, std::size_t check, std::size_t n) {
    if (is_empty(b->tophash[i])) return nullptr;
    slot_type* s = b.slot(i);
    if (check != no_check && (m->hash_of(s->first) & (n - 1)) != check) return nullptr;
    return s;
  }

  // Map::for_each: the walk of begin() ... end() as one loop, with the same order, checks,
  // pin and semantics (f may insert and erase through this thread), but with its position in
  // registers instead of an iterator's fields reloaded around an out-of-line step per entry:
  // a 1024-entry LockedMap::range took 2.0-2.5 µs through the iterator and takes 1.0 with
  // this loop, std::unordered_map's walk under a std::shared_mutex 1.2-1.3 (safemap-bench's
  // range row, one thread; docs/benchmarks.md, twelfth pass). f(reference) returns false to
  // stop, true to go on.
  //
  // The misuse checks: as many as the iterator makes (one as the walk begins, one per step,
  // the last at the end), but a step's check comes once the step has found its entry, where
  // the iterator's operator++ checks before it scans. So a write by another thread that
  // starts and ends while a step scans empty slots goes unreported here; detection is
  // best-effort either way (map.hpp, "# Misuse detection"). A version that checked as each
  // step starts made LockedMap's range at 2 threads 655 -> 1,040 ns in three alternating runs
  // (19:29, load 0.8), although that range takes the unchecked walk, which the version did
  // not change (presumably the code GCC laid out around it); it was not kept.
  //
  // checked = false (map_access::for_each_unsynchronized, and for_each_locked under a lock
  // its caller took itself): for a caller that keeps the map unchanged for the whole walk (an
  // immutable snapshot; a lock that keeps writers out, with callbacks that cannot write). No
  // misuse checks, and no pin: the pin is two atomic read-modify-writes of the map's iterator
  // count, a line that every reader of a shared snapshot writes and so passes from core to
  // core.
  template <bool checked, class F>
  static void walk(map_ptr m, F&& f) {
    if constexpr (checked) m->iteration_check();
    if (m->count_ == 0) return;
    struct pin_scope {  // the walk's pin, dropped however the walk ends
      map_ptr m;
      explicit pin_scope(map_ptr p) noexcept : m(p) { pin(m); }
      ~pin_scope() { unpin(m); }
      pin_scope(const pin_scope&) = delete;
      pin_scope& operator=(const pin_scope&) = delete;
    } pinned(checked ? m : nullptr);
    const table* t = m;
    const std::size_t n = t->nbuckets();
    const std::uint64_t r = random_u64();
    const std::size_t start = static_cast<std::size_t>(r) & (n - 1);
    const unsigned offset = static_cast<unsigned>(r >> 58) & (bucket_cnt - 1);
    [[maybe_unused]] bool first = true;
    for (std::size_t step = 0; step < n; ++step) {
      std::size_t check;
      for (bucket_ref<slot_type> b = chain_of(t, (start + step) & (n - 1), check); b;
           b = b.next()) {
        for (unsigned i = 0; i < bucket_cnt; ++i) {
          slot_type* s = entry_at(t, b, (i + offset) & (bucket_cnt - 1), check, n);
          if (s == nullptr) continue;
          if constexpr (checked) {
            if (!first) m->iteration_check();  // what each iterator step checks
            first = false;
          }
          if (!f(*static_cast<pointer>(s))) return;
        }
      }
    }
    if constexpr (checked) m->iteration_check();  // the last step's check, at end()
  }

  map_ptr m_ = nullptr;  // nullptr once at end (then not counted in iterators_)
  bucket_ref<slot_type> b_;
  slot_type* cur_ = nullptr;
  std::size_t start_ = 0;
  std::size_t step_ = 0;
  std::size_t check_bucket_ = no_check;
  unsigned i_ = 0;
  unsigned offset_ = 0;
};

}  // namespace safemap::detail
