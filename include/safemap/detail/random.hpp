// safemap/detail/random.hpp - cheap per-thread randomness for hash seeds and iteration order.
//
// Hand-written (a few lines of wyrand) rather than <random>: a std::mt19937_64 per thread is
// 2.5 KB of state and its construction is slow, while a map needs one 64-bit seed per
// construction/clear and one random start per iteration. The stream is seeded once per thread
// from std::random_device, so seeds cannot be predicted from outside the process.
#pragma once

#include <cstdint>
#include <random>

namespace safemap::detail {

__extension__ typedef unsigned __int128 uint128;  // GCC/Clang builtin; __extension__ for -Wpedantic

// 64x64 -> 128 multiply, folded: the core of wyhash/Boost's mulx mixers.
inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) noexcept {
  const uint128 r = static_cast<uint128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

inline std::uint64_t random_u64() noexcept {
  thread_local std::uint64_t state = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  state += 0xa0761d6478bd642fULL;
  return mum(state, state ^ 0xe7037ed1a0b428dbULL);
}

}  // namespace safemap::detail
