// adapters/locked_table.hpp - a single-threaded hash table behind one lock: what most C++
// code shares between threads today (std::unordered_map + std::shared_mutex or std::mutex,
// absl::flat_hash_map or boost::unordered_flat_map behind a std::shared_mutex).
//
// The locking is Go's RWMutexMap (sync/map_reference_test.go) with one common refinement:
// load_or_store looks under the shared lock first and takes the exclusive lock only to store,
// so a LoadOrStore that hits is a read. Everything that may write takes the exclusive lock.
// With std::mutex every call takes the one mutex.
#pragma once

#include <mutex>
#include <shared_mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adapters/common.hpp"

namespace safemap_bench {

template <class Table, class Mutex>
class locked_table {
 public:
  using key_type = typename Table::key_type;
  using value_type = typename Table::mapped_type;

  bool load(const key_type& k, value_type& out) const {
    read_lock lock(mu_);
    const auto it = t_.find(k);
    if (it == t_.end()) return false;
    out = it->second;
    return true;
  }
  bool load_or_store(const key_type& k, value_type v, value_type& actual) {
    if constexpr (shared) {
      std::shared_lock lock(mu_);
      const auto it = t_.find(k);
      if (it != t_.end()) {
        actual = it->second;
        return true;
      }
    }
    std::unique_lock lock(mu_);
    auto [it, inserted] = t_.try_emplace(k, v);
    actual = it->second;
    return !inserted;
  }
  bool load_and_delete(const key_type& k, value_type& out) {
    std::unique_lock lock(mu_);
    const auto it = t_.find(k);
    if (it == t_.end()) return false;
    out = it->second;
    t_.erase(it);
    return true;
  }
  void store(const key_type& k, value_type v) {
    std::unique_lock lock(mu_);
    t_.insert_or_assign(k, v);
  }
  bool erase(const key_type& k) {
    std::unique_lock lock(mu_);
    return t_.erase(k) > 0;
  }
  bool swap(const key_type& k, value_type v, value_type& previous) {
    std::unique_lock lock(mu_);
    auto [it, inserted] = t_.try_emplace(k, v);
    if (inserted) return false;
    previous = it->second;
    it->second = v;
    return true;
  }
  bool compare_and_swap(const key_type& k, value_type expected, value_type desired) {
    std::unique_lock lock(mu_);
    const auto it = t_.find(k);
    if (it == t_.end() || it->second != expected) return false;
    it->second = desired;
    return true;
  }
  template <class F>
  void range(F f) const {
    read_lock lock(mu_);
    for (const auto& [k, v] : t_) {
      if (!f(k, v)) break;
    }
  }
  void serialize(std::string& out) const {
    json_copy<key_type> copy;
    {
      read_lock lock(mu_);
      copy.reserve(t_.size());
      for (const auto& [k, v] : t_) copy.insert_or_assign(k, v);
    }
    safemap::write_json(copy, out);
  }
  void fill(const std::vector<std::pair<key_type, value_type>>& entries) {
    std::unique_lock lock(mu_);
    for (const auto& [k, v] : entries) t_.insert_or_assign(k, v);
  }

 private:
  static constexpr bool shared = std::is_same_v<Mutex, std::shared_mutex>;
  using read_lock = std::conditional_t<shared, std::shared_lock<Mutex>, std::unique_lock<Mutex>>;

  mutable Mutex mu_;
  Table t_;
};

}  // namespace safemap_bench
