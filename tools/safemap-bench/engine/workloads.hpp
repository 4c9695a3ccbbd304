// engine/workloads.hpp - the workloads safemap-bench runs, and what their results must be.
//
// # The Go sync.Map suite (group "go-suite")
// Go's src/sync/map_bench_test.go, with its key ranges and mixes. As in Go, every thread
// (goroutine there) runs `op(i)` for consecutive i starting at its own base; Go's base is
// id * b.N, ours is id << 40 (disjoint ranges, whatever the run length). One "op" is one
// iteration of Go's loop body, even where that body makes two map calls. Keys and values are
// 64-bit integers, used as Go uses them (i itself is the key).
//
//   load-mostly-hits        1023 keys stored; Load(i % 1024)                 (1 miss in 1024)
//   load-mostly-misses      1 key stored; Load(i % 1024)                     (1 hit in 1024)
//   load-or-store-balanced  128 keys stored; j = i % 256: LoadOrStore(j) hits for j < 128,
//                           LoadOrStore(i, i) stores a new key otherwise
//   load-or-store-unique    LoadOrStore(i, i): every op stores a new key (the map grows)
//   load-or-store-collision LoadOrStore(0, 0) on a stored key from every thread
//   load-and-delete-balanced 128 keys stored; j < 128: LoadAndDelete(j), else LoadAndDelete(i)
//   load-and-delete-unique  LoadAndDelete(i) on absent keys
//   load-and-delete-collision LoadAndDelete(0), and Store(0, 0) again when it was there
//   range                   1024 keys stored; one op = one full Range
//   adversarial-alloc       Load(i) of a missing key; a LoadOrStore of a new key after
//                           1, 2, 3, ... loads (forces sync.Map's slow path)
//   adversarial-delete      1024 keys stored; Load(i); every 1024 ops: delete the first key
//                           a Range yields, Store(i, i)
//   delete-collision        Delete(0) from every thread
//   swap-collision          Swap(0, 0) from every thread
//
// # Mixes (group "mixes") and the rest
//   mix-R-W[-zipf]          N (--keys) keys stored (key u64_key(k), value k + 1); R% loads and
//                           W% stores (of the same value: the contents never change, so a
//                           load's result does not depend on timing) with uniform or Zipf keys
//   mix-90-10-string[-zipf] the 90/10 mix with string keys (engine/keys.hpp)
//   serialize-json          1024 keys; every 64th op serializes the whole map to JSON (sorted
//                           keys) while the other ops store; all threads do both
//   compare-and-swap-collision  CompareAndSwap(0, 0, 42) then (0, 42, 0) (Go's benchmark)
//
// # Checksums
// Every op adds what the map returned to a per-thread checksum: a found value v adds v + 1, a
// miss 0, a successful store, delete or swap of a new key 1 (a load_or_store that stored, an
// erase that removed, a CAS that succeeded), a range adds v + 1 per entry visited, a
// serialization the length of its text; an impossible answer (a hit where the key cannot be,
// a stored value that comes back different) adds 2^40. Where the
// result does not depend on how threads interleave, the engine predicts the exact total from
// the op counts each thread made (expected_checksum) and the report says "ok" or "MISMATCH"
// next to the timing: a map that returns wrong answers cannot look fast. Deterministic
// workloads: all but adversarial-delete; load-and-delete-collision and
// compare-and-swap-collision only with one thread. With --ops (fixed op counts) the checksum
// of a deterministic workload is the same for every map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keys.hpp"

namespace safemap_bench {

enum class workload_kind {
  load_mostly_hits,
  load_mostly_misses,
  load_or_store_balanced,
  load_or_store_unique,
  load_or_store_collision,
  load_and_delete_balanced,
  load_and_delete_unique,
  load_and_delete_collision,
  range,
  adversarial_alloc,
  adversarial_delete,
  delete_collision,
  swap_collision,
  mix,
  serialize_json,
  cas_collision,
};

enum class determinism { always, single_thread, never };

// What a workload stresses, for the advice table.
enum class workload_class { read_mostly, write_heavy, contended_key, iteration };
std::string_view to_string(workload_class c) noexcept;

struct workload {
  std::string name;
  workload_kind kind{};
  std::string group;       // go-suite, mixes, extra
  std::string summary;     // one line for --list and the docs
  workload_class klass{};  // for the advice table
  determinism det = determinism::always;
  bool string_keys = false;
  unsigned write_pct = 0;             // mixes
  key_dist dist = key_dist::uniform;  // mixes
  bool grows_with_ops = false;        // map size grows with the op count (CowMap: quadratic)

  bool deterministic(unsigned threads) const noexcept {
    return det == determinism::always || (det == determinism::single_thread && threads == 1);
  }
  std::string_view key_type() const noexcept { return string_keys ? "string" : "u64"; }
};

// Every workload there is, for the given key distributions of the mixes (the Go suite, the
// mixes for each distribution, the extras).
std::vector<workload> all_workloads(std::span<const key_dist> dists);

// Resolves names and groups ("go-suite", "mixes", "all") to workloads, in catalog order,
// without duplicates. Throws std::invalid_argument naming an unknown entry.
std::vector<workload> select_workloads(std::span<const std::string> names,
                                       std::span<const key_dist> dists);

// Constants of the Go suite.
inline constexpr std::uint64_t go_mostly_period = 1024;  // hits + misses
inline constexpr std::uint64_t go_balanced_period = 256;
inline constexpr std::uint64_t go_balanced_hits = 128;
inline constexpr std::uint64_t go_map_size = 1024;  // range, adversarial-delete
inline constexpr std::uint64_t serialize_keys = 1024;
inline constexpr std::uint64_t serialize_every = 64;
inline constexpr std::uint64_t impossible = std::uint64_t{1} << 40;  // checksum poison

// Thread t's first op index i.
constexpr std::uint64_t thread_base(unsigned t) noexcept {
  return std::uint64_t{t} << 40;
}

// Everything a run of one workload needs besides the map, built before the clock starts and
// shared read-only by the threads.
struct workload_plan {
  const workload* w = nullptr;
  std::size_t keys = 0;                 // mixes: key count
  std::vector<mix_op> ops;              // mixes: the shared cycle (length a power of two)
  std::vector<std::uint64_t> u64_keys;  // mixes and serialize: key of each index
  std::vector<std::string> str_keys;    // string mixes
  std::uint64_t json_length = 0;        // serialize: length of the map's JSON text
  std::vector<std::uint64_t> prefix;    // periodic workloads: prefix sums of one period

  std::uint64_t mask() const noexcept { return ops.size() - 1; }
  // Thread t's first op index: thread_base(t), plus its offset in a mix's cycle.
  std::uint64_t start(unsigned t) const noexcept;
};

struct plan_options {
  std::size_t keys = 1 << 16;
  double zipf_s = 0.99;
  std::size_t mix_length = 1 << 16;
};

workload_plan make_plan(const workload& w, const plan_options& opt);

// Ops made by one thread in one run.
struct thread_ops {
  std::uint64_t start = 0;
  std::uint64_t count = 0;
};

// The checksum the run must produce, or nullopt where it depends on timing.
std::optional<std::uint64_t> expected_checksum(const workload_plan& plan,
                                               std::span<const thread_ops> threads);

// Stores made by one adversarial-alloc thread in n ops: store k (0-based) happens at op
// k * (k + 3) / 2, after 1, 2, 3, ... loads.
std::uint64_t adversarial_alloc_stores(std::uint64_t n) noexcept;

}  // namespace safemap_bench
