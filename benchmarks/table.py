"""Markdown table of `benchmarks/run.py` JSON lines (as in docs/guides/performance.md).

    python benchmarks/table.py benchmarks/results/cpu_optimized.jsonl
    python benchmarks/table.py --before benchmarks/results/cpu_baseline.jsonl \
        benchmarks/results/cpu_optimized.jsonl

With `--before`, each row also shows the matching baseline measurement (same
backend, dtype, mode, batch, T, tokens and compile mode) and the speed-up.

Rows of a max-batch search (`--batch max`) show their batch as "N (max)" and
are summarised under the table with their probes; a "peak device MB" column
appears when any row has an accelerator memory reading; measurements that
did not run (`status` other than "ok": oom, failed, timeout, skipped) are
listed under the table with their reason.
"""

import argparse
import json

KEY = ("backend", "dtype", "mode", "batch", "time_steps", "tokens", "compile", "batch_role")
BACKEND_NAMES = {"tensorflow": "TF", "jax": "JAX", "torch": "PyTorch"}


def read(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def key(row):
    return tuple(row.get(k, "fixed" if k == "batch_role" else None) for k in KEY)


def ok(row):
    return row.get("status", "ok") == "ok"


def batch_cell(row):
    return f"{row['batch']} (max)" if row.get("batch_role") == "max" else str(row["batch"])


def search_note(row):
    search = row["batch_search"]
    probes = ", ".join(f"{p['batch']} {p['status']}" for p in search["probes"]) or "none"
    largest = search["largest_ok"]
    return (f"- {label(row)} {row['dtype']} {row['mode']}: largest batch that ran "
            f"{largest if largest is not None else 'none'} (from {search['start']}; probes: {probes}; "
            f"smallest that failed: {search['smallest_failed'] or 'none'}; stopped: {search['stopped']})")


def not_run_note(row):
    return (f"- {label(row)} {row['dtype']} {row['mode']} batch {batch_cell(row)}: "
            f"{row['status']} ({row.get('reason', '')})")


def label(row):
    name = BACKEND_NAMES.get(row["backend"], row["backend"])
    return f"{name} {row.get('compile')}" if row["backend"] == "tensorflow" else name


def speed(row):
    if row["mode"] == "infer" and row["batch"] == 1:
        return f"{row['img_per_s']:.1f} ({row['step_ms_median']:.1f} ms)"
    return f"{row['img_per_s']:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="JSON lines from benchmarks/run.py")
    parser.add_argument("--before", help="baseline JSON lines to compare with")
    args = parser.parse_args()
    before = {key(r): r for r in read(args.before) if ok(r)} if args.before else {}
    rows = read(args.results)
    device = any(r.get("peak_device_mb") is not None for r in rows if ok(r))
    header = ["backend", "dtype", "mode", "batch", "T", "tokens", "img/s", "GFLOP/img",
              "peak GFLOP/s", "utilization", "peak RSS MB"] + (["peak device MB"] if device else [])
    if before:
        header += ["before img/s", "before util.", "before RSS MB", "speed-up"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in filter(ok, rows):
        cells = [label(row), row["dtype"], row["mode"], batch_cell(row),
                 str(row["time_steps"]), str(row["tokens"]), speed(row),
                 f"{row['gflop_per_img']:.2f}", f"{row['peak_gflops']:.0f}",
                 f"{row['utilization']:.2f}", f"{row['peak_rss_mb']:,.0f}"]
        if device:
            cells.append("" if row.get("peak_device_mb") is None else f"{row['peak_device_mb']:,.0f}")
        if before:
            old = before.get(key(row))
            cells += (
                [speed(old), f"{old['utilization']:.2f}", f"{old['peak_rss_mb']:,.0f}",
                 f"{row['img_per_s'] / old['img_per_s']:.2f}×"]
                if old else ["", "", "", ""]
            )
        print("| " + " | ".join(cells) + " |")
    searches = [search_note(r) for r in rows if "batch_search" in r]
    if searches:
        print("\nMax-batch searches:\n")
        print("\n".join(searches))
    missing = [not_run_note(r) for r in rows if not ok(r)]
    if missing:
        print("\nNot measured:\n")
        print("\n".join(missing))


if __name__ == "__main__":
    main()
