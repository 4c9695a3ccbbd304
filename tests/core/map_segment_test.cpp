// safemap::Map's segmented bucket arrays (map.hpp "# Memory"): a large array is cut into
// segments; a growth allocates the new array's segments one per write and releases the old
// array's segments as the evacuation mark passes them, so no single write allocates or frees
// a whole array, and the memory held drops during the evacuation instead of all at its end.
// The tests use 488-byte entries so that a segment is 2^10 buckets and a table of a few
// segments stays small; they never assume the segment size itself, only its consequences.
#include <gtest/gtest.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "safemap/detail/pages.hpp"
#include "safemap/map.hpp"
#include "support/reference_model.hpp"

namespace safemap_test {
namespace {

// What one allocator saw: counts, and the largest single block allocated or freed, since the
// last window reset; and live bytes overall. fail_after(n) makes the allocation after the
// next n throw std::bad_alloc (once).
struct alloc_log {
  std::size_t allocations = 0;
  std::size_t deallocations = 0;
  std::size_t largest_allocation = 0;
  std::size_t largest_deallocation = 0;
  std::size_t live_bytes = 0;
  std::size_t live_blocks = 0;
  long fail_countdown = -1;

  void new_window() { allocations = deallocations = largest_allocation = largest_deallocation = 0; }
  void fail_after(long n) { fail_countdown = n; }
};

template <class T>
struct logging_allocator {
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;

  alloc_log* log;

  explicit logging_allocator(alloc_log* l) noexcept : log(l) {}
  template <class U>
  logging_allocator(const logging_allocator<U>& o) noexcept : log(o.log) {}  // NOLINT

  T* allocate(std::size_t n) {
    if (log->fail_countdown >= 0 && log->fail_countdown-- == 0) throw std::bad_alloc();
    const std::size_t bytes = n * sizeof(T);
    void* p = ::operator new(bytes, std::align_val_t(alignof(T)));
    ++log->allocations;
    ++log->live_blocks;
    log->live_bytes += bytes;
    log->largest_allocation = std::max(log->largest_allocation, bytes);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    ++log->deallocations;
    --log->live_blocks;
    log->live_bytes -= bytes;
    log->largest_deallocation = std::max(log->largest_deallocation, bytes);
    ::operator delete(p, std::align_val_t(alignof(T)));
  }
  friend bool operator==(const logging_allocator& a, const logging_allocator& b) noexcept {
    return a.log == b.log;
  }
};

using big_value = std::array<std::uint64_t, 60>;  // 480 bytes: small segments
using entry = std::pair<const std::uint64_t, big_value>;
using seg_map = safemap::Map<std::uint64_t, big_value, safemap::Hash<std::uint64_t>,
                             std::equal_to<>, logging_allocator<entry>>;

big_value value_for(std::uint64_t k) {
  big_value v{};
  v.front() = k;
  v.back() = ~k;
  return v;
}
template <class M>
bool holds(const M& m, std::uint64_t k) {
  const big_value* v = m.find(k);
  return v != nullptr && v->front() == k && v->back() == ~k;
}

// Inserts keys next, next + 1, ... until a growth from at least min_old buckets is in
// progress. Returns the next unused key.
std::uint64_t grow_to(seg_map& m, std::uint64_t next, std::size_t min_old) {
  while (!(m.stats().growing && m.stats().old_buckets >= min_old)) {
    m.insert_or_assign(next, value_for(next));
    ++next;
  }
  return next;
}

// 4096 old buckets of 488-byte entries: 16 MB, several segments whatever their size.
constexpr std::size_t old_buckets = 4096;

TEST(MapSegments, MemoryHeldDropsWhileTheOldArrayIsEvacuated) {
  alloc_log log;
  {
    seg_map m{logging_allocator<entry>(&log)};
    std::uint64_t next = grow_to(m, 0, old_buckets);
    const std::size_t old_bytes = m.stats().old_buckets * 8 * sizeof(entry);
    std::size_t peak = m.stats().bytes;
    std::size_t last_while_growing = peak;
    std::size_t freed_while_growing = 0;
    while (m.stats().growing) {
      log.new_window();
      m.insert_or_assign(next, value_for(next));
      ++next;
      if (!m.stats().growing) break;
      freed_while_growing += log.deallocations;
      last_while_growing = m.stats().bytes;
      peak = std::max(peak, last_while_growing);
      ASSERT_EQ(m.stats().bytes, log.live_bytes);
    }
    // Before segments, the old array (and so all of its memory) went at the growth's end.
    EXPECT_GT(freed_while_growing, 0u) << "nothing was freed before the growth ended";
    EXPECT_LE(last_while_growing + old_bytes / 2, peak)
        << "the memory held fell by less than half the old array's slots before the growth "
           "ended (peak "
        << peak << ", last " << last_while_growing << ")";
    for (std::uint64_t k = 0; k < next; ++k) ASSERT_TRUE(holds(m, k)) << k;
    EXPECT_TRUE(stats_consistent(m));
  }
  EXPECT_EQ(log.live_blocks, 0u);
  EXPECT_EQ(log.live_bytes, 0u);
}

TEST(MapSegments, NoInsertAllocatesOrFreesMoreThanOneBlockOfASegmentsSize) {
  alloc_log log;
  {
    seg_map m{logging_allocator<entry>(&log)};
    std::size_t largest = 0;
    std::size_t most_allocations = 0;
    std::size_t most_deallocations = 0;
    std::uint64_t k = 0;
    // Up to and through a doubling of a multi-segment array: 4096 -> 8192 buckets.
    while (m.stats().log2_buckets < 13 || m.stats().growing) {
      log.new_window();
      m.insert_or_assign(k, value_for(k));
      ++k;
      most_allocations = std::max(most_allocations, log.allocations);
      most_deallocations = std::max(most_deallocations, log.deallocations);
      largest = std::max({largest, log.largest_allocation, log.largest_deallocation});
    }
    const std::size_t total = m.stats().bytes;
    // One segment (or overflow chunk, no larger) per insert, plus at most one overflow chunk.
    EXPECT_LE(most_allocations, 2u);
    // Frees go through the retired list, one block per write.
    EXPECT_LE(most_deallocations, 1u);
    // A whole array was one block before: about two thirds of the memory held.
    EXPECT_LE(largest, total / 6) << "largest block allocated or freed by one insert";
    log.new_window();
    for (std::uint64_t i = 0; i < k; i += 2) {
      log.new_window();
      ASSERT_EQ(m.erase(i), 1u);
      ASSERT_LE(log.deallocations, 1u);
      ASSERT_EQ(log.allocations, 0u);
    }
    for (std::uint64_t i = 1; i < k; i += 2) ASSERT_TRUE(holds(m, i)) << i;
    EXPECT_TRUE(stats_consistent(m));
  }
  EXPECT_EQ(log.live_blocks, 0u);
}

TEST(MapSegments, ACopyOfAGrowingMultiSegmentMapIsAFinishedCompactTable) {
  alloc_log log;
  {
    seg_map m{logging_allocator<entry>(&log)};
    std::uint64_t next = grow_to(m, 0, old_buckets);
    for (int i = 0; i < 1000; ++i, ++next) m.insert_or_assign(next, value_for(next));
    ASSERT_TRUE(m.stats().growing);
    ASSERT_GT(m.stats().evacuated, 0u);
    ASSERT_LT(m.stats().evacuated, m.stats().old_buckets);
    seg_map copy(m);
    EXPECT_FALSE(copy.stats().growing);
    EXPECT_EQ(copy.stats().old_buckets, 0u);
    EXPECT_EQ(copy.stats().log2_buckets, m.stats().log2_buckets);
    EXPECT_LT(copy.stats().bytes, m.stats().bytes) << "the copy holds an old array's memory";
    EXPECT_EQ(copy.size(), m.size());
    EXPECT_TRUE(copy == m);
    for (std::uint64_t k = 0; k < next; ++k) ASSERT_TRUE(holds(copy, k)) << k;
    EXPECT_TRUE(stats_consistent(copy));
    // The copy grows on as a map of its own.
    for (std::uint64_t k = next; k < next + 10000; ++k) copy.insert_or_assign(k, value_for(k));
    for (std::uint64_t k = 0; k < next + 10000; ++k) ASSERT_TRUE(holds(copy, k)) << k;
    // A copy of a quiet multi-segment map is cloned chain by chain into the same shape.
    std::uint64_t more = next + 10000;
    for (; copy.stats().growing; ++more) copy.insert_or_assign(more, value_for(more));
    seg_map quiet_copy(copy);
    EXPECT_FALSE(quiet_copy.stats().growing);
    EXPECT_EQ(quiet_copy.stats().log2_buckets, copy.stats().log2_buckets);
    EXPECT_TRUE(quiet_copy == copy);
    EXPECT_TRUE(stats_consistent(quiet_copy));
  }
  EXPECT_EQ(log.live_blocks, 0u);
}

// Go's semantics over a multi-segment growth, at its start (the new array's segments mostly
// not allocated yet) and midway (the old array's first segments released): every entry present
// for the whole walk is visited exactly once, while the walk inserts and erases.
TEST(MapSegments, IterationMidGrowthAcrossSegmentsVisitsEachStableEntryOnce) {
  for (const int writes_into_growth : {1, 1500}) {
    SCOPED_TRACE(writes_into_growth);
    alloc_log log;
    {
      seg_map m{logging_allocator<entry>(&log)};
      std::uint64_t next = grow_to(m, 0, old_buckets);
      for (int i = 1; i < writes_into_growth; ++i, ++next)
        m.insert_or_assign(next, value_for(next));
      ASSERT_TRUE(m.stats().growing);
      if (writes_into_growth > 1) {
        ASSERT_GT(m.stats().evacuated, m.stats().old_buckets / 4);  // old segments released
      }
      // Stable keys: the odd ones; the walk erases even keys and inserts new ones.
      std::unordered_map<std::uint64_t, int> visits;
      std::uint64_t erase_next = 0;
      std::uint64_t insert_next = next;
      for (auto it = m.begin(); it != m.end(); ++it) {
        ASSERT_EQ(it->second.front(), it->first);
        ++visits[it->first];
        if (erase_next < next) {
          m.erase(erase_next);
          erase_next += 2;
        }
        m.insert_or_assign(insert_next, value_for(insert_next));
        ++insert_next;
      }
      for (std::uint64_t k = 1; k < next; k += 2) ASSERT_EQ(visits[k], 1) << "stable key " << k;
      for (const auto& [k, n] : visits) ASSERT_EQ(n, 1) << "key " << k << " visited twice";
      ASSERT_TRUE(stats_consistent(m));
      // Nothing moved during the walk; the growth resumes and ends afterwards.
      while (m.stats().growing) {
        m.insert_or_assign(insert_next, value_for(insert_next));
        ++insert_next;
      }
      for (std::uint64_t k = 1; k < next; k += 2) ASSERT_TRUE(holds(m, k)) << k;
      for (std::uint64_t k = next; k < insert_next; ++k) ASSERT_TRUE(holds(m, k)) << k;
      for (std::uint64_t k = 0; k < erase_next && k < next; k += 2) ASSERT_FALSE(m.contains(k));
      ASSERT_EQ(m.size(), next - erase_next / 2 + (insert_next - next));
    }
    EXPECT_EQ(log.live_blocks, 0u);
  }
}

// Every allocation a growth makes can fail: the new array's first block (the insert that
// starts the growth throws and changes nothing), a later segment (the write succeeds; the
// buckets that would evacuate into it wait in the old array) or an overflow chunk. The map
// stays whole, and once memory is back the growth completes.
TEST(MapSegments, AllocationFailuresDuringAMultiSegmentGrowthLoseNothing) {
  alloc_log log;
  {
    seg_map m{logging_allocator<entry>(&log)};
    std::uint64_t next = 0;
    while (m.size() < 6 * old_buckets) {
      m.insert_or_assign(next, value_for(next));
      ++next;
    }
    std::unordered_set<std::uint64_t> present;
    for (std::uint64_t k = 0; k < next; ++k) present.insert(k);
    // One insert: returns whether it threw, after checking that a throw changed nothing.
    // allocation_failed: whether it met the injected failure.
    bool allocation_failed = false;
    auto insert = [&](bool fail_first_allocation) -> bool {
      log.fail_after(fail_first_allocation ? 0 : -1);
      const std::size_t before = m.size();
      bool threw = false;
      try {
        m.insert_or_assign(next, value_for(next));
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      allocation_failed = fail_first_allocation && log.fail_countdown < 0;
      log.fail_after(-1);
      if (threw) {
        EXPECT_EQ(m.size(), before);
        EXPECT_FALSE(m.contains(next));
      } else {
        EXPECT_EQ(m.size(), before + 1);
        present.insert(next);
      }
      ++next;
      EXPECT_EQ(m.stats().bytes, log.live_bytes);
      return threw;
    };
    // Every write's first allocation fails until one insert throws: the one that starts the
    // growth (its first block) or, before it, an overflow chunk refill.
    int rounds = 0;
    while (!insert(true)) ASSERT_LT(++rounds, 100000);
    ASSERT_FALSE(m.stats().growing);
    // About every other write fails its first allocation: the growth starts, and the segment
    // allocations that fail are retried by later writes. The pattern is pseudo-random: a
    // periodic one can fall in step with the growth, whose segments each take the same number
    // of writes to populate before the next is allocated. Until one segment allocation has
    // failed, every write of the growth fails its first allocation (the map's random seed
    // moves the growth's start, so a fixed pattern alone missed all 7 of them in 2 runs of 400).
    std::size_t swallowed = 0;
    bool saw_growth = false;
    std::mt19937 pattern(12345);
    for (int round = 0; !saw_growth || m.stats().growing; ++round) {
      ASSERT_LT(round, 100000);
      const bool fail = (saw_growth && swallowed == 0) || (pattern() & 1) == 0;
      const bool growing_before = m.stats().growing;
      const bool threw = insert(fail);
      if (fail && !threw && allocation_failed && growing_before) ++swallowed;
      saw_growth = saw_growth || m.stats().growing;
      if (round % 512 == 0) {
        for (const std::uint64_t k : present) ASSERT_TRUE(holds(m, k)) << k;
      }
    }
    EXPECT_GT(swallowed, 0u) << "no segment allocation failed during the growth";
    ASSERT_EQ(m.size(), present.size());
    for (const std::uint64_t k : present) ASSERT_TRUE(holds(m, k)) << k;
    EXPECT_TRUE(stats_consistent(m));
  }
  EXPECT_EQ(log.live_blocks, 0u);
  EXPECT_EQ(log.live_bytes, 0u);
}

// Keys below 2^32 hash well (splitmix64); key 2^32 + 64 * b + i hashes into bucket b (its low
// 20 bits are b), so a run of 64 such keys makes a chain of 8 or more buckets in bucket b.
struct churn_hash {
  using is_avalanching = void;
  std::size_t operator()(std::uint64_t k) const noexcept {
    std::uint64_t x = k + 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    if (k >= (std::uint64_t{1} << 32)) {
      const std::uint64_t b = (k - (std::uint64_t{1} << 32)) / 64;
      x = (x << 20) | (b & 0xfffff);
    }
    return static_cast<std::size_t>(x);
  }
};

using mid_value = std::array<std::uint64_t, 15>;  // 128-byte entries: 2^11-bucket segments
using mid_entry = std::pair<const std::uint64_t, mid_value>;
using churn_map = safemap::Map<std::uint64_t, mid_value, churn_hash, std::equal_to<>,
                               logging_allocator<mid_entry>>;

// Chains left long and empty by inserts and erases make a same-size growth (compaction) of a
// multi-segment array: it allocates and retires segments in order like a doubling does.
TEST(MapSegments, ASameSizeGrowthOfAMultiSegmentArrayKeepsEveryEntry) {
  alloc_log log;
  {
    churn_map m{logging_allocator<mid_entry>(&log)};
    auto value = [](std::uint64_t k) {
      mid_value v{};
      v.front() = k;
      return v;
    };
    constexpr std::uint64_t base = 6 * 4096;  // 2^12 buckets: several segments
    for (std::uint64_t k = 0; k < base; ++k) m.insert_or_assign(k, value(k));
    ASSERT_EQ(m.stats().log2_buckets, 12u);
    ASSERT_FALSE(m.stats().growing);
    bool saw_same_size = false;
    std::size_t max_deallocations = 0;
    std::uint64_t b = 0;
    for (; b < 4096 && !(saw_same_size && !m.stats().growing); ++b) {
      const std::uint64_t first = (std::uint64_t{1} << 32) + 64 * b;
      for (std::uint64_t k = first; k < first + 64; ++k) {
        log.new_window();
        m.insert_or_assign(k, value(k));
        max_deallocations = std::max(max_deallocations, log.deallocations);
        saw_same_size = saw_same_size || m.stats().same_size_grow;
      }
      for (std::uint64_t k = first; k < first + 64; ++k) {
        log.new_window();
        ASSERT_EQ(m.erase(k), 1u);
        max_deallocations = std::max(max_deallocations, log.deallocations);
        saw_same_size = saw_same_size || m.stats().same_size_grow;
      }
    }
    ASSERT_TRUE(saw_same_size) << "no same-size growth after " << b << " runs";
    EXPECT_FALSE(m.stats().growing);
    EXPECT_EQ(m.stats().log2_buckets, 12u);
    EXPECT_LE(max_deallocations, 1u);
    ASSERT_EQ(m.size(), base);
    for (std::uint64_t k = 0; k < base; ++k) {
      const mid_value* v = m.find(k);
      ASSERT_TRUE(v != nullptr && v->front() == k) << k;
    }
    EXPECT_TRUE(stats_consistent(m));
    EXPECT_EQ(m.stats().bytes, log.live_bytes);
  }
  EXPECT_EQ(log.live_blocks, 0u);
}

// ---- population of a growth's new segments (detail/pages.hpp) -------------------------------

#if defined(__linux__)
// Whether this kernel populates memory on request (MADV_POPULATE_WRITE, Linux 5.14).
bool kernel_populates() {
  const std::size_t page = safemap::detail::page_size();
  void* p = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool ok = safemap::detail::can_populate &&
                  safemap::detail::populate_for_write(p, page, /*touch=*/false);
  munmap(p, page);
  return ok;
}

// Which pages of [p, p + n) (page-aligned) the kernel has backed.
std::vector<bool> resident_pages(void* p, std::size_t n) {
  const std::size_t page = safemap::detail::page_size();
  std::vector<unsigned char> r((n + page - 1) / page);
  EXPECT_EQ(mincore(p, n, r.data()), 0);
  std::vector<bool> out(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) out[i] = (r[i] & 1) != 0;
  return out;
}
std::size_t absent_pages(void* p, std::size_t n) {
  const std::vector<bool> r = resident_pages(p, n);
  return static_cast<std::size_t>(std::count(r.begin(), r.end(), false));
}

// Every block is a fresh anonymous mapping of its own, so what is resident in it is what the
// map wrote or populated. live maps each live block to its size.
struct mapping_log {
  std::map<void*, std::size_t> live;
  void* newest = nullptr;  // the block allocated last, while it lives
};

template <class T>
struct mmap_allocator {
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;

  mapping_log* log;

  explicit mmap_allocator(mapping_log* l) noexcept : log(l) {}
  template <class U>
  mmap_allocator(const mmap_allocator<U>& o) noexcept : log(o.log) {}  // NOLINT

  static std::size_t rounded(std::size_t n) {
    const std::size_t page = safemap::detail::page_size();
    return (n * sizeof(T) + page - 1) / page * page;
  }
  T* allocate(std::size_t n) {
    void* p = mmap(nullptr, rounded(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    log->live[p] = rounded(n);
    log->newest = p;
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    log->live.erase(p);
    if (log->newest == p) log->newest = nullptr;
    munmap(p, rounded(n));
  }
  friend bool operator==(const mmap_allocator& a, const mmap_allocator& b) noexcept {
    return a.log == b.log;
  }
};

using mmap_map = safemap::Map<std::uint64_t, big_value, safemap::Hash<std::uint64_t>,
                              std::equal_to<>, mmap_allocator<entry>>;

// The segments of a growth are populated, front to back, before entries move into them. So
// after every write the block allocated last has its backed pages in one run from its start
// (an evacuation into it before it is done would back a page further on), and a finished
// growth leaves every page of its segments backed, also the slots no entry took: after a
// doubling a bucket holds about 3 of its 8 entries (488 bytes each), and without the
// population the pages of the empty slots stayed untouched.
TEST(MapSegments, AGrowthBacksEveryPageOfItsSegmentsBeforeUsingThem) {
  if (!kernel_populates()) GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE (Linux 5.14)";
  mapping_log log;
  {
    mmap_map m{mmap_allocator<entry>(&log)};
    std::uint64_t next = 0;
    while (!(m.stats().growing && m.stats().old_buckets >= old_buckets)) {
      m.insert_or_assign(next, value_for(next));
      ++next;
    }
    const std::map<void*, std::size_t> before = log.live;
    std::size_t writes = 0;
    std::size_t checked_while_populating = 0;
    while (m.stats().growing) {
      m.insert_or_assign(next, value_for(next));
      ++next;
      ASSERT_LT(++writes, 100000u) << "the growth does not end";
      if (log.newest == nullptr || before.count(log.newest) != 0) continue;
      const std::vector<bool> r = resident_pages(log.newest, log.live.at(log.newest));
      const auto first_absent = std::find(r.begin(), r.end(), false);
      if (first_absent == r.end()) continue;
      ++checked_while_populating;
      const auto backed_after = std::find(first_absent, r.end(), true);
      ASSERT_TRUE(backed_after == r.end())
          << "write " << writes << ": page " << (backed_after - r.begin())
          << " of the newest block is backed beyond its first absent page "
          << (first_absent - r.begin()) << ": something was written there before it was populated";
    }
    EXPECT_GT(checked_while_populating, 100u) << "the growth never caught a segment mid-population";
    // The blocks the growth allocated and the map still holds: the new array's segments
    // (all of one size), and maybe an overflow chunk or two of other sizes.
    std::map<std::size_t, std::vector<void*>> by_size;
    for (const auto& [p, n] : log.live) {
      if (before.count(p) == 0) by_size[n].push_back(p);
    }
    ASSERT_FALSE(by_size.empty());
    const auto segments = std::max_element(
        by_size.begin(), by_size.end(),
        [](const auto& a, const auto& b) { return a.second.size() < b.second.size(); });
    ASSERT_GE(segments->second.size(), 4u) << "expected the new array's segments, of one size";
    for (void* p : segments->second) {
      EXPECT_EQ(absent_pages(p, segments->first), 0u)
          << "a segment of " << segments->first << " bytes has pages never populated";
    }
    for (std::uint64_t k = 0; k < next; ++k) ASSERT_TRUE(holds(m, k)) << k;
    EXPECT_TRUE(stats_consistent(m));
  }
  EXPECT_TRUE(log.live.empty());
}

// populate_for_write backs the pages and, touching them, changes no byte, also in the partial
// pages at the ends that other data shares.
TEST(MapSegments, PopulatingABlockKeepsItsBytesAndTheirNeighbours) {
  if (!kernel_populates()) GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE (Linux 5.14)";
  const std::size_t page = safemap::detail::page_size();
  const std::size_t n = 64 * page;  // more than a large folio: most pages stay absent at first
  auto* base = static_cast<unsigned char*>(
      mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(static_cast<void*>(base), MAP_FAILED);
  const std::unique_ptr<unsigned char, std::function<void(unsigned char*)>> unmap(
      base, [n](unsigned char* b) { munmap(b, n); });
  // Neighbours' bytes in the first and last pages; the block itself in between, unaligned.
  for (std::size_t i = 0; i < 100; ++i) base[i] = static_cast<unsigned char>(i + 1);
  for (std::size_t i = n - 100; i < n; ++i) base[i] = static_cast<unsigned char>(i * 7 + 3);
  base[100] = 0xab;  // the block's first byte, which the first page's touch writes back
  EXPECT_GT(absent_pages(base, n), 0u);
  ASSERT_TRUE(safemap::detail::populate_for_write(base + 100, n - 200, /*touch=*/true));
  EXPECT_EQ(absent_pages(base, n), 0u);
  for (std::size_t i = 0; i < 100; ++i) ASSERT_EQ(base[i], static_cast<unsigned char>(i + 1));
  for (std::size_t i = n - 100; i < n; ++i) {
    ASSERT_EQ(base[i], static_cast<unsigned char>(i * 7 + 3));
  }
  EXPECT_EQ(base[100], 0xab);
  for (std::size_t i = 101; i < n - 100; ++i) ASSERT_EQ(base[i], 0) << i;
}
#endif  // __linux__

}  // namespace
}  // namespace safemap_test
