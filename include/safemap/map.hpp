// safemap/map.hpp - safemap::Map, Go's classic runtime map in C++.
//
// A map is just a hash table. The data is arranged into an array of 2^B buckets; each bucket
// holds up to 8 entries (see detail/bucket.hpp for its layout and the tophash markers). The
// low B bits of a key's hash select a bucket; the top 8 bits ("tophash") are kept per slot so
// a probe compares keys only where the tophash matches. More than 8 keys in a bucket chain on
// overflow buckets. This is Go's runtime/map.go (go1.20, before Swiss tables), ported to C++
// and written afresh; the Go names are kept in snake_case (B, tophash, nevacuate, hash_grow,
// grow_work, evacuate) so the two can be read side by side.
//
// # Growth, segments, overflow buckets
// When the table holds more than 6.5 entries per bucket on average, a new array of twice the
// buckets is started and the entries move there incrementally, a bucket or two per write, so no
// single insert rehashes the table, allocates or frees a whole array; lookups and iteration read
// a bucket in the old array until it has moved. How the table does it (segments, overflow pools,
// evacuation) is in detail/map_table.hpp; the iterator is detail/map_iterator.hpp.
//
// # Iteration (Go's semantics)
// The order is unspecified and deliberately randomized on every begin(), as in Go. Erasing or
// inserting through the same thread while iterating is allowed and never invalidates the
// iterator or the walk: every entry present for the whole iteration is visited exactly once;
// entries inserted or erased during it may or may not be visited. Go achieves this with a
// garbage collector keeping old arrays alive; safemap instead pauses growth while an iterator
// is live: no entry moves and no bucket a walk may visit is freed while any iterator of the map
// exists (writes still succeed, with longer overflow chains if many happen). Consequences a user
// sees:
//   - references to entries stay valid during an iteration, across inserts (not for the
//     erased entry itself);
//   - keep iterations short: a map with a forgotten live iterator does not grow;
//   - an iterator must be destroyed before its map (unlike std containers, even destroying a
//     stale iterator after its map is undefined behaviour); moving, swapping or assigning
//     the map invalidates its iterators. Reaching end() releases an iterator early.
//
// # Misuse detection (misuse.hpp)
// Map is for one writer at a time, like Go's map. A "writing" bit in the header is set for the
// duration of every write and checked on every read, write and iteration step; an overlap is
// reported through the misuse handler with Go's message. Defining SAFEMAP_NO_MISUSE_CHECKS
// compiles the checks out. Concurrent readers (const member functions, iteration) are safe.
// What is promised (best effort, like Go's, but with the write/write case made exact):
//   - two writes that overlap in time: always reported, by the second to start, before it
//     changes the table (the bit is taken with an atomic exchange, see write_scope; before
//     the exchange an insert or erase reads the header and one directory entry to prefetch its
//     bucket, so in the rare case where the other write has just freed that directory the
//     second may read freed memory first: map_table::prefetch_for_write);
//   - a lookup that overlaps a write: reported when the write is in progress as the lookup
//     starts or as it ends (a write that begins and ends inside one probe is not seen, and a
//     lookup racing a growth may read freed memory before it can report);
//   - an iteration step or begin() that overlaps a write: reported when the write is in
//     progress as the step starts;
//   - never reported: a correct program. Not seen at all: races through references and
//     iterators already obtained (writing *find(k) while another thread reads it).
//
// # Exceptions
// A single insert whose key or value constructor throws leaves the map unchanged and valid
// (strong guarantee). Entries are relocated with their move constructors when those are
// noexcept; otherwise evacuation copies a whole bucket first and only then destroys the
// originals, so a throwing copy leaves that bucket unevacuated and the map intact. A failed
// evacuation is not the failure of the write that happened to do it: the write goes on
// against the old bucket, and a later write retries the evacuation (see grow_work in
// detail/map_table.hpp), so one entry whose copy always throws never makes other keys
// unwritable.
//
// Concurrency: not thread-safe for writers; any number of concurrent readers. Use LockedMap,
// ShardedMap, SyncMap or CowMap to share a map between writing threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/detail/bucket.hpp"
#include "safemap/detail/config.hpp"
#include "safemap/detail/map_iterator.hpp"
#include "safemap/detail/map_table.hpp"
#include "safemap/hash.hpp"
#include "safemap/misuse.hpp"

namespace safemap {

// A snapshot of a Map's table shape, for operators and tests.
struct MapStats {
  std::size_t size = 0;                  // entries
  unsigned log2_buckets = 0;             // B
  std::size_t buckets = 0;               // 2^B, or 0 before the first insert
  std::size_t overflow_buckets = 0;      // overflow buckets chained in the current array
  double load_factor = 0;                // entries per bucket (size / buckets)
  bool growing = false;                  // an old array is still being evacuated
  bool same_size_grow = false;           // the growth compacts rather than doubles
  std::size_t old_buckets = 0;           // buckets in the old array (0 when not growing)
  std::size_t old_overflow_buckets = 0;  // overflow buckets still chained in the old array
  std::size_t evacuated = 0;             // old buckets evacuated so far in this growth
  std::size_t bytes = 0;                 // memory held by bucket arrays and overflow buckets
};

namespace detail {
// A batched lookup's output must have a place for every key: the clear error of
// Map::find_many and the concurrent maps' load_many, thrown before anything is looked up.
inline void check_many_out(std::size_t keys, std::size_t out, const char* who) {
  if (out < keys) {
    throw std::length_error(std::string(who) + ": the output holds " + std::to_string(out) +
                            " entries for " + std::to_string(keys) + " keys");
  }
}

// Stores a batched lookup's result for one key: a copy of *v, or nullopt. reset then
// emplace, so that V needs only to be copy-constructible, as load's result does.
template <class V>
void put_value(std::optional<V>& out, const V* v) {
  out.reset();
  if (v != nullptr) out.emplace(*v);
}

template <class T>
concept transparent = requires {
  typename T::is_transparent;
};
// The lookup the concurrent maps built on Map use where no thread can write the table during
// the call: a published CowMap snapshot, SyncMap's read map (both immutable once published),
// a LockedMap/ShardedMap shard under its lock. Map's misuse checks (a load and a test of the
// writing flag before and after the probe) can never fire there; skipping them saves 6 of a
// lookup's ~65 instructions (cachegrind, bench/read_bench --fixed). Everything else about the
// lookup is Map::find's.
struct map_access {
  template <class M, class Q>
  static const typename M::mapped_type* find_unsynchronized(const M& m, const Q& key) {
    return M::value_or_null(m.find_slot_unchecked(key));
  }
  // The concurrent maps' load_many over one group, with Map::find_many's batched lookup and
  // without its checks: out(i) = a copy of key_at(i)'s value, or nullopt, for i < n; returns
  // how many were found. The caller keeps m unchanged meanwhile (a lock, a read guard on an
  // immutable snapshot).
  template <class M, class KeyAt, class Out>
  static std::size_t load_many_unsynchronized(const M& m, std::size_t n, KeyAt&& key_at,
                                              Out&& out) {
    std::size_t found = 0;
    find_many_unsynchronized(m, n, key_at, [&](std::size_t i, const auto* v) {
      put_value(out(i), v);
      found += v != nullptr;
    });
    return found;
  }
  // Map::find_many's batched lookup without its checks: found(i, const V* or nullptr) for the
  // keys key_at(i), i < n, in order.
  template <class M, class KeyAt, class Found>
  static void find_many_unsynchronized(const M& m, std::size_t n, KeyAt&& key_at, Found&& found) {
    m.find_many_unchecked(n, key_at, [&](std::size_t i, auto* s) {
      found(i, static_cast<const typename M::mapped_type*>(M::value_or_null(s)));
    });
  }
  template <class M>
  static std::size_t load_many_unsynchronized(
      const M& m, std::span<const typename M::key_type> keys,
      std::span<std::optional<typename M::mapped_type>> out) {
    return load_many_unsynchronized(
        m, keys.size(), [&](std::size_t i) -> const auto& { return keys[i]; },
        [&](std::size_t i) -> auto& { return out[i]; });
  }
  // Map::for_each(f) (const) for a caller that keeps m unchanged for the whole walk: an
  // immutable snapshot (CowMap's, SyncMap's read map), or a lock its caller took itself
  // (LockedMap/ShardedMap, through for_each_locked below). Skips the walk's misuse checks and
  // its pin (map_iterator::walk).
  template <class M, class F>
  static void for_each_unsynchronized(const M& m, F&& f) {
    M::template for_each_impl<false>(m, f);
  }
  // The walk of a caller that holds a lock over m (a LockedMap/ShardedMap shard), the one rule
  // for every such walk: when this call's caller took the lock itself (freshly_locked), it is
  // for_each_unsynchronized. No other thread's write gets past the lock; a write from the
  // map's callbacks run under it is refused by the re-entrancy check before it touches the
  // table; and a write from code the map does not mark (a K or V copy constructor, a hasher)
  // blocks on the same lock, which is not recursive, so it never runs during the walk either.
  // When the lock was already held by a callback running on this thread, it is Map::for_each,
  // pinned and checked, as that callback's own code would be.
  template <class M, class F>
  static void for_each_locked(const M& m, bool freshly_locked, F&& f) {
    if (freshly_locked) {
      for_each_unsynchronized(m, f);
    } else {
      m.for_each(f);
    }
  }
  // Whether a write would also advance a growth or free a retired block (see
  // map_table::has_write_work): a lock-holding caller that skips a no-op write asks first.
  template <class M>
  static bool has_write_work(const M& m) noexcept {
    return m.has_write_work();
  }

  // The writes of a caller that holds a lock no other access to the table gets past (a
  // LockedMap/ShardedMap shard under its exclusive lock): Map's writes, without the writing
  // bit. Two writes cannot overlap there, so the check could never fire, and what it costs is
  // not small: the bit is taken with an atomic exchange, a locked instruction and a full
  // barrier, on every write, right after the lock's own (LockedMap's stores at one thread:
  // about 22 -> 17 ns, docs/benchmarks.md, "Seventh pass"). Everything else (hashing before
  // the table changes, the strong guarantee, growth work) is the checked write's: the same
  // map_table body, instantiated with checked = false. Out of line: with the unchecked bodies
  // inlined into the shard's writes, safemap-bench's LockedMap translation unit passed GCC's
  // inline-unit-growth limit and its range callback lost its inlining (40.5k -> 60.6k
  // instructions per 1024-entry range, cachegrind); a run-time flag instead cost every
  // public write of a plain Map about 6 instructions.
  template <class M>
  SAFEMAP_NOINLINE static bool insert_or_assign_unsynchronized(M& m, typename M::key_type key,
                                                               typename M::mapped_type value) {
    return m.template insert_or_assign_impl<false>(std::move(key), std::move(value));
  }
  template <class M, class... Args>
  SAFEMAP_NOINLINE static auto try_emplace_unsynchronized(M& m, typename M::key_type key,
                                                          Args&&... args) {
    return m.template try_emplace_impl<false>(std::move(key), std::forward<Args>(args)...);
  }
  template <class M, class Q>
  SAFEMAP_NOINLINE static std::size_t erase_unsynchronized(M& m, const Q& key) {
    return m.template erase_impl<false>(key);
  }
  // Map's erase that hands back the erased value (a locked map's load_and_delete): one probe
  // instead of a find and an erase, each hashing the key.
  template <class M, class Q>
  SAFEMAP_NOINLINE static std::optional<typename M::mapped_type> extract_value_unsynchronized(
      M& m, const Q& key) {
    return m.template extract_value<false>(key);
  }
  // Map's erase of key only if pred(its value) holds (a locked map's compare_and_delete): one
  // probe. Returns 1 if erased. pred may throw: the entry then stays.
  template <class M, class Q, class Pred>
  SAFEMAP_NOINLINE static std::size_t erase_if_value_unsynchronized(M& m, const Q& key,
                                                                    Pred&& pred) {
    return m.template erase_if_value<false>(key, pred);
  }
};
}  // namespace detail

SAFEMAP_TABLE_NS_BEGIN

template <class K, class V, class Hash = safemap::Hash<K>, class Eq = std::equal_to<>,
          class Alloc = std::allocator<std::pair<const K, V>>>
class Map : private detail::map_table<K, V, Hash, Eq, Alloc> {
  using table = detail::map_table<K, V, Hash, Eq, Alloc>;

 public:
  using key_type = K;
  using mapped_type = V;
  using value_type = std::pair<const K, V>;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using hasher = Hash;
  using key_equal = Eq;
  using allocator_type = Alloc;
  using reference = value_type&;
  using const_reference = const value_type&;

 private:
  // The table's names Map uses (a dependent base's members are not found unqualified).
  using table::alloc_;
  using table::B_;
  using table::clear_locked_by_writer;
  using table::copy_from;
  using table::count_;
  using table::destroy_all;
  using table::dir_;
  using table::eq_;
  using table::evacuated_;
  using table::find_batch;
  using table::find_many_unchecked;
  using table::find_slot_unchecked;
  using table::for_each_live_slot;
  using table::hash_;
  using table::init_table;
  using table::iterators_;
  using table::nbuckets;
  using table::noldbuckets;
  using table::noverflow_;
  using table::old_noverflow_;
  using table::olddir_;
  using table::rebuild;
  using table::same_size_grow_;
  using table::steal;
  using table::swap_contents;
  using table::units_held_;
  using typename table::alloc_traits;
  using typename table::block_unit;
  using typename table::bucket_allocator;
  using typename table::bucket_traits;
  using typename table::slot_type;

  static_assert(std::is_same_v<typename alloc_traits::value_type, value_type>,
                "safemap::Map: Alloc::value_type must be std::pair<const K, V>");

  // Lookups take Q != K only when hasher and key_equal both opt in (like std::unordered_map).
  template <class Q>
  static constexpr bool heterogeneous =
      detail::transparent<Hash>&& detail::transparent<Eq> && !std::is_same_v<Q, K>;

 public:
  // Forward iterators with Go's iteration semantics (see the top of this file and
  // detail/map_iterator.hpp).
  using iterator = detail::map_iterator<Map, false>;
  using const_iterator = detail::map_iterator<Map, true>;

  // --- construction -------------------------------------------------------------------------

  Map() = default;

  // Allocates a table for size_hint entries up front (no growth until then).
  explicit Map(size_type size_hint, const Hash& hash = Hash(), const Eq& eq = Eq(),
               const Alloc& alloc = Alloc())
      : table(hash, eq, alloc) {
    if (size_hint > 0) init_table(detail::log2_buckets_for(size_hint));
  }

  explicit Map(const Alloc& alloc) : table(alloc) {}

  Map(const Map& other)
      : table(other.hash_, other.eq_,
              bucket_traits::select_on_container_copy_construction(other.alloc_)) {
    other.read_check();
    copy_from(other);
  }

  // A copy of other that allocates with `alloc`.
  Map(const Map& other, const Alloc& alloc) : table(other.hash_, other.eq_, alloc) {
    other.read_check();
    copy_from(other);
  }

  Map(Map&& other) noexcept
      : table(std::move(other.hash_), std::move(other.eq_), std::move(other.alloc_)) {
    steal(other);
  }

  // Strong guarantee: the copy is built first (with the allocator this map will have after
  // the assignment: other's if it propagates on copy assignment, else ours), then taken over.
  Map& operator=(const Map& other) {
    if (this == &other) return *this;
    constexpr bool pocca = bucket_traits::propagate_on_container_copy_assignment::value;
    Map tmp(other, pocca ? Alloc(other.alloc_) : Alloc(alloc_));
    write_scope w(*this);
    destroy_all();
    if constexpr (pocca) alloc_ = tmp.alloc_;
    hash_ = tmp.hash_;
    eq_ = tmp.eq_;
    steal(tmp);
    return *this;
  }

  // Not noexcept: it checks for a concurrent writer, and a misuse handler may throw.
  Map& operator=(Map&& other) {
    if (this == &other) return *this;
    write_scope w(*this);
    if constexpr (bucket_traits::propagate_on_container_move_assignment::value ||
                  bucket_traits::is_always_equal::value) {
      destroy_all();
      hash_ = std::move(other.hash_);
      eq_ = std::move(other.eq_);
      if constexpr (bucket_traits::propagate_on_container_move_assignment::value) {
        alloc_ = std::move(other.alloc_);
      }
      steal(other);
    } else if (alloc_ == other.alloc_) {
      destroy_all();
      hash_ = std::move(other.hash_);
      eq_ = std::move(other.eq_);
      steal(other);
    } else {
      // Unequal, non-propagating allocators: move the elements one by one into our memory.
      // Walk other's slots directly (not its iterator, which may re-hash keys already moved
      // from while other is mid-growth).
      Map tmp(alloc_type_for(alloc_));
      tmp.hash_ = other.hash_;
      tmp.eq_ = other.eq_;
      tmp.reserve(other.size());
      other.for_each_live_slot([&](slot_type* s) {
        tmp.emplace_impl(s->first, [&](void* p) {
          ::new (p) slot_type(std::move(const_cast<K&>(s->first)), std::move(s->second));
        });
      });
      other.clear();
      destroy_all();
      hash_ = tmp.hash_;
      eq_ = tmp.eq_;
      swap_contents(tmp);
    }
    return *this;
  }

  ~Map() = default;  // the table frees everything (~map_table)

  // --- capacity -----------------------------------------------------------------------------

  size_type size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }

  // Destroys every entry and draws a new hash seed (as Go's clear does). Keeps the current
  // bucket array for reuse. Safe during iteration: the walk then sees only entries inserted
  // after the clear, if any.
  void clear() {
    write_scope w(*this);
    clear_locked_by_writer();
  }

  // Makes room for n entries without growth. Finishes any growth in progress. A no-op while
  // an iterator is live (nothing may move then).
  void reserve(size_type n) {
    write_scope w(*this);
    if (iterators_.load(std::memory_order_relaxed) != 0) return;
    const unsigned want = detail::log2_buckets_for(n);
    if (dir_ == nullptr) {
      init_table(want);
      return;
    }
    if (want <= B_ && olddir_ == nullptr) return;
    rebuild(std::max<unsigned>(want, B_));
  }

  // --- lookup (reads: concurrent readers are safe) ------------------------------------------

  V* find(const K& key) { return value_or_null(find_slot(key)); }
  const V* find(const K& key) const { return value_or_null(find_slot(key)); }
  template <class Q>
  requires heterogeneous<Q> V* find(const Q& key) { return value_or_null(find_slot(key)); }
  template <class Q>
  requires heterogeneous<Q>
  const V* find(const Q& key) const { return value_or_null(find_slot(key)); }

  // find() of every key at once: out[i] = the address of keys[i]'s value, or nullptr; returns
  // how many keys were found. The lookups overlap their cache misses (each group of 64 keys is
  // hashed and its buckets prefetched before any is probed), so out of cache a batch runs
  // several times faster than a loop of find (docs/benchmarks.md, "Eleventh pass"); in cache
  // it costs about what the loop does. out must be at least as long as keys (std::length_error
  // otherwise, before anything is read). A throwing hasher propagates with out filled for a
  // prefix of keys and the map unchanged. The pointers stay valid until the next write, as
  // find()'s do. The misuse detector checks each group of 64 as it checks one find (before
  // and after it).
  size_type find_many(std::span<const K> keys, std::span<const V*> out) const {
    detail::check_many_out(keys.size(), out.size(), "safemap::Map::find_many");
    size_type found = 0;
    std::size_t base = 0;
    do {  // the checks around each group, as around each find (an empty batch is checked too)
      const std::size_t len = std::min(find_batch, keys.size() - base);
      read_check();
      find_many_unchecked(
          len, [&](std::size_t i) -> const K& { return keys[base + i]; },
          [&](std::size_t i, slot_type* s) {
            out[base + i] = value_or_null(s);
            found += s != nullptr;
          });
      read_check();
      base += len;
    } while (base < keys.size());
    return found;
  }

  bool contains(const K& key) const { return find_slot(key) != nullptr; }
  template <class Q>
  requires heterogeneous<Q>
  bool contains(const Q& key) const { return find_slot(key) != nullptr; }

  V& at(const K& key) { return at_impl(find_slot(key)); }
  const V& at(const K& key) const { return at_impl(find_slot(key)); }
  template <class Q>
  requires heterogeneous<Q> V& at(const Q& key) { return at_impl(find_slot(key)); }
  template <class Q>
  requires heterogeneous<Q>
  const V& at(const Q& key) const { return at_impl(find_slot(key)); }

  // --- modifiers (writes: one writer at a time) ---------------------------------------------

  // Inserts a value-initialized V when key is absent.
  V& operator[](const K& key) {
    return emplace_impl(key, [&](void* p) { ::new (p) slot_type(key, V()); }).first->second;
  }
  V& operator[](K&& key) {
    return emplace_impl(key, [&](void* p) { ::new (p) slot_type(std::move(key), V()); })
        .first->second;
  }

  // Constructs V from args only when key is absent. Returns the value and whether it was
  // inserted.
  template <class... Args>
  std::pair<V*, bool> try_emplace(K key, Args&&... args) {
    return try_emplace_impl<true>(std::move(key), std::forward<Args>(args)...);
  }

  // true if inserted, false if an existing value was assigned.
  bool insert_or_assign(K key, V value) {
    return insert_or_assign_impl<true>(std::move(key), std::move(value));
  }

  // Returns the number of entries removed (0 or 1).
  size_type erase(const K& key) { return erase_impl(key); }
  template <class Q>
  requires heterogeneous<Q> size_type erase(const Q& key) { return erase_impl(key); }

  void swap(Map& other) noexcept {
    using std::swap;
    swap(hash_, other.hash_);
    swap(eq_, other.eq_);
    if constexpr (bucket_traits::propagate_on_container_swap::value) swap(alloc_, other.alloc_);
    swap_contents(other);
  }
  friend void swap(Map& a, Map& b) noexcept { a.swap(b); }
  friend struct detail::map_access;
  template <class, bool>
  friend class detail::map_iterator;

  // --- iteration ----------------------------------------------------------------------------

  iterator begin() { return iterator(this); }
  const_iterator begin() const { return const_iterator(this); }
  const_iterator cbegin() const { return const_iterator(this); }
  iterator end() noexcept { return iterator(); }
  const_iterator end() const noexcept { return const_iterator(); }
  const_iterator cend() const noexcept { return const_iterator(); }

  // Calls f(const K&, V&) for each entry; f may return bool, false stops. Same semantics as
  // iteration (f may insert and erase through this thread).
  template <class F>
  void for_each(F&& f) {
    for_each_impl(*this, f);
  }
  // Calls f(const K&, const V&) for each entry.
  template <class F>
  void for_each(F&& f) const {
    for_each_impl(*this, f);
  }

  // --- observers ----------------------------------------------------------------------------

  MapStats stats() const {
    read_check();
    MapStats s;
    s.size = count_;
    s.log2_buckets = B_;
    s.buckets = dir_ ? nbuckets() : 0;
    s.overflow_buckets = noverflow_;
    s.load_factor = s.buckets ? static_cast<double>(count_) / static_cast<double>(s.buckets) : 0;
    s.growing = olddir_ != nullptr;
    s.same_size_grow = olddir_ && same_size_grow_;
    s.old_buckets = olddir_ ? noldbuckets() : 0;
    s.old_overflow_buckets = olddir_ ? old_noverflow_ : 0;
    s.evacuated = olddir_ ? evacuated_ : 0;
    s.bytes = units_held_ * sizeof(block_unit);
    return s;
  }

  hasher hash_function() const { return hash_; }
  key_equal key_eq() const { return eq_; }
  allocator_type get_allocator() const { return allocator_type(alloc_); }

  // Equal when both hold the same keys mapped to equal values (order is irrelevant).
  friend bool operator==(const Map& a, const Map& b) {
    if (&a == &b) return true;
    if (a.size() != b.size()) return false;
    bool equal = true;
    a.for_each([&](const K& k, const V& v) {
      const V* other = b.find(k);
      equal = other != nullptr && *other == v;
      return equal;
    });
    return equal;
  }

  // ==== std-style conveniences (BEGIN) =======================================================
  // The API habits std::unordered_map users bring, each built only on the public operations
  // above (try_emplace, contains, erase, reserve, iteration), so this block does not depend on
  // the table's internals. Where std returns an iterator, these return the value's address:
  // a Map iterator pins the table (no growth while it lives, see the top of this file), so
  // handing one out from every insert would be a trap.

  // Builds the map from a list of entries; a repeated key keeps its first value, as in
  // std::unordered_map. size_hint (if larger than the list) sizes the table up front.
  Map(std::initializer_list<value_type> init, size_type size_hint = 0, const Hash& hash = Hash(),
      const Eq& eq = Eq(), const Alloc& alloc = Alloc())
      : Map(std::max(size_hint, init.size()), hash, eq, alloc) {
    insert(init.begin(), init.end());
  }

  // Inserts entry when its key is absent; an existing value is left alone. Returns the stored
  // value and whether it was inserted (like try_emplace).
  std::pair<V*, bool> insert(const value_type& entry) {
    return try_emplace(entry.first, entry.second);
  }
  std::pair<V*, bool> insert(value_type&& entry) {
    // entry.first is const: the key is copied; the value is moved.
    return try_emplace(entry.first, std::move(entry.second));
  }
  // Any pair-like P that a std::pair<K, V> can be built from (e.g. a std::pair<const char*, V>).
  template <class P>
  requires std::is_constructible_v<std::pair<K, V>, P &&> &&
      (!std::is_same_v<std::remove_cvref_t<P>, value_type>)std::pair<V*, bool> insert(P&& entry) {
    std::pair<K, V> tmp(std::forward<P>(entry));
    return try_emplace(std::move(tmp.first), std::move(tmp.second));
  }
  // Inserts each entry of [first, last) whose key is absent (the first of repeated keys wins).
  template <std::input_iterator It, std::sentinel_for<It> S>
  void insert(It first, S last) {
    for (; first != last; ++first) insert(*first);
  }
  void insert(std::initializer_list<value_type> init) {
    reserve(size() + init.size());
    insert(init.begin(), init.end());
  }

  // Builds a std::pair<K, V> from args (as std::unordered_map::emplace does, so the key and
  // value are built even when the key turns out to be present) and inserts it if the key is
  // absent. Prefer try_emplace, which builds nothing when the key is present.
  template <class... Args>
  std::pair<V*, bool> emplace(Args&&... args) {
    std::pair<K, V> tmp(std::forward<Args>(args)...);
    return try_emplace(std::move(tmp.first), std::move(tmp.second));
  }

  // 1 if the key is present, else 0 (std's spelling of contains for unique-key containers).
  size_type count(const K& key) const { return contains(key) ? 1 : 0; }
  template <class Q>
  requires heterogeneous<Q> size_type count(const Q& key)
  const { return contains(key) ? 1 : 0; }

  // Erases the entry at pos and returns an iterator to the next entry of the same walk. Go's
  // iteration semantics make this safe: erasing never moves another entry or invalidates a
  // live iterator. pos must point at an entry (not end()).
  iterator erase(iterator pos) { return erase_at(std::move(pos)); }
  const_iterator erase(const_iterator pos) { return erase_at(std::move(pos)); }

  // Erases every entry e for which pred(e) is true (e is value_type&, as std::erase_if passes
  // it); returns how many. Found by argument-dependent lookup, so `erase_if(m, pred)` works
  // unqualified and after `using std::erase_if;` (an overload may not be added to std).
  template <class Pred>
  friend size_type erase_if(Map& m, Pred pred) {
    size_type erased = 0;
    for (iterator it = m.begin(); it != m.end();) {
      if (pred(*it)) {
        it = m.erase(std::move(it));
        ++erased;
      } else {
        ++it;
      }
    }
    return erased;
  }

  // Makes the bucket array at least n buckets (and large enough for size() entries) and
  // finishes a growth in progress, so no insert triggers growth until the map holds
  // 6.5 * buckets entries. Never shrinks (a Go map never does). Like reserve, a no-op while an
  // iterator of this map is live.
  void rehash(size_type n) {
    // reserve(e) sizes for e entries at 6.5 per bucket (13/2): ask for n buckets' worth.
    constexpr size_type limit = std::numeric_limits<size_type>::max() / 13;
    const size_type entries = n > limit ? std::numeric_limits<size_type>::max() : n * 13 / 2;
    reserve(std::max(entries, size()));
  }

 private:
  template <class It>
  It erase_at(It pos) {
    It next = pos;
    ++next;
    // erase(key) compares with the key before it destroys the entry; the test
    // MapStdApi.EraseIteratorPassesTheEntrysOwnKey checks that under ASan.
    const K& key = pos->first;
    pos = It();  // release pos's pin before its entry goes
    erase(key);
    return next;
  }
  // ==== std-style conveniences (END) =========================================================

 private:
  // ---- misuse detection (Go's hashWriting flag) ----------------------------------------------
#if SAFEMAP_MISUSE_CHECKS
  static constexpr std::uint8_t hash_writing = 1;  // the only flag (write_scope relies on it)

  void read_check() const {
    if (SAFEMAP_UNLIKELY(flags_.load(std::memory_order_relaxed) & hash_writing)) {
      detail::report_misuse(misuse_kind::concurrent_read_write);
    }
  }
  void iteration_check() const {
    if (SAFEMAP_UNLIKELY(flags_.load(std::memory_order_relaxed) & hash_writing)) {
      detail::report_misuse(misuse_kind::concurrent_iteration_write);
    }
  }

  // Holds the writing bit for one write. Go sets it with a plain store (flags ^= hashWriting),
  // so two writers that both load the flags before either stores it pass unseen and can
  // corrupt the table before Go's second check at the end of the write notices. Here the bit
  // is taken with one atomic exchange (a locked instruction, a few ns, measured in
  // bench/misuse_overhead_bench): of two overlapping writes the second to start always sees
  // the first's bit and reports before it changes the table. Acquire/release make a write
  // that follows another on a different thread ordered after it (no data race).
  // An exchange, not a fetch_or: hash_writing is the only flag, so both give the same old
  // value, and x86 has no one-instruction fetch_or on a byte whose old value is used (GCC emits
  // a load and a lock cmpxchg loop, 10.7% of LockedMap's store path in a profile) while
  // exchange is one xchg.
  class write_scope {
   public:
    // From the table (map_table::emplace_with builds it there): the Map is the table's owner.
    explicit write_scope(table& t) : m_(static_cast<Map&>(t)) {
      const std::uint8_t f = m_.flags_.exchange(hash_writing, std::memory_order_acquire);
      if (SAFEMAP_UNLIKELY(f & hash_writing)) detail::report_misuse(misuse_kind::concurrent_writes);
    }
    ~write_scope() noexcept(false) {
      const std::uint8_t f = m_.flags_.load(std::memory_order_relaxed);
      m_.flags_.store(static_cast<std::uint8_t>(f & ~hash_writing), std::memory_order_release);
      // Another writer cleared our bit meanwhile (Go's second check: only possible when a
      // misuse handler returned and let that writer go on). Reported only when no exception
      // is in flight (a second one would terminate); uncaught_exceptions() is asked only on
      // this rare path, not on every write.
      if (SAFEMAP_UNLIKELY(!(f & hash_writing)) && std::uncaught_exceptions() == 0) {
        detail::report_misuse(misuse_kind::concurrent_writes);
      }
    }
    write_scope(const write_scope&) = delete;
    write_scope& operator=(const write_scope&) = delete;

    // Whether no write holds the bit now (one relaxed load): the table then starts the
    // write's cache misses before the exchange (map_table::prefetch_for_write).
    static bool idle(const table& t) noexcept {
      const std::uint8_t f = static_cast<const Map&>(t).flags_.load(std::memory_order_relaxed);
      return (f & hash_writing) == 0;
    }

   private:
    Map& m_;
  };
#else
  void read_check() const noexcept {}
  void iteration_check() const noexcept {}
  struct write_scope {
    explicit write_scope(table&) noexcept {}
    static bool idle(const table&) noexcept { return true; }
  };
#endif

  // ---- lookup, insert, erase: the misuse checks around the table's own (map_table) ----------

  // Checks for a writer before the probe (Go's check) and again after it: a write that
  // started while this read was probing is reported too, rather than its result trusted
  // (one more load of a byte already in cache).
  template <class Q>
  slot_type* find_slot(const Q& key) const {
    read_check();
    slot_type* const s = find_slot_unchecked(key);
    read_check();
    return s;
  }

  // The writes. checked: hold the writing bit for the write (the public API), or not (a caller
  // whose lock already excludes every other access: detail::map_access). Finds key; when
  // absent calls construct(raw slot memory) to build the entry there
  // (map_table::emplace_with). Forced inline: a name for that call, not a call.
  template <bool checked = true, class Q, class Construct>
  SAFEMAP_ALWAYS_INLINE std::pair<slot_type*, bool> emplace_impl(const Q& key,
                                                                 Construct&& construct) {
    return table::template emplace_with<write_scope, checked>(key,
                                                              std::forward<Construct>(construct));
  }

  // key and value by rvalue reference: the public calls already hold them by value.
  template <bool checked, class... Args>
  std::pair<V*, bool> try_emplace_impl(K&& key, Args&&... args) {
    auto [slot, inserted] = emplace_impl<checked>(key, [&](void* p) {
      ::new (p) slot_type(std::piecewise_construct, std::forward_as_tuple(std::move(key)),
                          std::forward_as_tuple(std::forward<Args>(args)...));
    });
    return {&slot->second, inserted};
  }

  template <bool checked>
  bool insert_or_assign_impl(K&& key, V&& value) {
    auto [slot, inserted] = emplace_impl<checked>(
        key, [&](void* p) { ::new (p) slot_type(std::move(key), std::move(value)); });
    if (!inserted) slot->second = std::move(value);
    return inserted;
  }

  template <bool checked = true, class Q>
  SAFEMAP_ALWAYS_INLINE size_type erase_impl(const Q& key) {
    return table::template erase_with<write_scope, checked>(key);
  }
  // Removes key if pred(its value) holds; returns 1 if it did. One hash, one probe. A pred
  // that throws leaves the entry.
  template <bool checked = true, class Q, class Pred>
  size_type erase_if_value(const Q& key, Pred& pred) {
    return table::template erase_with<write_scope, checked>(
        key, [&](V& v) -> bool { return static_cast<bool>(pred(std::as_const(v))); });
  }
  // Removes key and returns its value moved out (nullopt when absent): one hash, one probe.
  // A throwing move of the value leaves the map unchanged.
  template <bool checked = true, class Q>
  std::optional<V> extract_value(const Q& key) {
    std::optional<V> out;
    table::template erase_with<write_scope, checked>(key, [&](V& v) { out.emplace(std::move(v)); });
    return out;
  }

  static Alloc alloc_type_for(const bucket_allocator& a) {
    return Alloc(a);
  }

  static V* value_or_null(slot_type* s) noexcept {
    return s ? &s->second : nullptr;
  }
  static V& at_impl(slot_type* s) {
    if (s == nullptr) throw std::out_of_range("safemap::Map::at: key not found");
    return s->second;
  }

  // ---- iteration helpers -------------------------------------------------------------------

  // The iterator's walk (begin() to end()) as one loop: map_iterator::walk (checked = false:
  // map_access::for_each_unsynchronized and for_each_locked).
  template <bool checked = true, class Self, class F>
  static void for_each_impl(Self& self, F& f) {
    using walker = std::conditional_t<std::is_const_v<Self>, const_iterator, iterator>;
    walker::template walk<checked>(&self, [&f](auto& e) {
      if constexpr (std::is_convertible_v<decltype(f(e.first, e.second)), bool>) {
        return static_cast<bool>(f(e.first, e.second));
      } else {
        f(e.first, e.second);
        return true;
      }
    });
  }

  // ---- data: the table (map_table, the private base) holds everything else ------------------
#if SAFEMAP_MISUSE_CHECKS
  std::atomic<std::uint8_t> flags_{0};  // hash_writing while a write is in progress
#endif
};

SAFEMAP_TABLE_NS_END

}  // namespace safemap
