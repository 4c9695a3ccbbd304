// tests/redis/redis_map_test.cpp - RedisMap (include/safemap/redis_map.hpp) against private
// redis-servers (tests/redis/redis_server.hpp). The conformance suite every map passes runs on
// RedisMap in redis_conformance_test.cpp; this file is what is RedisMap's own:
//
//  - the API: concurrent.hpp's table call by call, the storage format (fields, JSON values, the
//    version key), user types through json_traits, to_json/merge_json, load_many/store_many;
//  - model: random sequences of every operation (the conformance suite's op_generator and
//    reference_map, fewer operations), results and exact version deltas (RedisMap's own promise:
//    +1 per change) compared call by call, with negative int keys and string keys that need
//    escaping;
//  - sharing: a forked process and this one increment one key through compute; 4 threads x 2
//    map objects increment through compute with an exact total; range during writes sees each
//    key once and every stable key;
//  - failures: a server killed mid-workload (every call completed or raised redis_error; after
//    a restart the fields and the version agree, every completed store is there), a paused
//    server (SIGSTOP: redis_error within about command_timeout, then recovery), a refused
//    connection, OOM, NOSCRIPT after SCRIPT FLUSH, a corrupted value or field (json_error naming
//    the field), a throwing compute callback;
//  - connections: no leak after 1e5 calls from 8 threads (connected_clients <= pool size per
//    map object), AUTH + SELECT, a unix socket.
// Under sanitizers (safemap_test::scaled) the loops are shorter.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "redis/redis_server.hpp"
#include "safemap/json.hpp"
#include "safemap/persist.hpp"
#include "safemap/redis_map.hpp"
#include "support/concurrent_maps.hpp"

namespace {

using namespace safemap_test;
using namespace std::chrono_literals;
using safemap::redis_error;
using safemap::RedisMap;

static_assert(safemap::concurrent_map<RedisMap<int, int>>);
static_assert(safemap::concurrent_map<RedisMap<std::string, std::string>>);

struct point {
  int x = 0;
  double y = 0;
  std::string label;
  friend bool operator==(const point&, const point&) = default;
};

}  // namespace

template <>
struct safemap::json_traits<point> {
  static constexpr auto fields =
      std::make_tuple(safemap::json_field("x", &point::x), safemap::json_field("y", &point::y),
                      safemap::json_field("label", &point::label));
};

namespace {

template <class K, class V>
RedisMap<K, V> shared_map(std::string_view what = {}) {
  return RedisMap<K, V>(unique_map_name(what), shared_server().options());
}

std::string raw_string(const redisReply* r) {
  return std::string(r->str, r->len);
}

// ---- the API ------------------------------------------------------------------------------

TEST(RedisMapApi, EachCallBehavesAsTheTableSays) {
  auto m = shared_map<int, int>();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.load(1), std::nullopt);
  EXPECT_FALSE(m.contains(1));
  m.store(1, 10);
  EXPECT_EQ(m.load(1), 10);
  EXPECT_TRUE(m.contains(1));
  int seen = 0;
  EXPECT_TRUE(m.visit(1, [&](const int& v) { seen = v; }));
  EXPECT_EQ(seen, 10);
  EXPECT_FALSE(m.visit(2, [&](const int&) { seen = -1; }));
  EXPECT_EQ(m.load_or_store(1, 99), std::make_pair(10, true));
  EXPECT_EQ(m.load_or_store(2, 20), std::make_pair(20, false));
  EXPECT_EQ(m.swap(2, 21), 20);
  EXPECT_EQ(m.swap(3, 30), std::nullopt);
  EXPECT_FALSE(m.compare_and_swap(3, 31, 32));
  EXPECT_TRUE(m.compare_and_swap(3, 30, 33));
  EXPECT_FALSE(m.compare_and_swap(4, 0, 1));
  EXPECT_EQ(m.load(3), 33);
  EXPECT_FALSE(m.compare_and_delete(3, 30));
  EXPECT_TRUE(m.compare_and_delete(3, 33));
  EXPECT_FALSE(m.contains(3));
  EXPECT_EQ(m.load_and_delete(2), 21);
  EXPECT_EQ(m.load_and_delete(2), std::nullopt);
  EXPECT_FALSE(m.erase(2));
  EXPECT_EQ(m.compute(5, [](std::optional<int> v) { return v.value_or(0) + 1; }), 1);
  EXPECT_EQ(m.compute(5, [](std::optional<int> v) { return v.value_or(0) + 1; }), 2);
  EXPECT_EQ(m.compute(5, [](std::optional<int>) { return std::optional<int>(); }), std::nullopt);
  EXPECT_EQ(m.compute(6, [](std::optional<int>) { return std::optional<int>(); }), std::nullopt);
  EXPECT_FALSE(m.contains(5));
  EXPECT_TRUE(m.erase(1));
  EXPECT_EQ(m.size(), 0u);
  m.store(7, 70);
  m.store(8, 80);
  EXPECT_EQ(m.size(), 2u);
  auto snap = m.snapshot();
  EXPECT_EQ(snap.size(), 2u);
  EXPECT_EQ(*snap.find(7), 70);
  std::map<int, int> ranged;
  m.range([&](const int& k, const int& v) { ranged[k] = v; });
  EXPECT_EQ(ranged, (std::map<int, int>{{7, 70}, {8, 80}}));
  int calls = 0;
  m.range([&](const int&, const int&) { return ++calls < 1; });
  EXPECT_EQ(calls, 1);
  const auto before_clear = m.version();
  m.clear();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_GT(m.version(), before_clear);
  const auto after_clear = m.version();
  m.clear();  // nothing to remove
  EXPECT_EQ(m.version(), after_clear);
}

TEST(RedisMapApi, StorageIsTheDocumentedHashAndVersionKey) {
  const std::string name = unique_map_name();
  RedisMap<int, std::string> m(name, shared_server().options());
  m.store(-42, "a \"quoted\" value");
  m.store(7, "x");
  auto& s = shared_server();
  EXPECT_EQ(raw_string(s.raw({"HGET", name, "-42"}).get()), R"("a \"quoted\" value")");
  EXPECT_EQ(raw_string(s.raw({"HGET", name, "7"}).get()), R"("x")");
  EXPECT_EQ(raw_string(s.raw({"GET", name + ":version"}).get()), "2");
  EXPECT_EQ(m.version(), 2u);

  const std::string pname = unique_map_name("points");
  RedisMap<std::string, point> p(pname, shared_server().options());
  p.store("origin", point{1, 2.5, "o"});
  EXPECT_EQ(raw_string(s.raw({"HGET", pname, "origin"}).get()), R"({"x":1,"y":2.5,"label":"o"})");
  EXPECT_EQ(p.load("origin"), (point{1, 2.5, "o"}));
  // A value written by another client in the same format is read back.
  s.raw({"HSET", pname, "far", R"({"label":"f","y":-1,"x":9})"});
  EXPECT_EQ(p.load("far"), (point{9, -1, "f"}));
}

TEST(RedisMapApi, JsonOfARedisMapAndMergeJson) {
  auto m = shared_map<std::string, int>();
  m.store("b", 2);
  m.store("a", 1);
  EXPECT_EQ(safemap::to_json(m), R"({"a":1,"b":2})");
  const auto v = m.version();
  safemap::merge_json(m, R"({"c":3,"d":4})");
  EXPECT_EQ(safemap::to_json(m), R"({"a":1,"b":2,"c":3,"d":4})");
  EXPECT_EQ(m.version(), v + 1) << "merge is one batch: one script, one version bump";
  EXPECT_THROW(safemap::merge_json(m, R"({"e":5,)"), safemap::json_error);
  EXPECT_EQ(m.size(), 4u) << "bad input changes nothing";
}

TEST(RedisMapApi, SnapshotFilesAndJsonCacheWorkOnARedisMap) {
  auto m = shared_map<std::string, int>();
  m.store("a", 1);
  m.store("b", 2);
  const auto file = std::filesystem::temp_directory_path() /
                    ("safemap-redis-test-" + std::to_string(getpid()) + ".snap");
  safemap::save_snapshot(m, file);
  const auto back = safemap::load_snapshot<safemap::Map<std::string, int>>(file);
  std::filesystem::remove(file);
  EXPECT_EQ(sorted_entries(back), sorted_entries(m.snapshot()));

  safemap::json_cache cache(m);
  EXPECT_EQ(*cache.get(), R"({"a":1,"b":2})");
  EXPECT_EQ(*cache.get(), R"({"a":1,"b":2})");
  EXPECT_EQ(cache.serializations(), 1u) << "version() did not move: no new serialization";
  RedisMap<std::string, int> other(m.name(), shared_server().options());
  other.store("c", 3);  // another client's write moves the version
  EXPECT_EQ(*cache.get(), R"({"a":1,"b":2,"c":3})");
}

TEST(RedisMapApi, LoadManyAndStoreMany) {
  auto m = shared_map<int, int>();
  const int n = 10000;
  std::vector<std::pair<int, int>> entries;
  for (int i = 0; i < n; i += 2) entries.emplace_back(i, i * 3);
  const auto v = m.version();
  m.store_many(entries);
  EXPECT_EQ(m.version(), v + 1);
  EXPECT_EQ(m.size(), static_cast<std::size_t>(n / 2));
  std::vector<int> keys;
  for (int i = n - 1; i >= 0; --i) keys.push_back(i);
  const auto got = m.load_many(keys);
  ASSERT_EQ(got.size(), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] % 2 == 0) {
      ASSERT_EQ(got[i], keys[i] * 3) << "key " << keys[i];
    } else {
      ASSERT_EQ(got[i], std::nullopt) << "key " << keys[i];
    }
  }
  EXPECT_TRUE(m.load_many(std::vector<int>{}).empty());
}

TEST(RedisMapApi, TwoObjectsWithOneNameAreOneMap) {
  const std::string name = unique_map_name();
  RedisMap<std::string, int> a(name, shared_server().options());
  RedisMap<std::string, int> b(name, shared_server().options());
  a.store("k", 1);
  EXPECT_EQ(b.load("k"), 1);
  EXPECT_EQ(a.version(), b.version());
  EXPECT_TRUE(b.compare_and_swap("k", 1, 2));
  EXPECT_EQ(a.load("k"), 2);
}

TEST(RedisMapApi, AThrowingComputeCallbackChangesNothing) {
  auto m = shared_map<int, int>();
  m.store(1, 1);
  const auto v = m.version();
  EXPECT_THROW(m.compute(1, [](std::optional<int>) -> std::optional<int> { throw 7; }), int);
  EXPECT_EQ(m.load(1), 1);
  EXPECT_EQ(m.version(), v);
  m.store(2, 2);  // the map (and its pool) still works
  EXPECT_EQ(m.load(2), 2);
}

TEST(RedisMapApi, RangeCallbackMayCallTheSameMap) {
  auto m = shared_map<int, int>();
  for (int i = 0; i < 600; ++i) m.store(i, i);
  std::size_t n = 0;
  m.range([&](const int& k, const int& v) {
    EXPECT_EQ(m.load(k), v);
    if (k < 100000) m.store(k + 100000, v);  // a write from the callback works
    ++n;
  });
  EXPECT_GE(n, 600u);
  EXPECT_EQ(m.size(), 1200u);
}

// ---- model --------------------------------------------------------------------------------

template <class K>
void run_model(std::uint64_t seed, std::size_t ops, std::uint64_t key_space,
               const std::function<K(std::uint64_t)>& make_key) {
  auto m = shared_map<K, int>();
  reference_map<K, int> ref;
  op_generator<K, int> gen(seed, key_space, make_key, [](int v) { return v; });
  for (std::size_t i = 0; i < ops; ++i) {
    const auto op = gen.next();
    const auto mv = m.version();
    const auto rv = ref.version();
    const auto got = apply_op(m, op);
    const auto want = apply_op(ref, op);
    ASSERT_EQ(got, want) << "op #" << i << " " << op;
    // Every script bumps the version exactly when the reference does.
    ASSERT_EQ(m.version() - mv, ref.version() - rv) << "op #" << i << " " << op;
  }
  EXPECT_EQ(sorted_entries(m.snapshot()), sorted_entries(ref.snapshot()));
}

TEST(RedisMapModel, RandomOperationsMatchTheReferenceIntKeys) {
  run_model<int>(1, scaled(3000, 3), 24, [](std::uint64_t k) { return static_cast<int>(k) - 5; });
}

TEST(RedisMapModel, RandomOperationsMatchTheReferenceStringKeys) {
  run_model<std::string>(2, scaled(3000, 3), 24,
                         [](std::uint64_t k) { return "key \"" + std::to_string(k) + "\"\n"; });
}

// ---- sharing ------------------------------------------------------------------------------

TEST(RedisMapSharing, AForkedProcessAndThisOneShareTheMap) {
  const std::string name = unique_map_name();
  const int n = static_cast<int>(scaled(2000, 4));
  auto bump = [](std::optional<int> v) { return v.value_or(0) + 1; };
  RedisMap<std::string, int> parent(name, shared_server().options());
  parent.store("ready", 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: a map object of its own (connections are never shared across fork).
    alarm(120);  // watchdog: a hung child dies of SIGALRM and the parent's check fails
    int rc = 0;
    try {
      RedisMap<std::string, int> child(name, shared_server().options());
      for (int i = 0; i < n; ++i) child.compute("counter", bump);
      child.store("child_done", n);
    } catch (...) {
      rc = 3;
    }
    _exit(rc);
  }
  for (int i = 0; i < n; ++i) parent.compute("counter", bump);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(parent.load("child_done"), n);
  EXPECT_EQ(parent.load("counter"), 2 * n);
}

TEST(RedisMapSharing, ComputeFromFourThreadsOnTwoObjectsIsExact) {
  const std::string name = unique_map_name();
  RedisMap<int, long> a(name, shared_server().options());
  RedisMap<int, long> b(name, shared_server().options());
  const int per_thread = static_cast<int>(scaled(1500, 5));
  constexpr int keys = 3;
  std::atomic<long> f_calls{0};
  run_threads(8, [&](unsigned t) {
    auto& m = t % 2 == 0 ? a : b;  // 4 threads on each object
    for (int i = 0; i < per_thread; ++i) {
      m.compute(static_cast<int>((t + static_cast<unsigned>(i)) % keys),
                [&](std::optional<long> v) {
                  f_calls.fetch_add(1, std::memory_order_relaxed);
                  return v.value_or(0) + 1;
                });
    }
  });
  long total = 0;
  a.range([&](const int&, const long& v) { total += v; });
  EXPECT_EQ(total, 8L * per_thread);
  EXPECT_EQ(a.version(), static_cast<std::uint64_t>(8L * per_thread))
      << "one version bump per successful compute";
  EXPECT_GE(f_calls.load(), 8L * per_thread);
}

TEST(RedisMapSharing, RangeDuringWritesSeesEachKeyOnceAndEveryStableKey) {
  auto m = shared_map<int, int>();
  const int stable = 3000;
  std::vector<std::pair<int, int>> init;
  for (int i = 0; i < stable; ++i) init.emplace_back(i, i);
  m.store_many(init);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    RedisMap<int, int> w(m.name(), shared_server().options());
    for (int i = 0; !stop.load(); ++i) {
      w.store(100000 + i % 5000, i);  // grows the hash (HSCAN rehashes) and churns it
      if (i % 3 == 0) w.erase(100000 + (i / 3) % 5000);
    }
  });
  for (int round = 0; round < static_cast<int>(scaled(6, 3)); ++round) {
    std::set<int> seen;
    int stable_seen = 0;
    m.range([&](const int& k, const int& v) {
      EXPECT_TRUE(seen.insert(k).second) << "key " << k << " seen twice";
      if (k < stable) {
        EXPECT_EQ(v, k);
        ++stable_seen;
      }
    });
    EXPECT_EQ(stable_seen, stable);
  }
  stop = true;
  writer.join();
}

// ---- failures -----------------------------------------------------------------------------

TEST(RedisMapFailures, CorruptedValueRaisesJsonErrorNamingTheField) {
  const std::string name = unique_map_name();
  RedisMap<std::string, point> m(name, shared_server().options());
  m.store("good", point{1, 1, "g"});
  shared_server().raw({"HSET", name, "bad-field", R"({"x":1,"y":)"});
  try {
    (void)m.load("bad-field");
    FAIL() << "a corrupted value was returned";
  } catch (const safemap::json_error& e) {
    EXPECT_NE(std::string(e.what()).find("\"bad-field\""), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)m.snapshot(), safemap::json_error);
  EXPECT_THROW(m.range([](const std::string&, const point&) {}), safemap::json_error);
  EXPECT_THROW((void)m.swap("bad-field", point{}), safemap::json_error);  // stored, then reported
  EXPECT_EQ(m.load("good"), (point{1, 1, "g"}));

  // A field that is not a key of the map's key type.
  const std::string iname = unique_map_name("int");
  RedisMap<int, int> im(iname, shared_server().options());
  im.store(1, 1);
  shared_server().raw({"HSET", iname, "01", "2"});
  try {
    (void)im.snapshot();
    FAIL() << "a field that is no int key was accepted";
  } catch (const safemap::json_error& e) {
    EXPECT_NE(std::string(e.what()).find("\"01\""), std::string::npos) << e.what();
  }
  // A value of the wrong JSON type.
  shared_server().raw({"HSET", iname, "3", "\"three\""});
  EXPECT_THROW((void)im.load(3), safemap::json_error);
}

TEST(RedisMapFailures, ConnectionRefusedRaisesRedisError) {
  safemap::redis_options o;
  {
    redis_server gone;  // a port that just had a server and now has none
    o.port = gone.port();
    gone.kill();
  }
  RedisMap<int, int> m("refused", o);
  try {
    m.store(1, 1);
    FAIL() << "store succeeded without a server";
  } catch (const redis_error& e) {
    EXPECT_NE(std::string(e.what()).find("refused"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)m.load(1), redis_error);
}

TEST(RedisMapFailures, PausedServerRaisesWithinAboutCommandTimeoutThenRecovers) {
  redis_server server;
  auto o = server.options();
  o.command_timeout = 300ms;
  o.connect_timeout = 300ms;
  RedisMap<int, int> m(unique_map_name(), o);
  m.store(1, 1);
  server.pause();
  for (int attempt = 0; attempt < 2; ++attempt) {  // a pooled connection, then a new one
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW((void)m.load(1), redis_error);
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    // "About command_timeout": bounded, never a hang (generous for a loaded machine).
    EXPECT_LT(elapsed, 5s) << "attempt " << attempt;
  }
  server.resume();
  // The next calls reconnect; wait for the server to answer (its backlog of commands ran).
  EXPECT_EQ(m.load(1), 1);
  m.store(2, 2);
  EXPECT_EQ(m.size(), 2u);
}

TEST(RedisMapFailures, DebugSleepOnTheServerRaisesWithinAboutCommandTimeout) {
  redis_server server;
  auto o = server.options();
  o.command_timeout = 200ms;
  RedisMap<int, int> m(unique_map_name(), o);
  m.store(1, 1);
  std::thread sleeper([&] { server.raw({"DEBUG", "SLEEP", "2"}); });
  // The sleeper's command reaches the server before ours almost always; if not, ours succeeds
  // and the loop tries again while the server sleeps.
  bool raised = false;
  const auto t0 = std::chrono::steady_clock::now();
  while (!raised && std::chrono::steady_clock::now() - t0 < 1500ms) {
    try {
      (void)m.load(1);
    } catch (const redis_error&) {
      raised = true;
    }
  }
  sleeper.join();
  EXPECT_TRUE(raised) << "a 2 s server stall never raised with a 200 ms command_timeout";
  EXPECT_EQ(m.load(1), 1);
}

TEST(RedisMapFailures, AConnectionTheServerClosedRaisesRedisErrorNotSigpipe) {
  redis_server server;
  RedisMap<int, std::string> m(unique_map_name(), server.options());
  m.store(1, "x");                                   // one idle pooled connection now
  server.raw({"CLIENT", "KILL", "TYPE", "normal"});  // closes it (not raw's own connection)
  // A write far larger than the socket buffers: the first part draws a reset from the closed
  // socket, the next write() hits EPIPE, which would raise SIGPIPE and kill this process.
  std::vector<std::pair<int, std::string>> big;
  for (int i = 0; i < 200000; ++i) big.emplace_back(i, std::string(40, 'v'));
  EXPECT_THROW(m.store_many(big), redis_error);
  m.store(2, "y");  // the next call reconnects
  EXPECT_EQ(m.load(2), "y");
  EXPECT_EQ(m.size(), 2u) << "the failed batch was applied in part";
}

TEST(RedisMapFailures, OutOfMemoryAndNoscriptAreHandled) {
  redis_server server;
  RedisMap<int, int> m(unique_map_name(), server.options());
  m.store(1, 1);
  server.raw({"CONFIG", "SET", "maxmemory", "1"});
  try {
    m.store(2, 2);
    FAIL() << "a store past maxmemory succeeded";
  } catch (const redis_error& e) {
    EXPECT_NE(std::string(e.what()).find("OOM"), std::string::npos) << e.what();
  }
  server.raw({"CONFIG", "SET", "maxmemory", "0"});
  EXPECT_EQ(m.load(2), std::nullopt);
  server.raw({"SCRIPT", "FLUSH"});
  m.store(2, 2);  // NOSCRIPT: the script is sent again
  EXPECT_EQ(m.load(2), 2);
  EXPECT_EQ(m.version(), 2u);
}

TEST(RedisMapFailures, ServerKilledMidWorkloadLeavesFieldsAndVersionInAgreement) {
  redis_server_config cfg;
  cfg.persistent = true;
  redis_server server(cfg);
  auto o = server.options();
  o.command_timeout = 1000ms;
  o.connect_timeout = 500ms;
  const std::string name = unique_map_name();
  RedisMap<int, int> m(name, o);
  constexpr unsigned threads = 4;
  std::atomic<long> completed{0};
  std::atomic<long> failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::vector<int>> done(threads);
  std::vector<std::vector<int>> attempted(threads);
  std::thread workers([&] {
    run_threads(threads, [&](unsigned t) {
      for (int i = 0; !stop.load(); ++i) {
        const int key = static_cast<int>(t) * 10000000 + i;
        attempted[t].push_back(key);
        try {
          m.store(key, key);  // each key once: every applied store bumps the version by 1
          done[t].push_back(key);
          completed.fetch_add(1);
        } catch (const redis_error&) {
          failed.fetch_add(1);
        }
      }
    });
  });
  auto wait_for = [](auto pred, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  };
  bool ok = wait_for([&] { return completed.load() >= 300; }, 60s);
  server.kill();
  ok = ok && wait_for([&] { return failed.load() >= static_cast<long>(threads); }, 30s);
  server.restart();
  const long at_restart = completed.load();
  ok = ok && wait_for([&] { return completed.load() >= at_restart + 300; }, 60s);
  stop = true;
  workers.join();
  ASSERT_TRUE(ok) << "the workload stalled (completed " << completed << ", failed " << failed
                  << ")";
  // Every store that returned is there; the version counts exactly the applied stores.
  const auto snap = m.snapshot();
  std::size_t completed_total = 0;
  for (unsigned t = 0; t < threads; ++t) {
    completed_total += done[t].size();
    for (int k : done[t]) ASSERT_NE(snap.find(k), nullptr) << "completed store of " << k << " lost";
  }
  std::set<int> all;
  for (unsigned t = 0; t < threads; ++t) all.insert(attempted[t].begin(), attempted[t].end());
  snap.for_each([&](const int& k, const int& v) {
    EXPECT_EQ(k, v);
    EXPECT_TRUE(all.count(k)) << "key " << k << " was never stored";
  });
  EXPECT_GE(snap.size(), completed_total);
  EXPECT_EQ(m.version(), snap.size()) << "a store was half-applied (field without version bump "
                                         "or the reverse)";
  EXPECT_GT(failed.load(), 0);
}

// ---- connections --------------------------------------------------------------------------

TEST(RedisMapConnections, NoConnectionLeakAfterManyCallsFromEightThreads) {
  redis_server server;
  auto o = server.options();
  o.pool_size = 4;
  const std::string name = unique_map_name();
  RedisMap<int, int> a(name, o);
  RedisMap<int, int> b(name, o);
  const long calls = static_cast<long>(scaled(100000, 10));
  std::atomic<long> stored{0};
  run_threads(8, [&](unsigned t) {
    auto& m = t % 2 == 0 ? a : b;
    for (long i = t; i < calls; i += 8) {
      if (i % 4 == 0) {
        m.store(static_cast<int>(i % 1000), static_cast<int>(i));
        stored.fetch_add(1);
      } else {
        (void)m.load(static_cast<int>(i % 1000));
      }
    }
  });
  // Two map objects of 4 connections each, plus connected_clients' own connection.
  EXPECT_LE(server.connected_clients(), 2 * 4 + 1);
  EXPECT_EQ(a.version(), static_cast<std::uint64_t>(stored.load()));
}

TEST(RedisMapConnections, AuthAndSelectOnConnect) {
  redis_server_config cfg;
  cfg.password = "s3cret pass";
  redis_server server(cfg);
  auto o = server.options();
  o.db = 3;
  const std::string name = unique_map_name();
  RedisMap<std::string, int> m(name, o);
  m.store("k", 1);
  EXPECT_EQ(m.load("k"), 1);
  EXPECT_EQ(server.raw({"HEXISTS", name, "k"}, 3)->integer, 1) << "not in db 3";
  EXPECT_EQ(server.raw({"EXISTS", name}, 0)->integer, 0) << "written to db 0";

  auto wrong = o;
  wrong.password = "wrong";
  RedisMap<std::string, int> w(name, wrong);
  EXPECT_THROW((void)w.load("k"), redis_error);
  auto none = o;
  none.password.clear();
  RedisMap<std::string, int> n(name, none);
  try {
    (void)n.load("k");
    FAIL() << "a load without AUTH succeeded";
  } catch (const redis_error& e) {
    EXPECT_NE(std::string(e.what()).find("NOAUTH"), std::string::npos) << e.what();
  }
}

TEST(RedisMapConnections, UnixSocket) {
  redis_server_config cfg;
  cfg.unix_socket = true;
  redis_server server(cfg);
  safemap::redis_options o;
  o.unix_socket = server.socket_path();
  o.port = 1;  // unused: the socket wins
  const std::string name = unique_map_name();
  RedisMap<int, int> m(name, o);
  m.store(1, 2);
  EXPECT_EQ(server.raw({"HGET", name, "1"})->str, std::string("2"));
  EXPECT_EQ(m.load(1), 2);
}

}  // namespace
