// Smoke test of the safemap-bench program (path in $SAFEMAP_BENCH_EXE): a --quick run on two
// maps and two thread counts must write a CSV and a JSON of the documented shapes with every
// checksum verified, and with --ops (the same op counts for every map) the checksums of each
// deterministic workload must be equal across the maps.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if SAFEMAP_BENCH_SMOKE_HAVE_NLOHMANN
#include <nlohmann/json.hpp>
#endif

namespace fs = std::filesystem;

namespace {

const char* const expected_header =
    "map,family,workload,key_type,dist,threads,keys,repeats,ops,ns_per_op,ns_per_op_min,"
    "ns_per_op_max,mops,allocs_per_op,bytes_per_op,mem_per_entry,p50_ns,p99_ns,p999_ns,"
    "latency_samples,checksum,expected,check,note";

// Minimal CSV reader for this test (no quoted fields are expected in these runs).
std::vector<std::map<std::string, std::string>> read_rows(const fs::path& p, std::string& header) {
  std::ifstream in(p);
  std::getline(in, header);
  std::vector<std::string> cols;
  {
    std::stringstream ss(header);
    for (std::string c; std::getline(ss, c, ',');) cols.push_back(c);
  }
  std::vector<std::map<std::string, std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::string cur;
    for (char c : line) {
      if (c == ',') {
        f.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    f.push_back(cur);
    EXPECT_EQ(f.size(), cols.size()) << line;
    std::map<std::string, std::string> row;
    for (std::size_t i = 0; i < cols.size() && i < f.size(); ++i) row[cols[i]] = f[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string exe() {
  const char* e = std::getenv("SAFEMAP_BENCH_EXE");
  return e == nullptr ? "" : e;
}

// One shell word holding `s` exactly, whatever characters it has.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Runs the program with `args` and --out `out`; its stdout and stderr go to logs/.
int run_to(const std::string& args, const fs::path& out, const fs::path& logs) {
  const std::string cmd = shell_quote(exe()) + " " + args + " --out " + shell_quote(out.string()) +
                          " >" + shell_quote((logs / "stdout.txt").string()) + " 2>" +
                          shell_quote((logs / "stderr.txt").string());
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int run(const std::string& args, const fs::path& dir) {
  return run_to(args, dir, dir);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string first_safemap_map(const fs::path& dir) {
  const fs::path list = dir / "list.txt";
  const std::string cmd = "'" + exe() + "' --list >'" + list.string() + "'";
  if (std::system(cmd.c_str()) != 0) return "";
  std::ifstream in(list);
  for (std::string line; std::getline(in, line);) {
    std::stringstream ss(line);
    std::string name, family;
    ss >> name >> family;
    if (family == "safemap") return name;
  }
  return "";
}

class BenchSmoke : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(exe().empty()) << "SAFEMAP_BENCH_EXE is not set";
    dir_ = fs::temp_directory_path() /
           ("safemap-bench-smoke-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    map_ = first_safemap_map(dir_);
    ASSERT_FALSE(map_.empty()) << "no safemap map in safemap-bench --list";
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string map_;
  fs::path dir_;
};

TEST_F(BenchSmoke, QuickRunWritesCsvAndJsonWithVerifiedChecksums) {
  const std::string maps = map_ + ",std+mutex";
  ASSERT_EQ(run("--quick --threads 1,2 --maps " + maps, dir_), 0)
      << "see " << (dir_ / "stderr.txt");

  std::string header;
  const auto rows = read_rows(dir_ / "safemap-bench.csv", header);
  EXPECT_EQ(header, expected_header);
  // The default workloads: Go's suite (13) and the 50/50 mix, on 2 maps with 2 thread counts.
  EXPECT_EQ(rows.size(), 14U * 2U * 2U);
  std::set<std::string> seen_maps, seen_workloads;
  for (const auto& r : rows) {
    seen_maps.insert(r.at("map"));
    seen_workloads.insert(r.at("workload"));
    EXPECT_TRUE(r.at("threads") == "1" || r.at("threads") == "2");
    EXPECT_NE(r.at("check"), "MISMATCH") << r.at("map") << " " << r.at("workload");
    if (r.at("note").rfind("skipped", 0) == 0) continue;
    EXPECT_GT(std::stod(r.at("ns_per_op")), 0) << r.at("workload");
    EXPECT_GT(std::stoull(r.at("ops")), 0U);
    EXPECT_FALSE(r.at("p99_ns").empty());
    EXPECT_FALSE(r.at("allocs_per_op").empty());
    EXPECT_FALSE(r.at("mem_per_entry").empty());
    if (!r.at("expected").empty()) {
      EXPECT_EQ(r.at("check"), "ok");
    }
  }
  EXPECT_EQ(seen_maps, (std::set<std::string>{map_, "std+mutex"}));
  EXPECT_EQ(seen_workloads.size(), 14U);
  EXPECT_TRUE(seen_workloads.count("mix-50-50"));

  std::ifstream json_in(dir_ / "safemap-bench.json");
  std::stringstream json;
  json << json_in.rdbuf();
#if SAFEMAP_BENCH_SMOKE_HAVE_NLOHMANN
  const auto j = nlohmann::json::parse(json.str());
  for (const char* key : {"machine", "settings", "maps", "results", "recommendations", "advice"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["results"].size(), rows.size());
  EXPECT_EQ(j["maps"].size(), 2U);
  EXPECT_GT(j["machine"]["cores"].get<int>(), 0);
  for (const auto& r : j["results"]) {
    for (const char* key : {"map", "workload", "threads", "ns_per_op", "p50_ns", "p99_ns",
                            "p999_ns", "allocs_per_op", "checksum", "check"}) {
      EXPECT_TRUE(r.contains(key)) << key;
    }
  }
  EXPECT_FALSE(j["recommendations"].empty());
#else
  EXPECT_EQ(json.str().substr(0, 1), "{");
#endif

  std::ifstream out(dir_ / "stdout.txt");
  std::stringstream text;
  text << out.rdbuf();
  EXPECT_NE(text.str().find("Recommendations"), std::string::npos);
  EXPECT_NE(text.str().find("machine"), std::string::npos);
}

TEST_F(BenchSmoke, FixedOpsGiveEqualChecksumsAcrossMaps) {
  const std::string maps = map_ + ",std+shared_mutex";
  ASSERT_EQ(run("--quick --threads 1,2 --maps " + maps + " --ops 3000 --no-plots", dir_), 0)
      << "see " << (dir_ / "stderr.txt");
  std::string header;
  const auto rows = read_rows(dir_ / "safemap-bench.csv", header);
  // (workload, threads) -> checksum of each map that ran it deterministically
  std::map<std::pair<std::string, std::string>, std::map<std::string, std::string>> sums;
  for (const auto& r : rows) {
    if (r.at("expected").empty()) continue;
    EXPECT_EQ(r.at("checksum"), r.at("expected")) << r.at("map") << " " << r.at("workload");
    sums[{r.at("workload"), r.at("threads")}][r.at("map")] = r.at("checksum");
  }
  std::size_t compared = 0;
  for (const auto& [key, by_map] : sums) {
    if (by_map.size() < 2) continue;
    ++compared;
    EXPECT_EQ(by_map.begin()->second, by_map.rbegin()->second)
        << key.first << " with " << key.second << " threads";
  }
  // Every Go-suite workload but adversarial-delete with 1 thread, most with 2.
  EXPECT_GE(compared, 20U);
}

// Regression (issue 9, item 14): --threads -2 printed a 308-digit number, --threads 10000
// was accepted, --duration abc said only "stod". Each is now an error that says what is wrong
// and what is accepted, before anything runs.
TEST_F(BenchSmoke, BadArgumentsFailWithClearMessagesBeforeAnyRun) {
  struct probe {
    std::string args;
    std::string says;
  };
  const probe probes[] = {
      {"--threads=-2", "thread count '-2' is not a whole number from 1 to 1024"},
      {"--threads=10000", "thread count '10000' is not a whole number from 1 to 1024"},
      {"--threads=2,x", "thread count 'x'"},
      {"--duration=abc", "--duration 'abc': not a duration"},
      {"--duration=5parsecs", "unknown unit 'parsecs'"},
      {"--duration=-3ms", "not positive"},
  };
  for (const probe& p : probes) {
    const fs::path out = dir_ / "out";
    EXPECT_NE(run_to("--maps " + map_ + " --workloads range " + p.args, out, dir_), 0) << p.args;
    const std::string err = slurp(dir_ / "stderr.txt");
    EXPECT_NE(err.find(p.says), std::string::npos) << p.args << ": " << err;
    EXPECT_FALSE(fs::exists(out / "safemap-bench.csv")) << p.args << ": it ran anyway";
  }
}

// Regression (issue 9, item 14): --out went through std::system("mkdir -p '...'"), so a quote
// broke it and a crafted path ran a command; and an --out that cannot be written was found only
// after every run. Directories are made with std::filesystem and checked before the runs.
TEST_F(BenchSmoke, OutIsAnyPathAndAnUnwritableOneFailsBeforeAnyRun) {
  const fs::path odd = dir_ / "it's a \"dir\"; touch pwned-$(id -u) `true`";
  ASSERT_EQ(
      run_to("--quick --maps " + map_ + " --workloads range --threads 1 --no-plots", odd, dir_), 0)
      << slurp(dir_ / "stderr.txt");
  EXPECT_TRUE(fs::exists(odd / "safemap-bench.csv")) << slurp(dir_ / "stderr.txt");
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path() == odd) continue;  // its own name says "pwned"; a file a shell made would not
    EXPECT_EQ(e.path().filename().string().find("pwned"), std::string::npos)
        << "a command in --out ran: " << e.path();
  }

  const fs::path file = dir_ / "a-file";
  std::ofstream(file) << "x";
  const fs::path under_file = file / "out";
  EXPECT_EQ(run_to("--maps " + map_ + " --workloads range --threads 1", under_file, dir_), 2);
  const std::string err = slurp(dir_ / "stderr.txt");
  EXPECT_NE(err.find("cannot create the directory"), std::string::npos) << err;
  EXPECT_EQ(err.find("runs in"), std::string::npos) << "it ran before checking --out: " << err;
}

// Issue 9, item 14: many more threads than cores is allowed (oversubscription is a workload),
// with a warning that says what such numbers measure.
TEST_F(BenchSmoke, ManyMoreThreadsThanCoresWarns) {
  const unsigned cores = std::max(1U, std::thread::hardware_concurrency());
  const unsigned many = std::min(1024U, 4 * cores + 1);
  ASSERT_EQ(
      run("--maps " + map_ + " --workloads load-mostly-hits --ops 200 --repeat 1 --no-plots " +
              "--threads " + std::to_string(many),
          dir_),
      0)
      << slurp(dir_ / "stderr.txt");
  EXPECT_NE(slurp(dir_ / "stderr.txt").find("warning: --threads " + std::to_string(many)),
            std::string::npos)
      << slurp(dir_ / "stderr.txt");
}

}  // namespace
