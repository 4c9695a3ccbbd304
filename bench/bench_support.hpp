// bench/bench_support.hpp - keys, hashers, allocators and map adapters shared by the benchmarks.
//
// What every benchmark here relies on:
//  - Keys are generated outside the timed code, deterministically (fixed seeds), and are
//    distinct by construction: integer keys are splitmix64's finalizer (a bijection) of a
//    counter, so hit keys (counter in [0, n)) and miss keys (counter from 2^62) never collide.
//    String keys are 16-24 characters: a random prefix of 0-8 letters and 16 hex digits of
//    such an integer key, so they too are distinct and a miss key is never a hit key.
//  - Peers get the same good hasher (peer_hash): std::hash<std::uint64_t> is the identity,
//    which would make std::unordered_map look better than it is on random keys and punish
//    any table that uses the top bits: peer_hash.hpp, one copy shared with
//    tools/safemap-bench. safemap::Map keeps its own seeded safemap::Hash: that is what users get.
//  - Adapters hide the one API difference that matters: safemap::Map::find returns V*,
//    the peers return an iterator.
//
// This header is included by misuse_overhead_bench.cpp and misuse_overhead_unchecked.cpp,
// which see different safemap::Map types (checked/unchecked inline namespaces): nothing
// non-template here may mention safemap::Map, or the two translation units would define it
// differently (an ODR violation).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "peer_hash.hpp"
#include "safemap/hash.hpp"  // XXH3 (inline), detail::mum

namespace safemap_bench {

// ---- keys -------------------------------------------------------------------------------------

// fmix64 (splitmix64's finalizer) comes from peer_hash.hpp.

inline constexpr std::uint64_t miss_base = std::uint64_t{1} << 62;

// n distinct random-looking integers; counters [first, first + n).
inline std::vector<std::uint64_t> make_u64_keys(std::size_t n, std::uint64_t first = 0) {
  std::vector<std::uint64_t> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = fmix64(first + i);
  return keys;
}

// n distinct strings of 16-24 characters (see the top of this file).
inline std::vector<std::string> make_string_keys(std::size_t n, std::uint64_t first = 0) {
  static constexpr char hex[] = "0123456789abcdef";
  static constexpr char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::vector<std::string> keys(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t r = fmix64((first + i) ^ 0x5bd1e9955bd1e995ULL);
    const std::size_t prefix = r % 9;
    std::string& s = keys[i];
    s.reserve(prefix + 16);
    for (std::size_t j = 0; j < prefix; ++j) {
      r = fmix64(r + j);
      s.push_back(letters[r % (sizeof letters - 1)]);
    }
    std::uint64_t v = fmix64(first + i);
    for (int j = 0; j < 16; ++j, v >>= 4) s.push_back(hex[v & 15]);
  }
  return keys;
}

template <class K>
std::vector<K> make_keys(std::size_t n, std::uint64_t first = 0) {
  if constexpr (std::is_same_v<K, std::string>) {
    return make_string_keys(n, first);
  } else {
    return make_u64_keys(n, first);
  }
}

// The keys of one benchmark size: inserted in `keys` order, looked up in `shuffled` order,
// `misses` are absent from every map built from `keys`.
template <class K>
struct key_set {
  std::vector<K> keys;
  std::vector<K> shuffled;
  std::vector<K> misses;

  explicit key_set(std::size_t n)
      : keys(make_keys<K>(n)), shuffled(keys), misses(make_keys<K>(n, miss_base)) {
    std::mt19937_64 rng(0x243f6a8885a308d3ULL ^ n);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
  }
};

// ---- hashers for the peers: peer_hash.hpp (shared with tools/safemap-bench) ----------------

// ---- counting allocator -----------------------------------------------------------------------

// Bytes requested through one map's allocator (live now and peak). Requested bytes exclude
// malloc's own per-chunk header (8 bytes per allocation with glibc), which matters only for
// node-based maps (std::unordered_map: one allocation per entry); docs/benchmarks.md says so.
struct alloc_counter {
  std::size_t live = 0;
  std::size_t peak = 0;
  std::size_t allocations = 0;
};

template <class T>
struct counting_allocator {
  using value_type = T;
  alloc_counter* counter;

  explicit counting_allocator(alloc_counter* c) noexcept : counter(c) {}
  template <class U>
  counting_allocator(const counting_allocator<U>& o) noexcept : counter(o.counter) {}

  T* allocate(std::size_t n) {
    T* p = std::allocator<T>{}.allocate(n);
    counter->live += n * sizeof(T);
    counter->peak = std::max(counter->peak, counter->live);
    ++counter->allocations;
    return p;
  }
  void deallocate(T* p, std::size_t n) noexcept {
    counter->live -= n * sizeof(T);
    std::allocator<T>{}.deallocate(p, n);
  }
  template <class U>
  bool operator==(const counting_allocator<U>& o) const noexcept {
    return counter == o.counter;
  }
};

// ---- map adapters -----------------------------------------------------------------------------

// safemap::Map::find returns V* (nullptr when absent); the peers return an iterator.
template <class M, class K>
const typename M::mapped_type* lookup(const M& m, const K& key) {
  if constexpr (std::is_pointer_v<decltype(m.find(key))>) {
    return m.find(key);
  } else {
    const auto it = m.find(key);
    return it == m.end() ? nullptr : &it->second;
  }
}

// Pays, outside the timed code, for the frees that glibc defers. Destroying a node-based map
// (std::unordered_map at 1e6: a million 32-byte frees) fills malloc's fastbins, and glibc
// consolidates them on the next allocation of 1 KiB or more, whoever makes it: seconds at
// 1e7, landing in the timed fill of the next map or benchmark. malloc_trim consolidates and
// returns free memory to the OS, so every timed fill starts from the same heap state and pays
// its own page faults. Call it after destroying maps, while the timer is stopped.
inline void settle_heap() noexcept {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

// Keeps a value (and what it points to) alive in the eyes of the optimizer.
template <class T>
inline void escape(const T& value) noexcept {
  asm volatile("" : : "r,m"(value) : "memory");
}
inline void clobber() noexcept {
  asm volatile("" : : : "memory");
}

}  // namespace safemap_bench
