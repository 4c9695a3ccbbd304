// tests/support/reference_model.hpp - oracles for map tests.
//
//  - test_rng: a small seeded generator (splitmix64) so every randomized test is reproducible
//    from the seed it prints.
//  - same_contents(m, ref): the map m holds exactly the entries of the reference map ref
//    (a std::unordered_map or std::map): same size, iteration visits every key exactly once
//    with the reference's value, and find() agrees for every reference key.
//  - stats_consistent(m): the fields of m.stats() agree with each other and with size().
// Both return testing::AssertionResult, so failures say what differed.
//
// Concurrency: the oracles read m; call them where no writer runs.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace safemap_test {

class test_rng {
 public:
  explicit test_rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() noexcept {
    state_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0. (The modulo bias is irrelevant for tests.)
  std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
  // True with probability num/den.
  bool chance(std::uint64_t num, std::uint64_t den) noexcept { return below(den) < num; }

 private:
  std::uint64_t state_;
};

template <class M, class Ref>
testing::AssertionResult same_contents(const M& m, const Ref& ref) {
  if (m.size() != ref.size()) {
    return testing::AssertionFailure()
           << "size() is " << m.size() << ", reference has " << ref.size();
  }
  if (m.empty() != ref.empty()) return testing::AssertionFailure() << "empty() disagrees";
  std::unordered_map<typename Ref::key_type, int, typename Ref::hasher, typename Ref::key_equal>
      visits(ref.size(), ref.hash_function(), ref.key_eq());
  std::size_t visited = 0;
  for (const auto& [k, v] : m) {
    ++visited;
    auto r = ref.find(k);
    if (r == ref.end()) {
      return testing::AssertionFailure() << "iteration visited key " << testing::PrintToString(k)
                                         << " which the reference does not hold";
    }
    if (!(r->second == v)) {
      return testing::AssertionFailure() << "iteration: key " << testing::PrintToString(k)
                                         << " maps to " << testing::PrintToString(v)
                                         << ", reference has " << testing::PrintToString(r->second);
    }
    if (++visits[k] != 1) {
      return testing::AssertionFailure()
             << "iteration visited key " << testing::PrintToString(k) << " twice";
    }
  }
  if (visited != ref.size()) {
    return testing::AssertionFailure()
           << "iteration visited " << visited << " entries, size is " << ref.size();
  }
  for (const auto& [k, v] : ref) {
    const auto* found = m.find(k);
    if (found == nullptr) {
      return testing::AssertionFailure()
             << "find(" << testing::PrintToString(k) << ") is nullptr, reference has it";
    }
    if (!(*found == v)) {
      return testing::AssertionFailure()
             << "find(" << testing::PrintToString(k) << ") gives " << testing::PrintToString(*found)
             << ", reference has " << testing::PrintToString(v);
    }
  }
  return testing::AssertionSuccess();
}

template <class M>
testing::AssertionResult stats_consistent(const M& m) {
  const auto s = m.stats();
  auto fail = [&] {
    return testing::AssertionFailure()
           << "stats{size=" << s.size << " B=" << s.log2_buckets << " buckets=" << s.buckets
           << " overflow=" << s.overflow_buckets << " load=" << s.load_factor
           << " growing=" << s.growing << " same_size=" << s.same_size_grow
           << " old=" << s.old_buckets << " old_overflow=" << s.old_overflow_buckets
           << " evacuated=" << s.evacuated << " bytes=" << s.bytes << "}: ";
  };
  if (s.size != m.size()) return fail() << "size differs from size() " << m.size();
  if (s.buckets == 0) {
    if (s.size != 0 || s.growing || s.bytes != 0 || s.overflow_buckets != 0) {
      return fail() << "no bucket array but state";
    }
    return testing::AssertionSuccess();
  }
  if (s.buckets != (std::size_t{1} << s.log2_buckets)) return fail() << "buckets != 2^B";
  if (s.load_factor != static_cast<double>(s.size) / static_cast<double>(s.buckets)) {
    return fail() << "load_factor != size / buckets";
  }
  if (s.bytes == 0) return fail() << "bytes is 0 with a bucket array";
  // Every bucket in use holds 8 slots; bytes may be more (overflow buckets preallocated with
  // an array, pool chunks not handed out yet, blocks retired and not yet freed). While
  // growing, the new array's segments may not all be allocated yet and the old array's
  // evacuated segments may be freed already, so only the overflow buckets are counted then.
  const std::size_t blocks =
      s.overflow_buckets + s.old_overflow_buckets + (s.growing ? 0 : s.buckets);
  if (s.bytes < blocks * 8 * sizeof(typename M::value_type)) {
    return fail() << "bytes is less than the buckets in use hold";
  }
  if (s.growing) {
    const std::size_t want_old = s.same_size_grow ? s.buckets : s.buckets / 2;
    if (s.old_buckets != want_old) return fail() << "old_buckets does not match the growth kind";
    // evacuated == old_buckets is possible for a moment: Go's bounded scan of the evacuation
    // mark may leave the last buckets' marks to the next writes.
    if (s.evacuated > s.old_buckets) return fail() << "more buckets evacuated than exist";
  } else if (s.same_size_grow || s.old_buckets != 0 || s.old_overflow_buckets != 0 ||
             s.evacuated != 0) {
    return fail() << "growth fields set while not growing";
  }
  return testing::AssertionSuccess();
}

// Inserts key i -> value i for i = next, next + 1, ... until a growth of at least
// min_old_buckets old buckets is in progress. Returns the next unused i. Key and mapped type
// must be constructible from int.
template <class M>
int insert_until_growing(M& m, int next, std::size_t min_old_buckets = 8) {
  for (;;) {
    const auto s = m.stats();
    if (s.growing && s.old_buckets >= min_old_buckets) return next;
    m.insert_or_assign(typename M::key_type(next), typename M::mapped_type(next));
    ++next;
  }
}

// The deterministic start of the churn that leads a Map to a same-size growth: 90 keys from
// rng, in m, ref and keys (16 buckets hold up to 104 entries before doubling), and m's growth
// to 16 buckets finished. m must have a fixed hash seed and stay non-empty afterwards (an
// emptied map reseeds) for what follows to stay deterministic.
template <class M>
void fill_before_churn(M& m, std::unordered_map<std::uint64_t, std::uint64_t>& ref,
                       std::vector<std::uint64_t>& keys, test_rng& rng) {
  for (int i = 0; i < 90; ++i) {
    const std::uint64_t k = rng.next();
    m.insert_or_assign(k, k);
    ref[k] = k;
    keys.push_back(k);
  }
  while (m.stats().growing) m.erase(0);
}

}  // namespace safemap_test
