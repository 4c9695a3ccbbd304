// maps_redis.cpp - safemap::RedisMap in safemap-bench: the `redis` column, added by
// `--redis host:port` (compiled only when safemap::redis exists, i.e. hiredis was found).
//
// Each run gets a fresh map (a hash named "safemap-bench:<pid>:<n>") on that server, deleted
// when the run ends. Every call is a round trip to the server, so this column shows what a
// map shared across processes costs next to the in-process maps; it is never a candidate for
// the in-process recommendation (family "remote"). memory_per_entry is the server's
// used_memory growth per entry (INFO memory), not this process's heap.
#include "engine/registry.hpp"

#include <string>

#if SAFEMAP_BENCH_HAVE_REDIS
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <stdexcept>

#include "adapters/safemap_adapter.hpp"
#include "safemap/redis_map.hpp"
#endif

namespace safemap_bench {

#if SAFEMAP_BENCH_HAVE_REDIS
namespace {

safemap::redis_options& redis_server_options() {
  static safemap::redis_options o;
  return o;
}

std::string fresh_name() {
  static std::atomic<unsigned> n{0};
  return "safemap-bench:" + std::to_string(getpid()) + ":" + std::to_string(n++);
}

// RedisMap behind the adapter calls; the hash and its version key are deleted on destruction.
template <class K>
class redis_adapter {
 public:
  using key_type = K;
  using value_type = value_t;
  using map_t = safemap::RedisMap<K, value_t>;
  static constexpr bool writes_json_directly = true;

  redis_adapter() : m_(fresh_name(), bench_options()) {}
  ~redis_adapter() {
    try {  // the hash and its version key: nothing of the run stays on the server
      safemap::detail::redis::client c(m_.name(), bench_options());
      auto l = c.acquire();
      c.run(l, {"DEL", m_.name(), c.version_key()});
    } catch (const safemap::redis_error&) {
      // The server went away: nothing left to delete.
    }
  }

  bool load(const K& k, value_t& out) const {
    if (auto v = m_.load(k)) {
      out = *v;
      return true;
    }
    return false;
  }
  bool load_or_store(const K& k, value_t v, value_t& actual) {
    auto [value, loaded] = m_.load_or_store(k, v);
    actual = value;
    return loaded;
  }
  bool load_and_delete(const K& k, value_t& out) {
    if (auto v = m_.load_and_delete(k)) {
      out = *v;
      return true;
    }
    return false;
  }
  void store(const K& k, value_t v) { m_.store(k, v); }
  bool erase(const K& k) { return m_.erase(k); }
  bool swap(const K& k, value_t v, value_t& previous) {
    if (auto p = m_.swap(k, v)) {
      previous = *p;
      return true;
    }
    return false;
  }
  bool compare_and_swap(const K& k, value_t expected, value_t desired) {
    return m_.compare_and_swap(k, expected, desired);
  }
  template <class F>
  void range(F f) const {
    m_.range([&](const K& k, const value_t& v) -> bool { return f(k, v); });
  }
  void serialize(std::string& out) const { safemap::write_json(m_, out); }
  void fill(const std::vector<std::pair<K, value_t>>& entries) { m_.store_many(entries); }

  // The server's used_memory (bytes), for memory_per_entry.
  static double server_used_memory() {
    safemap::detail::redis::client c("safemap-bench", bench_options());
    auto l = c.acquire();
    auto r = c.run(l, {"INFO", "memory"});
    const std::string info(r->str, r->len);
    const auto at = info.find("used_memory:");
    if (at == std::string::npos) return 0;
    double v = 0;
    std::from_chars(info.data() + at + 12, info.data() + info.size(), v);
    return v;
  }

 private:
  static safemap::redis_options bench_options() {
    safemap::redis_options o = redis_server_options();
    o.pool_size = 64;  // one connection per benchmark thread (up to 64 threads)
    return o;
  }

  map_t m_;
};

double redis_memory_per_entry(std::size_t n) {
  const double before = redis_adapter<std::uint64_t>::server_used_memory();
  redis_adapter<std::uint64_t> m;
  m.fill(ops::iota_entries<std::uint64_t>(n));
  const double after = redis_adapter<std::uint64_t>::server_used_memory();
  return (after - before) / static_cast<double>(n);
}

}  // namespace
#endif

// address: "host:port" or a unix socket path ("/path/redis.sock").
void register_redis(map_registry& r, const std::string& address) {
#if SAFEMAP_BENCH_HAVE_REDIS
  auto& o = redis_server_options();
  if (!address.empty() && address.front() == '/') {
    o.unix_socket = address;
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("--redis wants host:port");
    o.host = address.substr(0, colon);
    o.port = std::stoi(address.substr(colon + 1));
  }
  o.command_timeout = std::chrono::milliseconds(5000);
  // Fail now, with the server's message, rather than in the first run.
  safemap::RedisMap<std::uint64_t, value_t>(fresh_name(), o).version();
  map_entry e = make_map_entry<redis_adapter<std::uint64_t>, redis_adapter<std::string>>(
      "RedisMap", "redis", "remote",
      "a Redis hash at " + address + ": one server-side script per write, a round trip per call",
      /*uses_rcu=*/false);
  e.memory_per_entry = &redis_memory_per_entry;
  r.maps.push_back(std::move(e));
#else
  (void)address;
  r.missing.push_back({"RedisMap", "built without hiredis (Debian: libhiredis-dev)"});
#endif
}

}  // namespace safemap_bench
