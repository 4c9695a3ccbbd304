// safemap/detail/pages.hpp - backing a fresh block's pages before the table writes into them.
//
// # Why
// A fresh bucket array is memory the kernel has not backed yet: the first write to each page
// faults. Left to the evacuation, those faults landed on whichever writes happened to move an
// old bucket into an untouched page: early in a growth about 1.5 per insert, so the growth's
// slow inserts were exactly the ones that faulted (docs/benchmarks.md, "Seventh pass": every
// one of 12,265 inserts over 10 µs carried faults, none of the 7,735 fast ones). Linux 5.14's
// MADV_POPULATE_WRITE backs a range in one call, without a trap per page. On the bench machine
// (a 2-core Firecracker VM; bench/page_probe.cpp over 64 MiB, pages in random order, two
// runs), per page:
//   first write to a fresh page                   median 14.2-14.5 µs
//   MADV_POPULATE_WRITE of a fresh range          1.0-1.1 µs
//   first write to a page populated that way      median 6.7-6.8 µs (no guest fault: the
//                                                 hypervisor backs the page only then)
//   MADV_POPULATE_WRITE of resident pages         0.43-0.44 µs
//   mincore                                       under 0.01 µs
// So a growing table populates and then touches (writes) each page of a new segment, a few
// pages per write, before any bucket evacuates into it (map_table::populate_step): the faults
// move out of random evacuations into bounded steps, at about half their cost here. On bare
// metal a fault costs well under a microsecond (not measured: no such machine was at hand),
// so the gain is smaller there, and so is the steps' cost.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

// SAFEMAP_NO_POPULATE (defined for the whole program) turns it off: for sandboxes whose seccomp
// policy rejects madvise advice it does not know.
#if defined(__linux__) && !defined(SAFEMAP_NO_POPULATE) &&                          \
    (defined(MADV_POPULATE_WRITE) || defined(__x86_64__) || defined(__aarch64__) || \
     defined(__riscv))
#define SAFEMAP_POPULATE 1
#else
#define SAFEMAP_POPULATE 0
#endif

namespace safemap::detail {

// Blocks smaller than this are not populated: they usually come from memory the allocator has
// handed out before (already backed), and they hold few pages to fault anyway.
inline constexpr std::size_t populate_min_bytes = std::size_t{256} << 10;

#if SAFEMAP_POPULATE
inline constexpr bool can_populate = true;

// Linux 5.14's advice; the C library's headers name it from glibc 2.35 (RHEL 9 has 2.34 with a
// 5.14 kernel), so the ABI value where they do not (asm-generic's, used by these targets).
#if defined(MADV_POPULATE_WRITE)
inline constexpr int populate_write_advice = MADV_POPULATE_WRITE;
#else
inline constexpr int populate_write_advice = 23;
#endif

// Set once the kernel refuses the advice itself (EINVAL: before 5.14; EPERM: a seccomp
// policy), so later segments and copies do not pay the failing call again.
inline std::atomic<bool> populate_refused{false};

inline std::size_t page_size() noexcept {
  static const std::size_t page = [] {
    const long sz = sysconf(_SC_PAGESIZE);
    return sz > 0 ? static_cast<std::size_t>(sz) : std::size_t{4096};
  }();
  return page;
}

// The pages that hold a byte of [p, p + n), as [first, last).
struct page_range {
  std::uintptr_t first;
  std::uintptr_t last;
  page_range(const void* p, std::size_t n) noexcept {
    const std::uintptr_t page = page_size();
    const auto begin = reinterpret_cast<std::uintptr_t>(p);
    first = begin & ~(page - 1);
    last = (begin + n + page - 1) & ~(page - 1);
  }
};

// Asks the kernel to back, for writing, every page that holds a byte of [p, p + n); with touch,
// also writes one byte of each page (the byte it already holds) so that a hypervisor backs
// it too. The contents do not change. The partial pages at either end may hold other
// allocations: they are populated (as safe as for ours: mapped, writable) but touched only
// inside [p, p + n). Returns false when it cannot, whatever the reason (errno: EINVAL before
// Linux 5.14 or for a mapping that cannot be populated, EPERM from a seccomp policy, ENOMEM,
// EFAULT, EINTR, EHWPOISON). The caller then simply writes as before and takes the faults then.
// With transparent huge pages set to "always", one page's population may back a whole 2 MiB
// page (no worse than the write it replaces).
inline bool populate_for_write(void* p, std::size_t n, bool touch) noexcept {
  if (n == 0) return true;
  if (populate_refused.load(std::memory_order_relaxed)) return false;
  const page_range r(p, n);
  if (madvise(reinterpret_cast<void*>(r.first), r.last - r.first, populate_write_advice) != 0) {
    if (errno == EINVAL || errno == EPERM) populate_refused.store(true, std::memory_order_relaxed);
    return false;
  }
  if (touch) {
    const auto begin = reinterpret_cast<std::uintptr_t>(p);
    for (std::uintptr_t q = r.first; q < r.last; q += page_size()) {
      // Any byte of ours in that page: the first page's may start past its beginning.
      volatile unsigned char* b = reinterpret_cast<unsigned char*>(q < begin ? begin : q);
      *b = *b;
    }
  }
  return true;
}

// Whether at least a sixteenth of the pages holding [p, p + n) are not resident (mincore): a
// block the allocator recycled is resident already, and populating it would cost a page-table
// walk per page (0.43 µs here) for nothing. glibc serves the table's 2.4 MB segments from its
// heap once it has freed one (its mmap threshold rises), and a fifth of a growth's segments
// came back resident in a review's count (one map growing to 7e6 entries).
inline bool mostly_fresh(const void* p, std::size_t n) noexcept {
  const page_range r(p, n);
  const std::size_t pages = (r.last - r.first) / page_size();
  std::size_t absent = 0;
  unsigned char resident[256];  // mincore's answer for up to 256 pages at a time
  for (std::size_t done = 0; done < pages;) {
    const std::size_t k = pages - done < sizeof resident ? pages - done : sizeof resident;
    if (mincore(reinterpret_cast<void*>(r.first + done * page_size()), k * page_size(), resident) !=
        0) {
      return false;
    }
    for (std::size_t i = 0; i < k; ++i) absent += (resident[i] & 1) == 0 ? 1 : 0;
    done += k;
  }
  return absent * 16 >= pages;
}

// Whether populating a block pays: large enough, a kernel that has not refused, and mostly
// fresh. The one rule for a growth's segments (map_table::start_populating) and for copies.
//
// populate_if_fresh: for a block the caller is about to write all over (a copy, a rebuild),
// populates it when that pays. A copy of 1e5 uint64 entries (2.4 MB, recycled memory) took
// 0.30-0.38 ms without population, 0.40-0.56 ms with an unconditional one, 0.34-0.44 ms with this
// test; of 1e6 entries (fresh) 52-54 ms without and 32-33 ms with it (a loop of 7 copies, medians).
inline bool worth_populating(const void* p, std::size_t n) noexcept {
  return n >= populate_min_bytes && !populate_refused.load(std::memory_order_relaxed) &&
         mostly_fresh(p, n);
}
inline void populate_if_fresh(void* p, std::size_t n) noexcept {
  if (worth_populating(p, n)) populate_for_write(p, n, false);
}
#else
inline constexpr bool can_populate = false;
inline std::size_t page_size() noexcept {
  return 4096;
}
inline bool populate_for_write(void*, std::size_t, bool) noexcept {
  return false;
}
inline bool mostly_fresh(const void*, std::size_t) noexcept {
  return false;
}
inline bool worth_populating(const void*, std::size_t) noexcept {
  return false;
}
inline void populate_if_fresh(void*, std::size_t) noexcept {}
#endif

}  // namespace safemap::detail
