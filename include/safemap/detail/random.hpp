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
//
// On x86-64 one MUL in inline assembly. Written with unsigned __int128, GCC 12 may keep the
// product in a stack slot when the caller is large (lookup loops): two stores and a reload per
// round, a store-forwarding delay on the critical path of each lookup. In a loop of the
// unchecked lookup the concurrent maps use (map_access::find_unsynchronized) over 1e6 uint64
// keys, both mixing rounds of safemap::Hash carried such a spill; with the instruction that
// loop runs 9 instructions per lookup fewer (cachegrind: 64.2 -> 55.2; Map's checked find,
// which reloads its header after the misuse checks, 66.2 -> 65.2). The portable expression
// stays for other targets.
inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  std::uint64_t lo = a;
  std::uint64_t hi;
  __asm__("mulq %2" : "+a"(lo), "=d"(hi) : "rm"(b) : "cc");
  return lo ^ hi;
#else
  const uint128 r = static_cast<uint128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
#endif
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
