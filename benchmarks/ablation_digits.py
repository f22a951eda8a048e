"""The paper's attention ablation (its Table 1), on the offline digits set.

Trains the same preset size with the same budget for each attention
(`a2os2a`, `sdsa`, `ssa`) and several seeds, and reports test accuracy as
mean +- std:

    python benchmarks/ablation_digits.py --epochs 15 --seeds 0,1,2 \
        --json benchmarks/results/ablation_digits.jsonl

Each run is `kst-train --preset st_2_64_digits --attention NAME --seed S`
in a subprocess; its `summary.json` is read back.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile



def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="st_2_64_digits")
    parser.add_argument("--attentions", default="a2os2a,sdsa,ssa")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--json", default="benchmarks/results/ablation_digits.jsonl")
    args = parser.parse_args()
    results = {}
    for attention in args.attentions.split(","):
        for seed in args.seeds.split(","):
            output = tempfile.mkdtemp(prefix=f"ablation-{attention}-{seed}-")
            command = ["kst-train", "--preset", args.preset,
                       "--attention", attention, "--seed", seed, "--epochs", str(args.epochs),
                       "--output_dir", output, "--verbose", "0"]
            subprocess.run(command, check=True, capture_output=True)
            with open(os.path.join(output, "summary.json"), encoding="utf-8") as file:
                summary = json.load(file)
            row = {"attention": attention, "seed": int(seed), "epochs": args.epochs,
                   "test_accuracy": summary["test_accuracy"], "train_seconds": summary["train_seconds"],
                   "command": " ".join(["python", "benchmarks/ablation_digits.py", *sys.argv[1:]])}
            results.setdefault(attention, []).append(row["test_accuracy"])
            print(json.dumps(row), flush=True)
            with open(args.json, "a", encoding="utf-8") as file:
                file.write(json.dumps(row) + "\n")
    print("\n| attention | test accuracy (%) mean ± std | runs |\n|---|---|---|")
    for attention, accuracies in results.items():
        mean = 100 * statistics.mean(accuracies)
        std = 100 * statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"| {attention} | {mean:.2f} ± {std:.2f} | {len(accuracies)} |")


if __name__ == "__main__":
    main()
