// bench/page_probe.cpp - what a page of fresh memory costs on this machine, the figures behind
// detail/pages.hpp (why a growing safemap::Map populates and touches its new segments).
//
// For a fresh anonymous mapping of --mib MiB (64 by default), pages in a random order, one run
// per line, median and tail per page:
//   touch           the first write to each page (a page fault; under a hypervisor maybe more)
//   populate        MADV_POPULATE_WRITE of the whole range, per page
//   touch after     the first write to each page of a range populated that way
//   populate again  MADV_POPULATE_WRITE of the same, now resident, range, per page
//   mincore         one mincore call over the range, per page
// Linux only (MADV_POPULATE_WRITE needs 5.14). Run on a quiet machine:
//   build/release/bench/safemap_page_probe [--mib=64] [--runs=2]
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

void* fresh(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return p;
}

// Writes one byte of each page in the given order; prints the median, p99 and max per write.
void touch_each(const char* what, unsigned char* base, const std::vector<std::size_t>& order,
                std::size_t page) {
  std::vector<double> ns(order.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    const auto t0 = clock_type::now();
    base[order[k] * page + 64] = 1;
    ns[k] = us_since(t0) * 1000.0;
  }
  std::sort(ns.begin(), ns.end());
  std::printf("  %-15s median %8.2f us   p99 %8.2f us   max %9.2f us  per page\n", what,
              ns[ns.size() / 2] / 1000.0, ns[ns.size() * 99 / 100] / 1000.0, ns.back() / 1000.0);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t mib = 64;
  int runs = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--mib=", 0) == 0) {
      mib = std::strtoull(a.c_str() + 6, nullptr, 10);
    } else if (a.rfind("--runs=", 0) == 0) {
      runs = std::atoi(a.c_str() + 7);
    } else {
      std::fprintf(stderr, "usage: %s [--mib=64] [--runs=2]\n", argv[0]);
      return 2;
    }
  }
#if !defined(MADV_POPULATE_WRITE)
  std::fprintf(stderr, "this C library has no MADV_POPULATE_WRITE\n");
  return 1;
#else
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t bytes = mib << 20;
  const std::size_t pages = bytes / page;
  std::vector<std::size_t> order(pages);
  for (std::size_t i = 0; i < pages; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
  std::printf("page probe: %zu MiB, %zu pages of %zu bytes, random order\n", mib, pages, page);
  for (int r = 0; r < runs; ++r) {
    std::printf("run %d\n", r + 1);
    auto* a = static_cast<unsigned char*>(fresh(bytes));
    touch_each("touch", a, order, page);
    munmap(a, bytes);

    auto* b = static_cast<unsigned char*>(fresh(bytes));
    auto t0 = clock_type::now();
    if (madvise(b, bytes, MADV_POPULATE_WRITE) != 0) {
      std::perror("madvise(MADV_POPULATE_WRITE) (Linux 5.14 or later)");
      return 1;
    }
    std::printf("  %-15s %8.2f us per page\n", "populate", us_since(t0) / double(pages));
    touch_each("touch after", b, order, page);
    t0 = clock_type::now();
    madvise(b, bytes, MADV_POPULATE_WRITE);
    std::printf("  %-15s %8.3f us per page\n", "populate again", us_since(t0) / double(pages));
    std::vector<unsigned char> resident(pages);
    t0 = clock_type::now();
    mincore(b, bytes, resident.data());
    std::printf("  %-15s %8.3f us per page\n", "mincore", us_since(t0) / double(pages));
    munmap(b, bytes);
  }
  return 0;
#endif
}
