// tests/serialize/snapshot_writer.cpp - helper of SnapshotCrash in snapshot_test.cpp.
//
//   snapshot_writer <path> <first generation>
//
// Saves Map<int, int> snapshots to <path> in a loop until it is killed: generation g maps the
// keys [0, n(g)) to g, n(g) = 100 for even g and 50 for odd g (so the file length changes from
// one save to the next). After the first save completes it writes one byte to stdout, so the
// test knows the file holds at least the first generation before it starts its kill timer.
// It only calls save_snapshot and _exit; it exits by itself only if its parent is gone.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "safemap/map.hpp"
#include "safemap/persist.hpp"

int main(int argc, char** argv) {
  if (argc != 3) _exit(2);
  const std::filesystem::path path = argv[1];
  long g = std::strtol(argv[2], nullptr, 10);
  const pid_t parent = ::getppid();
  for (bool reported = false;; ++g) {
    safemap::Map<int, int> m;
    const int n = g % 2 == 0 ? 100 : 50;
    for (int k = 0; k < n; ++k) m.insert_or_assign(k, static_cast<int>(g));
    safemap::save_snapshot(m, path);
    if (!reported) {
      const char c = 's';
      if (::write(1, &c, 1) != 1) _exit(3);
      reported = true;
    }
    if (::getppid() != parent) _exit(0);  // orphaned: the test is gone
  }
}
