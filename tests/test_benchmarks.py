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


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="runs once, on TF")
def test_export_benchmark_end_to_end_with_profiles(tmp_path):
    """`benchmarks/export_benchmark.py` on the digits preset, one short round:
    complete, self-consistent records, the documentation page's marked block
    replaced and nothing else of the file, and profiles whose product count matches the work
    counted from the Keras model."""
    page = tmp_path / "performance.md"
    page.write_text("intro\n<!-- export-benchmark:begin -->\nold\n"
                      "<!-- export-benchmark:end -->\noutro\n")
    results, table, profile_dir = tmp_path / "export.jsonl", tmp_path / "export.md", tmp_path / "p"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "export_benchmark.py"),
               "--preset", "st_2_64_digits",
               "--variants", "keras,keras+optimized_xla,litert-int8,onnx",
               "--rounds", "1", "--batch1_calls", "2", "--batch32_calls", "1",
               "--matmul_size", "128", "--allow_busy",  # the test suite keeps the CPUs busy
               "--json", str(results), "--table", str(table), "--doc", str(page),
               "--profile", str(profile_dir)]
    run = subprocess.run(command, env=subprocess_env(TF_CPP_MIN_LOG_LEVEL="3"),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    run_info, rows = records[0], {r["variant"]: r for r in records[1:]}
    assert run_info["kind"] == "run" and run_info["preset"] == "st_2_64_digits"
    assert sorted(rows) == ["keras", "keras+optimized_xla", "litert-int8", "onnx"]
    gflop, peaks = run_info["gflop_per_image"], run_info["peak_gflops"]
    assert rows["keras+optimized_xla"]["graph"] == "optimized_xla"
    for row in rows.values():
        peak = peaks["int8" if row["quantization"] == "int8" else "float32"]
        assert row["utilization_batch32"] == pytest.approx(
            row["batch32_images_per_s"] * gflop / peak, rel=2e-2)
        assert row["batch1_speedup_vs_keras"] == pytest.approx(
            rows["keras"]["batch1_latency_ms_median"] / row["batch1_latency_ms_median"], rel=1e-2)
    int8 = rows["litert-int8"]
    assert int8["int8_limit_ms"] == pytest.approx(1e3 * gflop / peaks["int8"], rel=1e-2)
    assert rows["keras+optimized_xla"]["top1_agreement_vs_keras"] == 1.0

    text = page.read_text()
    assert text.startswith("intro\n<!-- export-benchmark:begin -->\n") and "old" not in text
    assert text.endswith("<!-- export-benchmark:end -->\noutro\n")
    assert "| optimized_xla | float32 |" in text  # the runtime cell may say "keras (busy)"
    assert table.read_text().startswith("# Export benchmark: st_2_64_digits")

    profiles = json.loads((profile_dir / "profile.json").read_text())
    products = profiles["litert-int8"]["litert_products_batch1"]
    # The file's products, counted from its shapes, are the work counted
    # from the Keras model's layers (benchmarks/run.py), except that the file
    # computes the first convolution of the repeated image once, where the
    # dense-equivalent count has it at each of the T time steps.
    convs = [e for e in products["operators"] if e["op"] == "CONV_2D"]
    first = [e for e in convs if e["input_shape"][0] == 1]
    time_steps = {e["input_shape"][0] for e in convs} - {1}
    assert len(first) == 1 and len(time_steps) == 1
    dense_equivalent = products["macs"] + (time_steps.pop() - 1) * first[0]["macs"]
    assert 2 * dense_equivalent / 1e9 == pytest.approx(gflop, abs=5e-5)  # 4-decimal rounding
    assert {e["arithmetic"] for e in products["operators"] if e["op"] == "CONV_2D"} == {"int8"}
    tensorflow = profiles["keras"]["tensorflow_batch32"]["by_op_type"]
    assert {"Conv2D", "_FusedConv2D"} & {row["op_type"] for row in tensorflow}
    assert "keras+optimized_xla" not in profiles  # XLA has no per-operator times
    assert "onnx_batch32" in profiles["onnx"]
    assert "`litert-int8` batch 1, each product operator timed alone" in text
    assert "`keras` batch 32 (tensorflow profiler)" in text


def test_export_benchmark_writes_its_table_into_the_performance_guide(tmp_path, monkeypatch):
    """`--doc` alone targets the guide that shows the table, which holds one
    marked block; the replacement keeps the rest of a page byte for byte and
    refuses a page without (or with two) marked blocks. Fast: nothing is
    benchmarked."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
    import export_benchmark

    guide = os.path.join(REPO, "docs", "guides", "performance.md")
    assert export_benchmark.parse_args(["--doc"]).doc == guide
    assert export_benchmark.parse_args([]).doc is None
    text = open(guide, encoding="utf-8").read()
    assert text.count(export_benchmark.DOC_BEGIN) == 1 and text.count(export_benchmark.DOC_END) == 1
    assert text.index(export_benchmark.DOC_BEGIN) < text.index(export_benchmark.DOC_END)

    page = tmp_path / "page.md"
    page.write_text(f"intro\n{export_benchmark.DOC_BEGIN}\nold\n{export_benchmark.DOC_END}\noutro\n")
    export_benchmark.replace_doc_table(str(page), "# title\n\n| new | table |")
    assert page.read_text() == (f"intro\n{export_benchmark.DOC_BEGIN}\n| new | table |\n"
                                f"{export_benchmark.DOC_END}\noutro\n")
    for broken in ("no markers\n", f"{export_benchmark.DOC_BEGIN}\n{export_benchmark.DOC_BEGIN}\n"
                                     f"{export_benchmark.DOC_END}\n"):
        page.write_text(broken)
        with pytest.raises(SystemExit):
            export_benchmark.replace_doc_table(str(page), "# title\n\nx")
        assert page.read_text() == broken
    with pytest.raises(SystemExit):  # argparse: a missing target file
        export_benchmark.parse_args(["--doc", str(tmp_path / "missing.md")])
