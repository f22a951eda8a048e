"""Markdown table of `benchmarks/run.py` JSON lines (as in docs/guides/performance.md).

    python benchmarks/table.py benchmarks/results/cpu_optimized.jsonl
    python benchmarks/table.py --before benchmarks/results/cpu_baseline.jsonl \
        benchmarks/results/cpu_optimized.jsonl

With `--before`, each row also shows the matching baseline measurement (same
backend, dtype, mode, batch, T, tokens and compile mode) and the speed-up.
"""

import argparse
import json

KEY = ("backend", "dtype", "mode", "batch", "time_steps", "tokens", "compile")
BACKEND_NAMES = {"tensorflow": "TF", "jax": "JAX", "torch": "PyTorch"}


def read(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def label(row):
    name = BACKEND_NAMES.get(row["backend"], row["backend"])
    return f"{name} {row['compile']}" if row["backend"] == "tensorflow" else name


def speed(row):
    if row["mode"] == "infer" and row["batch"] == 1:
        return f"{row['img_per_s']:.1f} ({row['step_ms_median']:.1f} ms)"
    return f"{row['img_per_s']:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="JSON lines from benchmarks/run.py")
    parser.add_argument("--before", help="baseline JSON lines to compare with")
    args = parser.parse_args()
    before = {tuple(r[k] for k in KEY): r for r in read(args.before)} if args.before else {}
    header = ["backend", "dtype", "mode", "batch", "T", "tokens", "img/s", "GFLOP/img",
              "peak GFLOP/s", "utilization", "peak RSS MB"]
    if before:
        header += ["before img/s", "before util.", "before RSS MB", "speed-up"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in read(args.results):
        cells = [label(row), row["dtype"], row["mode"], str(row["batch"]),
                 str(row["time_steps"]), str(row["tokens"]), speed(row),
                 f"{row['gflop_per_img']:.2f}", f"{row['peak_gflops']:.0f}",
                 f"{row['utilization']:.2f}", f"{row['peak_rss_mb']:,.0f}"]
        if before:
            old = before.get(tuple(row[k] for k in KEY))
            cells += (
                [speed(old), f"{old['utilization']:.2f}", f"{old['peak_rss_mb']:,.0f}",
                 f"{row['img_per_s'] / old['img_per_s']:.2f}×"]
                if old else ["", "", "", ""]
            )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
