// engine/heap.hpp - heap accounting for safemap-bench.
//
// Two instruments:
//  - Allocation counts and requested bytes per operation come from a counting global
//    operator new/delete (heap_new_delete.cpp). It is linked into the safemap-bench binary
//    only; a program without it reports counting_active() == false. Each thread counts into
//    its own block (single writer, relaxed stores: no locked instruction, no shared cache line
//    on the allocation path); heap_totals() sums every block ever created, those of exited
//    threads included, so a delta of two totals covers every thread of the process (map
//    threads, liburcu's call_rcu worker, resize helpers). Memory obtained with malloc directly
//    (liburcu's lfht bucket table, for one) is not seen by this instrument.
//  - Memory per entry comes from glibc's mallinfo2(): bytes in use in every arena plus mmapped
//    chunks. It sees every malloc-based allocation and includes malloc's per-chunk overhead,
//    which is a real cost of node-based tables.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace safemap_bench {

struct heap_totals_t {
  std::uint64_t allocations = 0;    // operator new calls
  std::uint64_t bytes = 0;          // bytes requested from operator new
  std::uint64_t deallocations = 0;  // operator delete calls (non-null)
};

heap_totals_t heap_totals() noexcept;
bool heap_counting_active() noexcept;

// Bytes in use according to malloc (mallinfo2: arenas + mmapped chunks).
std::size_t malloc_bytes_in_use() noexcept;

namespace detail {

struct heap_block {
  std::atomic<std::uint64_t> allocations{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> deallocations{0};
  heap_block* next = nullptr;  // immutable once published
};

// The calling thread's block, created (with malloc, never freed) on first use.
heap_block& this_thread_heap_block() noexcept;
void mark_heap_counting_active() noexcept;

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t by) noexcept {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);  // single writer
}

}  // namespace detail

}  // namespace safemap_bench
