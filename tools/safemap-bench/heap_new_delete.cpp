// heap_new_delete.cpp - the counting global operator new/delete of safemap-bench (see
// engine/heap.hpp). Replacing them in the executable makes every C++ allocation of the
// process go through here: safemap's maps, the peers (TBB is given std::allocator so it does
// too), the standard library.
#include <cstdlib>
#include <new>

#include "engine/heap.hpp"

namespace {

void* counted_alloc(std::size_t n, std::size_t align) noexcept {
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (::posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  if (p != nullptr) {
    auto& b = safemap_bench::detail::this_thread_heap_block();
    safemap_bench::detail::bump(b.allocations, 1);
    safemap_bench::detail::bump(b.bytes, n);
  }
  return p;
}

void* counted_alloc_or_throw(std::size_t n, std::size_t align) {
  for (;;) {
    if (void* p = counted_alloc(n, align)) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) throw std::bad_alloc();
    h();
  }
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  safemap_bench::detail::bump(safemap_bench::detail::this_thread_heap_block().deallocations, 1);
  std::free(p);
}

// Marks the instrument active before main runs.
const bool registered = [] {
  safemap_bench::detail::mark_heap_counting_active();
  return true;
}();

}  // namespace

void* operator new(std::size_t n) {
  return counted_alloc_or_throw(n, 0);
}
void* operator new[](std::size_t n) {
  return counted_alloc_or_throw(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, 0);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}

void operator delete(void* p) noexcept {
  counted_free(p);
}
void operator delete[](void* p) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}
