"""The benchmark suite end to end on a tiny configuration (numbers are not
asserted, only that each record is complete and self-consistent)."""

import json
import os
import subprocess
import sys

import keras
import pytest
from conftest import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("name", "preset", "backend", "dtype", "mode", "batch", "time_steps", "img_per_s",
          "gflop_per_img", "peak_gflops", "utilization", "peak_rss_mb", "command")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="runs once, on TF")
def test_benchmark_suite_writes_consistent_records(tmp_path):
    results = tmp_path / "results.jsonl"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "run.py"),
               "--preset", "st_2_64_digits", "--mode", "train,infer", "--batch", "4",
               "--time_steps", "2", "--steps", "10", "--warmup", "1", "--matmul_size", "256",
               "--json", str(results)]
    run = subprocess.run(command, env=subprocess_env(TF_CPP_MIN_LOG_LEVEL="3"),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["mode"] for r in records] == ["train", "infer"]
    for record in records:
        assert set(FIELDS) <= set(record)
        assert record["batch"] == 4 and record["time_steps"] == 2
        assert record["img_per_s"] > 0 and record["peak_gflops"] > 0
        expected = record["img_per_s"] * record["gflop_per_img"] / record["peak_gflops"]
        assert record["utilization"] == pytest.approx(expected, rel=1e-2)
    train, infer = records
    # Training counts forward + backward = 3 x the forward FLOPs.
    assert train["gflop_per_img"] == pytest.approx(3 * infer["gflop_per_img"], abs=3e-4)  # 4-decimal rounding
    # The printed table has one row per record, and table.py renders the file.
    assert run.stdout.count("st_2_64_digits") == 0 and len(run.stdout.splitlines()) == 3
    table = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "table.py"),
                            str(results), "--before", str(results)],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(table) == 4 and table[2].startswith("| TF graph | float32 | train | 4 | 2 |")
    assert table[2].endswith("1.00× |")
