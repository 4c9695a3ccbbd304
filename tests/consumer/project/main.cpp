// A separate project using the installed safemap package.
#include <safemap/safemap.hpp>

#include <cstdio>
#include <string>

int main() {
  safemap::Map<std::string, int> m;
  for (int i = 0; i < 1000; ++i) m.insert_or_assign("key" + std::to_string(i), i);
  const int* v = m.find("key999");
  if (m.size() != 1000 || v == nullptr || *v != 999) return 1;
  std::puts("consumer ok");
  return 0;
}
