// tests/pipeline/crash_helper.cpp - the process that restore_test.cpp kills with SIGKILL.
//
//   pipeline_crash_helper <snapshot path> <keys>
//
// Restores the map from <snapshot path> (restore_snapshot_or_empty), checks the invariant,
// then runs a periodic_snapshotter on it while rewriting it forever, until it is killed:
//   invariant: the map is empty (nothing saved yet) or holds exactly keys 0..keys-1, all
//   mapped to one generation number.
// Every update rewrites all keys to the next generation under one lock (one version step), so
// every state a snapshot can read satisfies the invariant; a file that loads but breaks it
// means a torn or mixed write. Generations continue from the restored one, so the parent can
// also check that a restart never goes back in time.
// Exit status: 2 usage, 3 the restored file broke the invariant, 4 restore threw.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>

#include "pipeline_support.hpp"
#include "safemap/map.hpp"
#include "safemap/pipeline.hpp"

namespace {

using int_map = safemap::Map<int, int>;

// The generation of m, or -1 if m breaks the invariant; -2 for an empty map.
long long generation_of(const int_map& m, int keys) {
  if (m.empty()) return -2;
  if (m.size() != static_cast<std::size_t>(keys)) return -1;
  const int* first = m.find(0);
  if (first == nullptr) return -1;
  for (int k = 0; k < keys; ++k) {
    const int* v = m.find(k);
    if (v == nullptr || *v != *first) return -1;
  }
  return *first;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <snapshot path> <keys>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path path = argv[1];
  const int keys = std::atoi(argv[2]);
  if (keys <= 0) return 2;

  long long generation = 0;
  try {
    const auto restored = safemap::restore_snapshot_or_empty<int_map>(path);
    const long long g = generation_of(restored, keys);
    if (g == -1) {
      std::fprintf(stderr, "crash helper: restored map breaks the invariant\n");
      return 3;
    }
    generation = g < 0 ? 0 : g + 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crash helper: restore failed: %s\n", e.what());
    return 4;
  }

  safemap_test::pipeline::versioned_map<int, int> map;
  const auto set_generation = [&](long long g) {
    map.update([&](int_map& m) {
      for (int k = 0; k < keys; ++k) m.insert_or_assign(k, static_cast<int>(g));
    });
  };
  set_generation(generation);
  safemap::snapshot_pipeline pipe({.workers = 1, .capacity = 2});
  safemap::periodic_snapshotter snapshotter(pipe, map, path, std::chrono::milliseconds(1));
  for (;;) {  // until SIGKILL
    set_generation(++generation);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}
