#include "heap.hpp"

#include <malloc.h>

#include <cstdlib>
#include <new>

namespace safemap_bench {

namespace {
std::atomic<detail::heap_block*> g_blocks{nullptr};
std::atomic<bool> g_active{false};
constinit thread_local detail::heap_block* t_block = nullptr;
}  // namespace

namespace detail {

heap_block& this_thread_heap_block() noexcept {
  if (t_block == nullptr) {
    // malloc, not new: this runs inside operator new.
    void* raw = std::malloc(sizeof(heap_block));
    if (raw == nullptr) std::abort();
    auto* b = ::new (raw) heap_block;
    b->next = g_blocks.load(std::memory_order_relaxed);
    while (!g_blocks.compare_exchange_weak(b->next, b, std::memory_order_release,
                                           std::memory_order_relaxed)) {}
    t_block = b;
  }
  return *t_block;
}

void mark_heap_counting_active() noexcept {
  g_active.store(true, std::memory_order_relaxed);
}

}  // namespace detail

heap_totals_t heap_totals() noexcept {
  heap_totals_t t;
  for (auto* b = g_blocks.load(std::memory_order_acquire); b != nullptr; b = b->next) {
    t.allocations += b->allocations.load(std::memory_order_relaxed);
    t.bytes += b->bytes.load(std::memory_order_relaxed);
    t.deallocations += b->deallocations.load(std::memory_order_relaxed);
  }
  return t;
}

bool heap_counting_active() noexcept {
  return g_active.load(std::memory_order_relaxed);
}

std::size_t malloc_bytes_in_use() noexcept {
  const struct mallinfo2 mi = ::mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

}  // namespace safemap_bench
