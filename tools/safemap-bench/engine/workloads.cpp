#include "workloads.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "safemap/json.hpp"
#include "safemap/map.hpp"
#include "stats.hpp"

namespace safemap_bench {

std::string_view to_string(workload_class c) noexcept {
  switch (c) {
    case workload_class::read_mostly:
      return "read-mostly";
    case workload_class::write_heavy:
      return "write-heavy";
    case workload_class::contended_key:
      return "one contended key";
    case workload_class::iteration:
      return "range / serialize";
  }
  return "?";
}

namespace {

workload go(std::string name, workload_kind kind, workload_class klass, std::string summary,
            determinism det = determinism::always, bool grows = false) {
  workload w;
  w.name = std::move(name);
  w.kind = kind;
  w.group = "go-suite";
  w.summary = std::move(summary);
  w.klass = klass;
  w.det = det;
  w.grows_with_ops = grows;
  return w;
}

workload mix(unsigned write_pct, key_dist dist, bool strings) {
  workload w;
  w.name = fmt::format("mix-{}-{}{}{}", 100 - write_pct, write_pct, strings ? "-string" : "",
                       dist == key_dist::zipf ? "-zipf" : "");
  w.kind = workload_kind::mix;
  w.group = strings ? "extra" : "mixes";
  w.summary = fmt::format("{}% loads, {}% stores of {} keys, {} {}", 100 - write_pct, write_pct,
                          strings ? "string" : "u64", to_string(dist), "key choice");
  w.klass = write_pct <= 10 ? workload_class::read_mostly : workload_class::write_heavy;
  w.string_keys = strings;
  w.write_pct = write_pct;
  w.dist = dist;
  return w;
}

// The name without its distribution suffix: what a user types to get it for every --dist.
std::string base_name(const workload& w) {
  if (w.kind == workload_kind::mix && w.dist == key_dist::zipf) {
    return w.name.substr(0, w.name.size() - 5);
  }
  return w.name;
}

}  // namespace

std::vector<workload> all_workloads(std::span<const key_dist> dists) {
  using wc = workload_class;
  using wk = workload_kind;
  std::vector<workload> v;
  v.push_back(go("load-mostly-hits", wk::load_mostly_hits, wc::read_mostly,
                 "1023 keys; Load(i % 1024): 1 miss in 1024"));
  v.push_back(go("load-mostly-misses", wk::load_mostly_misses, wc::read_mostly,
                 "1 key; Load(i % 1024): 1 hit in 1024"));
  v.push_back(go("load-or-store-balanced", wk::load_or_store_balanced, wc::write_heavy,
                 "128 keys; half LoadOrStore hits, half stores of new keys", determinism::always,
                 true));
  v.push_back(go("load-or-store-unique", wk::load_or_store_unique, wc::write_heavy,
                 "LoadOrStore(i, i): every op stores a new key", determinism::always, true));
  v.push_back(go("load-or-store-collision", wk::load_or_store_collision, wc::contended_key,
                 "LoadOrStore(0, 0) of a present key from every thread"));
  v.push_back(go("load-and-delete-balanced", wk::load_and_delete_balanced, wc::write_heavy,
                 "128 keys; LoadAndDelete of them (once) or of absent keys"));
  v.push_back(go("load-and-delete-unique", wk::load_and_delete_unique, wc::write_heavy,
                 "LoadAndDelete(i) of absent keys"));
  v.push_back(go("load-and-delete-collision", wk::load_and_delete_collision, wc::contended_key,
                 "LoadAndDelete(0), Store(0, 0) when it was there", determinism::single_thread));
  v.push_back(go("range", wk::range, wc::iteration, "1024 keys; one op = one full Range"));
  v.push_back(go("adversarial-alloc", wk::adversarial_alloc, wc::write_heavy,
                 "Load of missing keys, a new key stored after 1, 2, 3, ... loads",
                 determinism::always, true));
  v.push_back(go("adversarial-delete", wk::adversarial_delete, wc::iteration,
                 "1024 keys; Load(i); every 1024 ops delete a Range's first key, store i",
                 determinism::never));
  v.push_back(go("delete-collision", wk::delete_collision, wc::contended_key,
                 "Delete(0) from every thread"));
  v.push_back(
      go("swap-collision", wk::swap_collision, wc::contended_key, "Swap(0, 0) from every thread"));
  for (key_dist d : dists) {
    for (unsigned w : {1U, 10U, 50U, 90U}) v.push_back(mix(w, d, false));
  }
  for (key_dist d : dists) v.push_back(mix(10, d, true));
  {
    workload w;
    w.name = "serialize-json";
    w.kind = wk::serialize_json;
    w.group = "extra";
    w.summary = "1024 keys; every 64th op writes the map as JSON, the others store";
    w.klass = wc::iteration;
    v.push_back(std::move(w));
  }
  {
    workload w = go("compare-and-swap-collision", wk::cas_collision, wc::contended_key,
                    "CompareAndSwap(0, 0, 42) then (0, 42, 0) from every thread",
                    determinism::single_thread);
    w.group = "extra";
    v.push_back(std::move(w));
  }
  return v;
}

std::vector<workload> select_workloads(std::span<const std::string> names,
                                       std::span<const key_dist> dists) {
  const std::vector<workload> selected_dists = all_workloads(dists);
  const key_dist both[] = {key_dist::uniform, key_dist::zipf};
  const std::vector<workload> everything = all_workloads(both);
  std::vector<const workload*> picked;
  auto add = [&](const workload& w) {
    if (std::none_of(picked.begin(), picked.end(),
                     [&](const workload* p) { return p->name == w.name; })) {
      picked.push_back(&w);
    }
  };
  for (const std::string& name : names) {
    bool found = false;
    for (const workload& w : selected_dists) {
      if (name == "all" || name == w.group || (name == "mixes" && w.group == "mixes") ||
          base_name(w) == name) {
        add(w);
        found = true;
      }
    }
    if (!found) {
      for (const workload& w : everything) {
        if (w.name == name) {
          add(w);
          found = true;
        }
      }
    }
    if (!found) {
      throw std::invalid_argument(fmt::format(
          "unknown workload '{}' (see --list; groups: go-suite, mixes, extra, all)", name));
    }
  }
  // Catalog order, whatever the order of the names.
  std::vector<workload> out;
  for (const workload& w : everything) {
    if (std::any_of(picked.begin(), picked.end(),
                    [&](const workload* p) { return p->name == w.name; })) {
      out.push_back(w);
    }
  }
  return out;
}

std::uint64_t workload_plan::start(unsigned t) const noexcept {
  const std::uint64_t base = thread_base(t);
  return ops.empty() ? base : base + thread_offset(t, ops.size());
}

namespace {

template <class G>
std::vector<std::uint64_t> prefix_of(std::uint64_t period, G g) {
  std::vector<std::uint64_t> p(period + 1, 0);
  for (std::uint64_t j = 0; j < period; ++j) p[j + 1] = p[j] + g(j);
  return p;
}

}  // namespace

workload_plan make_plan(const workload& w, const plan_options& opt) {
  using wk = workload_kind;
  workload_plan p;
  p.w = &w;
  switch (w.kind) {
    case wk::load_mostly_hits:
      p.prefix = prefix_of(go_mostly_period, [](std::uint64_t j) { return j < 1023 ? j + 1 : 0; });
      break;
    case wk::load_mostly_misses:
      p.prefix = prefix_of(go_mostly_period, [](std::uint64_t j) { return j == 0 ? 1 : 0; });
      break;
    case wk::load_or_store_balanced:
      p.prefix = prefix_of(go_balanced_period, [](std::uint64_t j) {
        return j < go_balanced_hits ? j + 1 : 1;  // a hit returns j; a miss stores
      });
      break;
    case wk::load_or_store_unique:
    case wk::load_or_store_collision:  // loaded value 0: adds 1
    case wk::swap_collision:           // previous value 0: adds 1
    case wk::load_and_delete_collision:
      p.prefix = prefix_of(1, [](std::uint64_t) { return 1; });
      break;
    case wk::cas_collision:
      p.prefix = prefix_of(1, [](std::uint64_t) { return 2; });
      break;
    case wk::range:
      p.prefix = prefix_of(1, [](std::uint64_t) { return go_map_size * (go_map_size + 1) / 2; });
      break;
    case wk::load_and_delete_balanced:
    case wk::load_and_delete_unique:
    case wk::adversarial_alloc:
    case wk::adversarial_delete:
    case wk::delete_collision:
      break;
    case wk::mix: {
      p.keys = opt.keys;
      mix_spec spec;
      spec.write_pct = w.write_pct;
      spec.dist = w.dist;
      spec.zipf_s = opt.zipf_s;
      spec.keys = opt.keys;
      spec.length = opt.mix_length;
      p.ops = make_mix_ops(spec);
      if (w.string_keys) {
        p.str_keys.reserve(opt.keys);
        for (std::size_t k = 0; k < opt.keys; ++k) p.str_keys.push_back(string_key(k));
      } else {
        p.u64_keys.reserve(opt.keys);
        for (std::size_t k = 0; k < opt.keys; ++k) p.u64_keys.push_back(u64_key(k));
      }
      p.prefix = prefix_of(p.ops.size(), [&](std::uint64_t j) -> std::uint64_t {
        return is_write(p.ops[j]) ? 0 : std::uint64_t{key_index(p.ops[j])} + 2;  // v + 1
      });
      break;
    }
    case wk::serialize_json: {
      p.keys = serialize_keys;
      safemap::Map<std::uint64_t, std::uint64_t> reference;
      for (std::uint64_t k = 0; k < serialize_keys; ++k) {
        p.u64_keys.push_back(u64_key(k));
        reference.insert_or_assign(u64_key(k), k + 1);
      }
      p.json_length = safemap::to_json(reference).size();
      p.prefix = prefix_of(serialize_every, [&](std::uint64_t j) {
        return j == 0 ? p.json_length : std::uint64_t{0};
      });
      break;
    }
  }
  return p;
}

std::uint64_t adversarial_alloc_stores(std::uint64_t n) noexcept {
  std::uint64_t k = 0;
  while (k * (k + 3) / 2 < n) ++k;
  return k;
}

std::optional<std::uint64_t> expected_checksum(const workload_plan& plan,
                                               std::span<const thread_ops> threads) {
  using wk = workload_kind;
  const workload& w = *plan.w;
  if (!w.deterministic(static_cast<unsigned>(threads.size()))) return std::nullopt;
  std::uint64_t sum = 0;
  switch (w.kind) {
    case wk::load_and_delete_unique:
      return 0;
    case wk::delete_collision:
      for (const thread_ops& t : threads) {
        if (t.count > 0) return 1;
      }
      return 0;
    case wk::adversarial_alloc:
      for (const thread_ops& t : threads) sum += adversarial_alloc_stores(t.count);
      return sum;
    case wk::load_and_delete_balanced:
      // Each of the 128 stored keys is deleted once, by whichever thread reaches it first, and
      // adds its value + 1; later deletes of it and deletes of absent keys add nothing.
      for (std::uint64_t r = 0; r < go_balanced_hits; ++r) {
        for (const thread_ops& t : threads) {
          const std::uint64_t first =
              t.start +
              ((r + go_balanced_period - t.start % go_balanced_period) % go_balanced_period);
          if (first < t.start + t.count) {
            sum += r + 1;
            break;
          }
        }
      }
      return sum;
    case wk::adversarial_delete:
      return std::nullopt;
    default:
      for (const thread_ops& t : threads) sum += periodic_sum(plan.prefix, t.start, t.count);
      return sum;
  }
}

}  // namespace safemap_bench
