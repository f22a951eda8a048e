"""Latency and throughput of Keras, LiteRT and ONNX Runtime, timed so that
the numbers hold: on a quiet machine, interleaved, against the peak of the
same run.

    python benchmarks/export_benchmark.py --json benchmarks/results/export.jsonl \\
        --table benchmarks/results/export.md --doc --profile benchmarks/results/profile

What it does:

1. **Refuses a busy machine** before any work: other processes' share of
   the CPUs over 3 s (kernel CPU accounting, `machine_load.py`; the load
   average would count this benchmark's own threads) must be at most
   `--max_other_cpu`. `--allow_busy` runs anyway and marks the run busy.
   The share is measured again around every timed segment and recorded.
2. Builds `--preset` (random init with BatchNorm statistics calibrated on
   random images unless it ships weights; the work of these runtimes does
   not depend on the weights: spikes are dense float tensors) and exports
   it with `keras_spiking_tf.edge_export.export`, each variant verified
   against Keras on 32 random images.
3. Starts **one process per variant** (`runtime[-quantization][+graph]`,
   `graph` = `reference`, the model as trained, or `optimized`,
   `optimize_for_inference`'s copy, or for Keras `xla`, the reference model
   compiled whole by XLA, what `model.compile(jit_compile=True)` makes
   `predict` run, and `optimized_xla`, the inference graph compiled whole
   by XLA, what `optimize_for_inference(model).predict` runs on
   TensorFlow; Keras defaults to `reference`, as one `tf.function`
   without XLA, what `predict` runs on TensorFlow by default, the exported
   files to `optimized`, what `export` writes). Each process loads
   its runtime with `--threads` threads and measures that runtime's own
   matmul peak: TensorFlow's for Keras, LiteRT's float32 and int8
   `FULLY_CONNECTED`, ONNX Runtime's `MatMul` and `MatMulInteger`
   (`--matmul_size` cubed, fastest of 10).
4. Times **round-robin**: `--rounds` rounds, each visiting every process
   once (in a rotated order) for its peak, `--batch1_calls` batch-1 calls
   and `--batch32_calls` batch-32 calls, while the other processes wait.
   A change in the machine's speed thus hits every variant alike.
5. Reports per variant the batch-1 latency (median and 90th percentile of
   all calls), batch-32 throughput (median call), the ratio to Keras, and
   the utilisation: img/s x GFLOP/img / peak (float32 peak for float
   graphs, int8 peak for int8 ones; each the best over the run's
   processes, median over rounds). GFLOP/img is the dense-equivalent work
   (2 x MACs of every conv, dense and attention product, x T).
6. `--profile DIR`: after the timing, each exported file in its own
   runtime (`keras_spiking_tf.edge_export.profile`): LiteRT's delegation
   (partitions, operators not run by XNNPACK, QUANTIZE/DEQUANTIZE count)
   and its products timed alone at batch 1 (the floor under the file's
   latency), ONNX Runtime's per-operator profile at batch 1 and 32, and
   TensorFlow's for the Keras variants without XLA at batch 32.

Appends one JSON line per variant and one for the run to `--json`,
writes the Markdown table to `--table` and, with `--doc`, into the
documentation page that shows it (`DOC_PAGE`, docs/guides/performance.md;
`--doc PATH` another file) between the markers
`<!-- export-benchmark:begin -->` and `<!-- export-benchmark:end -->`.
"""

import argparse
import functools
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from keras_spiking_tf.atomic_directory import write_text_atomically
from machine_load import OtherCpuMeter
from machine_load import quiet_check

DEFAULT_VARIANTS = (
    "keras,keras+optimized,keras+xla,keras+optimized_xla,litert+reference,litert,"
    "litert-int8+reference,litert-int8,"
    "litert-dynamic_int8,onnx+reference,onnx"
)
# Operator types of the TensorFlow and ONNX Runtime profiles that compute
# the products counted as FLOPs (convolutions, dense and attention products).
PRODUCT_OP_TYPES = ("Conv2D", "_FusedConv2D", "MatMul", "_FusedMatMul", "BatchMatMulV2",
                    "BatchMatMulV3", "Conv", "FusedConv", "Gemm", "FusedGemm", "FusedMatMul",
                    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger")
DOC_BEGIN = "<!-- export-benchmark:begin -->"
DOC_END = "<!-- export-benchmark:end -->"
# The documentation page whose marked block `--doc` replaces by default.
DOC_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "guides", "performance.md")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="st_2_256_cifar10")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated runtime[-quantization][+reference|+optimized]")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads per runtime")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch1_calls", type=int, default=10, help="per round")
    parser.add_argument("--batch32_calls", type=int, default=2, help="per round")
    parser.add_argument("--matmul_size", type=int, default=1024, help="n of the n^3 peak matmul")
    parser.add_argument("--max_other_cpu", type=float, default=0.10,
                        help="largest share of the CPUs other processes may use")
    parser.add_argument("--allow_busy", action="store_true",
                        help="run on a busy machine and mark the results busy")
    parser.add_argument("--json", default=None, help="append JSON lines here")
    parser.add_argument("--table", default=None, help="write the Markdown table here")
    parser.add_argument("--doc", nargs="?", const=DOC_PAGE, default=None,
                        help="replace the marked table in this file (without a value: "
                             "docs/guides/performance.md)")
    parser.add_argument("--profile", default=None, help="write per-operator profiles here")
    parser.add_argument("--work_dir", default=None, help="keep the exported files here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.variants = [parse_variant(v) for v in args.variants.split(",")]
    for name in ("rounds", "batch1_calls", "batch32_calls", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.doc and not os.path.isfile(args.doc):
        parser.error(f"--doc {args.doc}: no such file")
    return args


def parse_variant(text):
    """`"litert-int8+reference"` -> dict(runtime, quantization, graph, xla, name)."""
    body, _, graph = text.strip().partition("+")
    runtime, _, quantization = body.partition("-")
    if runtime not in ("keras", "litert", "onnx"):
        raise SystemExit(f"error: unknown runtime '{runtime}' in variant '{text}' "
                         "(keras, litert, onnx)")
    if quantization and runtime != "litert":
        raise SystemExit(f"error: variant '{text}': only litert takes a quantization")
    if quantization not in ("", "float16", "dynamic_int8", "int8"):
        raise SystemExit(f"error: unknown quantization '{quantization}' in '{text}'")
    graph = graph or ("reference" if runtime == "keras" else "optimized")
    xla = graph in ("xla", "optimized_xla")
    if graph not in ("reference", "optimized", "xla", "optimized_xla") or (
            xla and runtime != "keras"):
        raise SystemExit(f"error: graph must be reference or optimized (or xla or "
                         f"optimized_xla for keras) in '{text}'")
    return {"runtime": runtime, "quantization": quantization or None, "graph": graph,
            "xla": xla, "name": text.strip()}


# ----------------------------------------------------------------- workers


def worker_main(connection, variant, files, threads):
    """One variant in its own process: load, measure, answer requests."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    images = np.load(files["images"], allow_pickle=False)
    if variant["runtime"] == "keras":
        import keras_spiking_tf
        from run import matmul_peak_gflops

        model = keras.saving.load_model(files["model"], safe_mode=True)
        if variant["graph"].startswith("optimized"):
            model = keras_spiking_tf.optimize_for_inference(model, jit_compile=variant["xla"])
        else:
            model.jit_compile = variant["xla"]
        # What `predict` runs per batch, without its data-adapter overhead.
        graph = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)],
            jit_compile=model.jit_compile,
        )
        run = lambda x: graph(x).numpy()  # noqa: E731
        peaks = {"float32": functools.partial(matmul_peak_gflops, "float32",
                                              size=files["matmul_size"])}
    else:
        from keras_spiking_tf.edge_export import load_exported

        run = load_exported(files["export"], num_threads=threads)
        if variant["runtime"] == "litert":
            peaks = {"float32": litert_peak(files["litert_fc_float32"], threads),
                     "int8": litert_peak(files["litert_fc_int8"], threads)}
        else:
            peaks = {"float32": onnx_peak(files["onnx_matmul_float32"], threads),
                     "int8": onnx_peak(files["onnx_matmul_int8"], threads)}
    batches = {1: images[:1], 32: images[:32]}
    for batch in batches.values():  # warm-up: plans memory, resizes tensors
        run(batch)
        run(batch)
    connection.send({"outputs": run(batches[32]), "pid": os.getpid()})
    while True:
        request = connection.recv()
        if request == "stop":
            return
        if request == "peaks":
            connection.send({name: measure() for name, measure in peaks.items()})
        else:
            batch, calls = request
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                run(batches[batch])
                times.append(time.perf_counter() - start)
            connection.send(times)


def best_of(function, repeats=10):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def litert_peak(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    size = int(detail["shape"][0])
    rng = np.random.default_rng(0)
    if detail["dtype"] == np.int8:
        value = rng.integers(-127, 128, detail["shape"], dtype=np.int8)
    else:
        value = rng.standard_normal(detail["shape"], dtype=np.float32)
    interpreter.set_tensor(detail["index"], value)
    return lambda: 2 * size**3 / best_of(interpreter.invoke) / 1e9


def onnx_peak(path, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    detail = session.get_inputs()[0]
    size = int(detail.shape[0])
    rng = np.random.default_rng(0)
    if detail.type == "tensor(uint8)":
        value = rng.integers(0, 256, detail.shape, dtype=np.uint8)
    else:
        value = rng.standard_normal(detail.shape, dtype=np.float32)
    feed = {detail.name: value}
    return lambda: 2 * size**3 / best_of(lambda: session.run(None, feed)) / 1e9


def write_peak_kernels(directory, size, seed):
    """LiteRT and ONNX files of one `size`^3 matmul, float32 and int8."""
    import onnx
    import tensorflow as tf
    from onnx import TensorProto
    from onnx import helper
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((size, size), dtype=np.float32)
    files = {}

    @tf.function(input_signature=[tf.TensorSpec((size, size), tf.float32)])
    def matmul(x):
        return tf.matmul(x, weights)

    for kind in ("float32", "int8"):
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [matmul.get_concrete_function()], matmul
        )
        if kind == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [rng.standard_normal((size, size), dtype=np.float32)] for _ in range(2)
            )
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        path = os.path.join(directory, f"matmul_{kind}.tflite")
        with open(path, "wb") as file:
            file.write(converter.convert())
        files[f"litert_fc_{kind}"] = path

    for kind, node, a_type, b in (
        ("float32", "MatMul", TensorProto.FLOAT, weights),
        ("int8", "MatMulInteger", TensorProto.UINT8,
         rng.integers(-127, 128, (size, size), dtype=np.int8)),
    ):
        out_type = TensorProto.FLOAT if kind == "float32" else TensorProto.INT32
        graph = helper.make_graph(
            [helper.make_node(node, ["a", "b"], ["c"])], f"matmul_{kind}",
            [helper.make_tensor_value_info("a", a_type, [size, size])],
            [helper.make_tensor_value_info("c", out_type, [size, size])],
            initializer=[numpy_helper.from_array(b, "b")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        path = os.path.join(directory, f"matmul_{kind}.onnx")
        onnx.save(model, path)
        files[f"onnx_matmul_{kind}"] = path
    return files


# ------------------------------------------------------------ coordinator


def progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    other, load = quiet_check(3.0)
    busy = other > args.max_other_cpu
    if busy and not args.allow_busy:
        raise SystemExit(
            f"error: the machine is busy: other processes used {100 * other:.0f}% of the "
            f"{os.cpu_count()} CPUs over 3 s (1-minute load average {load:.2f}); timings "
            f"now would not hold. Wait until it is quiet (at most "
            f"{100 * args.max_other_cpu:.0f}%, --max_other_cpu) or pass --allow_busy to "
            "run anyway with the results marked busy."
        )
    progress(f"machine quiet enough: other processes {100 * other:.1f}% of the CPUs, "
             f"load {load:.2f}")
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="export_benchmark_")
    os.makedirs(work_dir, exist_ok=True)

    import keras
    import tensorflow as tf

    import keras_spiking_tf
    from keras_spiking_tf.analysis import calibrate_batch_norm
    from keras_spiking_tf.edge_export import export
    from run import forward_gflop_per_image

    keras.utils.set_random_seed(args.seed)
    presets = keras_spiking_tf.list_presets()
    trained = args.preset not in presets or presets[args.preset]["weights_available"]
    model = keras_spiking_tf.from_preset(args.preset, load_weights=trained)
    rng = np.random.default_rng(args.seed)
    shape = tuple(model.backbone.image_shape)
    raw = rng.integers(0, 256, (64, *shape)).astype("uint8")
    images = np.asarray(model.preprocessor(raw.astype("float32")), dtype="float32")
    if not trained:
        calibrate_batch_norm(model, images)
    gflop = forward_gflop_per_image(model, images)
    files = {"images": os.path.join(work_dir, "images.npy"),
             "model": os.path.join(work_dir, "model.keras"), "matmul_size": args.matmul_size}
    np.save(files["images"], images)
    model.save(files["model"])
    files.update(write_peak_kernels(work_dir, args.matmul_size, args.seed))

    reports = {}
    for variant in args.variants:
        if variant["runtime"] == "keras":
            continue
        suffix = {"litert": ".tflite", "onnx": ".onnx"}[variant["runtime"]]
        path = os.path.join(work_dir, variant["name"].replace("+", "_") + suffix)
        progress(f"exporting {variant['name']}")
        reports[variant["name"]] = export(
            model, path, format=variant["runtime"], quantization=variant["quantization"],
            representative_images=raw if variant["quantization"] == "int8" else None,
            verification_images=raw[:32], optimize_graph=variant["graph"] == "optimized",
        )
    del model
    keras.backend.clear_session()

    context = multiprocessing.get_context("spawn")
    workers = {}
    meter = OtherCpuMeter(own_pids=[os.getpid()])
    for variant in args.variants:
        progress(f"starting {variant['name']}")
        parent, child = context.Pipe()
        variant_files = dict(files, export=reports[variant["name"]]["path"]
                             if variant["name"] in reports else None)
        process = context.Process(target=worker_main,
                                  args=(child, variant, variant_files, args.threads))
        process.start()
        ready = parent.recv()
        meter.add(ready["pid"])
        workers[variant["name"]] = (process, parent, ready["outputs"])

    other, load = quiet_check(3.0, own_pids=meter.own_pids)
    if other > args.max_other_cpu and not args.allow_busy:
        stop(workers)
        raise SystemExit(f"error: the machine became busy ({100 * other:.0f}% of the CPUs "
                         "used by other processes) before the timing; nothing was timed.")
    samples = {name: {"batch1": [], "batch32": [], "peaks": [], "other_cpu": []}
               for name in workers}
    names = list(workers)
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            _, connection, _ = workers[name]
            meter.start()
            connection.send("peaks")
            samples[name]["peaks"].append(connection.recv())
            connection.send((1, args.batch1_calls))
            samples[name]["batch1"].extend(connection.recv())
            connection.send((32, args.batch32_calls))
            samples[name]["batch32"].extend(connection.recv())
            samples[name]["other_cpu"].append(meter.stop())
        progress(f"round {round_index + 1}/{args.rounds} done")
    reference = workers.get("keras", (None, None, None))[2]
    stop(workers)

    peaks = run_peaks(samples)
    run_info = {
        "kind": "run",
        "preset": args.preset,
        "weights": "trained" if trained else "random init, BN calibrated on random images",
        "gflop_per_image": round(gflop, 4),
        "threads": args.threads,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": round(load, 2),
        "other_cpu_at_start": round(other, 4),
        "other_cpu_max_during_timing": round(
            max(max(s["other_cpu"]) for s in samples.values()), 4),
        "busy": busy or any(max(s["other_cpu"]) > args.max_other_cpu for s in samples.values()),
        "peak_gflops": peaks,
        "rounds": args.rounds,
        "command": "python benchmarks/export_benchmark.py " + " ".join(sys.argv[1:] if argv is None
                                                                       else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": versions(tf, keras),
    }
    rows = [row_of(variant, samples[variant["name"]], reports.get(variant["name"]),
                   workers[variant["name"]][2], reference, gflop, peaks, args.max_other_cpu)
            for variant in args.variants]
    keras_row = next((row for row in rows if row["variant"] == "keras"), None)
    for row in rows:
        if keras_row:
            row["batch1_speedup_vs_keras"] = round(
                keras_row["batch1_latency_ms_median"] / row["batch1_latency_ms_median"], 3)
            row["batch32_speedup_vs_keras"] = round(
                row["batch32_images_per_s"] / keras_row["batch32_images_per_s"], 3)
    profiles = None
    if args.profile:
        profiles = write_profiles(args.profile, reports, images, args.threads, files["model"],
                                  [v for v in args.variants if v["runtime"] == "keras"])
    text = markdown(run_info, rows, profiles)
    print(text)
    if args.json:
        append_lines(args.json, [run_info, *({**row, "run_date": run_info["date"]}
                                             for row in rows)])
    if args.table:
        write_text_atomically(args.table, text + "\n")
    if args.doc:
        replace_doc_table(args.doc, text)
    return run_info, rows


def stop(workers):
    for process, connection, _ in workers.values():
        connection.send("stop")
        process.join(timeout=30)


def run_peaks(samples):
    """Median over rounds of the best process's peak, per dtype."""
    peaks = {}
    for dtype in ("float32", "int8"):
        per_round = []
        rounds = len(next(iter(samples.values()))["peaks"])
        for r in range(rounds):
            values = [s["peaks"][r][dtype] for s in samples.values() if dtype in s["peaks"][r]]
            if values:
                per_round.append(max(values))
        if per_round:
            peaks[dtype] = round(statistics.median(per_round), 1)
    by_process = {
        name: {dtype: round(statistics.median(p[dtype] for p in s["peaks"]), 1)
               for dtype in s["peaks"][0]}
        for name, s in samples.items()
    }
    return {**peaks, "by_process": by_process}


def row_of(variant, sample, report, outputs, reference, gflop, peaks, max_other_cpu):
    batch1 = np.asarray(sample["batch1"]) * 1e3
    batch32 = statistics.median(sample["batch32"])
    int8 = variant["quantization"] == "int8"
    peak = peaks["int8" if int8 else "float32"]
    row = {
        "kind": "variant",
        "variant": variant["name"],
        "runtime": variant["runtime"],
        "quantization": variant["quantization"],
        "graph": variant["graph"],
        "file_bytes": report["file_bytes"] if report else None,
        "batch1_latency_ms_median": round(float(np.median(batch1)), 3),
        "batch1_latency_ms_p90": round(float(np.percentile(batch1, 90)), 3),
        "batch1_round_medians_ms": [
            round(float(np.median(batch1[i: i + len(batch1) // len(sample["peaks"])])), 3)
            for i in range(0, len(batch1), len(batch1) // len(sample["peaks"]))],
        "batch32_ms_median": round(1e3 * batch32, 2),
        "batch32_images_per_s": round(32 / batch32, 2),
        "utilization_batch32": round(32 / batch32 * gflop / peak, 3),
        "utilization_peak": "int8" if int8 else "float32",
        "other_cpu_max": round(max(sample["other_cpu"]), 4),
        "busy": max(sample["other_cpu"]) > max_other_cpu,
    }
    if reference is not None:
        row["top1_agreement_vs_keras"] = float(np.mean(
            np.argmax(outputs, -1) == np.argmax(reference, -1)))
        row["max_abs_logit_diff_vs_keras"] = float(np.max(np.abs(outputs - reference)))
    if int8:
        limit_ms = 1e3 * gflop / peaks["int8"]
        row["int8_limit_ms"] = round(limit_ms, 3)
        row["batch1_over_int8_limit"] = round(row["batch1_latency_ms_median"] / limit_ms, 2)
    if report:
        row["convert_seconds"] = report["convert_seconds"]
    return row


def write_profiles(directory, reports, images, threads, model_path, keras_variants):
    import keras

    import keras_spiking_tf
    from keras_spiking_tf.edge_export.profile import litert_delegation
    from keras_spiking_tf.edge_export.profile import litert_product_profile
    from keras_spiking_tf.edge_export.profile import onnx_operator_profile
    from keras_spiking_tf.edge_export.profile import tensorflow_operator_profile

    os.makedirs(directory, exist_ok=True)
    profiles = {}
    for variant in keras_variants:
        if variant["xla"]:
            continue  # XLA's fused kernels have no per-operator times here
        progress(f"profiling {variant['name']}")
        model = keras.saving.load_model(model_path, safe_mode=True)
        if variant["graph"] == "optimized":
            model = keras_spiking_tf.optimize_for_inference(model)
        profiles[variant["name"]] = {
            "tensorflow_batch32": tensorflow_operator_profile(model, images[:32],
                                                              num_threads=threads)}
    for name, report in reports.items():
        progress(f"profiling {name}")
        if report["format"] == "litert":
            profiles[name] = {
                "litert_delegation": litert_delegation(report["path"], threads),
                "litert_products_batch1": litert_product_profile(
                    report["path"], batch_size=1, num_threads=threads),
            }
        else:
            profiles[name] = {
                f"onnx_batch{batch}": onnx_operator_profile(report["path"], images[:batch],
                                                            num_threads=threads)
                for batch in (1, 32)
            }
    write_text_atomically(os.path.join(directory, "profile.json"),
                     json.dumps(profiles, indent=1) + "\n")
    return profiles


# ---------------------------------------------------------------- output


def markdown(run, rows, profiles):
    peaks = run["peak_gflops"]
    lines = [
        f"# Export benchmark: {run['preset']} ({run['weights']}), CPU",
        "",
        "Command (from the repository root; JSON lines in `benchmarks/results/export.jsonl`):",
        "",
        f"    {run['command']}",
        "",
        f"Run {run['date']} on {run['cpu']} ({run['cpu_count']} cores), {run['threads']} "
        f"threads per runtime, {run['rounds']} interleaved rounds. Machine "
        f"{'**BUSY**' if run['busy'] else 'quiet'}: other processes used "
        f"{100 * run['other_cpu_at_start']:.1f}% of the CPUs at the start (load average "
        f"{run['load_average_1min_at_start']}) and at most "
        f"{100 * run['other_cpu_max_during_timing']:.1f}% during any timed segment. "
        f"Peaks in the same run: float32 {peaks['float32']:.0f} GFLOP/s, int8 "
        f"{peaks.get('int8', float('nan')):.0f} GOP/s. Work: {run['gflop_per_image']:.2f} "
        f"GFLOP per image. "
        + ", ".join(f"{k} {v}" for k, v in run["versions"].items()) + ".",
        "",
        "| runtime | graph | quantization | file | batch-1 latency median (p90) | vs Keras | "
        "batch-32 throughput | vs Keras | utilisation | top-1 agreement, max \\|Δ\\| vs Keras |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        size = "-" if row["file_bytes"] is None else f"{row['file_bytes'] / 1e6:.2f} MB"
        agreement = ("-" if "top1_agreement_vs_keras" not in row else
                     f"{row['top1_agreement_vs_keras']:.3f}, "
                     f"{row['max_abs_logit_diff_vs_keras']:.2g}")
        lines.append(
            f"| {row['runtime']}{' (busy)' if row['busy'] else ''} | {row['graph']} | "
            f"{row['quantization'] or 'float32'} | {size} | "
            f"{row['batch1_latency_ms_median']:.2f} ms ({row['batch1_latency_ms_p90']:.2f}) | "
            f"{row.get('batch1_speedup_vs_keras', float('nan')):.2f}× | "
            f"{row['batch32_images_per_s']:.1f} img/s | "
            f"{row.get('batch32_speedup_vs_keras', float('nan')):.2f}× | "
            f"{row['utilization_batch32']:.2f} of {row['utilization_peak']} |"
            f" {agreement} |"
        )
    if profiles:
        lines += ["", "Per-operator profile (`--profile`, `profile.json`):", ""]
        for name, profile in profiles.items():
            if "litert_delegation" in profile:
                d = profile["litert_delegation"]
                outside = ", ".join(f"{op} ×{n}" for op, n in d["not_delegated"].items()) or "none"
                lines.append(
                    f"- `{name}`: {d['operators']} operators, {d['partitions']} XNNPACK "
                    f"partition(s), {d['delegated']} delegated; outside the delegate: "
                    f"{outside}; QUANTIZE {d['quantize']}, DEQUANTIZE {d['dequantize']}.")
                lines.append(products_line(name, profile["litert_products_batch1"]))
            else:
                for key, p in profile.items():
                    runtime, batch = key.split("_batch")
                    top = ", ".join(f"{r['op_type']} {100 * r['share']:.0f}%"
                                    for r in p["by_op_type"][:6])
                    products = sum(r["share"] for r in p["by_op_type"]
                                   if r["op_type"] in PRODUCT_OP_TYPES)
                    lines.append(f"- `{name}` batch {batch} ({runtime} profiler): "
                                 f"{p['total_ms']:.1f} ms in operators, products "
                                 f"{100 * products:.0f}%; {top}.")
    return "\n".join(lines)


def products_line(name, profile):
    """One line of `litert_product_profile`'s result: the products' floor."""
    slowest = []
    for entry in profile["operators"][:4]:
        shape = "×".join(map(str, entry["input_shape"]))
        times = f" ×{entry['count']}" if entry["count"] > 1 else ""
        slowest.append(f"{entry['op']} {entry['arithmetic']} {shape}→"
                       f"{entry['output_shape'][-1]}{times} {entry['ms'] * entry['count']:.2f} ms "
                       f"at {entry['gops']:.0f} GOP/s")
    return (f"- `{name}` batch 1, each product operator timed alone: products "
            f"{profile['products_ms']:.2f} ms of the file's {profile['file_ms']:.2f} ms "
            f"({100 * profile['products_share']:.0f}%), {2 * profile['macs'] / 1e9:.2f} "
            f"GFLOP; slowest: {'; '.join(slowest)}.")


def append_lines(path, records):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as file:  # one write: whole lines or none
        file.write("".join(json.dumps(record) + "\n" for record in records))


def replace_doc_table(path, text):
    """Replaces what lies between the markers in the file `path` with `text`
    (less its title line); the rest of the file stays as it is."""
    with open(path, encoding="utf-8") as file:
        page = file.read()
    if page.count(DOC_BEGIN) != 1 or page.count(DOC_END) != 1:
        raise SystemExit(f"error: {path} needs exactly one {DOC_BEGIN} ... {DOC_END} block")
    head, rest = page.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    body = text.split("\n", 2)[2]  # without the title
    write_text_atomically(path, f"{head}{DOC_BEGIN}\n{body}\n{DOC_END}{tail}")


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(tf, keras):
    from importlib import metadata

    found = {"tensorflow": tf.__version__, "keras": keras.__version__}
    for name in ("ai-edge-litert", "onnxruntime", "tf2onnx"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


if __name__ == "__main__":
    main()
