"""`benchmarks/device_check.sh` (the GPU device check) on the CPU with a tiny
preset, and the pieces of `benchmarks/run.py` it relies on: the recognition
of out-of-memory errors, the max-batch search, the time budget and the
records' fields. Numbers are not asserted, only that each record is complete
and self-consistent."""

import json
import os
import signal
import subprocess
import sys

import keras
import pytest
from conftest import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "device_check.sh")
FIELDS = ("name", "preset", "backend", "dtype", "mode", "batch", "batch_role", "time_steps",
          "img_per_s", "step_ms_median", "gflop_per_img", "forward_gflop_per_img",
          "gflop_counted", "peak_gflops", "utilization",
          "peak_rss_mb", "peak_device_mb", "device_limit_mb", "device_memory_source", "device",
          "status", "wall_s", "command")


@pytest.fixture
def run_module(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
    import run

    return run


def device_check(tmp_path, **settings):
    """Runs the script on st_2_64_digits (T = 2) with tiny steps, no install,
    into tmp_path; returns (the process, its records)."""
    env = subprocess_env(
        TF_CPP_MIN_LOG_LEVEL="3", KST_SKIP_INSTALL="1", KST_PYTHON=sys.executable,
        KST_RESULTS_DIR=str(tmp_path), KST_DEVICE_NAME="Test CPU", KST_TIME_STEPS="2",
        KST_BATCH="2", KST_STEPS="10", KST_WARMUP="1", KST_MATMUL_SIZE="256",
        KST_MIN_MEASURE_S="1", KST_BUDGET_S="3000", KST_MEASURE_TIMEOUT_S="1500", **settings)
    run = subprocess.run(["bash", SCRIPT, "st_2_64_digits"], env=env, capture_output=True,
                         text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    path = tmp_path / "device_test_cpu.jsonl"
    return run, [json.loads(line) for line in path.read_text().splitlines()]


def check_measurement(record, batch, role):
    assert set(FIELDS) <= set(record), set(FIELDS) - set(record)
    assert record["status"] == "ok" and record["preset"] == "st_2_64_digits"
    assert record["batch"] == batch and record["batch_role"] == role and record["time_steps"] == 2
    assert record["img_per_s"] > 0 and record["peak_gflops"] > 0 and record["gflop_per_img"] > 0
    # utilization = img/s x GFLOP/img / peak, recomputed from the record's
    # fields within their rounding (2, 4 and 1 decimals; the utilisation 4):
    # a slow CPU's tiny peaks (PyTorch's bfloat16 product: 0.5 GFLOP/s) make
    # a relative tolerance meaningless.
    img, gflop, peak = record["img_per_s"], record["gflop_per_img"], record["peak_gflops"]
    low = (img - 0.005) * (gflop - 5e-5) / (peak + 0.05)
    high = (img + 0.005) * (gflop + 5e-5) / (peak - 0.05)
    assert low - 5e-5 <= record["utilization"] <= high + 5e-5
    # img/s is the batch over the median step (0.1 ms rounding).
    step = record["step_ms_median"]
    assert 1000 * batch / (step + 0.05) - 0.005 <= img <= 1000 * batch / (step - 0.05) + 0.005
    # Training counts forward + backward = 3 x the forward work.
    factor = 3 if record["mode"] == "train" else 1
    assert record["gflop_per_img"] == pytest.approx(factor * record["forward_gflop_per_img"], abs=1e-4)
    # On the CPU the memory figure is the host's; there is no device reading.
    assert record["device"] == "cpu" and record["peak_rss_mb"] > 0
    assert record["peak_device_mb"] is None and record["device_memory_source"] is None


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="runs once, on TF")
def test_device_check_smoke_one_backend(tmp_path):
    """TensorFlow, float32, train: batch 2, then the max-batch search with an
    out-of-memory error simulated above batch 2 (one real measurement)."""
    run, records = device_check(tmp_path, KST_BACKENDS="tensorflow", KST_DTYPES="float32",
                                KST_MODES="train", KST_SIMULATE_OOM_ABOVE="2")
    assert [r["batch_role"] for r in records] == ["fixed", "max"]
    fixed, largest = records
    check_measurement(fixed, 2, "fixed")
    check_measurement(largest, 2, "max")
    # No larger batch ran: the max row is the batch-2 measurement.
    assert fixed["gflop_counted"]
    assert largest == dict(fixed, batch_role="max", batch_search=largest["batch_search"])
    search = largest["batch_search"]
    assert search["start"] == 2 and search["largest_ok"] == 2 and search["smallest_failed"] == 4
    assert search["stopped"] == "bracketed"
    assert [(p["batch"], p["status"]) for p in search["probes"]] == [(4, "oom")]
    assert "RESOURCE_EXHAUSTED" in search["probes"][0]["reason"]
    table = (tmp_path / "device_test_cpu.md").read_text()
    assert table in run.stdout
    assert "| TF graph | float32 | train | 2 | 2 |" in table
    assert "| TF graph | float32 | train | 2 (max) | 2 |" in table
    assert "largest batch that ran 2 (from 2; probes: 4 oom; smallest that failed: 4" in table


@pytest.mark.slow
def test_device_check_smoke_all_backends(tmp_path):
    """All three backends, both dtypes, train: batch 2, and a search that
    measures batch 4 and stops at the simulated out-of-memory error above it."""
    run, records = device_check(tmp_path, KST_MODES="train", KST_MAX_BATCH_CAP="16",
                                KST_MAX_BATCH_PROBES="4", KST_SIMULATE_OOM_ABOVE="4")
    cells = [(b, d) for d in ("mixed_bfloat16", "float32") for b in ("jax", "torch", "tensorflow")]
    assert [(r["backend"], r["dtype"], r["batch_role"]) for r in records] == (
        [c + ("fixed",) for c in cells] + [c + ("max",) for c in cells])
    assert records[0]["gflop_counted"] and not any(r["gflop_counted"] for r in records[1:])
    for record in records:
        if record["batch_role"] == "fixed":
            check_measurement(record, 2, "fixed")
            continue
        check_measurement(record, 4, "max")
        # The work is counted once (the first measurement) and passed on.
        assert not record["gflop_counted"]
        assert record["gflop_per_img"] == records[0]["gflop_per_img"]
        search = record["batch_search"]
        # 4 runs; 8 and then 6 fail (simulated); (4 + 6) // 2 rounds down to 4: bracketed.
        assert [(p["batch"], p["status"]) for p in search["probes"]] == [
            (4, "ok"), (8, "oom"), (6, "oom")]
        assert search["largest_ok"] == 4 and search["smallest_failed"] == 6
        assert search["stopped"] == "bracketed"
    assert run.stdout.count(" (max) |") == 6


def test_device_check_order_and_a_spent_budget(tmp_path):
    """The whole grid with no time left (KST_BUDGET_S=0): every one of the 24
    measurements is recorded as skipped, in the script's order (batch 64 of
    every configuration first: bfloat16, then float32; train, then infer;
    JAX, PyTorch, TensorFlow; then the max-batch searches), the file is
    valid JSON lines and the table lists what was not measured. Fast:
    nothing is measured."""
    env = subprocess_env(KST_SKIP_INSTALL="1", KST_PYTHON=sys.executable, KST_BUDGET_S="0",
                         KST_RESULTS_DIR=str(tmp_path), KST_DEVICE_NAME="NVIDIA Test GPU")
    run = subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "device_nvidia_test_gpu.jsonl").read_text().splitlines()]
    expected = [(role, dtype, mode, backend) for role in ("fixed", "max")
                for dtype in ("mixed_bfloat16", "float32") for mode in ("train", "infer")
                for backend in ("jax", "torch", "tensorflow")]
    assert [(r["batch_role"], r["dtype"], r["mode"], r["backend"]) for r in records] == expected
    assert all(r["preset"] == "st_8_512_imagenet" and r["batch"] == 64 for r in records)
    assert all(r["status"] == "skipped" and r["reason"] == "time budget spent" for r in records)
    table = (tmp_path / "device_nvidia_test_gpu.md").read_text()
    assert table.count("time budget spent") == 24 and table in run.stdout
    assert "- JAX mixed_bfloat16 train batch 64: skipped (time budget spent)" in table


def test_spent_budget_records_skips_and_the_table_lists_them(tmp_path):
    """A measurement that no longer fits the time budget is recorded as
    skipped, without a subprocess; the file stays valid JSON lines and the
    table lists what was not measured. Fast: nothing is measured."""
    results = tmp_path / "r.jsonl"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "run.py"), "--preset", "st_2_64_digits",
               "--backend", "tensorflow", "--mode", "train,infer", "--batch", "64,max",
               "--deadline", "1", "--json", str(results)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["mode"], r["batch_role"], r["status"]) for r in records] == [
        ("train", "fixed", "skipped"), ("train", "max", "skipped"),
        ("infer", "fixed", "skipped"), ("infer", "max", "skipped")]
    assert all(r["reason"] == "time budget spent" for r in records)
    assert records[1]["batch_search"]["stopped"] == "start failed"
    assert run.stdout.count("SKIPPED: time budget spent") == 4
    table = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "table.py"), str(results)],
                           capture_output=True, text=True, check=True).stdout
    assert "- TF graph float32 train batch 64: skipped (time budget spent)" in table
    assert "- TF graph float32 infer batch 64 (max): skipped (time budget spent)" in table


def test_table_shows_device_memory_and_the_search(tmp_path):
    base = {"name": "x", "preset": "p", "backend": "jax", "dtype": "mixed_bfloat16",
            "mode": "train", "time_steps": 4, "tokens": 196, "compile": "default",
            "img_per_s": 800.0, "step_ms_median": 80.0, "gflop_per_img": 200.6,
            "peak_gflops": 560000.0, "utilization": 0.29, "peak_rss_mb": 4000.0,
            "peak_device_mb": 20480.0, "status": "ok"}
    search = {"start": 64, "step": 64, "largest_ok": 384, "smallest_failed": 448,
              "stopped": "bracketed", "probes": [{"batch": 384, "status": "ok"},
                                                 {"batch": 448, "status": "oom"}]}
    rows = [dict(base, batch=64, batch_role="fixed"),
            dict(base, batch=384, batch_role="max", peak_device_mb=110000.0, batch_search=search)]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "table.py"), str(path)],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert table[0].endswith("| peak RSS MB | peak device MB |")
    assert table[2] == ("| JAX | mixed_bfloat16 | train | 64 | 4 | 196 | 800.0 | 200.60 | 560000 "
                        "| 0.29 | 4,000 | 20,480 |")
    assert table[3].startswith("| JAX | mixed_bfloat16 | train | 384 (max) |")
    assert table[-1] == ("- JAX mixed_bfloat16 train: largest batch that ran 384 (from 64; probes: "
                         "384 ok, 448 oom; smallest that failed: 448; stopped: bracketed)")


@pytest.mark.parametrize("message", [
    "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor",
    "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to "
    "allocate 1.2GiB",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "RuntimeError: CUDA error: out of memory",
    "terminate called after throwing an instance of 'std::bad_alloc'",
])
def test_out_of_memory_errors_of_each_backend_are_recognised(run_module, message):
    status, reason = run_module.classify_failure(1, f"Traceback (most recent call last):\n{message}\n")
    assert status == "oom" and reason == message[:300]


def test_other_failures_and_the_oom_killer(run_module):
    assert run_module.classify_failure(-signal.SIGKILL, "")[0] == "oom"
    assert run_module.classify_failure(1, "ValueError: bad shape\n") == ("failed", "ValueError: bad shape")
    assert run_module.classify_failure(-signal.SIGSEGV, "") == ("failed", f"exit status {-signal.SIGSEGV}")


def test_max_batch_search_steps(run_module):
    search = run_module.next_search_batch

    def ok(batch, mb=None):
        return {"batch": batch, "status": "ok", "peak_device_mb": mb}

    def oom(batch):
        return {"batch": batch, "status": "oom", "peak_device_mb": None}

    # No memory reading (a CPU): double, up to the cap.
    assert search([ok(64)], 64, 4096) == (128, "double")
    assert search([ok(64), ok(2048)], 64, 3000) == (3000, "double")
    assert search([ok(64), ok(4096)], 64, 4096) == (None, "cap")
    # One reading counts all memory as per-image: 10 GB at 64 on a 100 GB
    # limit filled to 90 % predicts 576, a multiple of the step.
    assert search([ok(64, 10_000)], 64, 4096, limit_mb=100_000) == (576, "predict")
    # Two readings give the fixed part: 2 GB + 125 MB per image -> 704.
    assert search([ok(64, 10_000), ok(576, 74_000)], 64, 4096, limit_mb=100_000) == (704, "predict")
    assert search([ok(64, 10_000), ok(704, 90_000)], 64, 4096, limit_mb=100_000) == (None, "memory full")
    assert search([ok(64, 10_000)], 64, 256, limit_mb=100_000) == (256, "predict")
    # A peak that does not grow with the batch says nothing: double.
    assert search([ok(64, 5_000), ok(128, 5_000)], 64, 4096, limit_mb=100_000) == (256, "double")
    # After an out-of-memory error, bisect down to the step.
    assert search([ok(64), oom(128)], 16, 4096) == (96, "bisect")
    assert search([ok(64), oom(128), ok(96), oom(112)], 16, 4096) == (None, "bracketed")
    assert search([ok(4), oom(8)], 2, 16) == (6, "bisect")
