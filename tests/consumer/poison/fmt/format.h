// Stand-in that fails the build: safemap::core must compile without liburcu and {fmt}.
#error "a safemap::core header included <fmt/format.h>"
