// adapters/tbb_adapter.hpp - oneTBB's tbb::concurrent_hash_map (Debian libtbb-dev).
//
// Per-element reader/writer locks through accessors; the table grows without a global lock.
// Given std::allocator (its default, tbb_allocator, would bypass the counting operator new).
// Its iteration is not safe while other threads insert or erase ("concurrent traversal is
// not safe with concurrent insert/erase"), so workloads that range while others write are not
// run on it with more than one thread.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <oneapi/tbb/concurrent_hash_map.h>
#pragma GCC diagnostic pop

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "adapters/common.hpp"

namespace safemap_bench {

template <class K>
class tbb_adapter {
 public:
  using key_type = K;
  using value_type = std::uint64_t;

  bool load(const K& k, value_type& out) const {
    typename table::const_accessor a;
    if (!t_.find(a, k)) return false;
    out = a->second;
    return true;
  }
  bool load_or_store(const K& k, value_type v, value_type& actual) {
    typename table::const_accessor a;
    const bool inserted = t_.insert(a, typename table::value_type(k, v));
    actual = a->second;
    return !inserted;
  }
  bool load_and_delete(const K& k, value_type& out) {
    typename table::accessor a;
    if (!t_.find(a, k)) return false;
    out = a->second;
    t_.erase(a);
    return true;
  }
  void store(const K& k, value_type v) {
    typename table::accessor a;
    t_.insert(a, k);
    a->second = v;
  }
  bool erase(const K& k) { return t_.erase(k); }
  bool swap(const K& k, value_type v, value_type& previous) {
    typename table::accessor a;
    const bool inserted = t_.insert(a, k);
    if (!inserted) previous = a->second;
    a->second = v;
    return !inserted;
  }
  bool compare_and_swap(const K& k, value_type expected, value_type desired) {
    typename table::accessor a;
    if (!t_.find(a, k) || a->second != expected) return false;
    a->second = desired;
    return true;
  }
  // Not safe with concurrent writers (see the top of this file).
  template <class F>
  void range(F f) const {
    for (const auto& [k, v] : t_) {
      if (!f(k, v)) break;
    }
  }
  void serialize(std::string& out) const {
    json_copy<K> copy;
    copy.reserve(t_.size());
    for (const auto& [k, v] : t_) copy.insert_or_assign(k, v);
    safemap::write_json(copy, out);
  }
  void fill(const std::vector<std::pair<K, value_type>>& entries) {
    for (const auto& [k, v] : entries) store(k, v);
  }

 private:
  struct hash_compare {
    std::size_t hash(const K& k) const noexcept { return peer_hash<K>{}(k); }
    bool equal(const K& a, const K& b) const noexcept { return a == b; }
  };
  using table = tbb::concurrent_hash_map<K, value_type, hash_compare,
                                         std::allocator<std::pair<const K, value_type>>>;
  table t_;
};

}  // namespace safemap_bench
