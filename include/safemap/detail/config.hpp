// safemap/detail/config.hpp - build-configuration macros shared by every header.
//
// SAFEMAP_NO_MISUSE_CHECKS compiles the misuse detector out of safemap::Map. The maps are
// templates, so a program could include them in one translation unit with the checks and in
// another without; to keep that from being an ODR violation (two different definitions of
// one class), the table types live in an inline namespace whose name says which variant it
// is. Code naming safemap::Map is unaffected.
#pragma once

#include <version>

#include "safemap/version.hpp"  // every public header includes this one

// pipeline.hpp needs std::stop_token and std::jthread. libstdc++ 10+ has them; libc++ before
// 18 ships them only behind -fexperimental-library, without the feature-test macro. Where this
// is 0, pipeline.hpp is left out of safemap.hpp and including it directly is a clear #error;
// every other header works.
#if defined(__cpp_lib_jthread)
#define SAFEMAP_HAS_PIPELINE 1
#else
#define SAFEMAP_HAS_PIPELINE 0
#endif

#if defined(SAFEMAP_NO_MISUSE_CHECKS)
#define SAFEMAP_MISUSE_CHECKS 0
#define SAFEMAP_TABLE_NS_BEGIN inline namespace unchecked {
#else
#define SAFEMAP_MISUSE_CHECKS 1
#define SAFEMAP_TABLE_NS_BEGIN inline namespace checked {
#endif
#define SAFEMAP_TABLE_NS_END }

#if defined(__GNUC__) || defined(__clang__)
#define SAFEMAP_LIKELY(x) __builtin_expect(!!(x), 1)
#define SAFEMAP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SAFEMAP_NOINLINE __attribute__((noinline))
#define SAFEMAP_ALWAYS_INLINE inline __attribute__((always_inline))
// Inlines every call in the function (recursively), except SAFEMAP_NOINLINE ones: for the
// lock-free lookups of SyncMap and CowMap, whose read guard and Map::find helpers GCC
// otherwise leaves out of line (two to four calls around a lookup of a few nanoseconds).
#define SAFEMAP_FLATTEN __attribute__((flatten))
#else
#define SAFEMAP_LIKELY(x) (x)
#define SAFEMAP_UNLIKELY(x) (x)
#define SAFEMAP_NOINLINE
#define SAFEMAP_ALWAYS_INLINE inline
#define SAFEMAP_FLATTEN
#endif

#if defined(__SANITIZE_THREAD__)
#define SAFEMAP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SAFEMAP_TSAN 1
#endif
#endif
#ifndef SAFEMAP_TSAN
#define SAFEMAP_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SAFEMAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAFEMAP_ASAN 1
#endif
#endif
#ifndef SAFEMAP_ASAN
#define SAFEMAP_ASAN 0
#endif

#include <type_traits>

namespace safemap::detail {
// Whether a lock-free load (SyncMap, CowMap) copies the value out inside its read guard and
// builds the std::optional after the guard ends: small trivially copyable values. GCC returns
// such an optional through the stack, and building it inside the guarded lookup stored one
// byte and reloaded it as a word (a store-forwarding stall: half of CowMap::load's samples).
template <class V>
inline constexpr bool copy_after_guard =
    std::is_trivially_copyable_v<V>&& std::is_copy_assignable_v<V>&&
        std::is_trivially_default_constructible_v<V> &&
    sizeof(V) <= 2 * sizeof(void*);
}  // namespace safemap::detail
