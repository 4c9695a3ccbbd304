// safemap/trie_map.hpp - TrieMap: Go 1.24's concurrent hash-trie (today's sync.Map) in C++.
//
// Provenance: a port of Go's internal/sync/hashtriemap.go (go1.24: HashTrieMap, indirect,
// entry, Load, LoadOrStore, expand, Swap, CompareAndSwap, LoadAndDelete, CompareAndDelete, All,
// Clear), BSD-licensed: Copyright 2024 The Go Authors, https://go.dev/LICENSE. Written afresh
// in C++; each function names the Go function it follows. Go's vocabulary is kept in snake_case
// (indirect, entry, overflow, hash_shift, expand, dead, parent).
//
// # When to use it (and when not)
// TrieMap is the map to pick when keys come and go and many threads read: loads take no lock
// and write no shared memory; a write locks one small node (never the whole map), and since no
// table ever resizes, no single insert ever stalls behind a rehash. It replaced the read/dirty
// algorithm (SyncMap) in Go 1.24 because that one is slow exactly where keys change: new keys,
// deletes, mixed writes. Every key costs one heap entry (24 bytes for uint64 -> uint64, a 32-byte
// malloc chunk), plus a share of the 16-way nodes above it (about 1/ln 16 = 0.36 nodes of 136
// bytes, 144-byte chunks, per key for well-spread hashes): 84 bytes per uint64 entry (mallinfo2
// after 2^16 and 2^20 stores; it was 128 with an RCU header in every entry and node), against
// LockedMap's 37, so it is not the map for memory-bound tables. Small trivially copyable values
// (uint64, int, enums, pointers, small structs without padding) are written in place: a store,
// swap, compare_and_swap or compute on an existing key takes the entry's writer bit with one
// atomic operation, with no allocation and no node lock ("In-place values"). For a map written in
// rare batches and read in point-in-time snapshots choose CowMap; for iteration that must be
// point-in-time, LockedMap or ShardedMap.
//
// # The algorithm
// A trie of 16-way *indirect* nodes over the 64-bit hash, 4 bits per level from the top: the
// root's child index is hash >> 60, a level-d node's is (hash >> (60 - 4d)) & 15, so a path is
// at most 16 nodes deep. A child slot is empty, an indirect node, or an *entry*: an immutable
// (key, value) leaf. Keys whose full 64-bit hashes are equal share one slot as an *overflow
// chain* of entries (entry::overflow). The tree only grows where keys are: inserting a key into
// a slot that holds an entry with another hash *expands* the slot into as many new nodes as the
// two hashes share nibbles, the last of which holds both (Go's expand).
//
//   lookup  descend from root_ by the hash with acquire loads until an empty slot or an entry,
//           then compare keys along its chain. Inside one rcu::read_guard; no lock, no store to
//           shared memory, no allocation (Go's Load).
//   write   (1) descend without locks to the slot where the key's chain is or would be, and
//           remember what it held (`seen`: nil or a chain head); (2) compute the new content of
//           that slot from `seen` alone, outside any lock: a new entry, the chain with one entry
//           removed (its prefix copied: entries are immutable) and, for a replacement, the
//           new entry at its head, or the nodes of an
//           expansion; (3) lock the slot's node only, re-check that it is not dead and that the
//           slot still holds `seen`; (4) publish the new content with one release store and
//           unlock; (5) retire what was replaced. If the re-check fails, free (2) and start over
//           from the root. Nothing but that check and the store runs under the lock: no hasher,
//           no key comparison, no allocation, no user code (Go's LoadOrStore, Swap,
//           CompareAndSwap, LoadAndDelete, CompareAndDelete, which compare under the lock).
//   delete  as a write; a slot that becomes empty may leave its node with no child, and then the
//           node is *pruned*: marked dead and unlinked from its parent under both locks, bottom
//           up, as long as nodes are left empty (Go's LoadAndDelete tail).
//   clear   publishes a new empty root, then marks every node of the old tree dead under its
//           lock, counting and retiring what it held (Go's Clear publishes the root only).
//
// ## Invariants (each is relied on where noted)
//  T1 root_ is never null; an indirect node's parent never changes (nodes keep no parent
//     pointer: pruning finds the parent again from the root by the hash, parent_of); only a
//     node's own lock holder stores into its children (write step 4, pruning of a child,
//     expansion).
//  T2 a slot of a level-d node holds only entries whose hash agrees with the node's path on the
//     top 4(d+1) bits; at level 15 (hash_shift 0) that is the whole hash, so expansion never
//     runs out of bits (checked in expand).
//  T3 every entry of one chain has the same full hash; an entry, once published, never changes
//     (key, value and overflow are written before the release store that publishes it), except
//     an in-place value and the low bits of its link word (V1, V2).
//  T4 dead is set once, under the node's own lock, by whoever unlinks the node (a pruner holding
//     the parent's lock too, or clear), and that one retires it. A writer that re-checks under
//     the lock and sees dead starts over from the root; a pruned node is empty, so nothing is
//     lost with it.
//  T5 each reachable entry is reachable from exactly one slot or overflow field; replaced or
//     removed entries and copied chain prefixes are retired only after the store that unlinks
//     them, and a pointer loaded inside a read_guard cannot be freed (so cannot be reused)
//     before the guard ends: the re-check "slot still holds seen" has no ABA problem.
//  T6 locks are taken child before parent (pruning), one at a time otherwise: no cycle.
//  S1 size() is the sum of the per-stripe counters (+1 by a write that adds a key, -1 by one that
//     removes it, -n by clear), exact when no write is in flight. version() is the sum of the
//     per-stripe mutation counters, bumped (release) after each successful publication.
//
// ## Entry lifetime (the state machine of one key's slot content)
//   absent -> entry         insert: into an empty slot, at the head of an equal-hash chain, or
//                           via expand (the old chain moves, unchanged, one or more levels down)
//   entry -> entry'         store, swap, compare_and_swap, compute: a new entry replaces it (and
//                           copies of the entries before it in its chain); the old ones retire
//   entry -> entry          the same writes with an in-place value: the value changes in place
//   entry -> absent         erase, load_and_delete, compare_and_delete, compute -> nullopt, clear
// Entries never move up (pruning only removes empty nodes), so a key's slot is always on its
// hash's path: a range visits each key at most once.
//
// ## In-place values
// When V is small (at most 8 bytes), trivially copyable, lock-free as std::atomic<V> and has
// unique object representations (detail::trie_inline_value: so a bitwise comparison means
// "unchanged"; float and double, with +0.0 == -0.0, are boxed), an entry holds std::atomic<V>
// and writes to an existing key change it in place instead of replacing the entry, under the
// entry's writer bit (V1): store stores, swap loads and stores, compare_and_swap stores if the
// value is bitwise the one V's == accepted outside the bit, compute stores if the value is still
// the one f saw (f runs again if it changed: allowed for lock-free maps, f must be pure). New keys
// and deletes still publish and retire entries under the slot's lock. A delete must not lose a
// write that lands in the entry it unlinks, hence the writer word:
//  V1 an entry's link word is its overflow pointer with 2 low bits: bit 0 *frozen*, bit 1
//     *writer*. A writer takes the writer bit with one CAS that fails if frozen (it then looks
//     again from the root) and waits while another writer holds it; it reads and writes the
//     value (atomic loads and stores: loads run beside it) and gives the bit back with a plain
//     release store of the word it replaced. While the bit is held nothing else writes the
//     word (its pointer is fixed once published, and V2 sets frozen only on a word without the
//     bit), so that store loses nothing: one atomic read-modify-write per in-place write. No
//     user code runs while the bit is held. The cost: a writer preempted while it holds the bit
//     delays the key's other writers and deletes until it runs again (with a count, three
//     could be inside together); at 4 threads on 2 cores swap-collision shows no collapse.
//  V2 only the holder of the lock of the node whose slot holds an entry's chain freezes it: it
//     sets frozen with a CAS on a word without the writer bit (acquire), so the value is final,
//     and meanwhile sets the chain's bit in its node's freezing mask, which turns new writers of
//     the chain away (without it,
//     writers passing the bit to one another could keep the freeze waiting with the node
//     locked). A
//     delete freezes the entry it removes and the chain prefix it copies (refreshing the
//     copies' values from the frozen originals), so no write is lost and none lands in a copy
//     too late; a frozen entry is unlinked before the lock is released and stays frozen, except
//     when a conditional delete (compare_and_delete, compute -> nullopt) finds the final value
//     changed: it thaws everything, publishes nothing and retries.
// A write therefore linearizes at its store of the value (made before the freeze of any delete
// that unlinks the entry); a load at its load of the value (the entry was linked
// when the descent found it, and every value it can read was stored while it was linked).
// range, snapshot and read_view copy each value once (weakly consistent as before).
//
// # Reclamation (reclaim.hpp)
// Every public operation runs inside one rcu::read_guard for its whole duration, so every node
// and entry pointer it loaded stays valid until it returns; what a write unlinks goes to
// rcu::defer (reclaim.hpp's per-thread batches: no RCU header in entries or nodes, one call_rcu
// per batch) and is freed after a grace period; clear defers the whole old tree as one object.
// Room in the thread's batch is reserved (rcu::reserve, which may throw) before a write
// publishes, so nothing after the publication can fail. No operation waits for a grace period.
// The destructor frees the live tree directly (no other thread may use the map then); objects
// retired earlier are freed by RCU and do not refer back to the map.
//
// # Beyond Go
//  - size(), version(): striped counters (detail::trie_stripes cache lines, one chosen per
//    thread), so concurrent writers do not contend on one counter line.
//  - compute(k, f): f(current) runs without any lock, then the result is published with the
//    same re-check as every write; f runs again only if the key's own entry changed meanwhile
//    (docs/design.md §4 allows it for lock-free maps: f must be pure). Writes to other
//    keys, f's own included, cost a retry of the commit, not another call of f; an f that writes
//    its own key on every call never lets compute finish (as in SyncMap).
//  - clear(): Go's Clear lets a writer that descended the old root publish into the old tree
//    after Clear returned, where it is lost. Here clear marks every old node dead under its
//    lock: a write that got there first is erased by clear (and counted off size()); one that
//    comes later sees dead and starts over from the new root.
//  - stats(): a lock-free walk: nodes, entries, depth histogram, chains, bytes.
//
// # Callbacks and re-entrancy
// No lock is held while any user code runs: the hasher, key comparison, copies of keys and
// values, range's f, visit's f and compute's f all run outside the node locks, so callbacks may
// call any method of the same map, writes included, from the same thread, and never hang
// (save compute's f writing its own key on every call: see "Beyond Go").
//
// Concurrency: every member function is thread-safe, except construction and destruction.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/detail/config.hpp"
#include "safemap/detail/visit.hpp"
#include "safemap/hash.hpp"
#include "safemap/map.hpp"
#include "safemap/reclaim.hpp"

namespace safemap {

// A lock-free walk of a TrieMap, for operators and tests. Weakly consistent like range: with
// writers in flight the fields may describe slightly different moments.
struct TrieMapStats {
  std::size_t size = 0;           // size()
  std::size_t nodes = 0;          // indirect nodes reachable from the root (the root included)
  std::size_t entries = 0;        // entries reachable (every member of every chain)
  std::size_t chained = 0;        // entries that are not the head of their chain
  std::size_t longest_chain = 0;  // entries in the longest chain (0 when empty)
  std::size_t max_depth = 0;      // the deepest entry's depth (0 when empty)
  std::array<std::size_t, 17> depth{};  // depth[d]: entries under d indirect nodes (1..16)
  std::size_t bytes = 0;                // nodes and entries (key/value heap storage not included)
};

namespace detail {

// Per-thread stripes for size() and version(). 16 lines: enough that up to 16 writer threads
// (8x the cores of the 2-core bench box, and the test suites' 8 threads) each get their own
// line; size() then reads 16 lines (~1 KiB), which is cheap next to any write it counts.
inline constexpr std::size_t trie_stripes = 16;
static_assert((trie_stripes & (trie_stripes - 1)) == 0, "stripe selection masks the thread id");

struct alignas(64) trie_stripe {
  std::atomic<std::int64_t> size{0};
  std::atomic<std::uint64_t> version{0};
};

inline std::size_t trie_stripe_index() noexcept {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine & (trie_stripes - 1);
}

inline void trie_cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Waiting for another thread's few instructions (an in-place writer, a lock holder's freeze):
// spin first, then yield, so that a preempted thread gets the CPU back (more threads than cores).
inline void trie_backoff(unsigned spins) noexcept {
  if (spins < 64) {
    trie_cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

// Whether TrieMap keeps V in its entries as a std::atomic<V> written in place (see "In-place
// values" in trie_map.hpp): small, trivially copyable, lock-free as an atomic, and with unique
// object representations, so that a bitwise comparison means "unchanged"
// (floating-point values, with +0.0 == -0.0 and NaN, take the boxed path), and default
// constructible (compute keeps the value f saw in a V). std::atomic<V> is only named once V is
// known to be trivially copyable.
template <class V,
          bool = std::is_trivially_copyable_v<V> && sizeof(V) <= sizeof(std::uint64_t) &&
                 std::has_unique_object_representations_v<V>&& std::is_default_constructible_v<V>>
struct trie_inline_value : std::false_type {};
template <class V>
struct trie_inline_value<V, true> : std::bool_constant<std::atomic<V>::is_always_lock_free> {};

inline void trie_backoff(unsigned spins) noexcept;

// The small lock of one trie node (Go's indirect.mu): 4 bytes, where std::mutex takes 40 (it is
// in every node). 0 free, 1 held, 2 held with waiters (Drepper's futex mutex). Held only for a
// re-check and one store, so a short spin usually finds it free before the thread sleeps on
// the futex (std::atomic::wait).
class trie_lock {
 public:
  void lock() noexcept {
    std::uint32_t expected = 0;
    if (SAFEMAP_LIKELY(state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                                      std::memory_order_relaxed))) {
      return;
    }
    lock_slow();
  }
  void unlock() noexcept {
    if (SAFEMAP_UNLIKELY(state_.exchange(0, std::memory_order_release) == 2)) state_.notify_one();
  }

 private:
  SAFEMAP_NOINLINE void lock_slow() noexcept {
    for (int spin = 0; spin < 100; ++spin) {
      trie_cpu_relax();
      std::uint32_t expected = 0;
      if (state_.load(std::memory_order_relaxed) == 0 &&
          state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
        return;
      }
    }
    while (state_.exchange(2, std::memory_order_acquire) != 0) state_.wait(2);
  }

  std::atomic<std::uint32_t> state_{0};
};

}  // namespace detail

template <class K, class V, class Hash = safemap::Hash<K>, class Eq = std::equal_to<>>
class TrieMap : public detail::immutable_visitation<TrieMap<K, V, Hash, Eq>, K, V> {
 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = Hash;
  using key_equal = Eq;
  using size_type = std::size_t;
  using map_type = Map<K, V, Hash, Eq>;

 private:
  static constexpr std::size_t load_many_group = 64;    // keys per read guard in load_many
  static constexpr unsigned k_bits = 4;                 // hash bits per level (Go's nChildrenLog2)
  static constexpr unsigned k_children = 1u << k_bits;  // 16
  static constexpr std::uint64_t k_mask = k_children - 1;
  static constexpr unsigned k_levels = 64 / k_bits;      // 16: the deepest path (T2)
  static constexpr unsigned k_root_shift = 64 - k_bits;  // the root's slots are at shift 60
  static_assert(64 % k_bits == 0, "levels must consume the hash exactly (T2)");

  // In-place values (see the top of the file): V lives in the entry as std::atomic<V>.
  static constexpr bool inline_values = detail::trie_inline_value<V>::value;

  struct entry;
  // Boxed: const V. In place: std::atomic<V>, written by store/swap/compare_and_swap/compute.
  using value_cell = std::conditional_t<inline_values, std::atomic<V>, const V>;
  // Boxed: the overflow pointer. In place: the overflow pointer with the writer word in its low
  // bits (V1): bit 0 frozen, bit 1 held by an in-place writer.
  using link_word = std::conditional_t<inline_values, std::atomic<std::uintptr_t>, entry*>;
  static constexpr std::uintptr_t k_frozen = 1;
  static constexpr std::uintptr_t k_writer = 2;
  static constexpr std::uintptr_t k_link_bits = 3;

  // Go's entry: a leaf, immutable but for an in-place value (T3). overflow chains entries with
  // the same full hash. No RCU header: retired entries go through rcu::defer's per-thread
  // batches, so a uint64 -> uint64 entry is 24 bytes (a 32-byte malloc chunk, the smallest).
  // The link word and the value come first: malloc aligns an entry to 16 bytes, so the two
  // words an in-place writer writes are always on one cache line. With the key first, an entry
  // at 48 mod 64 (a quarter of them) had its link word on the next line, and a hot key's
  // writers then moved two lines between cores per write: swap-collision at 2 and 4 threads ran
  // at 60-140 ns/op in those runs against 27-35 (docs/benchmarks.md, "Tenth pass").
  struct entry {
    template <class KK, class... Args>
    explicit entry(KK&& k, Args&&... args)
        : value(std::forward<Args>(args)...), key(std::forward<KK>(k)) {}
    link_word overflow{};  // the pointer is written only before publication (T3)
    value_cell value;
    const K key;
  };
  static_assert(alignof(entry) > k_link_bits || !inline_values, "the link word's low bits");

  static entry* next_of(const entry* e) noexcept {
    if constexpr (inline_values) {
      return reinterpret_cast<entry*>(e->overflow.load(std::memory_order_acquire) & ~k_link_bits);
    } else {
      return e->overflow;
    }
  }
  static void set_next(entry* e, entry* next) noexcept {  // before publication only (T3)
    if constexpr (inline_values) {
      e->overflow.store(reinterpret_cast<std::uintptr_t>(next), std::memory_order_relaxed);
    } else {
      e->overflow = next;
    }
  }
  // The value: a reference to the immutable one (boxed), or a copy loaded now (in place).
  static decltype(auto) value_of(const entry* e) noexcept {
    if constexpr (inline_values) {
      return e->value.load(std::memory_order_acquire);
    } else {
      return (e->value);
    }
  }

  // A child slot holds 0 (empty), an indirect* or an entry* with the low bit set: both are at
  // least 8-aligned, and the tag saves every entry a header word (Go's node.isEntry).
  using slot_t = std::atomic<std::uintptr_t>;
  static_assert(alignof(entry) >= 2, "the low bit of an entry pointer tags it");

  // Go's indirect: one node of the trie. 16 slots, a 4-byte lock, the dead flag and the
  // freezing mask: 136 bytes,
  // which malloc serves from a 144-byte chunk (a parent pointer or an RCU header would push it
  // to 160 or 176). The parent is found again from the root when pruning needs it (T1).
  struct indirect {
    std::array<slot_t, k_children> children{};
    detail::trie_lock mu;  // guards stores into children and dead (T1, T4)
    std::atomic<bool> dead{false};
    // Bit s set by the lock holder while it freezes entries of the chain in children[s] (V2):
    // in-place writers of that chain stop taking writer bits, so the freeze finds each bit
    // clear after at most the writers already past this check; writers of the other chains go
    // on (a hint: correctness rests on the bit and frozen).
    std::atomic<std::uint16_t> freezing{0};
    static_assert(k_children <= 16, "one freezing bit per child slot");

    bool empty_locked() const noexcept {
      for (const slot_t& c : children) {
        if (c.load(std::memory_order_relaxed) != 0) return false;
      }
      return true;
    }
  };
  static_assert(alignof(indirect) >= 2, "the low bit of a slot tags entries");

  static bool is_entry(std::uintptr_t n) noexcept { return (n & 1) != 0; }
  static entry* as_entry(std::uintptr_t n) noexcept { return reinterpret_cast<entry*>(n & ~1); }
  static indirect* as_indirect(std::uintptr_t n) noexcept { return reinterpret_cast<indirect*>(n); }
  static std::uintptr_t tag(entry* e) noexcept {
    return e == nullptr ? 0 : reinterpret_cast<std::uintptr_t>(e) | 1;
  }
  static std::uintptr_t tag(indirect* i) noexcept { return reinterpret_cast<std::uintptr_t>(i); }

  // Where a lock-free descent ended: the slot holding (or that would hold) the key's chain.
  struct slot_ref {
    indirect* node;  // the slot's owner (Go's i)
    unsigned shift;  // the slot's index is (hash >> shift) & 15 (Go's hashShift)
    slot_t* slot;
    std::uintptr_t seen;  // 0 or a tagged chain head; never an indirect node
  };

 public:
  // --- construction ---------------------------------------------------------------------------

  // An empty map. Allocates the (empty) root node.
  TrieMap() : root_(new indirect) {}

  // Stores every entry of `initial` (from_json and load_snapshot build maps this way).
  explicit TrieMap(map_type initial) : TrieMap() {
    initial.for_each([&](const K& k, V& v) { store(k, std::move(v)); });
  }

  TrieMap(const TrieMap&) = delete;
  TrieMap& operator=(const TrieMap&) = delete;

  // Frees the live tree now; objects retired earlier are freed by RCU after their grace period
  // (rcu::barrier() waits for that). Concurrency: no other thread may use the map.
  ~TrieMap() { destroy_tree(root_.load(std::memory_order_relaxed)); }

  // --- reads ----------------------------------------------------------------------------------

  // The values of many keys, in key order (concurrent.hpp): out[i] = load(keys[i]); returns
  // how many were found. 64 keys at a time under one read guard descend the trie together,
  // a level per pass: each pass loads every unfinished key's slot at this level and
  // prefetches its slot at the next, so the keys' node misses overlap where load takes them
  // one after another (docs/benchmarks.md, "Eleventh pass").
  // Concurrency: lock-free, as load.
  std::size_t load_many(std::span<const K> keys, std::span<std::optional<V>> out) const {
    detail::check_many_out(keys.size(), out.size(), "safemap::TrieMap::load_many");
    std::size_t found = 0;
    std::uint64_t hashes[load_many_group];
    const slot_t* slots[load_many_group];   // the slot each key reads next
    std::uintptr_t heads[load_many_group];  // what its descent ended on (0 or an entry chain)
    std::uint8_t todo[load_many_group];     // keys still descending
    for (std::size_t base = 0; base < keys.size(); base += load_many_group) {
      const std::size_t len = std::min(load_many_group, keys.size() - base);
      rcu::read_guard guard;
      const indirect* const root = root_.load(std::memory_order_acquire);
      unsigned shift = 64 - k_bits;
      for (std::size_t i = 0; i < len; ++i) {
        hashes[i] = hash_of(keys[base + i]);
        slots[i] = &root->children[(hashes[i] >> shift) & k_mask];
        todo[i] = static_cast<std::uint8_t>(i);
      }
      // Every key is at the same depth in each pass (the levels consume k_bits each).
      for (std::size_t left = len; left > 0; shift -= k_bits) {
        std::size_t still = 0;
        for (std::size_t t = 0; t < left; ++t) {
          const std::size_t i = todo[t];
          const std::uintptr_t n = slots[i]->load(std::memory_order_acquire);
          if (n == 0 || is_entry(n)) {
            heads[i] = n;
            if (n != 0) __builtin_prefetch(as_entry(n));
            continue;
          }
          slots[i] = &as_indirect(n)->children[(hashes[i] >> (shift - k_bits)) & k_mask];
          __builtin_prefetch(slots[i]);
          todo[still++] = static_cast<std::uint8_t>(i);
        }
        left = still;
      }
      for (std::size_t i = 0; i < len; ++i) {
        out[base + i].reset();
        if (const entry* e = chain_find(heads[i], keys[base + i])) {
          out[base + i].emplace(value_of(e));
          ++found;
        }
      }
    }
    return found;
  }
  template <std::ranges::input_range R>
  std::vector<std::optional<V>> load_many(R&& keys) const {
    return detail::load_many_of(*this, std::forward<R>(keys));
  }

  // The value for key, or nullopt (Go's Load). Concurrency: lock-free; atomic loads only.
  template <class Q>
  std::optional<V> load(const Q& key) const {
    rcu::read_guard guard;
    if (const entry* e = find(key)) return value_of(e);
    return std::nullopt;
  }

  // Concurrency: as load.
  template <class Q>
  bool contains(const Q& key) const {
    rcu::read_guard guard;
    return find(key) != nullptr;
  }

  // Calls f(const V&) on the stored value in place, if present; returns whether it was.
  // Concurrency: as load; f runs inside the read guard with no lock held, so it may call any
  // method of this map (a write it makes does not change the value f is looking at).
  template <class Q, class F>
  bool visit(const Q& key, F f) const {
    rcu::read_guard guard;
    const entry* e = find(key);
    if (e == nullptr) return false;
    decltype(auto) v = value_of(e);  // in place: a copy, so f sees one value throughout
    f(v);
    return true;
  }

  // Calls f(const K&, const V&) for each key, each at most once; f may return bool, false stops
  // (Go's All). Weakly consistent: a value seen is one the key held at some moment during the
  // call; keys stored or deleted meanwhile may or may not be seen. Concurrency: lock-free, never
  // blocks writers; f runs with no lock held and may call any method of this map.
  template <class F>
  void range(F f) const {
    rcu::read_guard guard;
    walk(root_.load(std::memory_order_acquire),
         [&f](const entry* e) { return detail::invoke_range_callback(f, e->key, value_of(e)); });
  }

  // The view json.hpp serializes without copying (in-place values: one copy of each value): calls
  // f(walk), where walk(g) calls g(const K&, const V&) for each key, like range (weakly
  // consistent), and every reference stays valid until f returns (one read-side critical section
  // spans the call). f must not block for long (it delays reclamation). Concurrency: as range.
  template <class F>
  void read_view(F&& f) const {
    rcu::read_guard guard;
    const indirect* root = root_.load(std::memory_order_acquire);
    if constexpr (inline_values) {
      // In-place values have no stable V object to refer to: copy each value once (keys stay
      // valid for the guard), so every reference g gets lives until f returns.
      std::vector<std::pair<const K*, V>> items;
      walk(root, [&items](const entry* e) {
        items.emplace_back(&e->key, value_of(e));
        return true;
      });
      f([&items](auto&& g) {
        for (const auto& [k, v] : items) g(*k, v);
      });
    } else {
      f([root](auto&& g) {
        walk(root, [&g](const entry* e) {
          g(e->key, e->value);
          return true;
        });
      });
    }
  }

  // The number of keys; exact when no write is in flight (S1). Concurrency: 16 relaxed loads.
  std::size_t size() const noexcept {
    std::int64_t n = 0;
    for (const auto& s : stripes_) n += s.size.load(std::memory_order_relaxed);
    return n < 0 ? 0 : static_cast<std::size_t>(n);  // < 0 only for a moment, mid-write
  }
  // Concurrency: as size().
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  // A copy built by range, so exactly range's guarantee: each key at most once, with a value it
  // held at some moment during the call; not a point-in-time image when writers run (a key
  // added or removed meanwhile may or may not be in it). Quiescent map: an exact copy.
  // Concurrency: as range.
  map_type snapshot() const {
    map_type out(size());
    range([&out](const K& k, const V& v) { out.try_emplace(k, v); });
    return out;
  }

  // Grows by at least 1 on every successful mutation; never on a read or a failed write. The
  // sum of the stripes' counters, each bumped (release) after its write is published: a reader
  // that sees a write's bump (acquire) then also sees the write. Concurrency: 16 acquire loads.
  std::uint64_t version() const noexcept {
    std::uint64_t v = 0;
    for (const auto& s : stripes_) v += s.version.load(std::memory_order_acquire);
    return v;
  }

  // Shape of the trie. Concurrency: lock-free walk, as range.
  TrieMapStats stats() const {
    rcu::read_guard guard;
    TrieMapStats s;
    s.size = size();
    stats_walk(root_.load(std::memory_order_acquire), 1, s);
    s.bytes = s.nodes * sizeof(indirect) + s.entries * sizeof(entry);
    return s;
  }

  // --- writes ---------------------------------------------------------------------------------

  // Inserts or overwrites (Go's Store, which is Swap). Concurrency: an existing key with an
  // in-place value: a store under the entry's writer bit (V1; one CAS, and a wait while another
  // writer of the key holds it), no node lock, no allocation; otherwise locks the key's slot
  // node for one re-check and one store.
  void store(K key, V value) {
    rcu::read_guard guard;
    if constexpr (inline_values) {
      put_in_place(std::move(key), value, false);
    } else {
      auto fresh = std::make_unique<entry>(std::move(key), std::move(value));
      put(fresh);
    }
  }

  // Stores value; returns the previous value if any (Go's Swap). Concurrency: as store (a load
  // and a store under the writer bit for an existing key with an in-place value).
  std::optional<V> swap(K key, V value) {
    rcu::read_guard guard;
    if constexpr (inline_values) {
      return put_in_place(std::move(key), value, true);
    } else {
      auto fresh = std::make_unique<entry>(std::move(key), std::move(value));
      if (const entry* old = put(fresh)) return old->value;  // retired, valid until guard ends
      return std::nullopt;
    }
  }

  // The existing value and true, or value and false after storing it (Go's LoadOrStore).
  // Concurrency: lock-free when the key is present; otherwise as store.
  std::pair<V, bool> load_or_store(K key, V value) {
    rcu::read_guard guard;
    const std::uint64_t h = hash_of(key);
    std::unique_ptr<entry> fresh;  // allocated once the key is found absent
    for (;;) {
      const slot_ref at = descend(h);
      // Once fresh exists, key has been moved into it: a retry must compare fresh's copy (the
      // key may have been stored meanwhile; missing it would add the key a second time).
      if (const entry* e = chain_find(at.seen, fresh ? fresh->key : key)) {
        return {value_of(e), true};
      }
      if (!fresh) fresh = std::make_unique<entry>(std::move(key), std::move(value));
      if (try_commit(at, h, nullptr, fresh.get()) == commit::done) {
        const entry* stored = fresh.release();
        added(1);
        if constexpr (inline_values) {
          return {value, false};  // trivially copyable: moving left it intact; stored may
                                  // already hold a later store's value
        } else {
          return {stored->value, false};
        }
      }
    }
  }

  // Removes key; returns the removed value (Go's LoadAndDelete). Concurrency: lock-free when
  // the key is absent; otherwise locks the slot node (and prunes emptied nodes upward).
  template <class Q>
  std::optional<V> load_and_delete(const Q& key) {
    rcu::read_guard guard;
    if (const entry* e = remove_if(key, false, nullptr)) return value_of(e);  // frozen (V2)
    return std::nullopt;
  }

  // True if something was removed (Go's Delete). Concurrency: as load_and_delete.
  template <class Q>
  bool erase(const Q& key) {
    rcu::read_guard guard;
    return remove_if(key, false, nullptr) != nullptr;
  }

  // Replaces the value with desired only if the key is present and its value == expected (Go's
  // CompareAndSwap). Concurrency: lock-free when it fails on the first look; in-place values:
  // a store under the entry's writer bit (V1), no node lock; otherwise as store. The comparison
  // (V's ==) runs outside any lock and is repeated if the slot or the value changed meanwhile.
  template <class Q>
  bool compare_and_swap(const Q& key, const V& expected, V desired) {
    rcu::read_guard guard;
    const std::uint64_t h = hash_of(key);
    if constexpr (inline_values) {
      for (unsigned spins = 0;; ++spins) {
        const slot_ref at = descend(h);
        entry* cur = const_cast<entry*>(chain_find(at.seen, key));
        if (cur == nullptr) return false;
        V seen = cur->value.load(std::memory_order_acquire);
        if (!(seen == expected)) return false;  // linearized at the load
        std::uintptr_t word = 0;
        if (!try_enter(cur, at, word)) {  // being removed or copied: look again from the root
          detail::trie_backoff(spins);
          continue;
        }
        const bool swapped = store_if_unchanged(cur, seen, desired);
        leave(cur, word);
        if (swapped) {
          bump_version();
          return true;
        }
      }
    } else {
      std::unique_ptr<entry> fresh;
      for (;;) {
        const slot_ref at = descend(h);
        const entry* cur = chain_find(at.seen, key);
        if (cur == nullptr || !(cur->value == expected)) return false;
        if (!fresh) fresh = std::make_unique<entry>(cur->key, std::move(desired));
        if (try_commit(at, h, cur, fresh.get()) == commit::done) {
          fresh.release();
          bump_version();
          return true;
        }
      }
    }
  }

  // Removes the key only if its value == expected (Go's CompareAndDelete). Concurrency: as
  // load_and_delete; the comparison runs outside the lock (in place: repeated if the value
  // changed before the lock holder froze it).
  template <class Q>
  bool compare_and_delete(const Q& key, const V& expected) {
    rcu::read_guard guard;
    return remove_if(key, true, &expected) != nullptr;
  }

  // Atomically per key: f(std::optional<V> current) -> std::optional<V>; nullopt erases.
  // Returns the new state. Concurrency: f runs without any lock, then the result is published
  // under the slot node's lock if the slot is unchanged (in-place values: a new value for an
  // existing key is a store under the entry's writer bit, no node lock); otherwise f runs again on
  // the newer state (f may run more than once and must be pure). f may call any method of this map.
  template <class F>
  std::optional<V> compute(const K& key, F f) {
    rcu::read_guard guard;
    if constexpr (inline_values) {
      return compute_in_place(key, f);
    } else {
      const std::uint64_t h = hash_of(key);
      // f's result (fresh; nullptr: erase) for the state computed_for (the key's entry, or
      // nullptr for absent). While the guard lasts an entry pointer names one immutable state
      // (T3, T5), so a retry that finds the same entry publishes the same result without
      // calling f again: only a change of the key itself makes f run again, not a write to
      // another key of its chain or slot (f's own writes included, which would otherwise retry
      // for ever).
      bool computed = false;
      const entry* computed_for = nullptr;
      std::unique_ptr<entry> fresh;
      for (;;) {
        const slot_ref at = descend(h);
        const entry* cur = chain_find(at.seen, key);
        if (!computed || cur != computed_for) {
          computed = false;
          fresh.reset();
          std::optional<V> next =
              cur != nullptr ? f(std::optional<V>(cur->value)) : f(std::optional<V>());
          if (next) {
            fresh = cur != nullptr ? std::make_unique<entry>(cur->key, std::move(*next))
                                   : std::make_unique<entry>(key, std::move(*next));
          }
          computed = true;
          computed_for = cur;
        }
        if (!fresh) {
          if (cur == nullptr) return std::nullopt;  // absent and staying absent: linearized
          if (try_commit(at, h, cur, nullptr) == commit::done) {
            added(-1);
            return std::nullopt;
          }
          continue;
        }
        if (try_commit(at, h, cur, fresh.get()) == commit::done) {
          const entry* stored = fresh.release();
          if (cur == nullptr) {
            added(1);
          } else {
            bump_version();
          }
          return stored->value;
        }
      }
    }
  }

  // Removes every key. Concurrency: publishes a new empty root (the only allocation, made
  // first), then locks the old tree's nodes one at a time to mark them dead (T4). Not atomic
  // with respect to concurrent writers: a write racing with clear may be erased by it or
  // survive it, never be lost half-way or lost after clear returned.
  void clear() {
    rcu::read_guard guard;
    indirect* old = root_.load(std::memory_order_acquire);
    bool any = false;
    for (const slot_t& c : old->children) any = any || c.load(std::memory_order_acquire) != 0;
    if (!any) return;  // empty: linearized at these loads
    auto fresh = std::make_unique<indirect>();
    rcu::reserve(1);  // the old tree goes to RCU as one deferred object
    // Only clear swaps the root, but two clears may race: exchange hands each old root to
    // exactly one of them.
    old = root_.exchange(fresh.release(), std::memory_order_acq_rel);
    std::size_t nodes = 0;
    const std::int64_t removed = kill_tree(old, nodes);
    // Every node of the old tree is dead now, so nothing is stored into it any more: its final
    // shape is freed in one piece once the readers that may be in it are gone.
    rcu::defer(old, &defer_destroy_tree,
               nodes * sizeof(indirect) + static_cast<std::size_t>(removed) * sizeof(entry));
    if (removed != 0) added(-removed);
  }

  // === Visitation, bulk erase and moves (Boost.Unordered's concurrent_flat_map habits) ========
  // A TrieMap entry is immutable once published (T3): lock-free readers use it without
  // synchronization, so a value cannot be changed in place. Every visitation hands f a
  // const V&, on a const map or not, and a non-const visit or visit_all whose f needs a V& is
  // rejected at compile time, naming the alternative (compute or swap). No lock is held while
  // f or pred runs: they may call any method of this map, writes included, and if they throw,
  // the exception propagates with the map whole and no guard or lock left behind.

  // Takes over every entry (and the hasher) of other; other is left empty and usable. This map
  // takes over other's version(); other's version() grows by 1 (a watcher of it sees a change).
  // Allocates other's new, empty root (if that throws, neither map changed).
  // Concurrency: not concurrent with any other call on either map.
  TrieMap(TrieMap&& other) : TrieMap() { take_tree_of(other); }
  // As the move constructor; this map's previous entries are freed.
  // Concurrency: not concurrent with any other call on either map.
  TrieMap& operator=(TrieMap&& other) {
    if (this == &other) return *this;
    take_tree_of(other);
    return *this;
  }

  // visit on a non-const map (f gets const V&; a callable that needs V& is refused at
  // compile time), cvisit, visit_all, cvisit_all, erase_if, insert_or_visit, emplace_or_visit: from
  // detail::immutable_visitation<TrieMap, K, V> (detail/visit.hpp), which builds
  // them from this map's own calls and documents their guarantees.
  using detail::immutable_visitation<TrieMap, K, V>::visit;

 private:
  // The move operations' body: frees this map's tree, takes other's tree, hasher and counters,
  // and gives other a fresh, empty root.
  void take_tree_of(TrieMap& other) {
    auto fresh = std::make_unique<indirect>();  // may throw: nothing changed yet
    indirect* previous =
        root_.exchange(other.root_.exchange(fresh.release(), std::memory_order_relaxed),
                       std::memory_order_relaxed);
    destroy_tree(previous);
    hash_ = other.hash_;
    eq_ = other.eq_;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < stripes_.size(); ++i) {
      detail::trie_stripe& mine = stripes_[i];
      detail::trie_stripe& theirs = other.stripes_[i];
      mine.size.store(theirs.size.exchange(0, std::memory_order_relaxed),
                      std::memory_order_relaxed);
      const std::uint64_t sv = theirs.version.exchange(0, std::memory_order_relaxed);
      mine.version.store(sv, std::memory_order_relaxed);
      v += sv;
    }
    other.stripes_[0].version.store(v + 1, std::memory_order_release);
  }
  // === end of visitation, bulk erase and moves ==================================================

 private:
  // ---- hashing -------------------------------------------------------------------------------

  // Lookups take Q != K only when hasher and key_equal both opt in (like Map); otherwise the
  // key is converted to K first.
  template <class Q>
  static constexpr bool heterogeneous =
      detail::transparent<Hash>&& detail::transparent<Eq> && !std::is_same_v<Q, K>;

  template <class Q>
  std::uint64_t hash_of(const Q& key) const {
    if constexpr (!std::is_same_v<Q, K> && !heterogeneous<Q>) {
      return hash_of(K(key));
    } else if constexpr (detail::avalanching_hash<Hash>) {
      return static_cast<std::uint64_t>(hash_(key));
    } else {
      // The trie consumes the top bits first: std::hash<int> (the identity) would put every
      // small key on one path 15 nodes deep.
      return detail::post_mix(static_cast<std::uint64_t>(hash_(key)));
    }
  }

  template <class Q>
  bool key_equals(const K& stored, const Q& key) const {
    if constexpr (!std::is_same_v<Q, K> && !heterogeneous<Q>) {
      return eq_(stored, K(key));
    } else {
      return eq_(stored, key);
    }
  }

  // ---- lock-free descent ---------------------------------------------------------------------

  // Go's Load: the key's entry, or nullptr. Atomic loads only.
  template <class Q>
  const entry* find(const Q& key) const {
    return chain_find(descend(hash_of(key)).seen, key);
  }

  // Walks from the root by h until an empty slot or an entry (Go's descent loop in every
  // method). Never meets an indirect node at hash_shift 0 (T2).
  slot_ref descend(std::uint64_t h) const noexcept {
    indirect* i = root_.load(std::memory_order_acquire);
    unsigned shift = 64;
    for (;;) {
      shift -= k_bits;
      slot_t* slot = &i->children[(h >> shift) & k_mask];
      const std::uintptr_t n = slot->load(std::memory_order_acquire);
      if (n == 0 || is_entry(n)) return {i, shift, slot, n};
      i = as_indirect(n);
    }
  }

  // Go's entry.lookup: the entry for key in the chain `head` (tagged, may be 0), or nullptr.
  template <class Q>
  const entry* chain_find(std::uintptr_t head, const Q& key) const {
    for (const entry* e = head != 0 ? as_entry(head) : nullptr; e != nullptr; e = next_of(e)) {
      if (key_equals(e->key, key)) return e;
    }
    return nullptr;
  }

  // ---- writes --------------------------------------------------------------------------------

  // store/swap: publishes fresh for its key; returns the entry it replaced (retired, valid until
  // the caller's guard ends) or nullptr if the key was absent. Adopts fresh.
  const entry* put(std::unique_ptr<entry>& fresh) {
    const std::uint64_t h = hash_of(fresh->key);
    for (;;) {
      const slot_ref at = descend(h);
      const entry* cur = chain_find(at.seen, fresh->key);
      if (try_commit(at, h, cur, fresh.get()) == commit::done) {
        fresh.release();
        if (cur == nullptr) {
          added(1);
        } else {
          bump_version();
        }
        return cur;
      }
    }
  }

  // store/swap of an in-place value: an existing key's value is stored (after reading the old
  // one: want_old) in place under its writer bit (V1); an absent key gets a new entry. Returns the
  // previous value (want_old only).
  std::optional<V> put_in_place(K&& key, V value, bool want_old) {
    const std::uint64_t h = hash_of(key);
    std::unique_ptr<entry> fresh;  // allocated once the key is found absent
    for (unsigned spins = 0;; ++spins) {
      const slot_ref at = descend(h);
      // After fresh took the key, a retry compares fresh's copy (as load_or_store).
      if (entry* cur = const_cast<entry*>(chain_find(at.seen, fresh ? fresh->key : key))) {
        std::uintptr_t word = 0;
        if (!try_enter(cur, at, word)) {  // being removed or copied: look again from the root
          detail::trie_backoff(spins);
          continue;
        }
        std::optional<V> old;
        if (want_old) old = cur->value.load(std::memory_order_relaxed);  // final while held
        cur->value.store(value, std::memory_order_release);
        leave(cur, word);
        bump_version();
        return old;
      }
      if (!fresh) fresh = std::make_unique<entry>(std::move(key), value);
      if (try_commit(at, h, nullptr, fresh.get()) == commit::done) {
        fresh.release();
        added(1);
        return std::nullopt;
      }
    }
  }

  // compute for in-place values. f runs outside any lock and without the writer bit; a new
  // value for an existing key is stored under the bit if the value is still the one f saw, an
  // erase by try_commit with that value as the expected one, an insert as everywhere. f runs
  // again only when the key's state changed (another entry, or another value): a retry caused
  // by writes to other keys (f's own included) reuses the result, as in the boxed compute.
  template <class F>
  std::optional<V> compute_in_place(const K& key, F& f) {
    const std::uint64_t h = hash_of(key);
    bool computed = false;
    const entry* computed_for = nullptr;
    V computed_from{};  // the value f saw (meaningful when computed_for is not null)
    std::optional<V> next;
    std::unique_ptr<entry> fresh;  // the new entry when the key was absent
    for (unsigned spins = 0;; ++spins) {
      const slot_ref at = descend(h);
      entry* cur = const_cast<entry*>(chain_find(at.seen, key));
      V seen{};
      if (cur != nullptr) seen = cur->value.load(std::memory_order_acquire);
      if (!computed || cur != computed_for || (cur != nullptr && !same_bits(seen, computed_from))) {
        computed = false;
        fresh.reset();
        next = cur != nullptr ? f(std::optional<V>(seen)) : f(std::optional<V>());
        if (next && cur == nullptr) fresh = std::make_unique<entry>(key, *next);
        computed = true;
        computed_for = cur;
        computed_from = seen;
      }
      if (cur == nullptr) {
        if (!fresh) return std::nullopt;  // absent and staying absent: linearized at find
        if (try_commit(at, h, nullptr, fresh.get()) == commit::done) {
          fresh.release();
          added(1);
          return next;
        }
        continue;
      }
      if (!next) {
        if (try_commit(at, h, cur, nullptr, &seen) == commit::done) {
          added(-1);
          return std::nullopt;
        }
        continue;  // slot or value changed: the check at the top decides whether f runs again
      }
      std::uintptr_t word = 0;
      if (!try_enter(cur, at, word)) {
        detail::trie_backoff(spins);
        continue;
      }
      const bool swapped = store_if_unchanged(cur, seen, *next);
      leave(cur, word);
      if (swapped) {
        bump_version();
        return next;
      }
    }
  }

  static bool same_bits(const V& a, const V& b) noexcept {
    return std::memcmp(&a, &b, sizeof(V)) == 0;
  }

  // ---- in-place writers and the lock holder's freeze (V1, V2) ---------------------------------

  // Takes e's writer bit, leaving in `word` what leave stores back; false if e is frozen or
  // about to be (the bit of at, the slot holding e's chain, is set in its node's freezing mask:
  // a lock holder is removing or copying it; the caller looks again from the root). Waits while
  // another writer holds the bit, which it does for a load and a store.
  //
  // One writer at a time, released by a plain store, rather than a count of writers inside
  // (taken by CAS, released by fetch_sub, around an exchange): an in-place swap made three
  // atomic read-modify-writes on the entry's line and now makes one. safemap-bench
  // swap-collision, TrieMap, 1 / 2 / 4 threads: 25.0 / 38.4 / 38.7 ns/op with the count (see
  // docs/benchmarks.md, "Tenth pass").
  static bool try_enter(entry* e, const slot_ref& at, std::uintptr_t& word) noexcept {
    const std::uint16_t chain = freezing_bit(at);
    return set_when_unheld(e, k_writer, word, [&](std::uintptr_t w) {
      return (w & k_frozen) != 0 ||
             (at.node->freezing.load(std::memory_order_relaxed) & chain) != 0;
    });
  }
  // The one way a bit goes into a published entry's link word (V1, V2): wait until no writer
  // holds the writer bit, then CAS `bit` in (acquire: the last writer's stores are visible),
  // leaving in `before` the word it replaced. Gives up, returning false, once refused(word).
  template <class Refused>
  static bool set_when_unheld(entry* e, std::uintptr_t bit, std::uintptr_t& before,
                              Refused refused) noexcept {
    std::uintptr_t w = e->overflow.load(std::memory_order_relaxed);
    for (unsigned spins = 0;; ++spins) {
      if (refused(w)) return false;
      if ((w & k_writer) != 0) {
        detail::trie_backoff(spins);
        w = e->overflow.load(std::memory_order_relaxed);
        continue;
      }
      if (e->overflow.compare_exchange_weak(w, w | bit, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
        before = w;
        return true;
      }
    }
  }
  // The bit of at's slot in its node's freezing mask.
  static std::uint16_t freezing_bit(const slot_ref& at) noexcept {
    return static_cast<std::uint16_t>(1u << (at.slot - at.node->children.data()));
  }
  // Gives the writer bit back: no one else writes the word while it is held (V1).
  static void leave(entry* e, std::uintptr_t word) noexcept {
    e->overflow.store(word, std::memory_order_release);
  }
  // Under the writer bit: stores desired if the value is still seen, bitwise (which for V means
  // "still the value compared": unique representations).
  static bool store_if_unchanged(entry* e, const V& seen, const V& desired) noexcept {
    if (!same_bits(e->value.load(std::memory_order_relaxed), seen)) return false;
    e->value.store(desired, std::memory_order_release);
    return true;
  }
  // Under the node lock of e's slot: waits until no writer holds the bit and sets frozen on the
  // word, after which no writer enters and e's value is final until thawed (acquire: the last
  // writer's store is visible).
  static void freeze_locked(entry* e) noexcept {
    std::uintptr_t before = 0;
    set_when_unheld(e, k_frozen, before, [](std::uintptr_t) { return false; });
  }
  static void thaw_locked(entry* e) noexcept {
    e->overflow.fetch_and(~k_frozen, std::memory_order_release);
  }

  // Removes key's entry (if conditional: only while its value == *expected); returns it
  // (retired; in place: frozen, so its value is the final one) or nullptr.
  template <class Q>
  const entry* remove_if(const Q& key, bool conditional, const V* expected) {
    const std::uint64_t h = hash_of(key);
    for (;;) {
      const slot_ref at = descend(h);
      const entry* cur = chain_find(at.seen, key);
      if (cur == nullptr) return nullptr;
      if constexpr (inline_values) {
        const V seen = cur->value.load(std::memory_order_acquire);
        if (conditional && !(seen == *expected)) return nullptr;  // linearized at the load
        if (try_commit(at, h, cur, nullptr, conditional ? &seen : nullptr) == commit::done) {
          added(-1);
          return cur;
        }
      } else {
        if (conditional && !(cur->value == *expected)) return nullptr;
        if (try_commit(at, h, cur, nullptr) == commit::done) {
          added(-1);
          return cur;
        }
      }
    }
  }

  enum class commit {
    done,     // published
    retry,    // the slot changed or its node died: nothing changed
    changed,  // in place: cur's value was not *must_equal once frozen: nothing changed
  };

  // One attempt of write steps (2)-(5) (see the top of the file): makes the key of `cur`/
  // `fresh` map to fresh (nullptr: removes cur) in the slot at.slot, which held at.seen when
  // cur was found in it (cur nullptr: the key was absent). Returns commit::retry, having
  // changed nothing, if the slot changed or its node died meanwhile. In place (V2): under the
  // lock, freezes cur and the chain entries before it, refreshes the copies' values, and if
  // must_equal is given and cur's final value differs bitwise, thaws them and returns
  // commit::changed. Allocation and hashing happen before the lock; on an exception nothing
  // was published. fresh is adopted only on success.
  commit try_commit(const slot_ref& at, std::uint64_t h, const entry* cur, entry* fresh,
                    const V* must_equal = nullptr) {
    std::uintptr_t next = 0;
    entry* copies = nullptr;  // copied chain prefix (owned here until published)
    std::size_t ncopies = 0;
    indirect* expansion = nullptr;  // new nodes of an expansion (owned here until published)
    entry* const head = at.seen != 0 ? as_entry(at.seen) : nullptr;
    try {
      if (cur != nullptr) {
        // Room for step (5): cur, the copied prefix, and up to 15 pruned nodes (T2), so that
        // nothing after the publication can fail.
        std::size_t retiring = 1;
        for (entry* e = head; e != cur; e = next_of(e)) ++retiring;
        rcu::reserve(fresh == nullptr ? retiring + k_levels - 1 : retiring);
      }
      if (cur == nullptr) {
        // Insert (Go's LoadOrStore/expand): into an empty slot, at the head of a chain of the
        // same full hash, or below the slot in new nodes that separate the two hashes.
        if (fresh == nullptr) __builtin_unreachable();  // an insert always has an entry
        if (head == nullptr) {
          set_next(fresh, nullptr);
          next = tag(fresh);
        } else {
          const std::uint64_t head_hash = hash_of(head->key);
          if (head_hash == h) {
            set_next(fresh, head);
            next = tag(fresh);
          } else {
            set_next(fresh, nullptr);
            expansion = expand(head, head_hash, fresh, h, at.shift);
            next = tag(expansion);
          }
        }
      } else {
        // Replace or remove cur: copy the chain before it (entries are immutable, T3) and
        // link the copies to what follows cur. A replacement goes to the head of the chain:
        // writing the same key again then copies nothing, and the other entries keep their
        // identity (compute's retry relies on that when f keeps writing a chain neighbour).
        entry* tail = nullptr;
        for (entry* e = head; e != cur; e = next_of(e)) {
          entry* c = new entry(e->key, value_of(e));  // in place: refreshed under the lock (V2)
          ++ncopies;
          if (tail != nullptr) {
            set_next(tail, c);
          } else {
            copies = c;
          }
          tail = c;
        }
        if (tail != nullptr) {  // with no copies, copies is what followed cur
          set_next(tail, next_of(cur));
        } else {
          copies = next_of(cur);
        }
        if (fresh != nullptr) {
          set_next(fresh, copies);
          next = tag(fresh);
        } else {
          next = tag(copies);
        }
      }
    } catch (...) {
      free_copies(copies, ncopies);
      free_expansion(expansion);
      throw;
    }

    indirect* i = at.node;
    i->mu.lock();
    if (i->dead.load(std::memory_order_relaxed) ||
        at.slot->load(std::memory_order_relaxed) != at.seen) {
      i->mu.unlock();
      free_copies(copies, ncopies);
      free_expansion(expansion);
      return commit::retry;
    }
    if constexpr (inline_values) {
      if (cur != nullptr) {
        entry* c = copies;
        i->freezing.store(freezing_bit(at), std::memory_order_relaxed);  // one chain at a time
        for (entry* e = head; e != cur; e = next_of(e), c = next_of(c)) {
          freeze_locked(e);
          c->value.store(e->value.load(std::memory_order_relaxed), std::memory_order_relaxed);
        }
        entry* const victim = const_cast<entry*>(cur);
        freeze_locked(victim);
        i->freezing.store(0, std::memory_order_relaxed);  // frozen now turns writers away
        if (must_equal != nullptr &&
            !same_bits(victim->value.load(std::memory_order_relaxed), *must_equal)) {
          for (entry* e = head; e != cur; e = next_of(e)) thaw_locked(e);
          thaw_locked(victim);
          i->mu.unlock();
          free_copies(copies, ncopies);
          return commit::changed;
        }
      }
    }
    at.slot->store(next, std::memory_order_release);
    if (next == 0 && at.shift != k_root_shift && i->empty_locked()) {
      prune_locked(i, h, at.shift);  // unlocks
    } else {
      i->mu.unlock();
    }
    // Step (5): cur and the chain entries before it are unreachable now (T5).
    if (cur != nullptr) {
      for (entry* e = head; e != cur; e = next_of(e)) retire_entry(e);
      retire_entry(const_cast<entry*>(cur));
    }
    return commit::done;
  }

  // Go's expand: new nodes below the slot at `shift` (which holds old_head) down to the
  // first level where the two hashes differ; that node holds the old chain and fresh. Nothing
  // is published here.
  indirect* expand(entry* old_head, std::uint64_t old_hash, entry* fresh, std::uint64_t h,
                   unsigned shift) {
    auto top = std::make_unique<indirect>();
    indirect* current = top.get();
    try {
      for (;;) {
        if (shift == 0) {
          // T2 broken: equal full hashes are chained, never expanded. Unreachable.
          std::terminate();
        }
        shift -= k_bits;
        const std::uint64_t oi = (old_hash >> shift) & k_mask;
        const std::uint64_t ni = (h >> shift) & k_mask;
        if (oi != ni) {
          current->children[oi].store(tag(old_head), std::memory_order_relaxed);
          current->children[ni].store(tag(fresh), std::memory_order_relaxed);
          return top.release();
        }
        auto* below = new indirect;
        current->children[oi].store(tag(below), std::memory_order_relaxed);
        current = below;
      }
    } catch (...) {
      free_expansion(top.release());
      throw;
    }
  }

  // Frees unpublished expansion nodes (not the entries they point to).
  static void free_expansion(indirect* i) noexcept {
    while (i != nullptr) {
      indirect* below = nullptr;
      for (slot_t& c : i->children) {
        const std::uintptr_t n = c.load(std::memory_order_relaxed);
        if (n != 0 && !is_entry(n)) below = as_indirect(n);
      }
      delete i;
      i = below;
    }
  }

  static void free_copies(entry* e, std::size_t n) noexcept {
    for (; n > 0; --n) {
      entry* next = next_of(e);
      delete e;
      e = next;
    }
  }

  // Go's pruning loop in LoadAndDelete: i (locked, not dead, not a root), whose slots are at
  // `shift`, has no child left. Unlinks it from its parent under both locks (T6: child first),
  // marks it dead (T4) and retires it, then goes on with the parent while that is left empty.
  // Unlocks everything. Room for the retires was reserved by the caller.
  void prune_locked(indirect* i, std::uint64_t h, unsigned shift) noexcept {
    while (shift != k_root_shift && i->empty_locked()) {
      indirect* parent = parent_of(i, h, shift);
      if (parent == nullptr) break;  // clear replaced i's tree: it marks i dead and frees it
      shift += k_bits;
      slot_t& link = parent->children[(h >> shift) & k_mask];
      parent->mu.lock();
      if (parent->dead.load(std::memory_order_relaxed) ||
          link.load(std::memory_order_relaxed) != tag(i)) {
        // clear owns parent's subtree, i included: it will mark i dead and free it.
        parent->mu.unlock();
        break;
      }
      i->dead.store(true, std::memory_order_relaxed);
      link.store(0, std::memory_order_release);
      i->mu.unlock();
      rcu::defer(i, &defer_delete<indirect>, sizeof(indirect));
      i = parent;
    }
    i->mu.unlock();
  }

  // The node whose slot at shift + 4 holds i (locked, not dead, slots at `shift`), found again
  // from the root by h: i's path never changes while it is linked (T1), and i stays linked while
  // we hold its lock, so the walk meets its parent unless clear has replaced the root since
  // (then nullptr). Lock-free loads inside the caller's read_guard.
  indirect* parent_of(const indirect* i, std::uint64_t h, unsigned shift) const noexcept {
    indirect* n = root_.load(std::memory_order_acquire);
    for (unsigned s = k_root_shift;; s -= k_bits) {
      const std::uintptr_t c = n->children[(h >> s) & k_mask].load(std::memory_order_acquire);
      if (s == shift + k_bits) return c == tag(const_cast<indirect*>(i)) ? n : nullptr;
      if (c == 0 || is_entry(c)) return nullptr;
      n = as_indirect(c);
    }
  }

  template <class T>
  static void defer_delete(void* p) noexcept {
    delete static_cast<T*>(p);
  }
  static void defer_destroy_tree(void* p) noexcept { destroy_tree(static_cast<indirect*>(p)); }
  static void retire_entry(entry* e) noexcept {
    rcu::defer(e, &defer_delete<entry>, sizeof(entry));
  }

  // clear's walk of the old tree: marks each node dead under its lock, so that no write or
  // pruner stores into it afterwards (T4), and counts the entries it holds; clear then defers
  // the whole frozen tree as one object. A pruner unlinks a node under its parent's lock before
  // marking it dead, so every node reached here through its parent is alive: nothing is freed
  // twice. Recursion depth is at most 16 (T2). Returns the number of entries; adds the nodes
  // to `nodes`.
  std::int64_t kill_tree(indirect* i, std::size_t& nodes) noexcept {
    i->mu.lock();
    i->dead.store(true, std::memory_order_relaxed);
    std::array<std::uintptr_t, k_children> kids;
    for (unsigned c = 0; c < k_children; ++c) {
      kids[c] = i->children[c].load(std::memory_order_relaxed);
    }
    i->mu.unlock();
    ++nodes;
    std::int64_t removed = 0;
    for (const std::uintptr_t n : kids) {
      if (n == 0) continue;
      if (is_entry(n)) {
        for (const entry* e = as_entry(n); e != nullptr; e = next_of(e)) ++removed;
      } else {
        removed += kill_tree(as_indirect(n), nodes);
      }
    }
    return removed;
  }

  static void destroy_tree(indirect* i) noexcept {
    for (slot_t& c : i->children) {
      const std::uintptr_t n = c.load(std::memory_order_relaxed);
      if (n == 0) continue;
      if (is_entry(n)) {
        for (entry* e = as_entry(n); e != nullptr;) {
          entry* next = next_of(e);
          delete e;
          e = next;
        }
      } else {
        destroy_tree(as_indirect(n));
      }
    }
    delete i;
  }

  // ---- walks ---------------------------------------------------------------------------------

  // Go's All: depth first, children in index order, each chain in order; stops when f returns
  // false. Returns false if stopped.
  template <class F>
  static bool walk(const indirect* i, F&& f) {
    for (const slot_t& c : i->children) {
      const std::uintptr_t n = c.load(std::memory_order_acquire);
      if (n == 0) continue;
      if (is_entry(n)) {
        for (const entry* e = as_entry(n); e != nullptr; e = next_of(e)) {
          if (!f(e)) return false;
        }
      } else if (!walk(as_indirect(n), f)) {
        return false;
      }
    }
    return true;
  }

  static void stats_walk(const indirect* i, std::size_t depth, TrieMapStats& s) noexcept {
    ++s.nodes;
    for (const slot_t& c : i->children) {
      const std::uintptr_t n = c.load(std::memory_order_acquire);
      if (n == 0) continue;
      if (is_entry(n)) {
        std::size_t chain = 0;
        for (const entry* e = as_entry(n); e != nullptr; e = next_of(e)) ++chain;
        s.entries += chain;
        s.chained += chain - 1;
        if (chain > s.longest_chain) s.longest_chain = chain;
        if (depth < s.depth.size()) s.depth[depth] += chain;
        if (depth > s.max_depth) s.max_depth = depth;
      } else {
        stats_walk(as_indirect(n), depth + 1, s);
      }
    }
  }

  // ---- counters (S1) -------------------------------------------------------------------------

  detail::trie_stripe& my_stripe() noexcept { return stripes_[detail::trie_stripe_index()]; }

  // A write that changed the number of keys by delta was published: count it and bump the
  // version (release, after the publication).
  void added(std::int64_t delta) noexcept {
    detail::trie_stripe& s = my_stripe();
    s.size.fetch_add(delta, std::memory_order_relaxed);
    s.version.fetch_add(1, std::memory_order_release);
  }
  void bump_version() noexcept { my_stripe().version.fetch_add(1, std::memory_order_release); }

  // ---- data ----------------------------------------------------------------------------------

  // T1: loaded (acquire) by every operation, stored (exchange) only by clear.
  alignas(64) std::atomic<indirect*> root_;
  [[no_unique_address]] Hash hash_{};
  [[no_unique_address]] Eq eq_{};
  std::array<detail::trie_stripe, detail::trie_stripes> stripes_{};
};

}  // namespace safemap
