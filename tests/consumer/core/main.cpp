// Uses every header of safemap::core (find_package COMPONENTS core, safemap-core.pc, plain -I,
// libc++); none of them may need liburcu or {fmt}.
#include <safemap/hash.hpp>
#include <safemap/locked_map.hpp>
#include <safemap/map.hpp>
#include <safemap/misuse.hpp>
#include <safemap/sharded_map.hpp>
#include <safemap/version.hpp>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

int main() {
  safemap::Map<std::string, int> m{{"a", 1}, {"b", 2}};
  if (m.size() != 2 || m.at("b") != 2) return 1;
  safemap::LockedMap<int, int> locked;
  safemap::ShardedMap<std::string, int> sharded(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        locked.store(t * 1000 + i, i);
        sharded.store(std::to_string(t * 1000 + i), i);
      }
    });
  for (auto& th : threads) th.join();
  if (locked.size() != 4000 || sharded.size() != 4000 || sharded.load("3999") != 999) return 2;
  if (std::string(safemap::misuse_message(safemap::misuse_kind::concurrent_writes)) !=
      "concurrent map writes")
    return 3;
  std::printf("core consumer ok %s\n", SAFEMAP_VERSION);
  return 0;
}
