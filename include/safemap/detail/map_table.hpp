// safemap/detail/map_table.hpp - the table behind safemap::Map: Go's bucket arrays, their
// segments and overflow pools, incremental growth, and the whole-table operations.
//
// Map (map.hpp) derives privately from map_table and adds the public API and the misuse checks
// (the writing flag is Map's, so this header is the same in checked and unchecked builds);
// everything here is reached only through Map. The iterator is detail/map_iterator.hpp.
//
// # Growth
// When the table holds more than 6.5 entries per bucket on average (Go's loadFactor 13/2,
// chosen in Go from its measurements of %overflow, bytes/entry and probes at each load), a
// new array of twice the buckets is started and the entries move there *incrementally*: each
// write that touches a bucket of the old array first evacuates it, plus one more in order
// (grow_work), so no single insert pays for rehashing the table. Until a bucket is evacuated,
// lookups and iteration read it in the old array. The new array is not written when it is
// allocated (its buckets are initialized as their old bucket is evacuated), so even the insert
// that starts a growth does O(1) work. When overflow buckets pile up (many deletes and
// inserts), a same-size growth compacts the chains.
//
// # Segments: no insert allocates or frees a whole array
// An array larger than seg_buckets buckets (2^14 for uint64 -> uint64, about 4 MiB) is cut into
// segments, each its own block, reached through a directory of one entry per segment (a lookup
// pays one load from it, an L1 hit). A growth allocates the new array's last segment, which
// holds the directory, and then the others one at a time; an old bucket evacuates once both
// of its destination segments exist and, where population applies, their pages are backed
// (populate_step: a segment is populated in bounded steps, one per write, before the next is
// allocated). Each old segment is
// retired once Go's nevacuate mark has passed all of its buckets (no lookup reads an old bucket
// below the mark), the rest of the old array when the growth ends, and retired blocks are freed one
// per write. So the memory a growing map holds falls as it evacuates, and no insert frees hundreds
// of MB at once (at 1e7 entries that cost one insert 20-37 ms of munmap). See "# Memory" below for
// the blocks.
//
// # Layout and overflow buckets
// An array keeps its buckets' metadata (8 tophash bytes and the overflow link, 16 bytes) in a
// dense array apart from the slots (detail/bucket.hpp), so a miss reads only metadata and a
// hit reads metadata plus the one slot whose tophash matched. Each array comes with a pool of
// overflow buckets (Go's nextOverflow: 2^(B-4) of them, in the array's block when it is one
// segment); when the pool runs out it refills in chunks that double up to a segment's size,
// so filling a map costs tens of allocator calls, not one per overflow bucket. An overflow
// bucket is never freed alone: it returns to its array's pool and goes with the array.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/detail/bucket.hpp"
#include "safemap/detail/config.hpp"
#include "safemap/detail/pages.hpp"
#include "safemap/hash.hpp"

namespace safemap::detail {

template <class H>
concept avalanching_hash = requires {
  typename H::is_avalanching;
};
template <class H>
concept reseedable = requires(H& h) {
  h.reseed();
};

// Go's loadFactorNum/loadFactorDen: grow when count > 6.5 * 2^B (and more than one bucket's
// worth). At 6.5 Go measured ~20% overflow buckets, ~10.8 bytes/entry of overhead and ~4
// probes per miss; lower wastes memory, higher lengthens chains.
inline constexpr std::size_t load_factor_num = 13;
inline constexpr std::size_t load_factor_den = 2;

constexpr bool over_load_factor(std::size_t count, unsigned B) noexcept {
  return count > bucket_cnt && count > load_factor_num * ((std::size_t{1} << B) / load_factor_den);
}

// Go's tooManyOverflowBuckets: about as many overflow buckets as buckets means the chains are
// mostly holes left by deletes; a same-size growth compacts them. Go caps the threshold at
// 2^15 only because its noverflow is a uint16 counted approximately (incremented with
// probability 1/2^(B-15) above B = 15); safemap counts exactly, so it keeps the uncapped
// threshold. With the cap and an exact count, every table past B = 17 (where ~21% of buckets
// overflow at load 6.5) grew same-size back to back: 11 of 30 growths to 1e7 entries, 77% of
// inserts made while growing, 62 bytes/entry (docs/benchmarks.md, problem 1).
constexpr bool too_many_overflow_buckets_for(std::size_t noverflow, std::size_t nbuckets) noexcept {
  return noverflow >= nbuckets;
}

constexpr unsigned log2_buckets_for(std::size_t hint) noexcept {
  unsigned B = 0;
  while (over_load_factor(hint, B)) ++B;
  return B;
}

// The table of a Map<K, V, Hash, Eq, Alloc>: its two bucket arrays (the old one only while
// growing), their pools, the retired blocks, the hasher, key_equal and allocator. Members are
// public because Map, which inherits privately, is the only way to reach them.
template <class K, class V, class Hash, class Eq, class Alloc>
class map_table {
 public:
  using value_type = std::pair<const K, V>;
  using size_type = std::size_t;
  using slot_type = value_type;
  using meta_type = bucket_meta<slot_type>;
  using group_type = slot_group<slot_type>;
  using overflow_type = overflow_bucket<slot_type>;
  using bucket_ref = detail::bucket_ref<slot_type>;
  // The unit of every block the map allocates (arrays, pool chunks): aligned for all of them.
  static constexpr std::size_t unit_align = alignof(overflow_type);
  struct alignas(unit_align) block_unit {
    unsigned char bytes[unit_align];
  };
  static_assert(sizeof(block_unit) >= 16 && alignof(overflow_type) >= alignof(group_type));
  using alloc_traits = std::allocator_traits<Alloc>;
  using bucket_allocator = typename alloc_traits::template rebind_alloc<block_unit>;
  using bucket_traits = std::allocator_traits<bucket_allocator>;

  // A segment of a bucket array: 2^seg_shift buckets (fewer in an array of one segment), their
  // metadata and slot groups in one block. An array's directory holds one entry per segment:
  // the addresses of its metadata and slot groups, each biased by the segment's first bucket
  // index (so bucket j's metadata is at metas + j * 16, without masking j first; unsigned
  // arithmetic, exact modulo 2^64). Which entries are valid is in the array's shape
  // (segment_present), not in the entries.
  struct segment {
    std::uintptr_t metas;
    std::uintptr_t groups;
  };
  // Segment size: the largest power of two of buckets that fits in about 4 MiB (2^14 buckets
  // for uint64 -> uint64). Freeing one costs about a third of a millisecond when it goes back
  // to the kernel; larger segments mean fewer allocator calls (each growth of a multi-segment
  // array allocates and frees one block per segment).
  static constexpr std::size_t segment_target_bytes = std::size_t{4} << 20;
  static constexpr unsigned seg_shift = [] {
    unsigned s = 0;
    while (s < 24 &&
           ((sizeof(meta_type) + sizeof(group_type)) << (s + 1)) <= segment_target_bytes) {
      ++s;
    }
    return s;
  }();
  static constexpr std::size_t seg_buckets = std::size_t{1} << seg_shift;
  static_assert(sizeof(segment) <= sizeof(block_unit));

  // ---- overflow buckets (Go's nextOverflow, extended) -----------------------------------------

  // The overflow buckets of one bucket array. An array of one segment holds preallocated
  // overflow buckets in its block (Go's makeBucketArray: 2^(B-4) of them) and gets more in
  // chunks, each twice the last up to a segment's size. A larger array gets chunks of
  // 2^(B-5) overflow buckets (at most a segment's worth), the first when it first needs one
  // (a copy or rebuild gets exactly what its chains need up front, see upfront_overflow):
  // a freshly grown array holds 3.25 entries per bucket and has almost no overflow, and it
  // ends its life (at 6.5) with about 2^B / 5, so doubling chunks would leave up to half of a
  // large last chunk unused. With 2^(B-4) and doubling, a map of 1e6 uint64 entries held a
  // 2.36 MB chunk for 4,285 overflow buckets (40.1 bytes per entry, 1.13x absl's); with
  // 2^(B-5) fixed it holds 1.18 MB (38.9 bytes, 1.09x), at the price of 89 allocator calls
  // to fill 1e6 entries instead of 77 (bench/growth_tail --no-tail). Either way filling a
  // table costs tens of allocator calls, not one per overflow bucket, and no chunk is larger
  // than a segment. Overflow buckets are never freed one by one: one that empties (an evacuated old
  // chain, a failed insert or relocation) goes on the free list for reuse, and all go back to
  // the allocator with their array (the chunks of an old array are retired when its growth
  // ends, see retire).
  struct overflow_pool {
    overflow_type* block_overflow = nullptr;  // preallocated in the array's block (one segment)
    std::size_t block_extra = 0;
    overflow_type* next = nullptr;  // [next, end): never used yet
    overflow_type* end = nullptr;
    meta_type* free = nullptr;  // returned overflow buckets, linked through overflow
    std::size_t nfree = 0;
    block_unit* chunks = nullptr;  // the chunks, newest first (block_header links them)
    std::size_t next_chunk = 0;    // overflow buckets in the next chunk
    std::size_t first_chunk = 0;   // next_chunk of a fresh (or reset) pool
    std::size_t chunk_cap = 0;     // the largest chunk it grows to

    std::size_t available() const noexcept { return nfree + static_cast<std::size_t>(end - next); }
  };
  static constexpr std::size_t min_overflow_chunk = 8;
  static constexpr std::size_t max_overflow_chunk = std::max(min_overflow_chunk, seg_buckets);
  // The first unit of a chunk (its overflow buckets follow), and of a retired block.
  struct block_header {
    block_unit* next;
    std::size_t units;
  };
  static_assert(sizeof(block_header) <= sizeof(block_unit));

  // The bookkeeping of one bucket array (its directory is dir_ or olddir_). The directory lives
  // at the start of the block of the array's last segment, which is allocated first and freed
  // last, so the directory outlives every segment it points to.
  struct array_shape {
    std::size_t nsegs = 0;       // 2^(B - seg_shift), or 1
    std::size_t last_units = 0;  // units of the last segment's block (directory included)
    std::size_t nallocated = 0;  // segments other than the last allocated so far (in order)
    std::size_t nretired = 0;    // old array: segments [0, nretired) retired
    bool interleaved = false;    // allocated in a doubling's X/Y order (allocation_order)
    overflow_pool pool;
  };

  // ---- hashing and shape ---------------------------------------------------------------------

  template <class Q>
  std::size_t hash_of(const Q& key) const {
    if constexpr (avalanching_hash<Hash>) {
      return static_cast<std::size_t>(hash_(key));
    } else {
      return static_cast<std::size_t>(post_mix(static_cast<std::uint64_t>(hash_(key))));
    }
  }

  // Relocation may move entries with their move constructors (one pass, nothing can throw)
  // only when moves and the hasher are noexcept; otherwise copy first, destroy after.
  static constexpr bool nothrow_relocate =
      std::is_nothrow_move_constructible_v<K> &&
      std::is_nothrow_move_constructible_v<V>&& noexcept(
          std::declval<const Hash&>()(std::declval<const K&>()));

  std::size_t nbuckets() const noexcept { return mask_ + 1; }
  // Stored rather than computed from B_: a lookup reads it with its AND (computing it took
  // four instructions, and a checked lookup recomputes it on every call, since Map's misuse
  // checks keep GCC from hoisting anything from the header out of the caller's loop).
  std::size_t bucket_mask() const noexcept { return mask_; }
  // Old array size: half the new one for a doubling growth, the same for a same-size growth.
  std::size_t noldbuckets() const noexcept {
    return same_size_grow_ ? nbuckets() : nbuckets() >> 1;
  }
  std::size_t old_bucket_mask() const noexcept { return same_size_grow_ ? mask_ : mask_ >> 1; }
  // Sets B_ and what is derived from it (invariant 6).
  void set_log2_buckets(unsigned B) noexcept {
    B_ = static_cast<std::uint8_t>(B);
    mask_ = (std::size_t{1} << B) - 1;
    grow_at_ = std::max<std::size_t>(bucket_cnt,
                                     load_factor_num * ((std::size_t{1} << B) / load_factor_den));
  }
  // Whether an insert of a new key must grow the table first: over the load factor with one
  // more entry (over_load_factor(count_ + 1, B_)), or as many overflow buckets as buckets
  // (too_many_overflow_buckets_for). Two compares with values kept beside B_: computed from B_,
  // the load-factor test took ~10 instructions on every insert (cachegrind).
  bool insert_needs_growth() const noexcept {
    return count_ >= grow_at_ || too_many_overflow_buckets_for(noverflow_, nbuckets());
  }

  // Bucket j of the current array, and bucket k of the old one: one load from the directory
  // (a few hundred bytes at most, an L1 hit), whose biased addresses take j itself. In an array
  // of one segment j < 2^B <= seg_buckets, so the shift gives entry 0.
  SAFEMAP_ALWAYS_INLINE static bucket_ref at(const segment* dir, std::size_t j) noexcept {
    const segment& sg = dir[j >> seg_shift];
    return bucket_ref(reinterpret_cast<meta_type*>(sg.metas + j * sizeof(meta_type)),
                      reinterpret_cast<group_type*>(sg.groups + j * sizeof(group_type)));
  }
  SAFEMAP_ALWAYS_INLINE bucket_ref new_at(std::size_t j) const noexcept { return at(dir_, j); }
  SAFEMAP_ALWAYS_INLINE bucket_ref old_at(std::size_t k) const noexcept { return at(olddir_, k); }
  // Whether old bucket k is evacuated. Below nevacuate_ every bucket is, and its segment may be
  // released already: it is not read.
  SAFEMAP_ALWAYS_INLINE bool old_evacuated(std::size_t k) const noexcept {
    return k < nevacuate_ || old_at(k)->evacuated();
  }

  // The bucket whose chain holds hash's key: the old one while it is not evacuated. Forced
  // inline: with the directory GCC otherwise leaves it a call on every lookup.
  SAFEMAP_ALWAYS_INLINE bucket_ref bucket_for(std::size_t hash,
                                              bool* in_old = nullptr) const noexcept {
    if (olddir_ != nullptr) {
      const std::size_t k = hash & old_bucket_mask();
      if (!old_evacuated(k)) {
        if (in_old) *in_old = true;
        return old_at(k);
      }
    }
    if (in_old) *in_old = false;
    return new_at(hash & bucket_mask());
  }

  // Whether the next write has table work to do besides its own key: an evacuation to advance
  // (grow_work) or a retired block to free (release_one_retired). Go's mapdelete does that
  // work even for an absent key, so a caller that would skip a no-op delete asks first.
  bool has_write_work() const noexcept { return olddir_ != nullptr || retired_ != nullptr; }

  // Starts the cache misses of a write before Map's misuse check takes its writing bit.
  //
  // Why: a write's two misses (metadata, then the slot the tophash match picks) are dependent,
  // and the writing bit is taken with an atomic exchange (Map::write_scope), which on x86 is a
  // full barrier: no later load runs before it, and it waits until the stores before it have
  // drained, which in a loop means until the previous write's misses were served. So out of
  // cache every write ran its two misses after the previous write's, in series. Prefetches of
  // the bucket's metadata and slot lines, issued before the exchange, are not held back by it
  // (Intel SDM, PREFETCHh) and overlap the previous write; the slot line's miss no longer
  // waits for the metadata's either, which helps the compiled-out build too.
  // bench/misuse_overhead_bench at N = 1e6 (a temporary edit of its N; one binary, checked and
  // compiled-out Map side by side, medians of 3, two rounds, load 0.5-0.8), ms per 1e6 ops:
  //   erase  checked 65.4 / 68.5 -> 50.3 / 52.8, compiled out 56.9 / 53.6 -> 50.7 / 52.2
  //   insert checked 285.6 / 294.8 -> 258.7 / 265.8, compiled out 270.8 / 262.4 -> 253.3 / 254.5
  // (the metadata line alone: erase 59.0 / 68.8, insert 262.9 / 290.7: the slots are the gain).
  // An erase of an absent key never reads the slots, and prefetching them made it ~1.6x slower
  // (a review's stand-alone loop, 1e6 keys: 16-19 -> 25-30 ms per 1e6), so an erase prefetches
  // them only while the previous erase found its key (erase_missed_). Lookups take no barrier
  // and get no prefetch (a miss would pay for slot lines it never reads).
  //
  // Only when the array is not growing (every segment is allocated then, so the address is
  // one the table owns) and when may_prefetch is true: Map passes "no write in progress" (its
  // writing bit, one relaxed load). These reads of the header and of one directory entry come
  // before this call holds the writing bit, so a write may begin while they run: it is still
  // reported by the exchange before this call changes anything. What the window does allow,
  // in a program that already writes from two threads at once, is a read of a directory that
  // the other write has just freed (it moved, cleared or reserved the map, or ended a growth
  // and released the old array): a read that may fault if the block was unmapped, like a
  // lookup racing a growth. The sanitizer builds skip the hint, whose only effect is timing:
  // TSan would report the window's reads as races and ASan that freed read in the tests that
  // make two writers overlap on purpose. (A UBSan-only build with the hint ran the Map and
  // misuse tests clean.)
  template <bool Erase = false>
  SAFEMAP_ALWAYS_INLINE void prefetch_for_write(std::size_t hash,
                                                bool may_prefetch) const noexcept {
#if !SAFEMAP_TSAN && !SAFEMAP_ASAN
    if (!may_prefetch || dir_ == nullptr || olddir_ != nullptr) return;
    const bucket_ref b = new_at(hash & bucket_mask());
    __builtin_prefetch(b.m, 1);
    if (Erase && erase_missed_) return;
    // Blocks are 16-byte aligned, so a group of 128 bytes (uint64_t -> uint64_t) may span
    // three lines: its first and last bytes and the one between cover them. A larger group
    // gets its first two lines, where inserts go first.
    const char* const slots = reinterpret_cast<const char*>(b.g);
    __builtin_prefetch(slots, 1);
    __builtin_prefetch(slots + 64, 1);
    if constexpr (sizeof(group_type) <= 128) __builtin_prefetch(slots + sizeof(group_type) - 1, 1);
#else
    (void)hash;
    (void)may_prefetch;
#endif
  }

  // ---- lookup ----------------------------------------------------------------------------------

  template <class Q>
  slot_type* find_slot_unchecked(const Q& key) const {
    if (count_ == 0) return nullptr;
    const std::size_t hash = hash_of(key);
    return find_in_chain(key, tophash_probe(hash), bucket_for(hash));
  }

  // The probe of a lookup from the first bucket of key's chain. Only the metadata is read
  // until a tophash matches: a miss touches no slot.
  template <class Q>
  SAFEMAP_ALWAYS_INLINE slot_type* find_in_chain(const Q& key, const tophash_probe& top,
                                                 bucket_ref b) const {
    for (;;) {
      const tophash_group g = b->group();
      for (slot_mask m = g.match(top); m; m.clear_lowest()) {
        slot_type* s = b.slot(m.lowest());
        if (eq_(key, s->first)) return s;
      }
      if (g.has_empty_rest()) return nullptr;
      meta_type* const o = b->overflow;
      if (o == nullptr) return nullptr;
      b = bucket_ref(overflow_type::of(o));
    }
  }

  // ---- batched lookup ------------------------------------------------------------------------

  // find_slot_unchecked of every key, found(i, slot or nullptr) in key order, with the cache
  // misses of find_batch lookups overlapped. One lookup out of cache is two dependent misses
  // (the bucket's metadata, then the slot its tophash picks), and a loop of lookups keeps only
  // a few in flight: everything before the first miss of the next lookup (its hash, its bucket
  // address) waits in the core's window behind the last one's compares. Here each group is
  // hashed and its metadata lines prefetched first, then their tophashes matched and the slot
  // lines they pick prefetched, then probed. The group is large because this VM's misses are
  // long (a TLB miss under nested paging walks two page tables): 1e6 uint64 keys, ns per hit
  // against a loop of find's 47-62, groups of 4 / 8 / 16 / 32 / 64 / 128 / 256: 41-45 / 39-45
  // / 23-24 / 18 / 14-17 / 15 / 16; at 1e5 (in cache) 16-128 all ran 7.4-8.6 against 8.4-9.5
  // (a stand-alone loop, docs/benchmarks.md, "Eleventh pass"). Two arrays of 64 on the stack:
  // 1.5 KiB. The hasher may throw: found has then been called for the keys before the
  // throwing key's group.
  static constexpr std::size_t find_batch = 64;

  // key_at(i) is the i-th key (a const reference, or a key type's value), i < n.
  template <class KeyAt, class Found>
  void find_many_unchecked(std::size_t n, KeyAt&& key_at, Found&& found) const {
    if (count_ == 0) {
      for (std::size_t i = 0; i < n; ++i) found(i, static_cast<slot_type*>(nullptr));
      return;
    }
    std::size_t hashes[find_batch];
    bucket_ref first[find_batch];
    for (std::size_t base = 0; base < n; base += find_batch) {
      const std::size_t len = std::min(find_batch, n - base);
      for (std::size_t i = 0; i < len; ++i) {
        hashes[i] = hash_of(key_at(base + i));
        prefetch_first_bucket(hashes[i]);
      }
      for (std::size_t i = 0; i < len; ++i) {
        first[i] = bucket_for(hashes[i]);
        const slot_mask m = first[i]->group().match(tophash_probe(hashes[i]));
        if (m) __builtin_prefetch(first[i].slot(m.lowest()));
      }
      for (std::size_t i = 0; i < len; ++i) {
        found(base + i, find_in_chain(key_at(base + i), tophash_probe(hashes[i]), first[i]));
      }
    }
  }

  // Starts the miss on the metadata line bucket_for(hash) will read, without reading the old
  // array's evacuation mark (the line itself).
  SAFEMAP_ALWAYS_INLINE void prefetch_first_bucket(std::size_t hash) const noexcept {
    if (olddir_ != nullptr) {
      const std::size_t k = hash & old_bucket_mask();
      if (k >= nevacuate_) {
        __builtin_prefetch(old_at(k).m);
        return;
      }
    }
    __builtin_prefetch(new_at(hash & bucket_mask()).m);
  }

  // ---- insert (Go's mapassign) -------------------------------------------------------------

  // The scope of an unchecked write: nothing to take, and never a write in progress.
  struct no_scope {
    explicit no_scope(map_table&) noexcept {}
    static bool idle(const map_table&) noexcept { return true; }
  };

  // Finds key; when absent calls construct(raw slot memory) to build the entry there.
  // construct may throw: nothing is linked or counted before it returns. WriteScope is Map's
  // misuse check (its writing bit, held for the write, built from this table), taken once the
  // key is hashed, unless checked is false (a caller whose lock already excludes every other
  // access: detail::map_access), which takes no scope at all. Map passes it in rather than
  // wrapping this call, so an insert compiles to what it did when all of this was in map.hpp
  // (cachegrind: the same instructions per insert).
  template <class WriteScope, bool checked = true, class Q, class Construct>
  std::pair<slot_type*, bool> emplace_with(const Q& key, Construct&& construct) {
    using scope = std::conditional_t<checked, WriteScope, no_scope>;
    const std::size_t hash = hash_of(key);  // before the writing bit: the hasher may throw
    prefetch_for_write(hash, scope::idle(*this));
    scope w(*this);
    if (SAFEMAP_UNLIKELY(retired_ != nullptr)) release_one_retired();
    if (dir_ == nullptr) init_table(0);
    const tophash_probe top(hash);
    bool grew = false;  // this write allocated the new array's first block already
  again:
    if (olddir_ != nullptr) grow_work(hash & bucket_mask(), !grew);
    bool in_old = false;
    const bucket_ref first = bucket_for(hash, &in_old);
    bucket_ref insert_b;
    unsigned insert_i = 0;
    bucket_ref last = first;
    for (bucket_ref b = first; b; b = b.next()) {
      last = b;
      const tophash_group g = b->group();
      for (slot_mask m = g.match(top); m; m.clear_lowest()) {
        slot_type* s = b.slot(m.lowest());
        if (eq_(key, s->first)) return {s, false};
      }
      if (!insert_b) {
        if (const slot_mask e = g.match_empty()) {
          insert_b = b;
          insert_i = e.lowest();
        }
      }
      if (g.has_empty_rest()) break;
    }

    // Not found. Start growing if the table is overloaded and nothing pins it, then retry
    // so the key lands in the new array (Go: "growing the table invalidates everything").
    if (insert_needs_growth() && olddir_ == nullptr &&
        iterators_.load(std::memory_order_relaxed) == 0) {
      hash_grow();
      grew = true;
      goto again;
    }

    if (insert_b) {
      construct(insert_b.raw_slot(insert_i));
      insert_b->tophash[insert_i] = top.top();
    } else {
      // All full: chain a new overflow bucket from the pool of the array the chain is in,
      // linked only once the entry is built.
      overflow_pool& pool = in_old ? old_.pool : cur_.pool;
      reserve_overflow(pool, 1);
      const bucket_ref ov = take_overflow(pool);
      try {
        construct(ov.raw_slot(0));
      } catch (...) {
        give_back(pool, ov.m);
        throw;
      }
      ov->tophash[0] = top.top();
      last->overflow = ov.m;
      ++(in_old ? old_noverflow_ : noverflow_);
      insert_b = ov;
      insert_i = 0;
    }
    ++count_;
    return {insert_b.slot(insert_i), true};
  }

  // Removes key; returns 1, or 0 when it is absent. WriteScope and checked as for emplace_with.
  // take(V&) runs on the entry's value just before the entry is destroyed (to move it out: one hash
  // and one probe for a load-and-delete); if it throws, nothing has changed. A take that returns
  // bool decides: false keeps the entry and the call returns 0 (a compare-and-delete: one hash
  // and one probe instead of a find and an erase).
  struct no_take {
    void operator()(V&) const noexcept {}
  };
  template <class WriteScope, bool checked = true, class Q, class Take = no_take>
  size_type erase_with(const Q& key, Take&& take = Take{}) {
    using scope = std::conditional_t<checked, WriteScope, no_scope>;
    const std::size_t hash = hash_of(key);  // before the writing bit: the hasher may throw
    prefetch_for_write<true>(hash, scope::idle(*this));
    scope w(*this);
    if (SAFEMAP_UNLIKELY(retired_ != nullptr)) release_one_retired();
    if (count_ == 0) return erased(false);
    if (olddir_ != nullptr) grow_work(hash & bucket_mask(), true);
    const tophash_probe top(hash);
    const bucket_ref first = bucket_for(hash);
    for (bucket_ref b = first; b; b = b.next()) {
      const tophash_group g = b->group();
      for (slot_mask m = g.match(top); m; m.clear_lowest()) {
        const unsigned i = m.lowest();
        if (!eq_(key, b.slot(i)->first)) continue;
        if constexpr (std::is_same_v<std::invoke_result_t<Take&, V&>, bool>) {
          if (!take(b.slot(i)->second)) {
            erased(true);  // the key was there (its slots were read): keep prefetching them
            return 0;
          }
        } else {
          take(b.slot(i)->second);
        }
        std::destroy_at(b.slot(i));
        b->tophash[i] = empty_one;
        mark_empty_rest(first.m, b.m, i);
        if (--count_ == 0) reseed();  // Go: a fresh seed whenever the map empties
        return erased(true);
      }
      if (g.has_empty_rest()) break;
    }
    return erased(false);
  }

  // An erase's result, remembered for the next erase's prefetch (prefetch_for_write): stored
  // only when it flips, so a run of one outcome does not write the header line again.
  size_type erased(bool found) noexcept {
    if (erase_missed_ == found) erase_missed_ = !found;
    return found ? 1 : 0;
  }

  // Slot i of b (in the chain starting at first) was just emptied. If the chain now ends in
  // a run of empty_one slots, turn them into empty_rest so probes stop early (Go's logic).
  static void mark_empty_rest(meta_type* first, meta_type* b, unsigned i) noexcept {
    if (i == bucket_cnt - 1) {
      if (b->overflow != nullptr && b->overflow->tophash[0] != empty_rest) return;
    } else if (b->tophash[i + 1] != empty_rest) {
      return;
    }
    for (;;) {
      b->tophash[i] = empty_rest;
      if (i == 0) {
        if (b == first) break;
        meta_type* c = b;
        for (b = first; b->overflow != c; b = b->overflow) {}
        i = bucket_cnt - 1;
      } else {
        --i;
      }
      if (b->tophash[i] != empty_one) break;
    }
  }

  void reseed() noexcept {
    if constexpr (reseedable<Hash>) hash_.reseed();
  }

  // ---- growth (Go's hashGrow, growWork, evacuate, advanceEvacuationMark) -------------------

  // hash_grow, release_one_retired and allocate_full_array are the cold paths of an insert and
  // stay out of line: GCC inlined them into emplace_with once the table moved out of map.hpp,
  // and the larger emplace_with was then no longer inlined into its caller's loop (cachegrind,
  // bench/map_bench insert/u64: +30 instructions per insert).
  SAFEMAP_NOINLINE void hash_grow() {
    const bool bigger = count_ >= grow_at_;  // over_load_factor(count_ + 1, B_)
    // Only the new array's last segment is allocated here (it holds the directory); the others
    // come one per later write (allocate_next_segment). None is written when allocated: each
    // bucket is initialized when its old bucket is evacuated, each pool bucket when it is
    // taken, so this step is O(1) however large the table.
    const unsigned newB = B_ + (bigger ? 1u : 0u);
    array_shape na;
    segment* const nd = allocate_last_segment(newB, block_overflow_for(newB), na);
    na.interleaved = bigger;
    start_populating(nd, na.last_units);
    old_ = cur_;
    olddir_ = dir_;
    cur_ = na;
    dir_ = nd;
    same_size_grow_ = !bigger;
    set_log2_buckets(newB);
    nevacuate_ = 0;
    evac_scan_ = 0;
    evacuated_ = 0;
    old_noverflow_ = noverflow_;
    noverflow_ = 0;
  }

  // Bounded work per write: at most one new segment allocated or one population step, then
  // the bucket about to be used evacuated, plus the next one in order, so the growth finishes
  // within noldbuckets writes (about 0.7 x noldbuckets: the bucket a write touches is often
  // evacuated already; a few percent more with the population, see populate_step_bytes) and
  // the new array never overloads.
  //
  // Evacuation is the table's own housekeeping, not part of the write that happens to do it:
  // when it fails (a copy or the hasher throws, or memory runs out) the old bucket is left
  // whole (relocate_chain's guarantee), the exception is dropped and the write goes on in the
  // old bucket, where lookups still find its keys. So one entry whose copy always throws
  // cannot make the map unwritable: its bucket stays unevacuated, and while it blocks
  // nevacuate_ the growth works on past it (evac_scan_), retrying it once per pass over the
  // old array. The growth ends once that bucket finally evacuates (say, once the entry is
  // erased). A bucket whose destination segments are not allocated yet waits the same way.
  void grow_work(std::size_t bucket, bool may_allocate) {
    if (may_allocate) {
      if (pop_next_ != pop_end_) {
        populate_step();
      } else if (cur_.nallocated + 1 < cur_.nsegs) {
        allocate_next_segment();
      }
    }
    if (iterators_.load(std::memory_order_relaxed) != 0) return;  // nothing moves under an iterator
    try_evacuate(bucket & old_bucket_mask());
    if (olddir_ == nullptr) return;
    if (!segments_ready(nevacuate_)) return;  // the allocation has not reached it yet
    if (evac_scan_ != 0 && evac_scan_ <= nevacuate_) evac_scan_ = 0;  // the mark passed it
    if (evac_scan_ == 0) {
      if (try_evacuate(nevacuate_)) return;
      evac_scan_ = nevacuate_ + 1;  // nevacuate_ is stuck: work on past it
    }
    // Bounded like advance_evacuation_mark's scan, so no write pays for a long run.
    const std::size_t nold = noldbuckets();
    const std::size_t stop = std::min(evac_scan_ + 1024, nold);
    while (evac_scan_ != stop && old_evacuated(evac_scan_)) ++evac_scan_;
    if (evac_scan_ == nold) {
      evac_scan_ = 0;  // a whole pass done: the next write retries nevacuate_
    } else if (evac_scan_ != stop) {
      try_evacuate(evac_scan_++);
    }
  }

  // The new array's segments other than the last are allocated in this order, one per write,
  // so that the in-order evacuation finds both of its destinations first: for a doubling,
  // X segments and Y segments (X + half) alternate.
  std::size_t allocation_order(std::size_t t) const noexcept {
    if (!cur_.interleaved) return t;
    return (t & 1) != 0 ? cur_.nsegs / 2 + (t >> 1) : t >> 1;
  }
  // Whether segment i of an array is allocated and not retired: the last always is; others
  // are allocated in allocation_order and retired from the first.
  static bool segment_present(const array_shape& a, std::size_t i) noexcept {
    if (i + 1 == a.nsegs) return true;
    if (i < a.nretired) return false;
    const std::size_t half = a.nsegs / 2;
    const std::size_t t = !a.interleaved ? i : i < half ? 2 * i : 2 * (i - half) + 1;
    return t < a.nallocated;
  }
  void allocate_next_segment() noexcept {
    try {
      const std::size_t i = allocation_order(cur_.nallocated);
      allocate_segment(dir_, i);
      ++cur_.nallocated;
      start_populating(block_of(dir_, i), segment_units);
    } catch (...) {
      // Out of memory: a later write retries; until then the buckets waiting for this
      // segment stay in the old array, where writes and lookups still find them.
    }
  }
  // Whether the new segments that old bucket k evacuates into (X, and Y for a doubling) exist
  // and are populated.
  bool segments_ready(std::size_t k) const noexcept {
    if (!segment_ready(k >> seg_shift)) return false;
    return same_size_grow_ || segment_ready((k + noldbuckets()) >> seg_shift);
  }
  bool segment_ready(std::size_t i) const noexcept {
    return segment_present(cur_, i) && (pop_next_ == pop_end_ || i != populating_segment());
  }

  // A growth's new segments are populated and touched (detail/pages.hpp) before any bucket
  // evacuates into them, populate_step_bytes per write, one segment at a time: the next segment
  // is allocated once this one is done. Evacuation skips the buckets whose destinations are
  // not ready, as it does for segments not yet allocated; those keys stay in the old array
  // meanwhile. Ready at once: a block too small to be worth it, one that is resident already
  // (recycled by the allocator: mostly_fresh), a kernel that cannot populate, and tables whose
  // slot groups are larger than a page (entries over 512 bytes), where most of a fresh
  // array's pages hold only empty slots that no write would touch: populating them would
  // raise the memory in use (a review measured 80 -> 107 MB resident for 4 KiB values right
  // after a growth) and make each step dozens of pages.
  //
  // The step: 8 buckets' worth of the new array, in whole pages (one 4 KiB page, 28 buckets,
  // for uint64 -> uint64: ~7 µs on the bench machine; 8 pages for 488-byte entries). A
  // doubling evacuates two old buckets per write at most, four new ones; 8 per write keeps the
  // population ahead of that pace. It starts behind: the last segment, then the first X and Y
  // segments, are populated before the first in-order evacuation (~1,700 writes for uint64).
  // A review measured the last growth to 1e7 uint64 entries at 1.43-1.53 x noldbuckets/2
  // writes with the population (16 buckets a step) against 1.39 x without.
  static constexpr std::size_t populate_step_bytes = 8 * (sizeof(meta_type) + sizeof(group_type));
  static constexpr bool populate_segments = sizeof(group_type) <= 4096;
  // The segment being populated is always the one allocated last: the last segment (it comes
  // with hash_grow), then each in allocation_order.
  void start_populating(void* block, std::size_t units) noexcept {
    const std::size_t bytes = units * sizeof(block_unit);
    if (!populate_segments || !worth_populating(block, bytes)) return;
    pop_next_ = static_cast<unsigned char*>(block);
    pop_end_ = pop_next_ + bytes;
  }
  std::size_t populating_segment() const noexcept {
    return cur_.nallocated == 0 ? cur_.nsegs - 1 : allocation_order(cur_.nallocated - 1);
  }
  void populate_step() noexcept {
    // Up to a page boundary, so that no page is populated twice.
    const std::size_t page = page_size();
    const auto at = reinterpret_cast<std::uintptr_t>(pop_next_);
    const std::size_t n = std::min(static_cast<std::size_t>(pop_end_ - pop_next_),
                                   ((at + populate_step_bytes + page - 1) & ~(page - 1)) - at);
    // A failed call (no kernel support, no memory to be had) ends the population: the
    // evacuation's own writes fault the rest in, as they would without it.
    pop_next_ = populate_for_write(pop_next_, n, /*touch=*/true) ? pop_next_ + n : pop_end_;
  }
  void stop_populating() noexcept {
    pop_next_ = pop_end_ = nullptr;
  }

  // evacuate(), with a failure (or destination segments not allocated yet) left for a later
  // write to retry. Returns whether old bucket k is evacuated now.
  bool try_evacuate(std::size_t k) noexcept {
    if (!segments_ready(k)) return false;
    try {
      evacuate(k);
      return true;
    } catch (...) {
      return false;
    }
  }

  // Where the entries of one old bucket go: a chain in the new array, filled in order.
  struct evac_dest {
    bucket_ref b;
    unsigned i;
  };

  // Appends into d's chain and returns the raw slot; tophash is set by the caller after
  // construction succeeds. Takes overflow buckets from the current array's pool: it cannot
  // throw when the caller made them available first (reserve_overflow), as relocate_chain does.
  void* dest_slot(evac_dest& d) {
    if (d.i == bucket_cnt) {
      reserve_overflow(cur_.pool, 1);
      const bucket_ref ov = take_overflow(cur_.pool);
      d.b->overflow = ov.m;
      ++noverflow_;
      d.b = ov;
      d.i = 0;
    }
    return d.b.raw_slot(d.i);
  }

  // Precondition: segments_ready(oldbucket).
  void evacuate(std::size_t oldbucket) {
    const std::size_t newbit = noldbuckets();
    if (!old_evacuated(oldbucket)) {
      const bucket_ref ob = old_at(oldbucket);
      // X is the bucket with the same index in the new array; Y (doubling only) is X+newbit.
      evac_dest dst[2] = {{new_at(oldbucket), 0}, {bucket_ref(), 0}};
      dst[0].b->init();
      if (!same_size_grow_) {
        dst[1].b = new_at(oldbucket + newbit);
        dst[1].b->init();
      }
      relocate_chain(ob, dst, newbit);
      // The old chain's overflow buckets go back to the old array's pool (reused by inserts
      // into old buckets not evacuated yet, retired with the old array).
      old_noverflow_ -= unlink_overflow(ob, &old_.pool);
      ++evacuated_;
    }
    if (oldbucket == nevacuate_) advance_evacuation_mark(newbit);
  }

  // Moves (or, when that could throw, copies and then destroys) every entry of ob's chain into
  // the X/Y destinations, and marks ob's tophash bytes evacuated_x/y/empty. Strong guarantee:
  // everything that can fail (allocating destination overflow buckets, hashing, copying)
  // happens before the first entry leaves ob, or is undone.
  void relocate_chain(bucket_ref ob, evac_dest (&dst)[2], std::size_t newbit) {
    auto target = [&](const slot_type& s) -> unsigned {
      if (same_size_grow_) return 0;
      return (hash_of(s.first) & newbit) != 0 ? 1 : 0;
    };
    // Overflow buckets the destinations may need, made available in the new array's pool up
    // front (at most one chunk allocation, before anything moves). With x + y = n entries split
    // over X and Y, (ceil(x/8) - 1) + (ceil(y/8) - 1) <= ceil(n/8) - 1 = (n - 1) / 8, so that
    // many suffice for both. Usually none (n <= 8).
    std::size_t n = 0;
    for_each_full_slot(ob, [&](bucket_ref, unsigned) { ++n; });
    reserve_overflow(cur_.pool, n > bucket_cnt ? (n - 1) / bucket_cnt : 0);
    if constexpr (move_relocation) {
      // A hasher that may throw hashes everything before anything moves.
      std::vector<std::uint8_t> targets;
      if constexpr (!noexcept(std::declval<const Hash&>()(std::declval<const K&>()))) {
        if (!same_size_grow_) {
          targets.reserve(n);
          for_each_full_slot(ob, [&](bucket_ref b, unsigned i) {
            targets.push_back(static_cast<std::uint8_t>(target(*b.slot(i))));
          });
        }
      }
      std::size_t k = 0;
      for_each_slot(ob, [&](bucket_ref b, unsigned i) {
        const std::uint8_t th = b->tophash[i];
        if (is_empty(th)) {
          b->tophash[i] = evacuated_empty;
          return;
        }
        slot_type* s = b.slot(i);
        const unsigned t = targets.empty() ? target(*s) : targets[k++];
        evac_dest& d = dst[t];
        relocate_slot(s, dest_slot(d));
        d.b->tophash[d.i++] = th;
        b->tophash[i] = static_cast<std::uint8_t>(evacuated_x + t);
      });
    } else {
      // Copy everything first; on an exception destroy the copies and leave ob as it was.
      const bucket_ref heads[2] = {dst[0].b, dst[1].b};
      std::uint8_t marks[bucket_cnt];  // ob's markers, written once all copies exist
      std::fill(std::begin(marks), std::end(marks), evacuated_empty);
      try {
        for_each_full_slot(ob, [&](bucket_ref b, unsigned i) {
          const slot_type& s = *b.slot(i);
          const unsigned t = target(s);
          evac_dest& d = dst[t];
          ::new (dest_slot(d)) slot_type(s);
          d.b->tophash[d.i++] = b->tophash[i];
          if (b == ob) marks[i] = static_cast<std::uint8_t>(evacuated_x + t);
        });
      } catch (...) {
        for (const bucket_ref h : heads) {
          if (h) noverflow_ -= destroy_chain(h, &cur_.pool);
        }
        throw;
      }
      for_each_full_slot(ob, [](bucket_ref b, unsigned i) { std::destroy_at(b.slot(i)); });
      std::memcpy(ob->tophash, marks, sizeof marks);
    }
  }

  // Relocation moves entries when nothing can throw, and also when entries cannot be copied
  // (move-only types): a move constructor that throws during growth then terminates the
  // program (relocate_slot is noexcept) — give move-only K and V noexcept moves.
  static constexpr bool move_relocation =
      nothrow_relocate || !std::is_copy_constructible_v<slot_type>;

  static void relocate_slot(slot_type* src, void* dst) noexcept {
    // The key is a const member of the pair; moving from it is what every flat map does to
    // relocate (the source is destroyed right after and never read again).
    ::new (dst) slot_type(std::move(const_cast<K&>(src->first)), std::move(src->second));
    std::destroy_at(src);
  }

  void advance_evacuation_mark(std::size_t newbit) noexcept {
    const std::size_t from = nevacuate_;
    ++nevacuate_;
    // Go bounds the scan to keep this O(1): evacuated buckets beyond it are found later.
    const std::size_t stop = std::min(nevacuate_ + 1024, newbit);
    while (nevacuate_ != stop && old_at(nevacuate_)->evacuated()) ++nevacuate_;
    if (nevacuate_ == newbit) {
      // Every old bucket is evacuated: what is left of the old array (its last segment, with the
      // directory, and its pool) is retired.
      retire_array(olddir_, old_);
      same_size_grow_ = false;
      old_noverflow_ = 0;
      evac_scan_ = 0;
      return;
    }
    // The mark passed these segments whole: no lookup reads them again (old_evacuated).
    for (std::size_t i = from >> seg_shift; i < nevacuate_ >> seg_shift; ++i) retire_segment(i);
  }

  // ---- whole-table operations --------------------------------------------------------------

  // Rebuilds into a fresh, fully initialized array of 2^newB buckets (reserve). Not
  // incremental: an explicit reserve pays for it on purpose.
  void rebuild(unsigned newB) {
    const size_type count = count_;
    if constexpr (move_relocation) {
      const built nb =
          build_array(*this, newB, [](slot_type* s, void* p) noexcept { relocate_slot(s, p); });
      free_tables_without_destroying();
      adopt(nb, newB, count);
    } else {
      const built nb = build_array(
          *this, newB, [](slot_type* s, void* p) { ::new (p) slot_type(std::as_const(*s)); });
      destroy_tables();
      adopt(nb, newB, count);
    }
  }

  // A fresh, fully initialized array (with its pool) and the overflow buckets chained to it.
  struct built {
    segment* dir;
    array_shape shape;
    std::size_t noverflow;
  };

  // Builds an array of 2^newB buckets holding every entry of src (this map or another, with
  // the same hasher and seed as this one): put(slot, raw memory) moves or copies one entry.
  // Everything that can fail happens before the first entry is put: each entry is hashed
  // once, up front, and the puts reuse those hashes, so a hasher that throws (or answers
  // differently the second time) cannot stop a relocation of move-only entries halfway;
  // the array and every overflow bucket the chains need are allocated up front too. A put
  // that throws (a copy) destroys what was built and leaves src as it was.
  template <class Src, class Put>
  built build_array(Src& src, unsigned newB, Put put) {
    const std::size_t n = std::size_t{1} << newB;
    std::vector<std::size_t> hashes;
    hashes.reserve(src.count_);
    std::vector<std::uint32_t> per_bucket(n, 0);
    for_each_live_slot(src, [&](slot_type* s) {
      const std::size_t h = hash_of(s->first);
      hashes.push_back(h);
      ++per_bucket[h & (n - 1)];
    });
    // Exactly the overflow buckets the chains need, allocated up front (in the array's own
    // block when it is one segment).
    std::size_t noverflow = 0;
    for (const std::uint32_t c : per_bucket) {
      if (c > bucket_cnt) noverflow += (c - 1) / bucket_cnt;
    }
    array_shape shape;
    segment* const dir =
        allocate_full_array(newB, upfront_overflow(newB, noverflow), shape, /*populate=*/true);
    overflow_pool& pool = shape.pool;
    for (std::size_t j = 0; j < n; ++j) {
      meta_type* b = at(dir, j).m;
      for (std::uint32_t c = per_bucket[j]; c > bucket_cnt; c -= bucket_cnt) {
        b->overflow = take_overflow(pool).m;  // available: allocated above
        b = b->overflow;
      }
    }
    std::size_t next = 0;
    try {
      for_each_live_slot(src, [&](slot_type* s) {
        const std::size_t h = hashes[next++];
        for (bucket_ref b = at(dir, h & (n - 1));; b = b.next()) {
          if (const slot_mask e = b->group().match_empty()) {
            const unsigned i = e.lowest();
            put(s, b.raw_slot(i));
            b->tophash[i] = tophash_of(h);
            return;
          }
        }
      });
    } catch (...) {
      for (std::size_t j = 0; j < n; ++j) destroy_chain(at(dir, j), nullptr);
      segment* d = dir;
      release_array(d, shape);
      throw;
    }
    return {dir, shape, noverflow};
  }

  // Takes nb as this map's only array (both old arrays were freed already).
  void adopt(const built& nb, unsigned newB, size_type count) noexcept {
    stop_populating();  // a finished array: nothing to populate
    dir_ = nb.dir;
    cur_ = nb.shape;
    set_log2_buckets(newB);
    noverflow_ = nb.noverflow;
    count_ = count;
  }

  // The one walk over both arrays: calls f(head) for the head bucket of every live chain, the
  // old array's unevacuated buckets first, then the current array's initialized ones, in a
  // fixed order (the same on two calls with no write between them: build_array relies on it).
  template <class Self, class F>
  static void for_each_chain(Self& m, F&& f) {
    if (m.dir_ == nullptr) return;
    if (m.olddir_ != nullptr) {
      const std::size_t nold = m.noldbuckets();
      for (std::size_t k = m.nevacuate_; k < nold; ++k) {
        if (!m.old_evacuated(k)) f(m.old_at(k));
      }
    }
    const std::size_t n = m.nbuckets();
    for (std::size_t j = 0; j < n; ++j) {
      if (m.new_bucket_initialized(j)) f(m.new_at(j));
    }
  }

  // Calls f(slot*) on every entry of both arrays of m, in for_each_chain's fixed order.
  template <class Self, class F>
  static void for_each_live_slot(Self& m, F&& f) {
    for_each_chain(m, [&](bucket_ref head) {
      for_each_full_slot(head, [&](bucket_ref b, unsigned i) { f(b.slot(i)); });
    });
  }

  // The walk of one chain: calls f(bucket, i) for every slot i of every bucket of head's
  // chain, in chain order. f may change the slot's tophash byte (not the chain's links) and
  // may throw, which ends the walk. Forced inline: evacuation walks each chain with it.
  template <class F>
  SAFEMAP_ALWAYS_INLINE static void for_each_slot(bucket_ref head, F&& f) {
    for (bucket_ref b = head; b; b = b.next()) {
      for (unsigned i = 0; i < bucket_cnt; ++i) f(b, i);
    }
  }
  // The same for the slots that hold an entry (a tophash, not an empty or evacuation marker).
  template <class F>
  SAFEMAP_ALWAYS_INLINE static void for_each_full_slot(bucket_ref head, F&& f) {
    for_each_slot(head, [&](bucket_ref b, unsigned i) {
      if (b->tophash[i] >= min_top_hash) f(b, i);
    });
  }
  template <class F>
  void for_each_live_slot(F&& f) {
    for_each_live_slot(*this, std::forward<F>(f));
  }

  // During growth a new bucket is initialized exactly when its old bucket is evacuated.
  bool new_bucket_initialized(std::size_t j) const noexcept {
    return olddir_ == nullptr || old_evacuated(j & old_bucket_mask());
  }

  // Destroys every entry of b's chain; b itself stays allocated (its contents are garbage
  // afterwards). Its overflow buckets go back to pool when one is given (else they are freed
  // with their array). Returns the number of overflow buckets in the chain.
  static std::size_t destroy_chain(bucket_ref b, overflow_pool* pool) noexcept {
    for_each_full_slot(b, [](bucket_ref c, unsigned i) { std::destroy_at(c.slot(i)); });
    return unlink_overflow(b, pool);
  }

  // Detaches the overflow buckets of head's chain (their entries gone already): back to pool
  // when one is given, else left to be freed with their array. Returns how many there were.
  static std::size_t unlink_overflow(bucket_ref head, overflow_pool* pool) noexcept {
    std::size_t n = 0;
    for (meta_type* ov = head->overflow; ov != nullptr; ++n) {
      meta_type* const next = ov->overflow;
      if (pool != nullptr) give_back(*pool, ov);
      ov = next;
    }
    head->overflow = nullptr;
    return n;
  }

  // Destroys all entries and frees both arrays with their overflow buckets.
  void destroy_tables() noexcept {
    if (dir_ != nullptr) for_each_live_slot([](slot_type* s) { std::destroy_at(s); });
    free_arrays();
  }

  // Frees both arrays with their overflow buckets; the entries were relocated already.
  void free_tables_without_destroying() noexcept { free_arrays(); }

  void free_arrays() noexcept {
    release_array(olddir_, old_);
    release_array(dir_, cur_);
    release_all_retired();
    stop_populating();
    set_log2_buckets(0);
    count_ = nevacuate_ = noverflow_ = old_noverflow_ = evacuated_ = evac_scan_ = 0;
    same_size_grow_ = false;
  }

  void destroy_all() noexcept { destroy_tables(); }

  void clear_locked_by_writer() {
    if (dir_ == nullptr) return;
    if (iterators_.load(std::memory_order_relaxed) != 0) {
      // Live iterators may stand on any bucket: destroy entries but keep every bucket and
      // the growth state, so their walk stays valid.
      for_each_chain(*this, [](bucket_ref head) {
        for_each_slot(head, [](bucket_ref b, unsigned i) {
          if (!is_empty(b->tophash[i])) std::destroy_at(b.slot(i));
          b->tophash[i] = empty_rest;
        });
      });
      count_ = 0;
    } else {
      // Keep the current array (as Go 1.21 clear does) when all its segments exist, drop the
      // rest.
      for_each_chain(*this, [&](bucket_ref head) { destroy_chain(head, nullptr); });
      release_array(olddir_, old_);
      release_all_retired();
      stop_populating();  // not growing any more: every segment kept is usable
      if (cur_.nallocated + 1 < cur_.nsegs) {
        release_array(dir_, cur_);  // a growth had not allocated all of it: start afresh
        set_log2_buckets(0);
      } else {
        reset_pool(cur_.pool);
        init_metas(dir_, nbuckets());
      }
      count_ = nevacuate_ = noverflow_ = old_noverflow_ = evacuated_ = evac_scan_ = 0;
      same_size_grow_ = false;
    }
    reseed();
  }

  // A fresh, initialized array of 2^B buckets with `extra` overflow buckets available (by
  // default upfront_overflow's).
  // populate: the caller is about to fill it (a copy), see allocate_full_array. An empty
  // table made for a size hint is not: its pages come in as inserts reach them.
  void init_table(unsigned B) { init_table(B, upfront_overflow(B, 0)); }
  void init_table(unsigned B, std::size_t extra, bool populate = false) {
    dir_ = allocate_full_array(B, extra, cur_, populate);
    set_log2_buckets(B);
  }

  // Copies other's entries into this empty map. A map that is not growing is cloned chain by
  // chain (same seed, same B: no rehashing, chains compacted); a growing one is rebuilt into
  // one finished array. Either way the copy is never mid-growth.
  void copy_from(const map_table& other) {
    if (other.count_ == 0) return;
    try {
      if (other.olddir_ == nullptr) {
        // Compacted chains need at most the overflow buckets other's chains have, all made
        // available up front: nothing is allocated while entries are copied.
        init_table(other.B_, upfront_overflow(other.B_, other.noverflow_), /*populate=*/true);
        const std::size_t n = nbuckets();
        for (std::size_t j = 0; j < n; ++j) {
          evac_dest d{new_at(j), 0};
          for_each_full_slot(other.new_at(j), [&](bucket_ref b, unsigned i) {
            ::new (dest_slot(d)) slot_type(std::as_const(*b.slot(i)));
            d.b->tophash[d.i++] = b->tophash[i];
            ++count_;
          });
        }
      } else {
        // A growing map is copied into one finished array sized for its entries, never into
        // a table frozen mid-growth (CowMap publishes copies, SyncMap promotes them): hashed,
        // allocated, then copied, all before this map holds anything.
        const unsigned B = log2_buckets_for(other.count_);
        adopt(build_array(other, B, [](const slot_type* s, void* p) { ::new (p) slot_type(*s); }),
              B, other.count_);
      }
    } catch (...) {
      destroy_all();
      throw;
    }
  }

  void steal(map_table& other) noexcept {
    dir_ = std::exchange(other.dir_, nullptr);
    olddir_ = std::exchange(other.olddir_, nullptr);
    cur_ = std::exchange(other.cur_, array_shape{});
    old_ = std::exchange(other.old_, array_shape{});
    retired_ = std::exchange(other.retired_, nullptr);
    units_held_ = std::exchange(other.units_held_, 0);
    count_ = std::exchange(other.count_, 0);
    nevacuate_ = std::exchange(other.nevacuate_, 0);
    evac_scan_ = std::exchange(other.evac_scan_, 0);
    noverflow_ = std::exchange(other.noverflow_, 0);
    old_noverflow_ = std::exchange(other.old_noverflow_, 0);
    evacuated_ = std::exchange(other.evacuated_, 0);
    pop_next_ = std::exchange(other.pop_next_, nullptr);
    pop_end_ = std::exchange(other.pop_end_, nullptr);
    set_log2_buckets(other.B_);
    other.set_log2_buckets(0);
    same_size_grow_ = std::exchange(other.same_size_grow_, false);
  }

  void swap_contents(map_table& other) noexcept {
    using std::swap;
    swap(dir_, other.dir_);
    swap(olddir_, other.olddir_);
    swap(cur_, other.cur_);
    swap(old_, other.old_);
    swap(retired_, other.retired_);
    swap(units_held_, other.units_held_);
    swap(count_, other.count_);
    swap(nevacuate_, other.nevacuate_);
    swap(evac_scan_, other.evac_scan_);
    swap(noverflow_, other.noverflow_);
    swap(old_noverflow_, other.old_noverflow_);
    swap(evacuated_, other.evacuated_);
    swap(pop_next_, other.pop_next_);
    swap(pop_end_, other.pop_end_);
    swap(B_, other.B_);
    swap(mask_, other.mask_);
    swap(grow_at_, other.grow_at_);
    swap(same_size_grow_, other.same_size_grow_);
  }

  // ---- memory --------------------------------------------------------------------------------
  //
  // A bucket array of 2^B buckets is cut into segments of seg_buckets buckets (one segment of
  // 2^B when B < seg_shift), each its own block: [metadata | slot groups]. The last segment's
  // block also holds the directory in front (one entry per segment) and, in an array of one
  // segment, Go's preallocated overflow buckets behind:
  //
  //   last block:  | directory[nsegs] | metadata[n] | slot groups[n] | overflow[extra] |
  //   other block: | metadata[seg_buckets] | slot groups[seg_buckets] |
  //
  // A growth allocates the new last block at once and the other segments one per write; the
  // old array's segments are retired as the evacuation mark passes them, the last one (and the
  // old pool's chunks) when the growth ends. Retired blocks go back to the allocator one per
  // write (release_one_retired), so no write frees more than one block (a segment, a chunk or
  // a last block, none larger than a segment plus its directory) or allocates more than one
  // segment (plus, rarely, an overflow chunk no larger than a segment).

  // Go's makeBucketArray preallocates 2^(B-4) overflow buckets with an array of 2^B >= 16
  // buckets (its nextOverflow); at load 6.5 about a fifth of buckets overflow once the array is
  // full, so the rest come in chunks (overflow_pool).
  static std::size_t preallocated_overflow(unsigned B) noexcept {
    return B >= 4 ? std::size_t{1} << (B - 4) : 0;
  }
  // The preallocated overflow buckets in the block of a fresh array: Go's, when the array is
  // one segment. A larger array gets them as its pool's first chunk, when first needed: in the
  // block they would live until the whole array goes.
  static std::size_t block_overflow_for(unsigned B) noexcept {
    return B <= seg_shift ? preallocated_overflow(B) : 0;
  }
  // The overflow buckets a finished array of 2^B buckets (a fresh table, a copy, a rebuild)
  // makes available up front when its chains need `needed` of them now: at least Go's 2^(B-4)
  // when the array is one segment (they live in its block); past one segment exactly `needed`,
  // the rest coming in chunk_cap chunks as inserts overflow (a 2^(B-4) chunk would sit mostly
  // unused until the array nears its load factor: 2.36 MB at 1e6 uint64 entries).
  static std::size_t upfront_overflow(unsigned B, std::size_t needed) noexcept {
    return B <= seg_shift ? std::max(needed, preallocated_overflow(B)) : needed;
  }

  static constexpr std::size_t align_up(std::size_t n, std::size_t a) noexcept {
    return (n + a - 1) / a * a;
  }
  // Byte offsets in a segment of n buckets: its slot groups, and the end of the segment.
  static constexpr std::size_t groups_offset(std::size_t n) noexcept {
    return align_up(n * sizeof(meta_type), alignof(group_type));
  }
  static constexpr std::size_t segment_bytes(std::size_t n) noexcept {
    return align_up(groups_offset(n) + n * sizeof(group_type), sizeof(block_unit));
  }
  static constexpr std::size_t segment_units = segment_bytes(seg_buckets) / sizeof(block_unit);
  static constexpr std::size_t directory_units(std::size_t nsegs) noexcept {
    return (nsegs * sizeof(segment) + sizeof(block_unit) - 1) / sizeof(block_unit);
  }

  block_unit* allocate_units(std::size_t units) {
    block_unit* const p = bucket_traits::allocate(alloc_, units);
    units_held_ += units;
    return p;
  }
  void deallocate_units(block_unit* p, std::size_t units) noexcept {
    bucket_traits::deallocate(alloc_, p, units);
    units_held_ -= units;
  }

  // The directory entry of segment i (n buckets) whose block is p, and back.
  static segment segment_at(block_unit* p, std::size_t i, std::size_t n) noexcept {
    const auto base = reinterpret_cast<std::uintptr_t>(p);
    const std::size_t first = i << seg_shift;
    return {base - first * sizeof(meta_type), base + groups_offset(n) - first * sizeof(group_type)};
  }
  static block_unit* block_of(const segment* dir, std::size_t i) noexcept {
    return reinterpret_cast<block_unit*>(dir[i].metas + (i << seg_shift) * sizeof(meta_type));
  }

  // Allocates the last segment of an array of 2^B buckets, with the array's directory (every
  // other entry empty) and, in an array of one segment, `extra` overflow buckets in the block.
  // Nothing is initialized but the directory. Fills `shape`; strong guarantee.
  segment* allocate_last_segment(unsigned B, std::size_t extra, array_shape& shape) {
    const std::size_t nsegs = B > seg_shift ? std::size_t{1} << (B - seg_shift) : 1;
    const std::size_t n = std::min(std::size_t{1} << B, seg_buckets);
    if (nsegs > 1) extra = 0;
    static_assert(sizeof(overflow_type) % sizeof(block_unit) == 0);
    const std::size_t dir_units = directory_units(nsegs);
    const std::size_t seg_units = segment_bytes(n) / sizeof(block_unit);
    const std::size_t units =
        dir_units + seg_units + extra * (sizeof(overflow_type) / sizeof(block_unit));
    block_unit* const p = allocate_units(units);
    auto* const dir = reinterpret_cast<segment*>(p);
    for (std::size_t i = 0; i + 1 < nsegs; ++i) ::new (static_cast<void*>(dir + i)) segment{};
    ::new (static_cast<void*>(dir + nsegs - 1)) segment(segment_at(p + dir_units, nsegs - 1, n));
    shape = array_shape{};
    shape.nsegs = nsegs;
    shape.last_units = units;
    overflow_pool& pool = shape.pool;
    pool.block_overflow = reinterpret_cast<overflow_type*>(p + dir_units + seg_units);
    pool.block_extra = extra;
    pool.next = pool.block_overflow;
    pool.end = pool.next + extra;
    pool.chunk_cap = B <= seg_shift ? max_overflow_chunk
                                    : std::clamp(preallocated_overflow(B) / 2, min_overflow_chunk,
                                                 max_overflow_chunk);
    pool.first_chunk = pool.next_chunk =
        std::clamp(preallocated_overflow(B), min_overflow_chunk, pool.chunk_cap);
    return dir;
  }

  // Allocates segment i (not the last) of the array whose directory is dir; strong guarantee.
  void allocate_segment(segment* dir, std::size_t i) {
    dir[i] = segment_at(allocate_units(segment_units), i, seg_buckets);
  }

  // A whole array of 2^B buckets, every segment allocated and every bucket initialized, with
  // `extra` overflow buckets available in its pool. On failure frees what it allocated.
  // With populate (a copy or a rebuild, which write entries all over the array at once), the
  // blocks that are mostly fresh memory are populated first (detail/pages.hpp, populate_if_fresh):
  // one call per block instead of a fault per page.
  SAFEMAP_NOINLINE segment* allocate_full_array(unsigned B, std::size_t extra, array_shape& shape,
                                                bool populate = false) {
    segment* dir = allocate_last_segment(B, extra, shape);
    try {
      for (; shape.nallocated + 1 < shape.nsegs; ++shape.nallocated) {
        allocate_segment(dir, shape.nallocated);
      }
      reserve_overflow(shape.pool, extra);
    } catch (...) {
      release_array(dir, shape);
      throw;
    }
    if (populate && populate_segments) {
      populate_if_fresh(dir, shape.last_units * sizeof(block_unit));
      for (std::size_t i = 0; i + 1 < shape.nsegs; ++i) {
        populate_if_fresh(block_of(dir, i), segment_units * sizeof(block_unit));
      }
    }
    init_metas(dir, std::size_t{1} << B);
    return dir;
  }

  static void init_metas(segment* dir, std::size_t n) noexcept {
    for (std::size_t j = 0; j < n; ++j) at(dir, j)->init();
  }

  // Frees an array at once: its segments, its pool's chunks, then its last block (which holds
  // the directory). dir becomes nullptr.
  void release_array(segment*& dir, array_shape& shape) noexcept {
    if (dir == nullptr) return;
    for (std::size_t i = 0; i + 1 < shape.nsegs; ++i) {
      if (segment_present(shape, i)) deallocate_units(block_of(dir, i), segment_units);
    }
    free_chunks(shape.pool);
    deallocate_units(reinterpret_cast<block_unit*>(dir), shape.last_units);
    dir = nullptr;
    shape = array_shape{};
  }

  // Puts a block no longer in use on the retired list, to be freed by a later write. Its first
  // unit becomes the list's link.
  void retire(block_unit* p, std::size_t units) noexcept {
    ::new (static_cast<void*>(p)) block_header{retired_, units};
    retired_ = p;
  }
  // Retires segment i (not the last) of the old array, once no bucket of it is read again;
  // segments are retired in order.
  void retire_segment(std::size_t i) noexcept {
    if (segment_present(old_, i)) retire(block_of(olddir_, i), segment_units);
    old_.nretired = i + 1;
  }
  // Retires what is left of an array (the end of a growth): its segments, its pool's chunks
  // (already linked like retired blocks), and last its last block, which holds the directory.
  void retire_array(segment*& dir, array_shape& shape) noexcept {
    for (std::size_t i = shape.nretired; i + 1 < shape.nsegs; ++i) {
      if (segment_present(shape, i)) retire(block_of(dir, i), segment_units);
    }
    for (block_unit* c = shape.pool.chunks; c != nullptr;) {
      block_header* const h = std::launder(reinterpret_cast<block_header*>(c));
      c = h->next;
      h->next = retired_;
      retired_ = reinterpret_cast<block_unit*>(h);
    }
    shape.pool.chunks = nullptr;
    retire(reinterpret_cast<block_unit*>(dir), shape.last_units);
    dir = nullptr;
    shape = array_shape{};
  }
  SAFEMAP_NOINLINE void release_one_retired() noexcept {
    const block_header h = *std::launder(reinterpret_cast<const block_header*>(retired_));
    deallocate_units(retired_, h.units);
    retired_ = h.next;
  }
  void release_all_retired() noexcept {
    while (retired_ != nullptr) release_one_retired();
  }

  // Makes k overflow buckets available in p, so that k take_overflow calls cannot fail: a
  // chunk of max(k - available, next_chunk) overflow buckets (at most a segment's worth; more
  // chunks when k is larger) after a header unit that links the chunks and records their size.
  // Chunks double up to the pool's chunk_cap (see overflow_pool). Strong guarantee when one chunk
  // suffices (k <= max_overflow_chunk, as on every write): p is unchanged when the allocation
  // throws.
  void reserve_overflow(overflow_pool& p, std::size_t k) {
    while (p.available() < k) {
      const std::size_t len =
          std::min(std::max(k - p.available(), p.next_chunk), max_overflow_chunk);
      const std::size_t units = 1 + len * (sizeof(overflow_type) / sizeof(block_unit));
      block_unit* const c = allocate_units(units);
      ::new (static_cast<void*>(c)) block_header{p.chunks, units};
      p.chunks = c;
      // A chunk is allocated only when every bucket before it is in use, so the pool never
      // holds more than one chunk beyond the overflow buckets its array has used at once.
      p.next_chunk = std::min(len * 2, p.chunk_cap);
      while (p.next != p.end) give_back(p, &(p.next++)->meta);  // the rest stays usable
      p.next = reinterpret_cast<overflow_type*>(c + 1);
      p.end = p.next + len;
    }
  }

  // An overflow bucket from p, initialized (all empty_rest, no successor). p must have one
  // available (reserve_overflow).
  static bucket_ref take_overflow(overflow_pool& p) noexcept {
    overflow_type* b;
    if (p.free != nullptr) {
      b = overflow_type::of(p.free);
      p.free = p.free->overflow;
      --p.nfree;
    } else {
      b = p.next++;
    }
    b->meta.init();
    return bucket_ref(b);
  }

  // Returns an overflow bucket (no live entries) to p for reuse.
  static void give_back(overflow_pool& p, meta_type* b) noexcept {
    b->overflow = p.free;
    p.free = b;
    ++p.nfree;
  }

  // Frees p's chunks, keeps its block's overflow buckets and makes every one of them available
  // again (clear: no chain uses them).
  void reset_pool(overflow_pool& p) noexcept {
    free_chunks(p);
    p.free = nullptr;
    p.nfree = 0;
    p.next_chunk = p.first_chunk;  // else each clear-and-refill would double the next chunk
    p.next = p.block_overflow;
    p.end = p.next + p.block_extra;
  }

  void free_chunks(overflow_pool& p) noexcept {
    for (block_unit* c = p.chunks; c != nullptr;) {
      const block_header h = *std::launder(reinterpret_cast<const block_header*>(c));
      deallocate_units(c, h.units);
      c = h.next;
    }
    p.chunks = nullptr;
  }

  // ---- data (everything here is Map's private state: Map derives privately)
  // ---------------------------------------------------------------------------------- Invariants
  // (checked by tests/core/map_invariants_test.cpp through stats() and iteration, and
  // tests/core/map_segment_test.cpp):
  //  1. dir_ is the directory of 2^B_ buckets in cur_.nsegs segments; when not growing every
  //     segment is allocated. During growth (olddir_ != nullptr) olddir_ has noldbuckets(),
  //     bucket j of dir_ is initialized iff old bucket j & old_mask is evacuated, and a key
  //     lives in its old bucket iff that bucket is not evacuated.
  //  2. A new segment is allocated, and populated where population applies (start_populating),
  //     before any old bucket evacuates into it (segments_ready); [pop_next_, pop_end_) is
  //     empty when not growing.
  //  3. Old buckets below nevacuate_ are all evacuated and never read (old_evacuated); an old
  //     segment is retired once nevacuate_ passes its end; the growth ends when nevacuate_
  //     reaches noldbuckets(), and the rest of the old array is retired then.
  //  4. while iterators_ > 0 no growth starts and no entry is evacuated or relocated.
  //  5. count_ is the number of entries in both arrays; units_held_ the units of every block
  //     allocated and not yet freed (retired ones included).
  //  6. mask_ == 2^B_ - 1, and grow_at_ is the most entries not over the load factor at B_
  //     (over_load_factor(n, B_) == n > grow_at_).
  // A lookup reads dir_, olddir_, count_, mask_ and hash_ (its seed): they come first, side by
  // side (the first 40 bytes with safemap::Hash), so a lookup touches one or two header lines.
  // During a growth it reads nevacuate_ (next) and same_size_grow_ (further down) too.
  segment* dir_ = nullptr;         // current array's directory; nullptr until the first insert
  segment* olddir_ = nullptr;      // previous array's directory, only while growing
  size_type count_ = 0;            // live entries (Go's count)
  std::size_t mask_ = 0;           // 2^B_ - 1: bucket j of a hash is hash & mask_
  [[no_unique_address]] Hash hash_{};
  std::size_t nevacuate_ = 0;      // progress counter: old buckets below are evacuated
  std::size_t grow_at_ = bucket_cnt;  // the most entries 2^B_ buckets hold (invariant 6)
  std::size_t evac_scan_ = 0;      // 0, or the next old bucket to evacuate past a stuck one
  std::size_t noverflow_ = 0;      // overflow buckets in dir_'s chains (exact)
  std::size_t old_noverflow_ = 0;  // overflow buckets still in olddir_'s chains
  std::size_t evacuated_ = 0;      // old buckets evacuated in this growth (stats)
  std::uint8_t B_ = 0;             // log2 of the bucket count
  bool same_size_grow_ = false;    // the current growth keeps B (compaction)
  bool erase_missed_ = false;      // the last erase found no key (a prefetch hint, not state)
  array_shape cur_;                // dir_'s segments and overflow pool
  array_shape old_;                // olddir_'s
  block_unit* retired_ = nullptr;  // blocks to free, one per write (retire)
  unsigned char* pop_next_ = nullptr;  // the part of the newest segment's block still to be
  unsigned char* pop_end_ = nullptr;   // populated (populate_step); empty when not growing
  std::size_t units_held_ = 0;     // block units allocated (stats().bytes)
  mutable std::atomic<std::uint32_t> iterators_{0};  // live (not yet at end) iterators
  [[no_unique_address]] Eq eq_{};
  [[no_unique_address]] bucket_allocator alloc_{};

  // ---- construction --------------------------------------------------------------------------
  // Empty: no array until the first insert (or init_table). Copies and moves are Map's, which
  // knows which allocator the result gets (copy_from, steal, swap_contents do the work).
  map_table() = default;
  template <class H, class E, class A>
  map_table(H&& hash, E&& eq, A&& alloc)
      : hash_(std::forward<H>(hash)), eq_(std::forward<E>(eq)), alloc_(std::forward<A>(alloc)) {}
  explicit map_table(const Alloc& alloc) : alloc_(alloc) {}
  map_table(const map_table&) = delete;
  map_table& operator=(const map_table&) = delete;
  ~map_table() { destroy_all(); }
};

}  // namespace safemap::detail
