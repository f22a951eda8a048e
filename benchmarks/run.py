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
`utilization` = img_per_s x gflop_per_img / peak_gflops, `peak_rss_mb`
(the host process's peak resident memory) and `peak_device_mb`: the
accelerator's peak memory over the whole measurement process (model,
optimizer state, steps and the peak matmul's operands), read where the
backend keeps it and named in `device_memory_source`:
`tf.config.experimental.get_memory_info('GPU:0')['peak']` (TensorFlow),
`jax.devices()[0].memory_stats()['peak_bytes_in_use']` (JAX),
`torch.cuda.max_memory_allocated()` (PyTorch); null on a CPU, where
`peak_rss_mb` is the memory figure. `device_limit_mb` is what the backend
may allocate (torch: the card's memory; JAX: its allocator's limit; TF:
null). Every record has `status` "ok"; a measurement that did not run is
recorded with `status` "oom", "failed", "timeout" or "skipped" and a
`reason`.

`--batch max` (alone or in the list, e.g. `--batch 64,max`) searches for the
largest batch that fits: each probe is a whole measurement in its own
subprocess, so an out-of-memory error (recognised for all three backends, or
the kernel killing the process) cannot poison the next one. It starts from
the largest fixed batch of the same configuration measured in this run or
already in `--json` (else `--max_batch_start`); with a device memory reading
it predicts the largest batch from peak memory linear in the batch (first
from one point taking all memory as per-image, then from the two largest
that ran), else it doubles; after an out-of-memory error it bisects. It
stops at `--max_batch_cap`, after `--max_batch_probes` probes, when the
bracket is one `--max_batch_step` wide, or when the time budget left
(`--deadline`) would not hold another probe. The largest batch that ran is
recorded with `batch_role` "max" and the probes in `batch_search`.

`--deadline` (seconds since the epoch) and `--timeout` bound each
measurement's subprocess (killed with its process group); a measurement that
no longer fits is recorded as skipped, so the JSON lines written so far stay
valid when a time budget runs out (benchmarks/device_check.sh).
Random-initialised models; the numbers do not depend on the weights.
"""

import argparse
import importlib.util
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time



def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="st_2_256_cifar10")
    parser.add_argument("--mode", default="train,infer", help="train, infer or both (comma list)")
    parser.add_argument("--batch", default="32",
                        help="comma list of batch sizes; 'max' searches the largest that fits")
    parser.add_argument("--backend", default="tensorflow", help="comma list: tensorflow, jax, torch")
    parser.add_argument("--dtype", default="float32", help="comma list: float32, mixed_bfloat16")
    parser.add_argument("--time_steps", default="", help="comma list of T (default: the preset's)")
    parser.add_argument("--compile", default="graph", help="TF only, comma list: graph, xla")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (>= 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--image_size", type=int, default=0, help="override the image size (tokens)")
    parser.add_argument("--matmul_size", type=int, default=2048, help="n of the n^3 peak matmul")
    parser.add_argument("--json", default=None, help="append JSON lines here")
    parser.add_argument("--max_batch_start", type=int, default=64,
                        help="first probe of --batch max when no fixed batch of the "
                             "configuration has run")
    parser.add_argument("--max_batch_step", type=int, default=0,
                        help="granularity of the max-batch search (default: its start batch)")
    parser.add_argument("--max_batch_cap", type=int, default=4096, help="never probe above this")
    parser.add_argument("--max_batch_probes", type=int, default=4, help="probes per search")
    parser.add_argument("--memory_fill", type=float, default=0.9,
                        help="fraction of the device memory limit a predicted batch may fill")
    parser.add_argument("--timeout", type=float, default=0,
                        help="seconds per measurement subprocess (0: none)")
    parser.add_argument("--deadline", type=float, default=0,
                        help="wall-clock time (s since the epoch) by which every measurement "
                             "must have ended (0: none)")
    parser.add_argument("--min_measure_s", type=float, default=20,
                        help="do not start a measurement with less time than this left")
    parser.add_argument("--require_gpu", action="store_true",
                        help="record a measurement as skipped where its backend sees no GPU "
                             "(instead of running it on the CPU)")
    parser.add_argument("--no_header", action="store_true", help="print no table header")
    parser.add_argument("--forward_gflop", type=float, default=0, help=argparse.SUPPRESS)
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
    if not gpus:
        return "cpu"
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


def _sees_gpu():
    """Whether the active Keras backend runs on a GPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def device_memory():
    """The accelerator's peak memory of this process so far, in MB, the
    backend's allocation limit in MB (or None) and where the peak was read;
    (None, None, None) on a CPU (the host's peak is `peak_rss_mb`)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() if jax.default_backend() == "gpu" else None
        if not stats or "peak_bytes_in_use" not in stats:
            return None, None, None
        limit = stats.get("bytes_limit")
        return (stats["peak_bytes_in_use"] / 2**20, limit / 2**20 if limit else None,
                "jax.devices()[0].memory_stats()['peak_bytes_in_use']")
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None, None, None
        return (torch.cuda.max_memory_allocated() / 2**20,
                torch.cuda.get_device_properties(0).total_memory / 2**20,
                "torch.cuda.max_memory_allocated()")
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None, None, None
    return (tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, None,
            "tf.config.experimental.get_memory_info('GPU:0')['peak']")


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

    if args.require_gpu and not _sees_gpu():
        return None
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
    # Counting the work traces the model (about a minute for st_8_512 on a
    # CPU): a parent that knows it from an earlier measurement of the same
    # preset, T and image size passes it on.
    gflop = args.forward_gflop or forward_gflop_per_image(model, images)
    forward_gflop = gflop
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
    peak_device_mb, device_limit_mb, memory_source = device_memory()
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
        "time_steps_override": int(args.time_steps) if args.time_steps else None,
        "image_size": args.image_size or None,
        "compile": compile_mode,
        "img_per_s": round(img_per_s, 2),
        "step_ms_median": round(1000 * statistics.median(times), 1),
        "gflop_per_img": round(gflop, 4),
        "forward_gflop_per_img": forward_gflop,
        "gflop_counted": not args.forward_gflop,
        "peak_gflops": round(peak, 1),
        "utilization": round(img_per_s * gflop / peak, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_device_mb": None if peak_device_mb is None else round(peak_device_mb, 1),
        "device_limit_mb": None if device_limit_mb is None else round(device_limit_mb, 1),
        "device_memory_source": memory_source,
        "threads": os.cpu_count(),
        "device": _device_name(),
        "status": "ok",
    }


# What the three backends (and the C++ runtime under them) print when the
# device or the host runs out of memory.
OOM_PATTERN = re.compile(
    r"out of memory|RESOURCE_EXHAUSTED|ResourceExhaustedError|OOM when allocating|"
    r"OutOfMemoryError|std::bad_alloc|MemoryError|failed to allocate", re.IGNORECASE)


def classify_failure(returncode, output):
    """("oom" or "failed", reason) for a measurement subprocess that did not
    print a result: an out-of-memory message of TensorFlow, JAX/XLA, PyTorch
    or the C++ runtime, or a SIGKILL we did not send (the kernel's OOM
    killer), is "oom"; anything else "failed"."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if OOM_PATTERN.search(line):
            return "oom", line[:300]
    if returncode == -signal.SIGKILL:
        return "oom", "killed by SIGKILL (the kernel's out-of-memory killer?)"
    return "failed", (lines[-1][:300] if lines else f"exit status {returncode}")


def next_search_batch(tried, step, cap, limit_mb=None, fill=0.9):
    """The next batch for the max-batch search, or None, and why.

    `tried` holds the probes so far ({"batch", "status", "peak_device_mb"}),
    at least one with status "ok". After a failure, bisect between the
    largest batch that ran and the smallest that did not, to `step`.
    Before one, predict from device memory (peak linear in the batch: one
    point counts all memory as per-image, which under-predicts; two points
    give the fixed part too), to a multiple of `step` and at most `cap`;
    without a memory reading, or where the peak does not grow, double."""
    ok = [t for t in tried if t["status"] == "ok"]
    lo = max(t["batch"] for t in ok)
    hi = min((t["batch"] for t in tried if t["status"] != "ok"), default=None)
    if hi is not None:
        middle = (lo + hi) // 2 // step * step
        return (middle, "bisect") if middle > lo else (None, "bracketed")
    if lo >= cap:
        return None, "cap"
    candidate, how = 2 * lo, "double"
    points = sorted({t["batch"]: t["peak_device_mb"] for t in ok if t.get("peak_device_mb")}.items())
    if limit_mb and points:
        if len(points) >= 2:
            (b1, m1), (b2, m2) = points[-2:]
            per_image = (m2 - m1) / (b2 - b1)
            fixed = m1 - per_image * b1
        else:
            (b1, m1), = points
            per_image, fixed = m1 / b1, 0.0
        if per_image > 0:
            predicted = int((fill * limit_mb - fixed) / per_image) // step * step
            if predicted <= lo:
                return None, "memory full"
            candidate, how = predicted, "predict"
    candidate = min(candidate, cap)
    return (candidate, how) if candidate > lo else (None, "cap")


def _gpu_total_mb():
    """The first GPU's memory by nvidia-smi, in MB, or None."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
        return float(out.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def record_image_size(record):
    return record.get("image_size") or 0


class Runner:
    """Runs measurement subprocesses within the time budget, records and
    prints their results."""

    def __init__(self, args):
        self.args = args
        self.records = []
        self.known = []  # earlier ok records of this --json file (bases of a max search)
        if args.json and os.path.exists(args.json):
            with open(args.json, encoding="utf-8") as file:
                for line in file:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("status", "ok") == "ok":
                        self.known.append(record)

    def remaining(self):
        return self.args.deadline - time.time() if self.args.deadline else math.inf

    def same_cell(self, record, cell):
        backend, dtype, mode, steps, compile_mode = cell
        return (record.get("preset") == self.args.preset and record.get("backend") == backend
                and record.get("dtype") == dtype and record.get("mode") == mode
                and record.get("compile") == (compile_mode if backend == "tensorflow" else "default")
                and record.get("time_steps_override") == (int(steps) if steps else None)
                and record_image_size(record) == self.args.image_size)

    def not_run(self, cell, batch, status, reason, wall_s=None):
        backend, dtype, mode, steps, compile_mode = cell
        return {"name": f"{self.args.preset}/{backend}/{dtype}/{mode}/b{batch}", "preset": self.args.preset,
                "backend": backend, "dtype": dtype, "mode": mode, "batch": batch,
                "time_steps": int(steps) if steps else None,
                "compile": compile_mode if backend == "tensorflow" else "default",
                "status": status, "reason": reason, "wall_s": wall_s}

    def measure(self, cell, batch, estimate_s=0.0):
        """One measurement in its own subprocess: its record, ok or not."""
        args = self.args
        backend, dtype, mode, steps, compile_mode = cell
        if importlib.util.find_spec(backend) is None:
            return self.not_run(cell, batch, "skipped", f"{backend} is not installed")
        timeout = min(args.timeout or math.inf, self.remaining() - 1)
        if timeout < max(args.min_measure_s, estimate_s):
            return self.not_run(cell, batch, "skipped", "time budget spent")
        command = [sys.executable, os.path.abspath(__file__), "--child", "--preset", args.preset,
                   "--mode", mode, "--batch", str(batch), "--dtype", dtype, "--compile", compile_mode,
                   "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--time_steps", steps, "--image_size", str(args.image_size),
                   "--matmul_size", str(args.matmul_size)] + (["--require_gpu"] if args.require_gpu else [])
        counted = [r for r in self.known + self.records if r.get("status", "ok") == "ok"
                   and r.get("forward_gflop_per_img") and r.get("preset") == args.preset
                   and r.get("time_steps_override") == (int(steps) if steps else None)
                   and record_image_size(r) == args.image_size]
        if counted:
            command += ["--forward_gflop", repr(counted[0]["forward_gflop_per_img"])]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        # JAX may use 90 % of the card (its default is 75 %), for the max-batch search.
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")
        start = time.time()
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
        try:
            stdout, stderr = child.communicate(timeout=None if timeout == math.inf else timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the child and whatever it started
            child.communicate()
            return self.not_run(cell, batch, "timeout", f"killed after {timeout:.0f} s",
                                round(time.time() - start, 1))
        except BaseException:  # interrupted or terminated: leave no measurement running
            os.killpg(child.pid, signal.SIGKILL)
            raise
        wall_s = round(time.time() - start, 1)
        lines = stdout.splitlines()
        results = [line for line in lines if line.startswith("RESULT ")]
        skips = [line for line in lines if line.startswith("SKIP ")]
        if child.returncode == 0 and skips:
            return self.not_run(cell, batch, "skipped", skips[-1][len("SKIP "):], wall_s)
        if child.returncode != 0 or not results:
            status, reason = classify_failure(child.returncode, stderr + "\n" + stdout)
            if status == "failed":
                print(f"{backend} {dtype} {mode} b{batch}: FAILED\n{stderr[-2000:]}", file=sys.stderr)
            return self.not_run(cell, batch, status, reason, wall_s)
        record = json.loads(results[-1][len("RESULT "):])
        record["wall_s"] = wall_s
        record["command"] = " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])
        return record

    def write(self, record):
        self.records.append(record)
        if record["status"] == "ok":
            print(f"{record['backend']:10s} {record['dtype']:15s} {record['mode']:5s} "
                  f"{record['batch']:5d} {record['time_steps']:2d} "
                  f"{record['tokens']:4d} {record['compile']:7s} {record['img_per_s']:8.1f} "
                  f"{record['gflop_per_img']:9.3f} {record['peak_gflops']:7.1f} "
                  f"{record['utilization']:6.3f} {record['peak_rss_mb']:7.0f}"
                  + (" max" if record.get("batch_role") == "max" else ""), flush=True)
        else:
            print(f"{record['backend']:10s} {record['dtype']:15s} {record['mode']:5s} "
                  f"{record['batch']:>5} {record['status'].upper()}: {record['reason']}", flush=True)
        if self.args.json:
            os.makedirs(os.path.dirname(os.path.abspath(self.args.json)), exist_ok=True)
            with open(self.args.json, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")

    def fixed(self, cell, batch):
        record = self.measure(cell, batch)
        record["batch_role"] = "fixed"
        self.write(record)

    def search_max(self, cell):
        """The largest batch that runs (see the module docstring)."""
        args = self.args
        bases = [r for r in self.known + self.records
                 if r.get("status", "ok") == "ok" and r.get("batch_role", "fixed") == "fixed"
                 and self.same_cell(r, cell)]
        if bases:
            base = max(bases, key=lambda r: r["batch"])
            probes = []
        else:
            base = self.measure(cell, args.max_batch_start)
            probes = [base]
        step = args.max_batch_step or base["batch"]
        tried = [{"batch": base["batch"], "status": base["status"],
                  "peak_device_mb": base.get("peak_device_mb")}]
        best, stopped = base, None
        if base["status"] != "ok":
            stopped = "start failed"
        limit_mb = base.get("device_limit_mb") or _gpu_total_mb()
        while stopped is None:
            if len(probes) >= args.max_batch_probes:
                stopped = "probes"
                break
            batch, how = next_search_batch(tried, step, args.max_batch_cap, limit_mb, args.memory_fill)
            if batch is None:
                stopped = how
                break
            # Compilation does not grow with the batch, the steps do.
            estimate = 1.2 * (base.get("wall_s") or 0) + (
                (args.warmup + args.steps) * base.get("step_ms_median", 0) / 1000
                * (batch / base["batch"] - 1))
            print(f"  max-batch search ({how}): batch {batch}", file=sys.stderr, flush=True)
            record = self.measure(cell, batch, estimate)
            probes.append(record)
            if record["status"] in ("skipped", "timeout"):
                stopped = "time budget"
                break
            tried.append({"batch": batch, "status": record["status"],
                          "peak_device_mb": record.get("peak_device_mb")})
            if record["status"] == "ok":
                if record["batch"] > best["batch"]:
                    best = record
            elif record["status"] == "failed":
                stopped = "failed"
        failures = [t["batch"] for t in tried if t["status"] != "ok"]
        result = dict(best)
        result["batch_role"] = "max"
        result["batch_search"] = {
            "start": base["batch"], "step": step, "cap": args.max_batch_cap,
            "device_limit_mb": limit_mb,
            "largest_ok": best["batch"] if best["status"] == "ok" else None,
            "smallest_failed": min(failures) if failures else None,
            "stopped": stopped,
            "probes": [{k: p.get(k) for k in ("batch", "status", "img_per_s", "peak_device_mb",
                                              "wall_s", "reason") if p.get(k) is not None}
                       for p in probes],
        }
        self.write(result)


def main():
    args = parse_args()
    if args.child:
        # A test hook: an out-of-memory error above this batch, as a backend
        # prints it, without loading anything (the max-batch search's tests).
        simulated = os.environ.get("KST_SIMULATE_OOM_ABOVE")
        if simulated and int(args.batch) > int(simulated):
            sys.exit(f"RESOURCE_EXHAUSTED: Out of memory (simulated: batch {args.batch} > "
                     f"KST_SIMULATE_OOM_ABOVE={simulated})")
        result = measure(args)
        if result is None:
            print(f"SKIP {os.environ.get('KERAS_BACKEND')} sees no GPU", flush=True)
        else:
            print("RESULT " + json.dumps(result), flush=True)
        return
    if args.steps < 10:
        sys.exit("--steps must be >= 10 (the median is taken over the timed steps)")
    batches = args.batch.split(",")
    for batch in batches:
        if batch != "max" and not batch.isdigit():
            sys.exit(f"--batch: {batch!r} is neither a batch size nor 'max'")
    grid = itertools.product(
        args.backend.split(","), args.dtype.split(","), args.mode.split(","),
        (args.time_steps or "").split(","), args.compile.split(","),
    )
    # SIGTERM (e.g. `timeout`) ends the parent through Python, which kills the
    # measurement running in its own process group (Runner.measure).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    runner = Runner(args)
    if not args.no_header:
        print(f"{'backend':10s} {'dtype':15s} {'mode':5s} {'batch':>5s} {'T':>2s} {'N':>4s} "
              f"{'compile':7s} {'img/s':>8s} {'GFLOP/img':>9s} {'peak':>7s} {'util':>6s} {'RSS MB':>7s}")
    for backend, dtype, mode, steps, compile_mode in grid:
        if backend != "tensorflow" and compile_mode != args.compile.split(",")[0]:
            continue  # the compile choice is TF's only
        cell = (backend, dtype, mode, steps, compile_mode)
        # Fixed batches first: the max-batch search starts from the largest.
        for batch in [b for b in batches if b != "max"]:
            runner.fixed(cell, int(batch))
        if "max" in batches:
            runner.search_max(cell)


if __name__ == "__main__":
    main()
