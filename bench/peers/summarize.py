#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Summarise one bench/run_peers.sh run: goro vs Go vs Boost.Fiber.

Usage: summarize.py RAW_DIR RESULTS_MD

RAW_DIR holds what run_peers.sh collected:
  goro.<workload>.<rep>.json   Google Benchmark --benchmark_out (JSON) of
                               build/bench/bench/<workload>_bench
  go.<workload>.<rep>.txt      stdout of the Go peer
  boost.<workload>.<rep>.txt   stdout of the Boost.Fiber peer
  machine.txt                  "key: value" lines (machine, versions, command)
  skipped.txt                  "<impl>: <reason>" for peers that were skipped

Parsing, kept deliberately simple:
  * Peers print one measurement per line, `name value unit`; every line that
    splits into three fields with a numeric middle one is taken.
  * goro: each JSON "benchmarks" entry is matched by its name prefix (e.g.
    "BM_switch/workers:1/"); the value is 1e9 / items_per_second (ns per
    item), real_time converted to ms, or a user counter, per row below.
Each row reports the median over the reps and [min-max]; ratios are
median(goro) / median(peer), so < 1 means goro is cheaper (every row is
lower-is-better). Prints the table and writes RESULTS_MD.
"""

import glob
import json
import os
import statistics
import sys

# (key, label, unit, goro spec, Go name, Boost.Fiber name, note)
# goro spec: (workload, benchmark-name prefix, field); field is "ns_per_item",
# "real_ms" or the name of a user counter.
ROWS = [
    ("switch_w1", "switch (yield ping-pong), 1 worker", "ns/switch",
     ("switch", "BM_switch/workers:1/", "ns_per_item"), "switch_w1", "switch_w1",
     "Go GOMAXPROCS=1; Boost.Fiber round_robin on 1 thread"),
    ("switch_w2", "switch (yield ping-pong), 2 workers", "ns/switch",
     ("switch", "BM_switch/workers:2/", "ns_per_item"), "switch_w2", "switch_w2", ""),
    ("spawn_w1", "spawn+join 1M, 1 worker", "ns/fiber",
     ("spawn", "BM_spawn/tasks:1000000/workers:1/", "ns_per_item"), "spawn_w1", None,
     "Go GOMAXPROCS=1; no Boost.Fiber run"),
    ("spawn_w2", "spawn+join 1M, 2 workers", "ns/fiber",
     ("spawn", "BM_spawn/tasks:1000000/workers:2/", "ns_per_item"), "spawn_w2", "spawn_w2",
     "Boost.Fiber at 200k fibers (1M takes 17-42 s)"),
    ("skynet", "skynet 1M, channels (classic), 2 workers", "ms",
     ("skynet", "BM_skynet_chan/leaves:1000000/workers:2/", "real_ms"), "skynet", "skynet",
     "unbuffered goro::chan / Go chan; Boost.Fiber buffered_channel"),
    ("skynet_wg", "skynet 1M, wait_group + array, 2 workers", "ms",
     ("skynet", "BM_skynet/leaves:1000000/workers:2/", "real_ms"), "skynet_wg", None,
     "children write a parent-owned [10] and call done(); Go: sync.WaitGroup"),
    ("skynet_wg_w1", "skynet 1M, wait_group + array, 1 worker", "ms",
     ("skynet", "BM_skynet/leaves:1000000/workers:1/", "real_ms"), None, None, "goro only"),
    ("parked", "1M parked fibers, RSS per fiber", "B/fiber",
     ("memory", "BM_parked/fibers:1000000/workers:2/", "bytes_per_fiber"),
     "parked_bytes_per_fiber", "parked_bytes_per_fiber",
     "Boost.Fiber at 100k fibers"),
    ("idle", "idle CPU, 10k parked, 2 s sleep", "core fraction",
     ("memory", "BM_idle/fibers:10000/workers:2/", "idle_cpu_fraction"),
     "idle_cpu_fraction", "idle_cpu_fraction", "Boost.Fiber work_stealing with suspend=true"),
]

# Peak RSS (MiB) of the run behind each row: goro counter / peer line name.
RSS = {
    "switch_w1": ("peak_rss_mib", "switch_w1_peak_rss", "switch_w1_peak_rss"),
    "switch_w2": ("peak_rss_mib", "switch_w2_peak_rss", "switch_w2_peak_rss"),
    "spawn_w1": ("peak_rss_mib", "spawn_w1_peak_rss", None),
    "spawn_w2": ("peak_rss_mib", "spawn_w2_peak_rss", "spawn_w2_peak_rss"),
    "skynet": ("peak_rss_mib", "skynet_peak_rss", "skynet_peak_rss"),
    "skynet_wg": ("peak_rss_mib", "skynet_wg_peak_rss", None),
    "skynet_wg_w1": ("peak_rss_mib", None, None),
    "parked": ("peak_rss_mib", "parked_peak_rss", "parked_peak_rss"),
    "idle": (None, None, None),
}

TARGETS = [
    # (description, row key, "go" = ratio to Go | "abs" = <= limit | "abs_lt" = < limit, limit)
    ("skynet <= 0.5x Go time (channels, classic)", "skynet", "go", 0.5),
    ("skynet <= 0.5x Go time (wait_group + array)", "skynet_wg", "go", 0.5),
    ("spawn+join <= 0.6x Go ns/fiber (2 workers)", "spawn_w2", "go", 0.6),
    ("spawn+join <= 0.6x Go ns/fiber (1 worker)", "spawn_w1", "go", 0.6),
    ("1M parked <= 4.5 KiB (4608 B) per fiber", "parked", "abs", 4608.0),
    ("idle < 1% of a core", "idle", "abs_lt", 0.01),
]


def read_peer(path):
    values = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                try:
                    values[parts[0]] = float(parts[1])
                except ValueError:
                    pass
    return values


def read_goro(path):
    """{benchmark name: entry} of one Google Benchmark JSON file."""
    with open(path) as f:
        data = json.load(f)
    return {b["name"]: b for b in data.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"}


TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def goro_value(entries, prefix, field):
    for name, b in entries.items():
        if not name.startswith(prefix) or b.get("error_occurred"):
            continue
        if field == "ns_per_item":
            ips = b.get("items_per_second")
            return 1e9 / ips if ips else None
        if field == "real_ms":
            return b["real_time"] * TO_MS[b.get("time_unit", "ns")]
        return b.get(field)
    return None


def collect(raw):
    """samples[impl][key] and rss[impl][key]: lists over reps."""
    samples = {"goro": {}, "go": {}, "boost": {}}
    rss = {"goro": {}, "go": {}, "boost": {}}

    def add(table, impl, key, v):
        if v is not None:
            table[impl].setdefault(key, []).append(v)

    for path in sorted(glob.glob(os.path.join(raw, "goro.*.json"))):
        workload = os.path.basename(path).split(".")[1]
        try:
            entries = read_goro(path)
        except (OSError, ValueError) as e:
            print(f"warning: {path}: {e}", file=sys.stderr)
            continue
        for key, _, _, (wl, prefix, field), _, _, _ in ROWS:
            if wl == workload:
                add(samples, "goro", key, goro_value(entries, prefix, field))
                if RSS[key][0]:
                    add(rss, "goro", key, goro_value(entries, prefix, RSS[key][0]))
    for impl, col in (("go", 4), ("boost", 5)):
        for path in sorted(glob.glob(os.path.join(raw, f"{impl}.*.txt"))):
            values = read_peer(path)
            for row in ROWS:
                name = row[col]
                if name and name in values:
                    add(samples, impl, row[0], values[name])
                rss_name = RSS[row[0]][1 if impl == "go" else 2]
                if rss_name and rss_name in values and name and name in values:
                    add(rss, impl, row[0], values[rss_name])
    return samples, rss


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.5f}"


def cell(vals):
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(vals))}-{fmt(max(vals))}]"


def med(vals):
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    raw, out_path = sys.argv[1], sys.argv[2]
    samples, rss = collect(raw)
    skipped = {}
    skipped_path = os.path.join(raw, "skipped.txt")
    if os.path.exists(skipped_path):
        with open(skipped_path) as f:
            for line in f:
                impl, _, reason = line.partition(":")
                skipped[impl.strip()] = reason.strip()
    machine = []
    machine_path = os.path.join(raw, "machine.txt")
    if os.path.exists(machine_path):
        with open(machine_path) as f:
            machine = [line.rstrip("\n") for line in f if line.strip()]

    header = ["workload", "unit", "goro", "Go", "Boost.Fiber", "goro/Go", "goro/Boost.Fiber",
              "peak RSS MiB (goro / Go / Boost.Fiber)", "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label, unit, _, go_name, bf_name, note in ROWS:
        g, o, b = samples["goro"].get(key), samples["go"].get(key), samples["boost"].get(key)
        if not (g or o or b):
            continue  # workload not run (WORKLOADS=...) or every run of it failed
        go_cell = cell(o) if go_name else "n/a"
        bf_cell = cell(b) if bf_name else "n/a"
        if go_name and not o and "go" in skipped:
            go_cell = "skipped"
        if bf_name and not b and "boost" in skipped:
            bf_cell = "skipped"
        rss_cell = " / ".join(fmt(med(rss[i].get(key))) for i in ("goro", "go", "boost"))
        lines.append("| " + " | ".join([
            label, unit, cell(g), go_cell, bf_cell,
            ratio(med(g), med(o)), ratio(med(g), med(b)), rss_cell, note]) + " |")
    table = "\n".join(lines)

    verdicts = []
    for desc, key, kind, limit in TARGETS:
        g = samples["goro"].get(key)
        if not g:
            verdicts.append(f"- {desc}: not measured (no goro data)")
            continue
        if kind == "go":
            o = samples["go"].get(key)
            if not o:
                verdicts.append(f"- {desc}: no Go data")
                continue
            r = med(g) / med(o)
            ok = r <= limit
            verdicts.append(f"- {desc}: goro/Go = {r:.2f}x (goro {fmt(med(g))}, Go {fmt(med(o))}) -> "
                            f"{'met' if ok else 'MISSED'}")
        elif kind == "abs":
            ok = med(g) <= limit
            verdicts.append(f"- {desc}: median {fmt(med(g))}, worst {fmt(max(g))} -> {'met' if ok else 'MISSED'}")
        else:
            ok = med(g) < limit
            worst_ok = max(g) < limit
            verdicts.append(f"- {desc}: median {fmt(med(g))}, worst {fmt(max(g))} -> "
                            f"{'met' if ok else 'MISSED'}"
                            + ("" if worst_ok == ok else f" (worst run {'met' if worst_ok else 'MISSED'})"))

    raw_lines = []
    for impl in ("goro", "go", "boost"):
        for key, *_ in ROWS:
            vals = samples[impl].get(key)
            if vals:
                raw_lines.append(f"- {impl} {key}: " + ", ".join(fmt(v) for v in vals))

    n_reps = max((len(v) for impl in samples.values() for v in impl.values()), default=0)
    doc = ["# goro vs Go vs Boost.Fiber: benchmark results", "",
           "Written by `bench/run_peers.sh` (how to read it: `bench/README.md`). "
           f"Each cell is the median of {n_reps} runs and [min-max]; goro, Go and Boost.Fiber ran "
           "alternately, one run of each per workload in turn, in the same session. Every row is "
           "lower-is-better; ratios are median / median, so < 1 means goro is cheaper. The machine is "
           "shared with other work, so compare ratios from this one run, not absolute figures across runs.",
           "", "## Machine and command", ""]
    doc += [f"- {m}" for m in machine]
    if skipped:
        doc += [f"- skipped: {impl} ({reason})" for impl, reason in skipped.items()]
    doc += ["", "## Results", "", table, "", "## Targets (goro's issue)", ""] + verdicts
    doc += ["", "## Every run", ""] + raw_lines + [""]
    with open(out_path, "w") as f:
        f.write("\n".join(doc))
    print(table)
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
