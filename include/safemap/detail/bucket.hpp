// safemap/detail/bucket.hpp - the bucket of safemap::Map and its tophash byte matching.
//
// # Bucket layout (after Go's runtime/map.go, bmap, with the metadata apart)
// A bucket holds up to 8 entries. For each, one "tophash" byte: the top 8 bits of the entry's
// hash, or a small reserved marker. With them a link to an overflow bucket that continues the
// chain when more than 8 keys land in the same bucket. Go keeps these in the bucket, next to
// its slots; safemap keeps an array's metadata in a dense array of its own, so a probe reads
// a 16-byte record (four per cache line, an array small enough to stay in cache far longer
// than the slots) and touches a slot's line only where a tophash matches:
//
//   metadata[2^B]:  | tophash[8] (8 B) | overflow (8 B) |   16 B per bucket
//   slots[2^B]:     | slot[8]: std::pair<const K, V>  |   8 * sizeof(pair) per bucket
//   overflow bucket: | metadata | slot[8] |  (from the array's pool)
//
// Go stores keys and values in two arrays to avoid padding; safemap stores pairs because the
// iterator's reference type is std::pair<const K, V>& (the std-like contract), which needs a
// real pair object per entry.
//
// # tophash markers (Go's values)
//   empty_rest      0  this slot is empty, and so is every later slot and overflow bucket
//   empty_one       1  this slot is empty
//   evacuated_x     2  (old table) entry moved to the first half of the new table
//   evacuated_y     3  (old table) entry moved to the second half
//   evacuated_empty 4  (old table) slot was empty and the bucket is evacuated
//   min_top_hash    5  smallest tophash of a full slot; computed values below it are bumped
// A freshly initialized bucket is all zeros: every slot empty_rest. evacuated(b) is read from
// tophash[0] of a bucket in the old table, where all 8 bytes are markers once it is evacuated.
//
// # Matching several slots at once
// The 8 tophash bytes are loaded as one 64-bit word and compared bytewise with SWAR bit tricks
// (exact: no false positives), so a probe of a bucket is one load and a few ALU operations
// whatever the key type; the key itself is compared only on a tophash match (about 1/229
// chance for a non-matching key per slot: see tophash_of).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#if defined(__SSE2__) && !defined(SAFEMAP_PORTABLE_GROUPS)
#include <emmintrin.h>
#endif

namespace safemap::detail {

inline constexpr unsigned bucket_cnt = 8;  // slots per bucket (Go's bucketCnt)
inline constexpr unsigned bucket_cnt_bits = 3;

inline constexpr std::uint8_t empty_rest = 0;
inline constexpr std::uint8_t empty_one = 1;
inline constexpr std::uint8_t evacuated_x = 2;
inline constexpr std::uint8_t evacuated_y = 3;
inline constexpr std::uint8_t evacuated_empty = 4;
inline constexpr std::uint8_t min_top_hash = 5;

// The top byte of the hash, raised to min_top_hash where it would read as a marker. Go adds
// min_top_hash instead; raising is one unsigned-max instruction on a whole SSE register
// (tophash_probe), so a lookup builds its 8-byte pattern from the hash without the scalar
// steps. The cost is a slightly uneven distribution: 5 takes 6 of 256 hashes. The chance that
// a slot holding another key matches a probe's tophash (sum of p^2) goes from 266/65536 with
// Go's mapping to 286/65536: 0.0044 per slot, a key comparison in ~3.5% of full buckets.
inline constexpr std::uint8_t tophash_of(std::size_t hash) noexcept {
  const auto top = static_cast<std::uint8_t>(static_cast<std::uint64_t>(hash) >> 56);
  return top < min_top_hash ? min_top_hash : top;
}

inline constexpr bool is_empty(std::uint8_t th) noexcept {
  return th <= empty_one;
}

// A set of slot indices [0, 8), one bit per slot, as produced by the matchers below.
// A set of a bucket's slots, from a tophash_group match: bit stride*i + stride-1 is set
// exactly when slot i is in the set (stride 1 with SSE2's byte compare and movemask, 8 with
// the portable 64-bit SWAR code, which marks the high bit of each matching byte).
class slot_mask {
 public:
#if defined(__SSE2__) && !defined(SAFEMAP_PORTABLE_GROUPS)
  static constexpr unsigned stride_log2 = 0;
#else
  static constexpr unsigned stride_log2 = 3;
#endif
  static constexpr unsigned stride = 1u << stride_log2;

  constexpr explicit slot_mask(std::uint64_t bits) noexcept : bits_(bits) {}
  constexpr explicit operator bool() const noexcept {
    return bits_ != 0;
  }
  constexpr unsigned lowest() const noexcept {
    return static_cast<unsigned>(std::countr_zero(bits_)) >> stride_log2;
  }
  constexpr void clear_lowest() noexcept {
    bits_ &= bits_ - 1;
  }
  constexpr bool contains(unsigned i) const noexcept {
    return (bits_ >> (i * stride + stride - 1)) & 1;
  }

 private:
  std::uint64_t bits_;
};

#if defined(__SSE2__) && !defined(SAFEMAP_PORTABLE_GROUPS)
// A lookup's tophash in each of a register's bytes, built from the hash: the top byte times
// 0x0101...01, then raised to min_top_hash bytewise (tophash_of's rule). Five instructions
// (shift, constant, multiply, movq, pmaxub; four once a loop hoists the constant) where
// tophash_of and _mm_set1_epi8 took nine (SSE2 has no byte broadcast: GCC emits two unpacks
// and a shuffle). The upper half holds min_top_hash, which no byte of a group's upper half
// (zero) equals.
class tophash_probe {
 public:
  explicit tophash_probe(std::size_t hash) noexcept : v_(pattern(hash)) {}
  // The tophash itself (tophash_of(hash)), for an insert to store.
  std::uint8_t top() const noexcept { return static_cast<std::uint8_t>(_mm_cvtsi128_si32(v_)); }

 private:
  friend class tophash_group;
  static __m128i pattern(std::size_t hash) noexcept {
#if defined(__x86_64__)
    const std::uint64_t bytes = (static_cast<std::uint64_t>(hash) >> 56) * 0x0101010101010101ULL;
    return _mm_max_epu8(_mm_cvtsi64_si128(static_cast<long long>(bytes)),
                        _mm_set1_epi8(static_cast<char>(min_top_hash)));
#else
    return _mm_set1_epi8(static_cast<char>(tophash_of(hash)));
#endif
  }
  __m128i v_;
};

// A bucket's 8 tophash bytes in the low half of an SSE register: each question is a byte
// compare and a movemask. A lookup hit costs ~5 instructions fewer than the SWAR version below
// (cachegrind of bench/read_bench --fixed Map, the same count abseil's and Boost's probes pay
// for a 16-byte group), and the probe's pattern is built once for a whole overflow chain.
class tophash_group {
 public:
  explicit tophash_group(const std::uint8_t* tophash) noexcept
      : v_(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(tophash))) {}
  // Slots whose tophash equals the probe's. No lane of the upper half can match (the group's
  // are zero, the probe's min_top_hash), so the movemask needs no mask.
  slot_mask match(const tophash_probe& p) const noexcept {
    return slot_mask(static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v_, p.v_))));
  }
  // Empty slots (empty_one or empty_rest: the byte is 0 or 1).
  slot_mask match_empty() const noexcept {
    return slot_mask(bits(_mm_cmpeq_epi8(_mm_min_epu8(v_, _mm_set1_epi8(empty_one)), v_)));
  }
  // Full slots (tophash >= min_top_hash); valid in live buckets, where no evacuation markers are.
  slot_mask match_full() const noexcept {
    return slot_mask(bits(_mm_cmpeq_epi8(_mm_min_epu8(v_, _mm_set1_epi8(empty_one)), v_)) ^ 0xffu);
  }
  // Whether some slot is empty_rest: the chain has no entry from there on.
  bool has_empty_rest() const noexcept {
    return bits(_mm_cmpeq_epi8(v_, _mm_setzero_si128())) != 0;
  }

 private:
  // The low 8 lanes: the upper half of the register is zero, not slots.
  static std::uint64_t bits(__m128i eq) noexcept {
    return static_cast<std::uint64_t>(_mm_movemask_epi8(eq)) & 0xffu;
  }
  __m128i v_;
};
#else
// A lookup's tophash repeated in the 8 bytes of a word.
class tophash_probe {
 public:
  explicit tophash_probe(std::size_t hash) noexcept
      : word_(0x0101010101010101ULL * tophash_of(hash)) {}
  std::uint8_t top() const noexcept { return static_cast<std::uint8_t>(word_); }

 private:
  friend class tophash_group;
  std::uint64_t word_;
};

class tophash_group {
  static constexpr std::uint64_t lsb = 0x0101010101010101ULL;
  static constexpr std::uint64_t low7 = 0x7f7f7f7f7f7f7f7fULL;
  static constexpr std::uint64_t msb = 0x8080808080808080ULL;

  // High bit of each byte set exactly where that byte of x is zero (no borrow between bytes).
  static constexpr std::uint64_t zero_bytes(std::uint64_t x) noexcept {
    return ~(((x & low7) + low7) | x | low7);
  }

 public:
  explicit tophash_group(const std::uint8_t* tophash) noexcept {
    std::memcpy(&word_, tophash, sizeof word_);
    if constexpr (std::endian::native == std::endian::big) word_ = __builtin_bswap64(word_);
  }
  // Slots whose tophash equals the probe's.
  slot_mask match(const tophash_probe& p) const noexcept {
    return slot_mask(zero_bytes(word_ ^ p.word_));
  }
  // Empty slots (empty_one or empty_rest: the byte is 0 or 1).
  slot_mask match_empty() const noexcept { return slot_mask(zero_bytes(word_ & ~lsb)); }
  // Full slots (tophash >= min_top_hash); valid in live buckets, where no evacuation markers are.
  slot_mask match_full() const noexcept { return slot_mask(~zero_bytes(word_ & ~lsb) & msb); }
  // Whether some slot is empty_rest: the chain has no entry from there on.
  bool has_empty_rest() const noexcept { return zero_bytes(word_) != 0; }

 private:
  std::uint64_t word_;
};
#endif

template <class Slot>
struct overflow_bucket;

template <class Slot>
struct alignas(16) bucket_meta {
  std::uint8_t tophash[bucket_cnt];
  bucket_meta* overflow;  // metadata of the next bucket of the chain (an overflow_bucket's)

  void init() noexcept {
    std::memset(tophash, 0, sizeof tophash);
    overflow = nullptr;
  }
  tophash_group group() const noexcept { return tophash_group(tophash); }
  bool evacuated() const noexcept { return tophash[0] > empty_one && tophash[0] < min_top_hash; }
};

// The 8 entry slots of one bucket (raw storage; a slot holds an entry iff its tophash is full).
template <class Slot>
struct slot_group {
  alignas(Slot) unsigned char storage[bucket_cnt * sizeof(Slot)];

  Slot* slot(unsigned i) noexcept { return std::launder(reinterpret_cast<Slot*>(storage) + i); }
  void* raw_slot(unsigned i) noexcept { return storage + i * sizeof(Slot); }
};

// An overflow bucket: metadata and slots together (overflow buckets are a minority, about a
// fifth of an array's at load 6.5, and a probe reaches one only past a full bucket). They come
// from the array's pool (Map's overflow_pool), so their metadata is packed too.
template <class Slot>
struct overflow_bucket {
  bucket_meta<Slot> meta;  // first member: a bucket_meta* of an overflow bucket converts back
  slot_group<Slot> slots;

  static overflow_bucket* of(bucket_meta<Slot>* m) noexcept {
    return reinterpret_cast<overflow_bucket*>(m);
  }
};

// A bucket: its metadata and its slots, wherever they live (an array's dense arrays or an
// overflow bucket). b->tophash, b->overflow, b->group() reach the metadata; next() follows the
// chain.
template <class Slot>
struct bucket_ref {
  bucket_meta<Slot>* m = nullptr;
  slot_group<Slot>* g = nullptr;

  bucket_ref() noexcept = default;
  bucket_ref(bucket_meta<Slot>* meta, slot_group<Slot>* slots) noexcept : m(meta), g(slots) {}
  explicit bucket_ref(overflow_bucket<Slot>* o) noexcept : m(&o->meta), g(&o->slots) {}

  bucket_meta<Slot>* operator->() const noexcept { return m; }
  explicit operator bool() const noexcept { return m != nullptr; }
  friend bool operator==(const bucket_ref& a, const bucket_ref& b) noexcept { return a.m == b.m; }

  Slot* slot(unsigned i) const noexcept { return g->slot(i); }
  void* raw_slot(unsigned i) const noexcept { return g->raw_slot(i); }
  // The next bucket of the chain, or an empty ref at its end.
  bucket_ref next() const noexcept {
    bucket_meta<Slot>* o = m->overflow;
    return o != nullptr ? bucket_ref(overflow_bucket<Slot>::of(o)) : bucket_ref();
  }
};

}  // namespace safemap::detail
