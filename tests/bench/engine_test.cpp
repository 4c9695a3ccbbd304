// Unit tests of safemap-bench's engine (tools/safemap-bench/engine): key and op generators,
// statistics, checksum predictions, the runner on a reference map, CSV and recommendations,
// each with known inputs and exact expected outputs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "adapters/locked_table.hpp"
#include "engine/keys.hpp"
#include "engine/registry.hpp"
#include "engine/report.hpp"
#include "engine/results.hpp"
#include "engine/runner.hpp"
#include "engine/stats.hpp"
#include "engine/workloads.hpp"

namespace sb = safemap_bench;

namespace {

// ---- keys and op streams ------------------------------------------------------------------

TEST(BenchKeys, Splitmix64MatchesTheReferenceSequence) {
  sb::splitmix64 rng{0};
  // The first outputs of Vigna's splitmix64.c seeded with 0.
  EXPECT_EQ(rng.next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(rng.next(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(rng.next(), 0x06c45d188009454fULL);
}

TEST(BenchKeys, StringKeysAreDistinctDeterministicAndLongerThanTheSmallBuffer) {
  std::set<std::string> seen;
  for (std::uint64_t i = 0; i < 20000; ++i) {
    const std::string k = sb::string_key(i);
    EXPECT_GE(k.size(), 16U);
    EXPECT_LE(k.size(), 24U);
    seen.insert(k);
  }
  EXPECT_EQ(seen.size(), 20000U);
  EXPECT_EQ(sb::string_key(12345), sb::string_key(12345));
}

TEST(BenchKeys, ZipfTableInvertsTheExactCumulativeDistribution) {
  // s = 1, n = 3: weights 1, 1/2, 1/3 -> cdf 6/11, 9/11, 1.
  const sb::zipf_table z(3, 1.0);
  EXPECT_DOUBLE_EQ(z.cdf(0), 6.0 / 11);
  EXPECT_DOUBLE_EQ(z.cdf(1), 9.0 / 11);
  EXPECT_EQ(z.cdf(2), 1.0);
  EXPECT_EQ(z.sample(0.0), 0U);
  EXPECT_EQ(z.sample(0.5), 0U);
  // The interval of rank 0 is [0, cdf(0)).
  EXPECT_EQ(z.sample(z.cdf(0)), 1U);
  EXPECT_EQ(z.sample(std::nextafter(z.cdf(0), 0.0)), 0U);
  EXPECT_EQ(z.sample(0.6), 1U);
  EXPECT_EQ(z.sample(0.85), 2U);
  EXPECT_EQ(z.sample(0.999999), 2U);
  EXPECT_THROW(sb::zipf_table(0, 1.0), std::invalid_argument);
  EXPECT_THROW(sb::zipf_table(3, 0.0), std::invalid_argument);
}

TEST(BenchKeys, MixHasExactlyTheRequestedWritesSpreadEvenly) {
  for (unsigned w : {0U, 1U, 10U, 50U, 90U, 100U}) {
    sb::mix_spec spec;
    spec.write_pct = w;
    spec.keys = 1000;
    spec.length = 1024;
    const auto ops = sb::make_mix_ops(spec);
    ASSERT_EQ(ops.size(), 1024U);
    const auto writes = std::count_if(ops.begin(), ops.end(), sb::is_write);
    EXPECT_EQ(writes, 1024 * w / 100) << w << "% writes";
    for (auto op : ops) EXPECT_LT(sb::key_index(op), 1000U);
  }
  // 50%: every odd position writes.
  for (std::uint64_t j = 0; j < 8; ++j) EXPECT_EQ(sb::mix_position_is_write(j, 50), j % 2 == 1);
  // 1%: positions 99, 199, ...
  EXPECT_TRUE(sb::mix_position_is_write(99, 1));
  EXPECT_FALSE(sb::mix_position_is_write(100, 1));
}

TEST(BenchKeys, MixStreamsAreDeterministicAndZipfFavoursLowRanks) {
  sb::mix_spec spec;
  spec.dist = sb::key_dist::zipf;
  spec.keys = 1000;
  spec.length = 1 << 16;
  const auto a = sb::make_mix_ops(spec);
  EXPECT_EQ(a, sb::make_mix_ops(spec));
  std::vector<std::size_t> count(1000);
  for (auto op : a) ++count[sb::key_index(op)];
  EXPECT_GT(count[0], count[1]);
  EXPECT_GT(count[1], count[10]);
  EXPECT_GT(count[0], spec.length / 20);  // p(rank 0) = 1 / H(1000, 0.99) ~ 0.13
  spec.keys = 1;
  spec.dist = sb::key_dist::uniform;
  for (auto op : sb::make_mix_ops(spec)) EXPECT_EQ(sb::key_index(op), 0U);
  spec.length = 1000;  // not a power of two
  EXPECT_THROW(sb::make_mix_ops(spec), std::invalid_argument);
}

TEST(BenchKeys, ThreadOffsetsStayInTheCycle) {
  EXPECT_EQ(sb::thread_offset(0, 1 << 16), 0U);
  for (unsigned t = 0; t < 64; ++t) EXPECT_LT(sb::thread_offset(t, 1 << 16), 1U << 16);
  EXPECT_NE(sb::thread_offset(1, 1 << 16), sb::thread_offset(2, 1 << 16));
}

// ---- statistics ---------------------------------------------------------------------------

TEST(BenchStats, MedianMinMax) {
  const auto odd = sb::summarize({3, 1, 2});
  EXPECT_EQ(odd.median, 2);
  EXPECT_EQ(odd.min, 1);
  EXPECT_EQ(odd.max, 3);
  EXPECT_EQ(sb::summarize({4, 1, 3, 2}).median, 2.5);
  EXPECT_EQ(sb::summarize({7}).median, 7);
  EXPECT_THROW(sb::summarize({}), std::invalid_argument);
}

TEST(BenchStats, NearestRankPercentiles) {
  std::vector<std::uint64_t> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 1000 - i;  // unsorted: 1000 .. 1
  const auto s = sb::latency_percentiles(v);
  EXPECT_EQ(s.samples, 1000U);
  EXPECT_EQ(s.p50, 500U);
  EXPECT_EQ(s.p99, 990U);
  EXPECT_EQ(s.p999, 999U);
  EXPECT_EQ(s.max, 1000U);

  const std::vector<std::uint64_t> ten = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(sb::percentile_sorted(ten, 50), 5U);
  EXPECT_EQ(sb::percentile_sorted(ten, 99), 10U);
  EXPECT_EQ(sb::percentile_sorted(ten, 10), 1U);
  EXPECT_EQ(sb::percentile_sorted(ten, 11), 2U);
  EXPECT_EQ(sb::latency_percentiles({}).samples, 0U);
}

TEST(BenchStats, ReservoirDecimatesAndDoublesItsInterval) {
  sb::sample_reservoir r(4, 64);
  for (std::uint64_t op = 0; op < 600; ++op) {
    if (r.wants(op)) r.add(op);
  }
  // Sampled at 0, 64, 128, 192; full at 256 -> keep 0, 128, interval 128; add 256, 384;
  // full at 512 -> keep 0, 256, interval 256; add 512.
  const auto s = r.samples();
  EXPECT_EQ(std::vector<std::uint64_t>(s.begin(), s.end()),
            (std::vector<std::uint64_t>{0, 256, 512}));
  EXPECT_EQ(r.interval(), 256U);
  EXPECT_THROW(sb::sample_reservoir(4, 48), std::invalid_argument);
}

TEST(BenchStats, PeriodicSum) {
  const std::vector<std::uint64_t> prefix = {0, 1, 3, 6, 10};  // g(j) = j + 1, period 4
  EXPECT_EQ(sb::periodic_sum(prefix, 2, 7), 3U + 4 + 1 + 2 + 3 + 4 + 1);
  EXPECT_EQ(sb::periodic_sum(prefix, 0, 8), 20U);
  EXPECT_EQ(sb::periodic_sum(prefix, 5, 0), 0U);
  EXPECT_EQ(sb::periodic_sum(prefix, std::uint64_t{1} << 40, 4), 10U);
}

// ---- workloads and checksum predictions ---------------------------------------------------

std::vector<std::string> names(const std::vector<sb::workload>& ws) {
  std::vector<std::string> out;
  for (const auto& w : ws) out.push_back(w.name);
  return out;
}

const sb::key_dist uniform_only[] = {sb::key_dist::uniform};
const sb::key_dist both[] = {sb::key_dist::uniform, sb::key_dist::zipf};

TEST(BenchWorkloads, GroupsAndNamesResolveInCatalogOrder) {
  const std::string go[] = {"go-suite"};
  EXPECT_EQ(names(sb::select_workloads(go, uniform_only)),
            (std::vector<std::string>{
                "load-mostly-hits", "load-mostly-misses", "load-or-store-balanced",
                "load-or-store-unique", "load-or-store-collision", "load-and-delete-balanced",
                "load-and-delete-unique", "load-and-delete-collision", "range", "adversarial-alloc",
                "adversarial-delete", "delete-collision", "swap-collision"}));
  const std::string mixes[] = {"mixes"};
  EXPECT_EQ(sb::select_workloads(mixes, both).size(), 8U);
  const std::string one[] = {"mix-50-50", "range"};  // catalog order, not argument order
  EXPECT_EQ(names(sb::select_workloads(one, both)),
            (std::vector<std::string>{"range", "mix-50-50", "mix-50-50-zipf"}));
  const std::string exact[] = {"mix-10-90-zipf"};  // an exact name needs no --dist
  EXPECT_EQ(names(sb::select_workloads(exact, uniform_only)),
            (std::vector<std::string>{"mix-10-90-zipf"}));
  const std::string all[] = {"all"};
  EXPECT_EQ(sb::select_workloads(all, both).size(), 13U + 8U + 2U + 2U);
  const std::string bad[] = {"no-such-workload"};
  EXPECT_THROW(sb::select_workloads(bad, both), std::invalid_argument);
}

sb::workload find(const std::string& name) {
  const std::string n[] = {name};
  return sb::select_workloads(n, both).at(0);
}

TEST(BenchWorkloads, PredictedChecksumsOfTheGoSuite) {
  const sb::plan_options opt;
  const auto hits = find("load-mostly-hits");
  const auto hp = sb::make_plan(hits, opt);
  const sb::thread_ops one[] = {{0, 1024}};
  EXPECT_EQ(sb::expected_checksum(hp, one), 523776U);  // sum of 1..1023
  const sb::thread_ops two[] = {{sb::thread_base(0), 2048}, {sb::thread_base(1), 1024}};
  EXPECT_EQ(sb::expected_checksum(hp, two), 3U * 523776U);

  const auto lad = find("load-and-delete-balanced");
  const auto lp = sb::make_plan(lad, opt);
  const sb::thread_ops hundred[] = {{0, 100}};
  EXPECT_EQ(sb::expected_checksum(lp, hundred), 5050U);  // keys 0..99 deleted once each
  const sb::thread_ops overlap[] = {{sb::thread_base(0), 50}, {sb::thread_base(1), 120}};
  EXPECT_EQ(sb::expected_checksum(lp, overlap), 7260U);  // keys 0..119

  EXPECT_EQ(sb::adversarial_alloc_stores(0), 0U);
  EXPECT_EQ(sb::adversarial_alloc_stores(1), 1U);
  EXPECT_EQ(sb::adversarial_alloc_stores(2), 1U);
  EXPECT_EQ(sb::adversarial_alloc_stores(3), 2U);
  EXPECT_EQ(sb::adversarial_alloc_stores(6), 3U);
  EXPECT_EQ(sb::adversarial_alloc_stores(10), 4U);  // stores at ops 0, 2, 5, 9

  const auto dc = sb::make_plan(find("delete-collision"), opt);
  EXPECT_EQ(sb::expected_checksum(dc, two), 1U);  // one delete wins, however many try
  const auto ad = sb::make_plan(find("adversarial-delete"), opt);
  EXPECT_FALSE(sb::expected_checksum(ad, one));
  const auto ladc = sb::make_plan(find("load-and-delete-collision"), opt);
  EXPECT_EQ(sb::expected_checksum(ladc, one), 1024U);
  EXPECT_FALSE(sb::expected_checksum(ladc, two));  // timing-dependent with 2 threads
  const auto range = sb::make_plan(find("range"), opt);
  EXPECT_EQ(sb::expected_checksum(range, one), 1024U * 524800U);
}

// ---- the runner on a reference map --------------------------------------------------------

template <class K>
using ref_table = std::unordered_map<K, sb::value_t, sb::peer_hash<K>, std::equal_to<K>>;
using ref_u64 = sb::locked_table<ref_table<std::uint64_t>, std::mutex>;
using ref_str = sb::locked_table<ref_table<std::string>, std::mutex>;

TEST(BenchRunner, EveryDeterministicWorkloadMeetsItsPredictionWithFixedOps) {
  sb::plan_options popt;
  popt.keys = 4096;
  sb::run_options ropt;
  ropt.ops_per_thread = 5000;
  for (const auto& w : sb::all_workloads(both)) {
    const auto plan = sb::make_plan(w, popt);
    for (unsigned threads : {1U, 2U}) {
      const auto r = sb::dispatch_run<ref_u64, ref_str>(w, plan, threads, ropt);
      EXPECT_EQ(r.ops, 5000U * threads) << w.name;
      ASSERT_EQ(r.threads.size(), threads);
      EXPECT_GE(r.samples.size(), 5000U / 64) << w.name;
      const auto e = sb::expected_checksum(plan, r.threads);
      EXPECT_EQ(e.has_value(), w.deterministic(threads)) << w.name;
      if (e) {
        EXPECT_EQ(r.checksum, *e) << w.name << " with " << threads << " threads";
      }
      EXPECT_LT(r.checksum, sb::impossible) << w.name << ": an impossible answer";
    }
  }
}

TEST(BenchRunner, BlockLengthFollowsThePaceOfTheLastBlock) {
  constexpr std::uint64_t max_len = 64;
  constexpr std::int64_t max_ns = 1'000'000;
  // Fast ops (2 ns): the whole block.
  EXPECT_EQ(sb::next_block_len(64, 128, max_len, max_ns), 64u);
  // 64 ops in 4 ms (62.5 us each): 16 fit in 1 ms.
  EXPECT_EQ(sb::next_block_len(64, 4'000'000, max_len, max_ns), 16u);
  // One op of 5 ms: never below 1.
  EXPECT_EQ(sb::next_block_len(1, 5'000'000, max_len, max_ns), 1u);
  // After a slow block, fast ops grow it back at once (a preemption shortens one block only).
  EXPECT_EQ(sb::next_block_len(1, 40, max_len, max_ns), 64u);
  // 8 ops in 250 us (31.25 us each): 32 fit.
  EXPECT_EQ(sb::next_block_len(8, 250'000, max_len, max_ns), 32u);
  // No measurement (a clock that did not move): the full block.
  EXPECT_EQ(sb::next_block_len(64, 0, max_len, max_ns), 64u);
  EXPECT_EQ(sb::next_block_len(0, 100, max_len, max_ns), 64u);
}

TEST(BenchRunner, DurationModeStopsAndSummarizes) {
  const auto w = find("load-mostly-hits");
  const auto plan = sb::make_plan(w, {});
  sb::run_options ropt;
  ropt.duration = std::chrono::milliseconds(5);
  std::vector<sb::repeat_result> reps;
  for (int i = 0; i < 3; ++i) reps.push_back(sb::dispatch_run<ref_u64, ref_str>(w, plan, 2, ropt));
  sb::cell_result row;
  sb::summarize_repeats(row, reps, plan);
  EXPECT_EQ(row.repeats, 3U);
  EXPECT_GT(row.ops, 0U);
  EXPECT_GT(row.ns_per_op, 0);
  EXPECT_LE(row.ns_per_op_min, row.ns_per_op);
  EXPECT_GE(row.ns_per_op_max, row.ns_per_op);
  EXPECT_EQ(row.check, "ok");
  EXPECT_GT(row.latency_samples, 0U);
  EXPECT_LE(row.p50_ns, row.p99_ns);
  EXPECT_LE(row.p99_ns, row.p999_ns);
}

// ---- reports ------------------------------------------------------------------------------

sb::cell_result cell(const std::string& map, const std::string& family, const std::string& w,
                     unsigned threads, double ns) {
  sb::cell_result c;
  c.map = map;
  c.family = family;
  c.workload = w;
  c.key_type = "u64";
  c.dist = "-";
  c.threads = threads;
  c.repeats = 1;
  c.ops = 1000;
  c.ns_per_op = c.ns_per_op_min = c.ns_per_op_max = ns;
  c.mops = 1e3 / ns;
  c.checksum = 42;
  c.expected = 42;
  c.check = "ok";
  return c;
}

TEST(BenchReport, CsvRoundTripsAndRejectsMalformedInput) {
  std::vector<sb::cell_result> rows = {cell("SyncMap", "safemap", "range", 2, 12.5),
                                       cell("a,\"quoted\" map", "peer", "range", 2, 3)};
  rows[1].expected.reset();
  rows[1].check = "n/a";
  rows[1].note = "skipped: why, with a comma";
  rows[1].ns_per_op = NAN;
  std::stringstream ss;
  sb::write_csv(ss, rows);
  const auto back = sb::read_csv(ss);
  ASSERT_EQ(back.size(), 2U);
  EXPECT_EQ(back[0].map, "SyncMap");
  EXPECT_EQ(back[0].ns_per_op, 12.5);
  EXPECT_EQ(back[0].expected, std::optional<std::uint64_t>(42));
  EXPECT_EQ(back[1].map, "a,\"quoted\" map");
  EXPECT_TRUE(back[1].skipped());
  EXPECT_FALSE(back[1].expected);
  EXPECT_EQ(back[1].note, "skipped: why, with a comma");

  std::stringstream bad_header("map,family\n");
  EXPECT_THROW(sb::read_csv(bad_header), std::runtime_error);
  std::stringstream short_row(std::string(sb::csv_header) + "\nLockedMap,safemap,range\n");
  EXPECT_THROW(sb::read_csv(short_row), std::runtime_error);
}

TEST(BenchReport, RecommendationsAndAdviceComeFromTheNumbers) {
  sb::report r;
  r.columns = {{"SyncMap", "Sync", "safemap"},
               {"LockedMap", "Locked", "safemap"},
               {"std+shared_mutex", "std+shm", "peer"},
               {"tbb", "tbb", "peer"},
               {"go:sync.Map", "go:sync", "go"}};
  r.rows = {cell("SyncMap", "safemap", "load-mostly-hits", 2, 10),
            cell("LockedMap", "safemap", "load-mostly-hits", 2, 20),
            cell("std+shared_mutex", "peer", "load-mostly-hits", 2, 40),
            cell("tbb", "peer", "load-mostly-hits", 2, 25),
            cell("go:sync.Map", "go", "load-mostly-hits", 2, 1),  // never the peer to beat
            cell("SyncMap", "safemap", "mix-50-50", 2, 100),
            cell("LockedMap", "safemap", "mix-50-50", 2, 50),
            cell("std+shared_mutex", "peer", "mix-50-50", 2, 80),
            cell("tbb", "peer", "mix-50-50", 2, 25)};
  const auto recs = sb::recommend(r);
  ASSERT_EQ(recs.size(), 2U);
  EXPECT_EQ(recs[0].map, "SyncMap");
  EXPECT_EQ(recs[0].best_peer, "tbb");
  EXPECT_DOUBLE_EQ(recs[0].vs_best_peer, 2.5);
  EXPECT_DOUBLE_EQ(*recs[0].vs_baseline, 4.0);
  EXPECT_EQ(recs[0].text,
            "load-mostly-hits, 2 threads: SyncMap 10.0 ns/op, 4.00x std+shared_mutex, 2.50x the "
            "best peer (tbb, 25.0 ns/op)");
  EXPECT_EQ(recs[1].map, "LockedMap");
  EXPECT_DOUBLE_EQ(recs[1].vs_best_peer, 0.5);
  EXPECT_NE(recs[1].text.find("a peer is faster here"), std::string::npos);

  const std::map<std::string, std::string> classes = {{"load-mostly-hits", "read-mostly"},
                                                      {"mix-50-50", "write-heavy"}};
  const auto advice = sb::advise(r, classes);
  ASSERT_EQ(advice.size(), 2U);
  EXPECT_EQ(advice[0].use, "read-mostly");
  EXPECT_EQ(advice[0].map, "SyncMap");
  EXPECT_DOUBLE_EQ(advice[0].geomean_vs_best_peer, 2.5);
  EXPECT_EQ(advice[0].runner_up, "LockedMap");
  EXPECT_EQ(advice[1].map, "LockedMap");
  EXPECT_DOUBLE_EQ(advice[1].geomean_vs_best_peer, 0.5);
  EXPECT_DOUBLE_EQ(*advice[1].geomean_vs_baseline, 1.6);
  // Issue 9, item 15: the advice named a safemap map even where a peer was much faster. It
  // names the fastest map of each use, peer or ours, and what safemap's best gives up.
  EXPECT_EQ(advice[0].fastest, "SyncMap");
  EXPECT_EQ(advice[0].fastest_family, "safemap");
  EXPECT_DOUBLE_EQ(advice[0].vs_fastest, 1.0);
  EXPECT_EQ(advice[1].fastest, "tbb") << "a peer twice as fast as any safemap map";
  EXPECT_EQ(advice[1].fastest_family, "peer");
  EXPECT_DOUBLE_EQ(advice[1].vs_fastest, 0.5);
  const std::string advice_text = sb::format_advice(advice);
  EXPECT_NE(advice_text.find("write-heavy: tbb (peer) is the fastest; safemap's best, LockedMap, "
                             "runs at 0.50x of its speed"),
            std::string::npos)
      << advice_text;

  const std::string table = sb::format_table(r);
  EXPECT_NE(table.find("Sync 2.50x (tbb)"), std::string::npos) << table;
}

// Issue 13: with a map that crosses processes in the run, the advice says when it is the point
// and what it costs against the fastest in-process safemap map of each row it ran.
TEST(BenchReport, RemoteMapAdviceSaysWhatCrossingProcessesCosts) {
  sb::report r;
  r.columns = {{"LockedMap", "Locked", "safemap"},
               {"SyncMap", "Sync", "safemap"},
               {"RedisMap", "redis", "remote"}};
  r.rows = {cell("LockedMap", "safemap", "mix-50-50", 2, 50),
            cell("SyncMap", "safemap", "mix-50-50", 2, 100),
            cell("RedisMap", "remote", "mix-50-50", 2, 50'000),  // 1000x LockedMap
            cell("LockedMap", "safemap", "load-mostly-hits", 2, 20),
            cell("SyncMap", "safemap", "load-mostly-hits", 2, 10),
            cell("RedisMap", "remote", "load-mostly-hits", 2, 1'000)};  // 100x SyncMap
  const std::string text = sb::format_remote_advice(r);
  EXPECT_NE(text.find("across processes: RedisMap"), std::string::npos) << text;
  EXPECT_NE(text.find("over the 2 rows it ran it takes 316x the time"), std::string::npos)
      << text;  // sqrt(1000 * 100)
  r.columns.pop_back();
  r.rows.erase(std::remove_if(r.rows.begin(), r.rows.end(),
                              [](const sb::cell_result& c) { return c.family == "remote"; }),
               r.rows.end());
  EXPECT_EQ(sb::format_remote_advice(r), "");
}

TEST(BenchReport, NanosecondsFitFiveCharacters) {
  EXPECT_EQ(sb::format_ns(3.214), "3.21");
  EXPECT_EQ(sb::format_ns(45.66), "45.7");
  EXPECT_EQ(sb::format_ns(789.4), "789");
  EXPECT_EQ(sb::format_ns(12345), "12.3k");
  EXPECT_EQ(sb::format_ns(4'560'000), "4560k");
  EXPECT_EQ(sb::format_ns(45'600'000), "45.6M");
  EXPECT_EQ(sb::format_ns(NAN), "-");
}

}  // namespace

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Eleven series on one workload: ten between 1 and 40 Mops/s (so a log axis) with known
// min-max spreads, and "Cow" at 1e-4 Mops/s, five decades below: it must be left off the axis
// with a note, not squeeze the others.
TEST(BenchReport, PlotsDrawMinMaxBarsClipAnOutlierAndGiveEachSeriesItsOwnLook) {
  sb::report r;
  r.machine.cores = 2;
  r.machine.cpu_model = "test cpu";
  for (int i = 0; i < 10; ++i) {
    const std::string name = "m" + std::to_string(i);
    r.columns.push_back({name, name, i < 4 ? "safemap" : "peer"});
    for (unsigned t : {1U, 2U, 4U}) {
      sb::cell_result c = cell(name, i < 4 ? "safemap" : "peer", "mix-50-50", t, 25.0 + 100 * i);
      c.ns_per_op_min = c.ns_per_op * 0.8;
      c.ns_per_op_max = c.ns_per_op * 1.25;
      r.rows.push_back(c);
    }
  }
  r.columns.push_back({"CowMap", "Cow", "safemap"});
  for (unsigned t : {1U, 2U, 4U}) r.rows.push_back(cell("CowMap", "safemap", "mix-50-50", t, 1e7));

  const std::string dir =
      (std::filesystem::temp_directory_path() / ("safemap-plot-test-" + std::to_string(::getpid())))
          .string();
  std::string message;
  sb::write_plots(r, dir, 2, message);
  const std::string dat = read_text(dir + "/img/mix-50-50.dat");
  const std::string gp = read_text(dir + "/img/mix-50-50.gp");
  std::filesystem::remove_all(dir);

  // Data: median, min and max per series; m0 at 25 ns/op is 40 Mops/s, 32 to 50 over repeats.
  EXPECT_NE(dat.find("threads m0 m0_min m0_max"), std::string::npos) << dat;
  EXPECT_NE(dat.find("\n1 40 32 50 "), std::string::npos) << dat;
  // Script: error bars from those columns; the outlier named, off the axis, and in the key.
  EXPECT_NE(gp.find("using ($1*"), std::string::npos);
  EXPECT_NE(gp.find("):2:3:4 with yerrorlines"), std::string::npos) << gp;
  EXPECT_NE(gp.find("Off scale, not drawn: Cow 0.0001-0.0001 Mops/s (below the axis)"),
            std::string::npos)
      << gp;
  EXPECT_NE(gp.find("title 'Cow (off scale)'"), std::string::npos) << gp;
  EXPECT_NE(gp.find("set logscale y 10"), std::string::npos);
  const std::size_t yrange = gp.find("set yrange [");
  ASSERT_NE(yrange, std::string::npos);
  const double y_lo = std::stod(gp.substr(yrange + 12));
  EXPECT_GT(y_lo, 0.1);  // the others' smallest min (1e3 / (925 * 1.25) = 0.86) sets the floor
  EXPECT_LT(y_lo, 0.87);
  // Eleven series, eleven colours; no two series share dash pattern and point shape either.
  std::set<std::string> colours, looks;
  for (std::size_t at = gp.find("with yerrorlines"); at != std::string::npos;
       at = gp.find("with yerrorlines", at + 1)) {
    const std::size_t end = gp.find(" title", at);
    const std::string spec = gp.substr(at, end - at);
    const std::size_t rgb = spec.find("lc rgb '");
    ASSERT_NE(rgb, std::string::npos) << spec;
    colours.insert(spec.substr(rgb + 8, 7));
    const std::size_t dt = spec.find(" dt ");
    looks.insert(spec.substr(dt, rgb - dt));  // dash pattern and point shape
  }
  EXPECT_EQ(colours.size(), 11U);
  EXPECT_EQ(looks.size(), 11U);
  EXPECT_EQ(colours.count("#F0E442"), 0U);  // Okabe-Ito's yellow: unreadable on white
}

}  // namespace
