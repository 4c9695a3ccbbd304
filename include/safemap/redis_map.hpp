// safemap/redis_map.hpp - RedisMap: the concurrent-map API over a Redis hash, for a map shared
// between threads, processes and hosts.
//
//   #include <safemap/redis_map.hpp>      // CMake: target_link_libraries(app safemap::redis)
//   safemap::RedisMap<std::string, int> hits("{app}:hits", {.host = "10.0.0.7", .port = 6379});
//   hits.compute("home", [](std::optional<int> n) { return n.value_or(0) + 1; });
//   auto copy = hits.snapshot();              // a safemap::Map, point-in-time
//
// # When to use it (and when not)
// When the map itself has to be shared by several processes or machines. Every call is a round
// trip to the server (tens of microseconds on loopback, against tens of nanoseconds for the
// in-process maps): use it where sharing across processes is the point, never as a faster map.
// load_many/store_many amortize the round trip over many keys.
//
// # Storage
// The Redis hash at key `name` holds the entries. A field is the key as json.hpp writes object
// keys, without the quotes (strings as-is, integers in decimal, bool as true/false); a value is
// the value's JSON text (json.hpp's writer, so user types with json_traits work). The string
// key `name + ":version"` holds version(). Both keys share the hash tag of `name` when it has
// one: name a map "{users}" and Redis Cluster keeps the hash and its version in one slot, which
// the scripts below require.
//
// # How each call runs on the server
// Every mutation is one Lua script run with EVALSHA (EVAL when the server answers NOSCRIPT, for
// example after a restart): the script changes the hash and INCRs the version in the same
// atomic step, so another client never sees one without the other, and a connection that breaks
// mid-call leaves either the whole change or none of it.
//   store, swap, load_or_store, load_and_delete, erase, compare_and_swap, compare_and_delete,
//   clear, store_many (and merge): one script each, one round trip.
//   compute: a client loop: HGET, f(current), then a server-side compare-and-set of the field
//     against the text just read; when another client changed the field in between, it reads
//     again and calls f again (f may run more than once, as for the lock-free maps: it must be
//     pure).
//   load, contains, visit, size (HLEN), version (GET), snapshot (HGETALL): one command each;
//     snapshot is point-in-time (one command is atomic on the server).
//   range: HSCAN, weakly consistent: every key present for the whole call is seen, none twice
//     (HSCAN may return a key twice; range keeps the fields it has seen and skips repeats), a
//     value seen is one the key held during the call. The callback runs with no connection
//     held, so it may call any method of the same map.
//   load_many: HMGET in chunks, pipelined; store_many: one script (all or nothing).
// compare_and_swap/compare_and_delete compare the JSON texts on the server: the same as V's
// operator== for integers, bool, strings and types whose equal values write equal JSON; a
// floating-point 0.0 does not match an expected -0.0.
//
// # Connections and failures
// Each RedisMap holds a pool of at most options.pool_size connections; a call takes one for
// the duration of its commands, so no connection is ever used by two threads at once, and
// callbacks (visit, range, compute's f) run with none held. A new connection sends AUTH (when
// a password is set) and SELECT (when db != 0). Connect and every read/write on the socket are
// bounded by connect_timeout and command_timeout: a dead, paused or unreachable server raises
// redis_error within about that time, never a hang. A connection that fails (I/O error,
// timeout, protocol error) is closed rather than returned to the pool, and so are the idle
// ones (a server that went away usually took them all with it): the next call connects
// afresh. Error replies (OOM, NOAUTH, WRONGTYPE, ...) raise redis_error carrying the server's
// message and keep the connection. A call that raised may or may not have been applied (the
// reply may be what was lost), but never in part.
// A stored value or field that does not decode raises json_error whose message names the map
// and the field; nothing is returned for it.
// SIGPIPE: a write to a socket the server closed would kill the process; each call blocks
// SIGPIPE in its own thread while it talks to the server and discards one it caused, so the
// program's handler is neither changed nor triggered.
//
// # Cost (scripts/bench-redis: the same private server, beside redis-benchmark, one run)
// load is one HGET round trip plus encoding the field and decoding the JSON value; store is
// one EVALSHA (HSET + INCR inside Lua), slower on the server than a bare HSET; a call also
// blocks/unblocks SIGPIPE (a few syscalls, well under a microsecond each). The issue's
// targets, load/store <= 1.2x the latency of `redis-benchmark -c 1 -P 1` HGET/HSET and
// load_many >= 0.8x the throughput of `redis-benchmark -c 1 -P 16` HGET, could not be
// measured meaningfully yet: on the development machine (2 cores, load average 13-15 from
// other builds) three consecutive runs of `scripts/bench-redis 20000` gave load at 1.4x-7x,
// store at 1.2x-5x and load_many(1000) at 2.3x-9.4x of redis-benchmark, with redis-benchmark
// itself varying 6x between runs. Rerun the script on a quiet machine before quoting numbers.
//
// Concurrency: every method may be called from any number of threads; two RedisMap objects
// with the same name and server, in one process or in several, are the same map.
#pragma once

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/detail/json_read.hpp"
#include "safemap/detail/json_write.hpp"
#include "safemap/detail/visit.hpp"
#include "safemap/hash.hpp"
#include "safemap/json_fwd.hpp"
#include "safemap/map.hpp"

namespace safemap {

// Where the server is and how long to wait for it.
struct redis_options {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_socket;  // used instead of host:port when not empty
  std::string password;     // AUTH when not empty
  int db = 0;
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{1000};
  std::size_t pool_size = 4;  // connections; no connection is used by two threads at once
};

// A connection, timeout or server error; what() carries the server's or the client's message.
struct redis_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail::redis {

struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

struct context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using context_ptr = std::unique_ptr<redisContext, context_deleter>;

inline timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  const auto n = ms.count() < 0 ? 0 : ms.count();
  return timeval{static_cast<time_t>(n / 1000), static_cast<suseconds_t>((n % 1000) * 1000)};
}

// Blocks SIGPIPE in this thread for its lifetime and swallows one raised meanwhile, so a write
// to a closed socket becomes an EPIPE error instead of killing the process.
class sigpipe_guard {
 public:
  sigpipe_guard() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~sigpipe_guard() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

// The Lua scripts. KEYS[1] is the hash, KEYS[2] the version counter. Each mutation INCRs the
// version in the same script that changes the hash (invariant V1 below).
enum script_id : std::size_t {
  s_store,
  s_load_or_store,
  s_load_and_delete,
  s_erase,
  s_swap,
  s_compare_and_swap,
  s_compare_and_delete,
  s_compute,
  s_clear,
  s_store_many,
  s_count
};

inline constexpr const char* script_text[s_count] = {
    // store(field, value) -> new version
    "redis.call('HSET',KEYS[1],ARGV[1],ARGV[2]) return redis.call('INCR',KEYS[2])",
    // load_or_store(field, value) -> the existing value, or nil after storing
    "local v=redis.call('HGET',KEYS[1],ARGV[1]) if v then return v end "
    "redis.call('HSET',KEYS[1],ARGV[1],ARGV[2]) redis.call('INCR',KEYS[2]) return false",
    // load_and_delete(field) -> the removed value or nil
    "local v=redis.call('HGET',KEYS[1],ARGV[1]) if v then redis.call('HDEL',KEYS[1],ARGV[1]) "
    "redis.call('INCR',KEYS[2]) end return v",
    // erase(field) -> 1 if removed
    "if redis.call('HDEL',KEYS[1],ARGV[1])==1 then redis.call('INCR',KEYS[2]) return 1 end "
    "return 0",
    // swap(field, value) -> the previous value or nil
    "local v=redis.call('HGET',KEYS[1],ARGV[1]) redis.call('HSET',KEYS[1],ARGV[1],ARGV[2]) "
    "redis.call('INCR',KEYS[2]) return v",
    // compare_and_swap(field, expected, desired) -> 1 if swapped
    "if redis.call('HGET',KEYS[1],ARGV[1])==ARGV[2] then "
    "redis.call('HSET',KEYS[1],ARGV[1],ARGV[3]) redis.call('INCR',KEYS[2]) return 1 end return 0",
    // compare_and_delete(field, expected) -> 1 if deleted
    "if redis.call('HGET',KEYS[1],ARGV[1])==ARGV[2] then redis.call('HDEL',KEYS[1],ARGV[1]) "
    "redis.call('INCR',KEYS[2]) return 1 end return 0",
    // compute's compare-and-set(field, was_present, was_text, store, text) -> 1 if applied:
    // applies only if the field still holds what the client read (present with that text, or
    // absent); then stores text, or deletes the field (no version bump when nothing was there).
    "local v=redis.call('HGET',KEYS[1],ARGV[1]) "
    "if ARGV[2]=='1' then if v~=ARGV[3] then return 0 end elseif v then return 0 end "
    "if ARGV[4]=='1' then redis.call('HSET',KEYS[1],ARGV[1],ARGV[5]) redis.call('INCR',KEYS[2]) "
    "elseif v then redis.call('HDEL',KEYS[1],ARGV[1]) redis.call('INCR',KEYS[2]) end return 1",
    // clear() -> 1 if the hash existed (and the version moved)
    "if redis.call('DEL',KEYS[1])==1 then redis.call('INCR',KEYS[2]) return 1 end return 0",
    // store_many(field1, value1, field2, value2, ...) -> 0; one version bump for the batch
    "for i=1,#ARGV,2 do redis.call('HSET',KEYS[1],ARGV[i],ARGV[i+1]) end "
    "if #ARGV>0 then redis.call('INCR',KEYS[2]) end return 0",
};

// One command's arguments, kept as views over strings the caller owns.
struct command {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;

  command() = default;
  command(std::initializer_list<std::string_view> args) {
    for (auto a : args) add(a);
  }
  void add(std::string_view a) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
};

// The connection pool and the script hashes of one RedisMap.
//
// Invariants:
//  P1 open_ == idle_.size() + the connections leased out; open_ <= options.pool_size.
//  P2 a connection in idle_ is owned by no thread; a leased one by exactly one (no connection
//     is ever used by two threads at once).
//  P3 a connection whose context reported an error (c->err) or that was leased out when a
//     command failed on it is never returned to idle_.
//  S1 sha_[i] is written once, under mu_, before scripts_loaded_ is set (release); it is read
//     only after scripts_loaded_ was seen true (acquire), and never written again.
class client {
 public:
  client(std::string name, redis_options opt)
      : name_(std::move(name)), version_key_(name_ + ":version"), opt_(std::move(opt)) {
    if (opt_.pool_size == 0) opt_.pool_size = 1;
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  const std::string& name() const noexcept { return name_; }
  const std::string& version_key() const noexcept { return version_key_; }
  const redis_options& options() const noexcept { return opt_; }

  // A leased connection: returned to the pool on destruction, or closed if it failed (P3).
  class lease {
   public:
    lease(client& owner, context_ptr c) noexcept : owner_(&owner), c_(std::move(c)) {}
    lease(lease&& o) noexcept : owner_(o.owner_), c_(std::move(o.c_)), broken_(o.broken_) {}
    lease& operator=(lease&&) = delete;
    ~lease() {
      if (c_) owner_->release(std::move(c_), broken_ || c_->err != 0);
    }
    redisContext* get() const noexcept { return c_.get(); }
    void mark_broken() noexcept { broken_ = true; }

   private:
    client* owner_;
    context_ptr c_;
    bool broken_ = false;
  };

  // Takes an idle connection, or opens one while fewer than pool_size are open, or waits for
  // one to come back (a leased connection comes back within about command_timeout).
  lease acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < opt_.pool_size; });
    if (!idle_.empty()) {
      context_ptr c = std::move(idle_.back());
      idle_.pop_back();
      return lease(*this, std::move(c));
    }
    ++open_;
    lock.unlock();
    try {
      return lease(*this, connect());
    } catch (...) {
      lock.lock();
      --open_;
      lock.unlock();
      cv_.notify_one();
      throw;
    }
  }

  // Runs one command. An error reply throws redis_error and leaves the connection usable; an
  // I/O error or timeout throws and leaves c->err set (so the lease closes it, P3).
  reply_ptr run(redisContext* c, const command& cmd) const {
    sigpipe_guard guard;
    reply_ptr r(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(cmd.argv.size()),
                                                          const_cast<const char**>(cmd.argv.data()),
                                                          cmd.lens.data())));
    if (!r) throw io_error(c);
    if (r->type == REDIS_REPLY_ERROR) throw reply_error(r.get());
    return r;
  }
  reply_ptr run(lease& l, const command& cmd) const { return run(l.get(), cmd); }

  // Runs commands as one pipeline: all are sent, then all replies read. Every reply is read
  // even after an error reply, so the connection stays in step; the first error is thrown.
  std::vector<reply_ptr> run_pipeline(redisContext* c, const std::vector<command>& cmds) const {
    sigpipe_guard guard;
    for (const auto& cmd : cmds) {
      if (redisAppendCommandArgv(c, static_cast<int>(cmd.argv.size()),
                                 const_cast<const char**>(cmd.argv.data()),
                                 cmd.lens.data()) != REDIS_OK) {
        throw io_error(c);
      }
    }
    std::vector<reply_ptr> replies;
    replies.reserve(cmds.size());
    for (std::size_t i = 0; i < cmds.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) throw io_error(c);
      replies.emplace_back(static_cast<redisReply*>(raw));
    }
    for (const auto& r : replies) {
      if (r->type == REDIS_REPLY_ERROR) throw reply_error(r.get());
    }
    return replies;
  }
  std::vector<reply_ptr> run_pipeline(lease& l, const std::vector<command>& cmds) const {
    try {
      return run_pipeline(l.get(), cmds);
    } catch (const redis_error&) {
      throw;  // an I/O error set c->err; after an error reply every reply was read
    } catch (...) {
      l.mark_broken();  // e.g. bad_alloc between send and read: replies may be left unread
      throw;
    }
  }

  // EVALSHA of script `id` on the map's two keys; EVAL (which also caches it) on NOSCRIPT
  // (a restarted or flushed server).
  reply_ptr eval(lease& l, script_id id, std::initializer_list<std::string_view> args) const {
    command cmd{"EVALSHA", sha_[id], "2", name_, version_key_};
    for (auto a : args) cmd.add(a);
    return eval(l, id, cmd);
  }
  // cmd: EVALSHA, a placeholder for the hash, then "2", the keys and the arguments.
  reply_ptr eval(lease& l, script_id id, command& cmd) const {
    cmd.argv[1] = sha_[id].data();
    cmd.lens[1] = sha_[id].size();
    try {
      return run(l, cmd);
    } catch (const redis_error& e) {
      if (l.get()->err != 0 ||
          std::string_view(e.what()).find("NOSCRIPT") == std::string_view::npos) {
        throw;
      }
    }
    cmd.argv[0] = "EVAL";
    cmd.lens[0] = 4;
    cmd.argv[1] = script_text[id];
    cmd.lens[1] = std::strlen(script_text[id]);
    return run(l, cmd);
  }

  // "RedisMap \"name\" at host:port: what".
  std::string where() const {
    std::string s = "safemap::RedisMap \"" + name_ + "\" at ";
    s += opt_.unix_socket.empty() ? opt_.host + ":" + std::to_string(opt_.port) : opt_.unix_socket;
    return s;
  }

 private:
  redis_error io_error(redisContext* c) const {
    const char* msg = c->err != 0 ? c->errstr : "connection lost";
    std::string what = where() + ": " + msg;
    if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      what += " (no reply within command_timeout)";
    }
    return redis_error(what);
  }
  redis_error reply_error(const redisReply* r) const {
    return redis_error(where() + ": " + std::string(r->str, r->len));
  }

  context_ptr connect() {
    const timeval ctv = to_timeval(opt_.connect_timeout);
    context_ptr c(opt_.unix_socket.empty()
                      ? redisConnectWithTimeout(opt_.host.c_str(), opt_.port, ctv)
                      : redisConnectUnixWithTimeout(opt_.unix_socket.c_str(), ctv));
    if (!c) throw redis_error(where() + ": cannot allocate a connection");
    if (c->err != 0) throw redis_error(where() + ": " + c->errstr);
    if (opt_.command_timeout.count() > 0 &&
        redisSetTimeout(c.get(), to_timeval(opt_.command_timeout)) != REDIS_OK) {
      throw redis_error(where() + ": " + c->errstr);
    }
    // On a throw below, c is closed here and never pooled.
    if (!opt_.password.empty()) run(c.get(), {"AUTH", opt_.password});
    if (opt_.db != 0) {
      const std::string db = std::to_string(opt_.db);
      run(c.get(), {"SELECT", db});
    }
    if (!scripts_loaded_.load(std::memory_order_acquire)) load_scripts(c.get());
    return c;
  }

  void load_scripts(redisContext* c) {
    std::vector<command> cmds;
    for (std::size_t i = 0; i < s_count; ++i) cmds.push_back({"SCRIPT", "LOAD", script_text[i]});
    auto replies = run_pipeline(c, cmds);
    std::lock_guard lock(mu_);
    if (scripts_loaded_.load(std::memory_order_relaxed)) return;
    for (std::size_t i = 0; i < s_count; ++i) {
      if (replies[i]->type != REDIS_REPLY_STRING) {
        throw redis_error(where() + ": SCRIPT LOAD did not return a hash");
      }
      sha_[i].assign(replies[i]->str, replies[i]->len);
    }
    scripts_loaded_.store(true, std::memory_order_release);
  }

  void release(context_ptr c, bool broken) noexcept {
    std::vector<context_ptr> dead;
    {
      std::lock_guard lock(mu_);
      if (broken) {
        // The server probably went away (restart, network): the idle connections are likely
        // dead too, and each would fail one more call. Close them all; calls reconnect.
        dead.swap(idle_);
        open_ -= dead.size() + 1;
        dead.push_back(std::move(c));
      } else {
        idle_.push_back(std::move(c));
      }
    }
    cv_.notify_all();
    // dead's destructor closes the sockets outside the lock.
  }

  const std::string name_;
  const std::string version_key_;
  redis_options opt_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<context_ptr> idle_;  // guarded by mu_ (P1, P2)
  std::size_t open_ = 0;           // guarded by mu_ (P1)

  std::atomic<bool> scripts_loaded_{false};  // S1
  std::string sha_[s_count];                 // S1
};

}  // namespace detail::redis

// The concurrent-map API over the Redis hash `name` (see the top of this file).
//
// Invariants (on the server, for every map name):
//  V1 every change to the hash is made by a script that INCRs name:version in the same atomic
//     step; so version() moves on every successful mutation, and a client that reads the hash
//     and the version in one step sees them agree.
//  V2 a field holds the JSON text of a V written by json.hpp (unless someone else wrote it:
//     such a value raises json_error when read, it is never returned as garbage).
template <class K, class V, class Hash = safemap::Hash<K>, class Eq = std::equal_to<>>
class RedisMap : public detail::immutable_visitation<RedisMap<K, V, Hash, Eq>, K, V> {
  static_assert(detail::json::json_key<K>,
                "RedisMap: keys must be strings, integers or bool (written as JSON object keys)");

 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = Hash;
  using key_equal = Eq;
  using map_type = Map<K, V, Hash, Eq>;
  // What the lookups, erases and compute take: for a string-keyed map a std::string_view, so
  // a std::string, a std::string_view or a literal finds its key without building a
  // std::string first (heterogeneous lookup, as every other map offers); otherwise const K&.
  using key_arg = std::conditional_t<detail::json::string_value<K>, std::string_view, const K&>;

  // Connects lazily: the first call opens the first connection (and raises redis_error if the
  // server cannot be reached).
  explicit RedisMap(std::string name, redis_options options = {})
      : c_(std::make_unique<detail::redis::client>(std::move(name), std::move(options))) {}

  // Moves: see "Visitation, bulk erase and moves" below.

  const std::string& name() const noexcept { return c_->name(); }
  const redis_options& options() const noexcept { return c_->options(); }

  // The value, or nullopt. Concurrency: one HGET.
  std::optional<V> load(key_arg k) const {
    const std::string f = field(k);
    auto l = c_->acquire();
    auto r = c_->run(l, {"HGET", c_->name(), f});
    if (r->type != REDIS_REPLY_STRING) return std::nullopt;
    return decode(f, r.get());
  }

  // Concurrency: one HEXISTS.
  bool contains(key_arg k) const {
    const std::string f = field(k);
    auto l = c_->acquire();
    return c_->run(l, {"HEXISTS", c_->name(), f})->integer == 1;
  }

  // Calls f(const V&) on a copy of the value just read, with no connection held; returns
  // whether the key was present. Concurrency: one HGET.
  template <class F>
  bool visit(key_arg k, F f) const {
    std::optional<V> v = load(k);
    if (!v) return false;
    f(static_cast<const V&>(*v));
    return true;
  }

  // Insert or overwrite. Concurrency: one script.
  void store(K k, V v) {
    const std::string f = field(k);
    const std::string t = encode(v);
    auto l = c_->acquire();
    c_->eval(l, detail::redis::s_store, {f, t});
  }

  // The existing value and true, or v and false after storing it. Concurrency: one script.
  std::pair<V, bool> load_or_store(K k, V v) {
    const std::string f = field(k);
    const std::string t = encode(v);
    auto l = c_->acquire();
    auto r = c_->eval(l, detail::redis::s_load_or_store, {f, t});
    if (r->type != REDIS_REPLY_STRING) return {std::move(v), false};
    return {decode(f, r.get()), true};
  }

  // Removes; the removed value. Concurrency: one script.
  std::optional<V> load_and_delete(key_arg k) {
    const std::string f = field(k);
    auto l = c_->acquire();
    auto r = c_->eval(l, detail::redis::s_load_and_delete, {f});
    if (r->type != REDIS_REPLY_STRING) return std::nullopt;
    return decode(f, r.get());
  }

  // True if something was removed. Concurrency: one script.
  bool erase(key_arg k) {
    const std::string f = field(k);
    auto l = c_->acquire();
    return c_->eval(l, detail::redis::s_erase, {f})->integer == 1;
  }

  // Stores v; the previous value if any. Concurrency: one script.
  std::optional<V> swap(K k, V v) {
    const std::string f = field(k);
    const std::string t = encode(v);
    auto l = c_->acquire();
    auto r = c_->eval(l, detail::redis::s_swap, {f, t});
    if (r->type != REDIS_REPLY_STRING) return std::nullopt;
    return decode(f, r.get());
  }

  // Only if present and equal (equal JSON text, see the top of this file). Concurrency: one
  // script.
  bool compare_and_swap(key_arg k, const V& expected, V desired) {
    const std::string f = field(k);
    const std::string e = encode(expected);
    const std::string d = encode(desired);
    auto l = c_->acquire();
    return c_->eval(l, detail::redis::s_compare_and_swap, {f, e, d})->integer == 1;
  }

  // Only if present and equal. Concurrency: one script.
  bool compare_and_delete(key_arg k, const V& expected) {
    const std::string f = field(k);
    const std::string e = encode(expected);
    auto l = c_->acquire();
    return c_->eval(l, detail::redis::s_compare_and_delete, {f, e})->integer == 1;
  }

  // Atomic per key: f(std::optional<V> current) -> std::optional<V>; nullopt erases; returns
  // the new state. f runs with no connection held and may run more than once (once per lost
  // race with another writer of the key): it must be pure. If f throws, nothing is changed.
  // Concurrency: per attempt one HGET and one compare-and-set script.
  template <class F>
  std::optional<V> compute(key_arg k, F f) {
    const std::string fld = field(k);
    for (;;) {
      std::optional<std::string> was;
      std::optional<V> cur;
      {
        auto l = c_->acquire();
        auto r = c_->run(l, {"HGET", c_->name(), fld});
        if (r->type == REDIS_REPLY_STRING) {
          was.emplace(r->str, r->len);
          cur = decode(fld, r.get());
        }
      }
      std::optional<V> next = f(std::move(cur));
      if (!next && !was) return std::nullopt;  // absent and stays absent: nothing to write
      const std::string t = next ? encode(*next) : std::string();
      auto l = c_->acquire();
      auto r = c_->eval(l, detail::redis::s_compute,
                        {fld, was ? "1" : "0", was ? std::string_view(*was) : std::string_view(),
                         next ? "1" : "0", t});
      if (r->integer == 1) return next;
    }
  }

  // f(const K&, const V&), may return bool (false stops). HSCAN: each key at most once; every
  // key present for the whole call is seen. f runs with no connection held. Concurrency: one
  // HSCAN per batch of about 256 fields.
  template <class F>
  void range(F f) const {
    std::unordered_set<std::string> seen;
    std::string cursor = "0";
    std::vector<std::pair<K, V>> batch;
    do {
      batch.clear();
      {
        auto l = c_->acquire();
        auto r = c_->run(l, {"HSCAN", c_->name(), cursor, "COUNT", "256"});
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
          throw redis_error(c_->where() + ": unexpected HSCAN reply");
        }
        cursor.assign(r->element[0]->str, r->element[0]->len);
        const redisReply* items = r->element[1];
        for (std::size_t i = 0; i + 1 < items->elements; i += 2) {
          std::string fld(items->element[i]->str, items->element[i]->len);
          if (!seen.insert(fld).second) continue;
          batch.emplace_back(parse_field(fld), decode(fld, items->element[i + 1]));
        }
      }
      for (const auto& [k, v] : batch) {
        if (!detail::invoke_range_callback(f, k, v)) return;
      }
    } while (cursor != "0");
  }

  // The number of entries. Concurrency: one HLEN.
  std::size_t size() const {
    auto l = c_->acquire();
    return static_cast<std::size_t>(c_->run(l, {"HLEN", c_->name()})->integer);
  }
  [[nodiscard]] bool empty() const { return size() == 0; }

  // Removes every entry and bumps the version in one step. Concurrency: one script.
  void clear() {
    auto l = c_->acquire();
    c_->eval(l, detail::redis::s_clear, {});
  }

  // A point-in-time copy. Concurrency: one HGETALL.
  map_type snapshot() const {
    detail::redis::reply_ptr r;
    {
      auto l = c_->acquire();
      r = c_->run(l, {"HGETALL", c_->name()});
    }
    map_type m;
    m.reserve(r->elements / 2);
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
      const std::string fld(r->element[i]->str, r->element[i]->len);
      m.insert_or_assign(parse_field(fld), decode(fld, r->element[i + 1]));
    }
    return m;
  }

  // The version counter: grows by at least 1 on every successful mutation. Concurrency: GET.
  std::uint64_t version() const {
    auto l = c_->acquire();
    auto r = c_->run(l, {"GET", c_->version_key()});
    if (r->type != REDIS_REPLY_STRING) return 0;
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(r->str, r->str + r->len, v);
    if (ec != std::errc() || end != r->str + r->len) {
      throw redis_error(c_->where() + ": the version key \"" + c_->version_key() +
                        "\" does not hold a counter");
    }
    return v;
  }

  // The values of many keys, in the order of `keys`: HMGET in chunks, pipelined on one
  // connection. Each value is one the key held during the call (not one point in time).
  template <std::ranges::input_range R>
  std::vector<std::optional<V>> load_many(R&& keys) const {
    std::vector<std::string> fields;
    for (auto&& k : keys) fields.push_back(field(k));
    std::vector<std::optional<V>> out;
    out.reserve(fields.size());
    auto l = c_->acquire();
    for (std::size_t window = 0; window < fields.size(); window += k_window) {
      const std::size_t window_end = std::min(fields.size(), window + k_window);
      std::vector<detail::redis::command> cmds;
      for (std::size_t b = window; b < window_end; b += k_chunk) {
        detail::redis::command cmd{"HMGET", c_->name()};
        for (std::size_t i = b; i < std::min(window_end, b + k_chunk); ++i) cmd.add(fields[i]);
        cmds.push_back(std::move(cmd));
      }
      auto replies = c_->run_pipeline(l, cmds);
      std::size_t i = window;
      for (const auto& r : replies) {
        for (std::size_t j = 0; j < r->elements; ++j, ++i) {
          const redisReply* e = r->element[j];
          if (e->type == REDIS_REPLY_STRING) {
            out.push_back(decode(fields[i], e));
          } else {
            out.emplace_back();
          }
        }
      }
    }
    return out;
  }

  // load_many into out (the span form every concurrent map has, concurrent.hpp): out[i] = the
  // value of keys[i]; returns how many were found. The same round trips as the range form.
  std::size_t load_many(std::span<const K> keys, std::span<std::optional<V>> out) const {
    detail::check_many_out(keys.size(), out.size(), "safemap::RedisMap::load_many");
    std::vector<std::optional<V>> values = load_many(keys);
    std::size_t found = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
      out[i].reset();
      if (values[i]) {
        out[i].emplace(std::move(*values[i]));
        ++found;
      }
    }
    return found;
  }

  // Stores every (key, value) pair of `entries` in one script: all of them or none, with one
  // version bump; other clients see none of them or all.
  template <std::ranges::input_range R>
  void store_many(const R& entries) {
    std::vector<std::string> texts;
    for (const auto& [k, v] : entries) {
      texts.push_back(field(k));
      texts.push_back(encode(v));
    }
    if (texts.empty()) return;
    detail::redis::command cmd{"EVALSHA", "", "2", c_->name(), c_->version_key()};
    for (const auto& t : texts) cmd.add(t);
    auto l = c_->acquire();
    c_->eval(l, detail::redis::s_store_many, cmd);
  }

  // Stores every entry as one batch (merge_json applies parsed input this way).
  void merge(map_type&& entries) {
    std::vector<std::pair<K, V>> v;
    v.reserve(entries.size());
    entries.for_each([&](const K& k, V& val) { v.emplace_back(k, std::move(val)); });
    store_many(v);
  }

  // Calls f(walk): walk(g) calls g(const K&, const V&) for every entry of one snapshot
  // (point-in-time). json.hpp serializes a RedisMap through this.
  template <class F>
  void read_view(F&& f) const {
    const map_type m = snapshot();
    f([&m](auto&& g) { m.for_each([&g](const K& k, const V& v) { g(k, v); }); });
  }

  // === Visitation, bulk erase and moves (Boost.Unordered's concurrent_flat_map habits) ========
  // A RedisMap's values live on the server: f always gets a const V& to a copy just read, on a
  // const map or not, and a non-const visit or visit_all whose f needs a V& is rejected at
  // compile time, naming the alternative (compute, which is atomic on the server). No
  // connection is held while f or pred runs: they may call any method of this map, and if they
  // throw, the exception propagates with every connection back in the pool.

  // Takes over other's connections. A RedisMap is a handle to a hash on the server, so there is
  // nothing to empty: other stays usable, names the same hash with the same options, and opens
  // connections of its own when next used (lazily, as a new RedisMap does). Allocates other's
  // new, unconnected pool first (if that throws, neither handle changed).
  // Concurrency: not concurrent with any other call on either handle.
  RedisMap(RedisMap&& other)
      : c_(std::make_unique<detail::redis::client>(other.name(), other.options())) {
    c_.swap(other.c_);
  }
  // As the move constructor; this handle's previous connections are closed.
  // Concurrency: not concurrent with any other call on either handle.
  RedisMap& operator=(RedisMap&& other) {
    if (this == &other) return *this;
    auto fresh = std::make_unique<detail::redis::client>(other.name(), other.options());
    c_ = std::move(other.c_);
    other.c_ = std::move(fresh);
    return *this;
  }

  // visit on a non-const map (f gets const V&; a callable that needs V& is refused at
  // compile time), cvisit, visit_all, cvisit_all, erase_if, insert_or_visit, emplace_or_visit: from
  // detail::immutable_visitation<RedisMap, K, V> (detail/visit.hpp), which builds
  // them from this map's own calls and documents their guarantees.
  using detail::immutable_visitation<RedisMap, K, V>::visit;

 private:
  // === end of visitation, bulk erase and moves ==================================================

 private:
  static constexpr std::size_t k_chunk = 64;     // keys per HMGET
  static constexpr std::size_t k_window = 4096;  // keys in flight per pipeline round

  // The field of key k: the JSON object key without its quotes.
  static std::string field(key_arg k) {
    if constexpr (detail::json::string_value<K>) {
      return std::string(k);
    } else if constexpr (std::same_as<K, bool>) {
      return k ? "true" : "false";
    } else {
      return std::to_string(k);
    }
  }

  // The key of field f, read back as json.hpp reads object keys (decimal integers without
  // leading zeros or '+', "true"/"false"); anything else raises json_error naming the field.
  K parse_field(const std::string& f) const {
    if constexpr (detail::json::string_value<K>) {
      return K(f);
    } else if constexpr (std::same_as<K, bool>) {
      if (f == "true") return true;
      if (f == "false") return false;
      throw bad_field(f, "a bool key (true or false)");
    } else {
      K v{};
      const char* b = f.data();
      const char* e = b + f.size();
      const bool digits_ok = !f.empty() && (f[0] == '-' ? (f.size() > 1 && f[1] != '0') || f == "-0"
                                                        : f[0] != '0' || f.size() == 1);
      const auto r = std::from_chars(b, e, v);
      if (!digits_ok || r.ec != std::errc() || r.ptr != e) {
        throw bad_field(f, "a decimal integer key in range for the key type");
      }
      return v;
    }
  }

  json_error bad_field(const std::string& f, const char* expected) const {
    return json_error(0, c_->where() + ": field \"" + f + "\" is not a key: expected " + expected);
  }

  static std::string encode(const V& v) {
    std::string out;
    const json_options opt;
    detail::json::json_writer<std::string>(out, opt).value(v);
    return out;
  }

  V decode(const std::string& f, const redisReply* r) const {
    const std::string_view text(r->str, r->len);
    try {
      V v{};
      detail::json::reader rd(text);
      rd.read_value(v, 0);
      rd.finish();
      return v;
    } catch (const json_error& e) {
      throw json_error(e.offset(), c_->where() + ": the value of field \"" + f +
                                       "\" does not decode: " + e.what());
    }
  }

  std::unique_ptr<detail::redis::client> c_;
};

}  // namespace safemap
