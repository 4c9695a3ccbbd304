#!/usr/bin/env python3
"""Turn Google Benchmark JSON output of safemap's benchmarks into Markdown tables.

  compare.py map_bench.json      # safemap_map_bench: ns/op per map, safemap/peer ratios
  compare.py misuse_bench.json   # safemap_misuse_overhead_bench: checked/unchecked ratios

Uses the median aggregate of each benchmark when the run had repetitions, else the single
run; ns/op is 1e9 / items_per_second (CPU time per key operation). "max cv" is the largest
coefficient of variation of items_per_second among the maps of a row (repetitions only):
a ratio is not to be trusted further than that. A ratio is safemap's
time divided by the peer's: below 1.00 safemap is faster, 0.50 means twice as fast.
"""
import json
import sys
from collections import defaultdict

MAPS = ["safemap", "absl", "boost", "std"]
OPS = ["insert", "lookup_hit", "lookup_miss", "erase", "iterate"]
KEYS = {"u64": "uint64 -> uint64", "str": "std::string (16-24 chars) -> uint64"}


def load(path):
    with open(path) as f:
        data = json.load(f)
    runs, medians, cvs = {}, {}, {}
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            sys.exit(f"{b['name']}: {b.get('error_message')}")
        name = b.get("run_name", b["name"])
        ips = b.get("items_per_second")
        if ips is None:
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = 1e9 / ips
            elif b.get("aggregate_name") == "cv":
                cvs[name] = ips  # coefficient of variation of items_per_second, a fraction
        else:
            runs.setdefault(name, 1e9 / ips)
    runs.update(medians)  # the median wins wherever there is one
    return data.get("context", {}), runs, cvs


def fmt_ns(v):
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def map_tables(ns, cvs):
    table = defaultdict(dict)  # (op, key, n) -> map -> ns/op
    noise = defaultdict(float)  # (op, key, n) -> largest cv among its maps
    for name, cv in cvs.items():
        parts = [p for p in name.split("/") if ":" not in p]
        if len(parts) == 4:
            k = (parts[0], parts[1], int(parts[3]))
            noise[k] = max(noise[k], cv)
    for name, v in ns.items():
        parts = [p for p in name.split("/") if ":" not in p]  # drop iterations:1 etc.
        if len(parts) != 4 or parts[2] not in MAPS:
            continue
        op, key, m, n = parts
        table[(op, key, int(n))][m] = v
    present = [m for m in MAPS if any(m in row for row in table.values())]
    peers = [m for m in present if m != "safemap"]
    out = []
    for key in KEYS:
        rows = sorted((k for k in table if k[1] == key), key=lambda k: (OPS.index(k[0]), k[2]))
        if not rows:
            continue
        out.append(f"\n### {KEYS[key]}: ns per operation (median)\n")
        head = ["op", "N"] + present + [f"safemap/{p}" for p in peers]
        if noise:
            head.append("max cv")
        out.append("| " + " | ".join(head) + " |")
        out.append("|---|---:|" + "---:|" * (len(head) - 2))
        for op, _, n in rows:
            row = table[(op, key, n)]
            cells = [op, f"{n:.0e}".replace("e+0", "e")]
            cells += [fmt_ns(row[m]) if m in row else "-" for m in present]
            for p in peers:
                ok = "safemap" in row and p in row
                cells.append(f"{row['safemap'] / row[p]:.2f}" if ok else "-")
            if noise:
                cells.append(f"{100 * noise[(op, key, n)]:.0f}%")
            out.append("| " + " | ".join(cells) + " |")
    return out


def misuse_table(ns, cvs):
    table = defaultdict(dict)  # op -> variant -> ns/op
    for name, v in ns.items():
        parts = [p for p in name.split("/") if ":" not in p]
        if len(parts) == 4 and parts[0] == "misuse":
            table[(parts[1], int(parts[3]))][parts[2]] = v
    out = []
    if table:
        out.append("\n### misuse checks: uint64 Map, ns per operation (median)\n")
        out.append("| op | N | checked | unchecked | checked/unchecked | cv checked | cv unchecked |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for (op, n), row in sorted(table.items(), key=lambda kv: OPS.index(kv[0][0])):
            c, u = row.get("checked"), row.get("unchecked")
            ratio = f"{c / u:.3f}" if c and u else "-"
            cv = [cvs.get(f"misuse/{op}/{v}/{n}") for v in ("checked", "unchecked")]
            cv = [f"{100 * x:.0f}%" if x is not None else "-" for x in cv]
            out.append(f"| {op} | {n:.0e} | {fmt_ns(c)} | {fmt_ns(u)} | {ratio} | {cv[0]} | {cv[1]} |"
                       .replace("e+0", "e"))
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        ctx, ns, cvs = load(path)
        print(f"<!-- {path}: {ctx.get('date', '?')}, {ctx.get('num_cpus', '?')} CPUs, "
              f"{ctx.get('mhz_per_cpu', '?')} MHz, load {ctx.get('load_avg', '?')} -->")
        print("\n".join(map_tables(ns, cvs) + misuse_table(ns, cvs)))


if __name__ == "__main__":
    main()
