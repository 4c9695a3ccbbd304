// adapters/tbb_unordered_adapter.hpp - oneTBB's tbb::concurrent_unordered_map (Debian
// libtbb-dev), the fastest reader among the peers.
//
// A split-ordered list: lookups and inserts are lock-free and iteration is safe while other
// threads insert, but it has no concurrent erase (only unsafe_erase, which must not overlap any
// other operation). The registry therefore skips every workload that erases when it runs on
// more than one thread (map_entry::concurrent_erase = false); with one thread unsafe_erase is
// used. Values are std::atomic<std::uint64_t> so that store, swap and compare-and-swap of an
// existing key are atomic without a lock (the container itself never changes a mapped value).
// Given std::allocator (the default tbb_allocator would bypass the counting operator new).
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <oneapi/tbb/concurrent_unordered_map.h>
#pragma GCC diagnostic pop

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "adapters/common.hpp"

namespace safemap_bench {

template <class K>
class tbb_unordered_adapter {
 public:
  using key_type = K;
  using value_type = std::uint64_t;

  bool load(const K& k, value_type& out) const {
    const auto it = t_.find(k);
    if (it == t_.end()) return false;
    out = it->second.load(std::memory_order_acquire);
    return true;
  }
  bool load_or_store(const K& k, value_type v, value_type& actual) {
    const auto [it, inserted] = t_.emplace(k, v);
    actual = it->second.load(std::memory_order_acquire);
    return !inserted;
  }
  // unsafe_erase: only ever called with one thread (see the top of this file).
  bool load_and_delete(const K& k, value_type& out) {
    const auto it = t_.find(k);
    if (it == t_.end()) return false;
    out = it->second.load(std::memory_order_relaxed);
    t_.unsafe_erase(it);
    return true;
  }
  bool erase(const K& k) { return t_.unsafe_erase(k) != 0; }
  void store(const K& k, value_type v) {
    const auto [it, inserted] = t_.emplace(k, v);
    if (!inserted) it->second.store(v, std::memory_order_release);
  }
  bool swap(const K& k, value_type v, value_type& previous) {
    const auto [it, inserted] = t_.emplace(k, v);
    if (inserted) return false;
    previous = it->second.exchange(v, std::memory_order_acq_rel);
    return true;
  }
  bool compare_and_swap(const K& k, value_type expected, value_type desired) {
    const auto it = t_.find(k);
    return it != t_.end() &&
           it->second.compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
  }
  // Safe while other threads insert (not while they erase, which never happens concurrently).
  template <class F>
  void range(F f) const {
    for (const auto& [k, v] : t_) {
      if (!f(k, v.load(std::memory_order_acquire))) break;
    }
  }
  void serialize(std::string& out) const {
    json_copy<K> copy;
    copy.reserve(t_.size());
    for (const auto& [k, v] : t_) copy.insert_or_assign(k, v.load(std::memory_order_acquire));
    safemap::write_json(copy, out);
  }
  void fill(const std::vector<std::pair<K, value_type>>& entries) {
    for (const auto& [k, v] : entries) store(k, v);
  }

 private:
  using table =
      tbb::concurrent_unordered_map<K, std::atomic<value_type>, peer_hash<K>, std::equal_to<K>,
                                    std::allocator<std::pair<const K, std::atomic<value_type>>>>;
  table t_;
};

}  // namespace safemap_bench
