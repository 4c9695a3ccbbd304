// adapters/cuckoo_adapter.hpp - libcuckoo's cuckoohash_map (Debian libcuckoo-dev).
//
// Fine-grained striped spinlocks, two candidate buckets per key; every call locks the two
// buckets' stripes. Iteration takes every lock (lock_table()): a point-in-time view that
// stops all writers while it runs.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <libcuckoo/cuckoohash_map.hh>
#pragma GCC diagnostic pop

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "adapters/common.hpp"

namespace safemap_bench {

template <class K>
class cuckoo_adapter {
 public:
  using key_type = K;
  using value_type = std::uint64_t;

  bool load(const K& k, value_type& out) const { return t_.find(k, out); }
  bool load_or_store(const K& k, value_type v, value_type& actual) {
    actual = v;
    const bool inserted = t_.uprase_fn(
        k,
        [&](value_type& cur) {
          actual = cur;
          return false;  // keep it
        },
        v);
    return !inserted;
  }
  bool load_and_delete(const K& k, value_type& out) {
    return t_.erase_fn(k, [&](value_type& cur) {
      out = cur;
      return true;
    });
  }
  void store(const K& k, value_type v) { t_.insert_or_assign(k, v); }
  bool erase(const K& k) { return t_.erase(k); }
  bool swap(const K& k, value_type v, value_type& previous) {
    bool had = false;
    t_.uprase_fn(
        k,
        [&](value_type& cur) {
          previous = cur;
          cur = v;
          had = true;
          return false;
        },
        v);
    return had;
  }
  bool compare_and_swap(const K& k, value_type expected, value_type desired) {
    bool ok = false;
    t_.update_fn(k, [&](value_type& cur) {
      if (cur == expected) {
        cur = desired;
        ok = true;
      }
    });
    return ok;
  }
  template <class F>
  void range(F f) const {
    auto locked = t_.lock_table();
    for (const auto& [k, v] : locked) {
      if (!f(k, v)) break;
    }
  }
  void serialize(std::string& out) const {
    json_copy<K> copy;
    {
      auto locked = t_.lock_table();
      copy.reserve(locked.size());
      for (const auto& [k, v] : locked) copy.insert_or_assign(k, v);
    }
    safemap::write_json(copy, out);
  }
  void fill(const std::vector<std::pair<K, value_type>>& entries) {
    for (const auto& [k, v] : entries) t_.insert_or_assign(k, v);
  }

 private:
  // mutable: lock_table() is a non-const member, and range() is a read.
  mutable libcuckoo::cuckoohash_map<K, value_type, peer_hash<K>, std::equal_to<K>> t_;
};

}  // namespace safemap_bench
