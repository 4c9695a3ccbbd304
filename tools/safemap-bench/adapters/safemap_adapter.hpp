// adapters/safemap_adapter.hpp - any safemap::concurrent_map behind the workloads' calls.
//
// Only the concept's calls are used (concurrent.hpp), so the four strategies are measured
// through exactly the API users call. Two optional members are used when a map has them:
//  - update(f) (CowMap): the setup fills the map with one copy instead of one per key;
//  - a direct safemap::write_json(m, out) when json.hpp accepts the map type; otherwise the
//    map is written through snapshot() (a copy), like the peers.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "adapters/common.hpp"
#include "safemap/concurrent.hpp"
#include "safemap/json.hpp"

namespace safemap_bench {

template <class M>
requires safemap::concurrent_map<M>
class safemap_adapter {
 public:
  using key_type = typename M::key_type;
  using value_type = typename M::mapped_type;

  // Whether serialize() writes the map directly (true) or through snapshot() (false).
  static constexpr bool writes_json_directly = requires(const M& m, std::string& out) {
    safemap::write_json(m, out);
  };

  bool load(const key_type& k, value_type& out) const {
    if (std::optional<value_type> v = m_.load(k)) {
      out = *v;
      return true;
    }
    return false;
  }
  bool load_or_store(const key_type& k, value_type v, value_type& actual) {
    auto [value, loaded] = m_.load_or_store(k, v);
    actual = value;
    return loaded;
  }
  bool load_and_delete(const key_type& k, value_type& out) {
    if (std::optional<value_type> v = m_.load_and_delete(k)) {
      out = *v;
      return true;
    }
    return false;
  }
  void store(const key_type& k, value_type v) { m_.store(k, v); }
  bool erase(const key_type& k) { return m_.erase(k); }
  bool swap(const key_type& k, value_type v, value_type& previous) {
    if (std::optional<value_type> p = m_.swap(k, v)) {
      previous = *p;
      return true;
    }
    return false;
  }
  bool compare_and_swap(const key_type& k, value_type expected, value_type desired) {
    return m_.compare_and_swap(k, expected, desired);
  }
  template <class F>
  void range(F f) const {
    m_.range([&](const key_type& k, const value_type& v) -> bool { return f(k, v); });
  }
  void serialize(std::string& out) const {
    if constexpr (writes_json_directly) {
      safemap::write_json(m_, out);
    } else {
      safemap::write_json(m_.snapshot(), out);
    }
  }
  void fill(const std::vector<std::pair<key_type, value_type>>& entries) {
    if constexpr (requires { m_.update([](auto&) {}); }) {
      m_.update([&](auto& next) {
        for (const auto& [k, v] : entries) next.insert_or_assign(k, v);
      });
    } else {
      for (const auto& [k, v] : entries) m_.store(k, v);
    }
  }

  // The map itself, for calls the workloads do not make (bench/batch_bench's load_many).
  const M& map() const { return m_; }

 private:
  M m_;
};

}  // namespace safemap_bench
