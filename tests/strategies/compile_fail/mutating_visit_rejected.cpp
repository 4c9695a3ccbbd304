// tests/strategies/compile_fail/mutating_visit_rejected.cpp - must NOT compile.
//
// SyncMap, CowMap, TrieMap and RedisMap cannot change a value in place (immutable boxes,
// entries and snapshots; remote values), so on a non-const map a visit, visit_all,
// insert_or_visit or emplace_or_visit whose callback needs a V& is refused by a static_assert
// that names the map, the call and the alternative (docs/design.md §4). Each ctest entry of
// CMakeLists.txt here builds this file for one map (SAFEMAP_MAP_HEADER, SAFEMAP_MAP) and passes
// only if the build fails and the compiler printed the message of every one of the four calls
// (expect_rejected.cmake).
#include SAFEMAP_MAP_HEADER

#include <string>

template <class M>
void misuse(M& m) {
  m.visit(1, [](int& v) { ++v; });
  m.visit_all([](const int&, int& v) { ++v; });
  m.insert_or_visit(1, 1, [](int& v) { ++v; });
  m.emplace_or_visit(1, 1, [](int& v) { ++v; });
}

int main() {
#ifdef SAFEMAP_MAP_ARGS
  SAFEMAP_MAP<int, int> m(SAFEMAP_MAP_ARGS);
#else
  SAFEMAP_MAP<int, int> m;
#endif
  misuse(m);
}
