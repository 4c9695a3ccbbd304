// engine/keys.hpp - deterministic keys and operation streams for safemap-bench.
//
// Everything a workload feeds a map is generated before the clock starts, from fixed seeds, so
// two runs (and two maps, and the Go program in go/) see the same keys in the same order:
//  - integer keys of the mixes are splitmix64's finalizer of a key index (a bijection, so keys
//    are distinct and random-looking); the Go sync.Map suite uses the plain integers Go uses;
//  - string keys are 16-24 characters (a random 0-8 letter prefix and 16 hex digits of the
//    integer key): longer than libstdc++'s 15-byte small-string buffer, so storing one
//    allocates, as real string keys usually do;
//  - a mix is one array of operations (read or write, key index) shared by every thread; each
//    thread starts at its own offset in it and walks it cyclically. Writes are spread evenly
//    (Bresenham: exactly floor(L * write_pct / 100) writes in L operations), keys are uniform
//    or Zipf-distributed (rank r has probability proportional to 1 / (r + 1)^s; rank 0 = key
//    index 0, the hottest key).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../../bench/peer_hash.hpp"  // one copy for bench/ and this tool

namespace safemap_bench {

// fmix64 (splitmix64's finalizer) and the peers' hashers: bench/peer_hash.hpp, shared with
// bench/.

// splitmix64 (Steele, Lea, Flood 2014): the generator of every random choice here; the Go
// program implements the same one.
struct splitmix64 {
  std::uint64_t state;
  std::uint64_t next() noexcept { return fmix64(state += 0x9e3779b97f4a7c15ULL); }
  // A double in [0, 1) with 53 random bits.
  double next_unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

// The integer key with index i (mixes, serialization).
constexpr std::uint64_t u64_key(std::uint64_t index) noexcept {
  return fmix64(index);
}

// The string key with index i: 16-24 characters, distinct for distinct i.
std::string string_key(std::uint64_t index);

enum class key_dist { uniform, zipf };
std::string_view to_string(key_dist d) noexcept;

// Zipf's distribution over ranks [0, n) with exponent s > 0, sampled by inverting the
// cumulative distribution (a table of n doubles, binary search).
class zipf_table {
 public:
  zipf_table(std::size_t n, double s);
  // The rank whose cumulative-probability interval holds u in [0, 1).
  std::size_t sample(double u) const noexcept;
  double cdf(std::size_t rank) const noexcept { return cdf_[rank]; }
  std::size_t size() const noexcept { return cdf_.size(); }

 private:
  std::vector<double> cdf_;  // cdf_[r] = P(rank <= r); cdf_.back() == 1
};

// One operation of a mix: bit 31 says write, the low 31 bits are the key index.
using mix_op = std::uint32_t;
constexpr bool is_write(mix_op op) noexcept {
  return (op >> 31) != 0;
}
constexpr std::uint32_t key_index(mix_op op) noexcept {
  return op & 0x7fffffffU;
}

struct mix_spec {
  unsigned write_pct = 10;  // 0..100
  key_dist dist = key_dist::uniform;
  double zipf_s = 0.99;             // YCSB's default skew
  std::size_t keys = 1 << 16;       // key indexes [0, keys); at most 2^31
  std::size_t length = 1 << 16;     // operations in the cycle; a power of two
  std::uint64_t seed = 0x5afe3a9b;  // same seed, same stream
};

// Position j is a write iff floor((j + 1) * w / 100) > floor(j * w / 100).
constexpr bool mix_position_is_write(std::uint64_t j, unsigned write_pct) noexcept {
  return (j + 1) * write_pct / 100 > j * write_pct / 100;
}

std::vector<mix_op> make_mix_ops(const mix_spec& spec);

// Where thread t starts in a cycle of `length` operations (a power of two): spread by the
// golden ratio so threads do not walk the cycle in lockstep.
constexpr std::uint64_t thread_offset(unsigned thread, std::uint64_t length) noexcept {
  return (static_cast<std::uint64_t>(thread) * 0x9e3779b97f4a7c15ULL >> 20) & (length - 1);
}

}  // namespace safemap_bench
