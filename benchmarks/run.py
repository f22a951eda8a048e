"""Throughput benchmark of Spiking Transformer presets, as a ratio to the
machine's own matmul peak measured in the same process.

    python benchmarks/run.py --preset st_2_256_cifar10 --mode train,infer \
        --batch 32,64 --backend tensorflow,jax,torch --dtype float32,mixed_bfloat16 \
        --json benchmarks/results/my_machine.jsonl

Each measurement runs in its own subprocess (so `peak_rss_mb` is its own,
and the backend can differ) and prints one JSON object with: `name`,
`preset`, `backend`, `dtype`, `mode` (train/infer), `batch`, `time_steps`,
`compile` (TF: graph or xla), `img_per_s` (median over the timed steps after
warm-up), `gflop_per_img` (dense-equivalent forward FLOPs = 2 x MACs counted
from the model; training counts forward + backward = 3 x forward),
`peak_gflops` (this process's best measured matmul rate for the dtype),
`utilization` = img_per_s x gflop_per_img / peak_gflops, and `peak_rss_mb`.
Random-initialised models; the numbers do not depend on the weights.
"""

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time



def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="st_2_256_cifar10")
    parser.add_argument("--mode", default="train,infer", help="train, infer or both (comma list)")
    parser.add_argument("--batch", default="32", help="comma list of batch sizes")
    parser.add_argument("--backend", default="tensorflow", help="comma list: tensorflow, jax, torch")
    parser.add_argument("--dtype", default="float32", help="comma list: float32, mixed_bfloat16")
    parser.add_argument("--time_steps", default="", help="comma list of T (default: the preset's)")
    parser.add_argument("--compile", default="graph", help="TF only, comma list: graph, xla")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (>= 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--image_size", type=int, default=0, help="override the image size (tokens)")
    parser.add_argument("--matmul_size", type=int, default=2048, help="n of the n^3 peak matmul")
    parser.add_argument("--json", default=None, help="append JSON lines here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def matmul_peak_gflops(dtype, size=2048, repeats=10):
    """Best GFLOP/s of a size^3 matmul through the active Keras backend (the
    fastest of `repeats` timed products: a peak, not a typical rate)."""
    import keras
    import numpy as np

    compute_dtype = "bfloat16" if "bfloat16" in dtype else "float32"
    a = keras.ops.convert_to_tensor(np.random.rand(size, size), dtype=compute_dtype)
    b = keras.ops.convert_to_tensor(np.random.rand(size, size), dtype=compute_dtype)
    matmul = _compiled(lambda x, y: keras.ops.matmul(x, y))

    def run():  # read one element back, as float32 (NumPy has no bfloat16)
        keras.ops.convert_to_numpy(keras.ops.cast(matmul(a, b)[0, 0], "float32"))

    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def _compiled(function):
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=False)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


def _device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


def forward_gflop_per_image(model, images):
    """Dense-equivalent forward GFLOPs per image: 2 x counted MACs x T."""
    from keras_spiking_tf.analysis.operations import network_products

    products, time_steps = network_products(model, images[:1])
    return 2 * time_steps * sum(p.flops for p in products) / 1e9


class StepTimer:
    """Per-step wall times of `fit`/`predict`, synchronised on each step's
    result so asynchronous dispatch does not hide the device time."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.durations = []
                self._start = None

            def _begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def _end(self, batch, logs=None):
                value = (logs or {}).get("loss", (logs or {}).get("outputs"))
                keras.tree.map_structure(keras.ops.convert_to_numpy, value)
                self.durations.append(time.perf_counter() - self._start)

            on_train_batch_begin = on_predict_batch_begin = _begin
            on_train_batch_end = on_predict_batch_end = _end

        return _Timer()


def measure(args):
    import keras
    import numpy as np

    import keras_spiking_tf

    overrides = {"dtype": args.dtype}
    if args.time_steps:
        overrides["time_steps"] = int(args.time_steps)
    model = keras_spiking_tf.from_preset(args.preset, load_weights=False, **overrides)
    if args.image_size:
        config = model.backbone.get_config()
        config["image_shape"] = (args.image_size, args.image_size, config["image_shape"][-1])
        model = keras_spiking_tf.models.SpikingTransformerImageClassifier(
            backbone=keras_spiking_tf.models.SpikingTransformerBackbone.from_config(config),
            num_classes=model.num_classes,
        )
    # Measure the network on already-normalised inputs: KerasHub tasks would
    # otherwise run the image converter on the host inside every step.
    model.preprocessor = None
    batch = int(args.batch)
    shape = (batch, *model.backbone.image_shape)
    images = np.random.default_rng(0).normal(size=shape).astype("float32")
    labels = np.arange(batch) % model.num_classes
    gflop = forward_gflop_per_image(model, images)
    peak_before = matmul_peak_gflops(args.dtype, size=args.matmul_size)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=(args.compile == "xla") if keras.backend.backend() == "tensorflow" else "auto",
    )
    timer = StepTimer()
    steps = args.warmup + args.steps
    if args.mode == "train":
        gflop *= 3
        x = np.concatenate([images] * steps)
        y = np.concatenate([labels] * steps)
        # keras.Model's own fit/predict: KerasHub's pipeline versions route
        # arrays through tf.data or grain, which the measurement must not time.
        keras.Model.fit(model, x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0,
                        callbacks=[timer])
    else:
        x = np.concatenate([images] * steps)
        keras.Model.predict(model, x, batch_size=batch, verbose=0, callbacks=[timer])
    times = timer.durations[args.warmup :]
    img_per_s = batch / statistics.median(times)
    # The peak is measured before and after the model and the higher kept,
    # so a busy moment on a shared machine does not deflate it.
    peak = max(peak_before, matmul_peak_gflops(args.dtype, size=args.matmul_size))
    tokens = model.backbone.num_tokens
    compile_mode = args.compile if keras.backend.backend() == "tensorflow" else "default"
    return {
        "name": f"{args.preset}/{keras.backend.backend()}/{args.dtype}/{args.mode}/b{batch}"
        f"/T{model.backbone.time_steps}/N{tokens}/{compile_mode}",
        "preset": args.preset,
        "backend": keras.backend.backend(),
        "dtype": args.dtype,
        "mode": args.mode,
        "batch": batch,
        "time_steps": model.backbone.time_steps,
        "tokens": tokens,
        "compile": compile_mode,
        "img_per_s": round(img_per_s, 2),
        "step_ms_median": round(1000 * statistics.median(times), 1),
        "gflop_per_img": round(gflop, 4),
        "peak_gflops": round(peak, 1),
        "utilization": round(img_per_s * gflop / peak, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": os.cpu_count(),
        "device": _device_name(),
    }


def main():
    args = parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return
    if args.steps < 10:
        sys.exit("--steps must be >= 10 (the median is taken over the timed steps)")
    grid = itertools.product(
        args.backend.split(","), args.dtype.split(","), args.mode.split(","),
        args.batch.split(","), (args.time_steps or "").split(","), args.compile.split(","),
    )
    results = []
    header = f"{'backend':10s} {'dtype':15s} {'mode':5s} {'batch':>5s} {'T':>2s} {'N':>4s} {'compile':7s} {'img/s':>8s} {'GFLOP/img':>9s} {'peak':>7s} {'util':>6s} {'RSS MB':>7s}"
    print(header)
    for backend, dtype, mode, batch, steps, compile_mode in grid:
        if backend != "tensorflow" and compile_mode != args.compile.split(",")[0]:
            continue  # the compile choice is TF's only
        command = [sys.executable, os.path.abspath(__file__), "--child", "--preset", args.preset,
                   "--mode", mode, "--batch", batch, "--dtype", dtype, "--compile", compile_mode,
                   "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--time_steps", steps, "--image_size", str(args.image_size),
                   "--matmul_size", str(args.matmul_size)]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if run.returncode != 0 or not lines:
            print(f"{backend} {dtype} {mode} b{batch}: FAILED\n{run.stderr[-2000:]}")
            continue
        result = json.loads(lines[-1][len("RESULT "):])
        result["command"] = " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])
        results.append(result)
        print(f"{result['backend']:10s} {dtype:15s} {mode:5s} {result['batch']:5d} {result['time_steps']:2d} "
              f"{result['tokens']:4d} {result['compile']:7s} {result['img_per_s']:8.1f} "
              f"{result['gflop_per_img']:9.3f} {result['peak_gflops']:7.1f} "
              f"{result['utilization']:6.3f} {result['peak_rss_mb']:7.0f}", flush=True)
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "a", encoding="utf-8") as file:
                file.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
