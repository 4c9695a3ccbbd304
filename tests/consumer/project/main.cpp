// A separate project using safemap's full package (find_package, pkg-config, plain -I).
#include <safemap/safemap.hpp>

#include <cstdio>
#include <cstring>
#include <string>

int main() {
  safemap::Map<std::string, int> m;
  for (int i = 0; i < 1000; ++i) m.insert_or_assign("key" + std::to_string(i), i);
  const int* v = m.find("key999");
  if (m.size() != 1000 || v == nullptr || *v != 999) return 1;
  // SyncMap needs liburcu, to_json needs {fmt}: linking proves the package's link flags.
  safemap::SyncMap<std::string, int> s;
  s.store("a", 1);
  if (safemap::to_json(s) != R"({"a":1})") return 2;
#ifdef EXPECTED_VERSION
  if (std::strcmp(SAFEMAP_VERSION, EXPECTED_VERSION) != 0) {
    std::printf("headers say %s, package says %s\n", SAFEMAP_VERSION, EXPECTED_VERSION);
    return 3;
  }
#endif
  std::puts("consumer ok");
  return 0;
}
