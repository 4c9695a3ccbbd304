// Links against the installed safemap::redis and talks to a port nothing listens on: the
// program must build (headers, hiredis) and report the refusal as safemap::redis_error.
#include <safemap/redis_map.hpp>

#include <chrono>
#include <cstdio>

int main() {
  safemap::RedisMap<std::string, int> m(
      "{consumer}:m", {.port = 1, .connect_timeout = std::chrono::milliseconds(200)});
  static_assert(safemap::concurrent_map<decltype(m)>);
  try {
    m.store("k", 1);
  } catch (const safemap::redis_error& e) {
    std::printf("redis consumer ok (%s)\n", e.what());
    return 0;
  }
  std::puts("store on a closed port did not raise redis_error");
  return 1;
}
