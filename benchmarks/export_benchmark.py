"""Latency and throughput of Keras (TF graph), LiteRT and ONNX Runtime.

    python benchmarks/export_benchmark.py --json benchmarks/results/export.jsonl

Exports `--preset` (default st_2_256_cifar10, 2 blocks, width 256, T=4, 32x32
inputs) with `keras_spiking_tf.edge_export` to LiteRT (float32, float16,
dynamic-range int8, int8) and ONNX, checks each file against Keras on a few
images, then times on the CPU:

- batch-1 latency: median and 90th percentile over `--repeats` calls;
- batch-32 throughput: images per second from the median of
  `--throughput_repeats` calls.

Keras runs the model as one `tf.function` (graph mode, no XLA). A preset
without weights runs at random initialisation with BatchNorm statistics
calibrated on random images; the weights do not change the work done by any
of these runtimes (spikes are dense float tensors; no runtime skips zeros),
so the timings hold for trained weights of the same architecture.

Prints a table and appends one JSON line per runtime to `--json`.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from keras_spiking_tf.analysis import calibrate_batch_norm


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="st_2_256_cifar10")
    parser.add_argument("--json", default=None, help="append JSON lines here")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per runtime (default: all cores)")
    parser.add_argument("--repeats", type=int, default=30, help="batch-1 timed calls")
    parser.add_argument("--throughput_repeats", type=int, default=5, help="batch-32 timed calls")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--variants", default="keras,litert,litert-float16,litert-dynamic_int8,litert-int8,onnx",
        help="comma-separated: keras, litert[-QUANTIZATION], onnx",
    )
    parser.add_argument("--export_dir", default=None, help="keep the exported files here")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def time_calls(fn, batch, warmup, repeats):
    for _ in range(warmup):
        fn(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or os.cpu_count()
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras_spiking_tf
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export import load_exported

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
    batch1, batch32 = images[:1], images[:32]

    keras_fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *shape), tf.float32)],
        jit_compile=False,
    )
    context = {
        "preset": args.preset,
        "weights": "trained" if trained else "random init, BN calibrated on random images",
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "ai_edge_litert": _version("ai-edge-litert"),
            "onnxruntime": _version("onnxruntime"),
        },
    }
    rows = []
    export_dir = args.export_dir or tempfile.mkdtemp(prefix="export_benchmark_")
    os.makedirs(export_dir, exist_ok=True)
    for variant in args.variants.split(","):
        runtime, _, quantization = variant.partition("-")
        row = {"runtime": runtime, "quantization": quantization or None}
        if runtime == "keras":
            fn = lambda x: keras_fn(x).numpy()  # noqa: E731
            row["file_bytes"] = None
            row["top1_agreement_vs_keras"] = 1.0
        else:
            suffix = {"litert": ".tflite", "onnx": ".onnx"}[runtime]
            path = os.path.join(export_dir, f"{args.preset}_{variant}{suffix}")
            report = export(
                model, path, format=runtime, quantization=quantization or None,
                representative_images=raw if quantization == "int8" else None,
                verification_images=raw[:32],
            )
            row["file_bytes"] = report["file_bytes"]
            row["top1_agreement_vs_keras"] = report["top1_agreement"]
            row["max_abs_logit_diff_vs_keras"] = report["max_abs_logit_diff"]
            row["convert_seconds"] = report["convert_seconds"]
            fn = load_exported(path, num_threads=threads)
        latencies = time_calls(fn, batch1, args.warmup, args.repeats)
        batch_times = time_calls(fn, batch32, 1, args.throughput_repeats)
        row.update(
            {
                "batch1_latency_ms_median": 1e3 * statistics.median(latencies),
                "batch1_latency_ms_p90": 1e3 * float(np.percentile(latencies, 90)),
                "batch32_ms_median": 1e3 * statistics.median(batch_times),
                "batch32_images_per_s": 32 / statistics.median(batch_times),
                **context,
            }
        )
        rows.append(row)
        print(f"done {variant}", file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "a", encoding="utf-8") as file:
            for row in rows:
                file.write(json.dumps(row) + "\n")
    return rows


def table(rows):
    header = (
        "| runtime | quantization | file size | batch-1 latency median (p90) | "
        "batch-32 throughput | top-1 agreement vs Keras |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for row in rows:
        size = "-" if row["file_bytes"] is None else f"{row['file_bytes'] / 1e6:.2f} MB"
        lines.append(
            f"| {row['runtime']} | {row['quantization'] or 'float32'} | {size} | "
            f"{row['batch1_latency_ms_median']:.2f} ms ({row['batch1_latency_ms_p90']:.2f}) | "
            f"{row['batch32_images_per_s']:.0f} img/s | {row['top1_agreement_vs_keras']:.3f} |"
        )
    return "\n".join(lines)


def _version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
