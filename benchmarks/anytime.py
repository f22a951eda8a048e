"""Anytime inference: accuracy and energy against the time steps used.

    python benchmarks/anytime.py --json benchmarks/results/anytime.jsonl \
        --plot docs/anytime.png --data_dir ~/.keras/datasets
    python benchmarks/anytime.py --timing_only    # the wall-time part alone

For the two trained presets, on their test splits (360 images / sequences):
`st_2_64_digits` (digits images, T = 4) and `st_2_64_event_digits` (the
offline event set, T = 6). Per model it measures

- the accuracy of the running prediction after each step t = 1..T (the mean
  of the head's first t step logits), and the energy estimate of those t
  steps (`energy_report` of the same weights run for t steps: design.md §7);
- the exit rule of `predict_anytime` (stop a sample once its top softmax
  probability reaches a threshold): accuracy against the mean steps used,
  and the mean energy per image (each sample's energy for the steps it used);
- the wall time per image of `predict_anytime` (which stops computing a
  sample once it exits) at each threshold, as a ratio to running all T
  steps (`running_logits`, batches of 64 both): both run warm in the same
  process, each batch both ways back to back (the order alternating),
  `--repeats` times, and the ratio is the median of the repeats' ratios, so
  the load of a shared machine cancels out of it as far as possible
  (`wall_time_ratios`);
- the latency of one step (batch 1) of the Keras step model and of its
  exported LiteRT and ONNX step files, with the same-run matmul peak for
  scale.

Writes one JSON line per measurement, prints the tables of
docs/guides/events.md ("Anytime inference") and draws the plot. Accuracies
are on the test splits; nothing is selected on them.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import keras
import numpy as np

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
PRESETS = (("st_2_64_digits", "digits"), ("st_2_64_event_digits", "event_digits"))


def test_split(preset, dataset, data_dir):
    import keras_spiking_tf
    from keras_spiking_tf.training.datasets import load_dataset

    model = keras_spiking_tf.from_preset(preset)
    splits = load_dataset(dataset, data_dir, time_steps=model.backbone.time_steps)
    pairs = list(splits.test.as_numpy_iterator())
    return model, np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])


def energy_per_step_count(preset, model, inputs):
    """`energy[t - 1]`: mJ per image of the first t steps, t = 1..T."""
    import keras_spiking_tf
    from keras_spiking_tf.analysis import energy_report

    frames = model.backbone.input_type == "frames"
    sample = inputs[:64]
    energies = []
    for steps in range(1, model.backbone.time_steps + 1):
        truncated = keras_spiking_tf.from_preset(preset, time_steps=steps)
        x = sample[:, :steps] if frames else sample
        if truncated.preprocessor is not None:
            x = truncated.preprocessor(x.astype("float32"))
        energies.append(energy_report(truncated, x).energy_mj)
    return energies


def keras_step_latency_ms(model, inputs, repeats=50):
    from keras_spiking_tf.models import SpikingStepModel

    step = SpikingStepModel(model)
    frame = inputs[:1, 0] if model.backbone.input_type == "frames" else inputs[:1]
    if model.preprocessor is not None:
        frame = np.asarray(model.preprocessor(frame.astype("float32")))
    frame = frame.astype("float32")
    state = step.initial_state(1)
    for _ in range(5):
        step.predict_on_batch([frame, *state])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step.predict_on_batch([frame, *state])
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def wall_time_ratios(model, inputs, thresholds, repeats, batch_size=64):
    """Per threshold: wall time per image of `predict_anytime` and of
    running all T steps (`running_logits`), and their ratio.

    The two are interleaved finely: each batch of `batch_size` samples is
    run both ways back to back (the order alternating), `repeats` times.
    A repeat's ratio is its early-exit time over its all-steps time, summed
    over the batches; the ratio reported is the median of the repeats'
    (`wall_time_ratio_of_best`: the same with each batch's fastest run, the
    least disturbed by other work on the machine). Both run warm: the step model
    is traced once, before, and kept with the classifier."""
    from keras_spiking_tf.models import predict_anytime
    from keras_spiking_tf.models import running_logits

    batches = [inputs[start : start + batch_size] for start in range(0, len(inputs), batch_size)]

    def timed(run):
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    running_logits(model, inputs, batch_size=batch_size)  # traces the step model for both
    predict_anytime(model, inputs, threshold=min(thresholds), batch_size=batch_size)
    timings = {}
    for threshold in thresholds:
        early = np.zeros((repeats, len(batches)))
        every = np.zeros((repeats, len(batches)))
        for repeat in range(repeats):
            for b, batch in enumerate(batches):
                runs = [
                    lambda: predict_anytime(model, batch, threshold=threshold, batch_size=batch_size),
                    lambda: running_logits(model, batch, batch_size=batch_size),
                ]
                if (repeat + b) % 2:
                    every[repeat, b], early[repeat, b] = timed(runs[1]), timed(runs[0])
                else:
                    early[repeat, b], every[repeat, b] = timed(runs[0]), timed(runs[1])
        timings[threshold] = {
            "wall_ms_per_image": 1e3 * float(np.median(early.sum(1))) / len(inputs),
            "all_steps_wall_ms_per_image": 1e3 * float(np.median(every.sum(1))) / len(inputs),
            "wall_time_ratio": float(np.median(early.sum(1) / every.sum(1))),
            "wall_time_ratio_of_best": float(early.min(0).sum() / every.min(0).sum()),
            "wall_time_ratio_quartiles": [float(q) for q in
                                          np.percentile(early.sum(1) / every.sum(1), [25, 75])],
        }
    return timings


def matmul_peak_gflops(size=1024, repeats=10):
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.linalg.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2))
    for axis, (preset, result) in zip(np.atleast_1d(axes), results.items()):
        steps = np.arange(1, len(result["accuracy_after_steps"]) + 1)
        axis.plot(steps, 100 * np.array(result["accuracy_after_steps"]), "o-",
                  label="all samples stop after t steps")
        rule = result["exit_rule"]
        axis.plot([r["mean_steps"] for r in rule], [100 * r["accuracy"] for r in rule], "s--",
                  label="exit rule (threshold on the top probability)")
        for r in rule:
            axis.annotate(f"{r['threshold']:g}", (r["mean_steps"], 100 * r["accuracy"]),
                          textcoords="offset points", xytext=(4, -10), fontsize=7)
        axis.set_xlabel("time steps used (mean per sample)")
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(f"{preset} (T = {len(steps)})")
        energy_axis = axis.twinx()
        energy_axis.plot(steps, 1e3 * np.array(result["energy_mj_after_steps"]), ":", color="gray")
        energy_axis.set_ylabel("energy estimate (µJ / sample, dotted)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    parser.add_argument("--data_dir", default=None, help="where the offline event set is (written once)")
    parser.add_argument("--repeats", type=int, default=9,
                        help="timing rounds per threshold (the median is reported)")
    parser.add_argument("--timing_only", action="store_true",
                        help="only the exit rule with its wall time (no energy, no exports)")
    args = parser.parse_args(argv)
    from keras_spiking_tf.edge_export import export_step_model
    from keras_spiking_tf.models import predict_anytime
    from keras_spiking_tf.models import running_logits

    command = " ".join(["python", "benchmarks/anytime.py", *sys.argv[1:]])
    peak = matmul_peak_gflops()
    load = os.getloadavg()[0]
    results = {}
    for preset, dataset in PRESETS:
        model, inputs, labels = test_split(preset, dataset, args.data_dir)
        per_step = running_logits(model, inputs)
        time_steps = per_step.shape[1]
        energy = None if args.timing_only else energy_per_step_count(preset, model, inputs)
        accuracy_after = [float(np.mean(per_step[:, t].argmax(-1) == labels)) for t in range(time_steps)]
        timings = wall_time_ratios(model, inputs, THRESHOLDS, args.repeats)
        rule = []
        for threshold in THRESHOLDS:
            result = predict_anytime(model, inputs, threshold=threshold)
            rule.append({
                "threshold": threshold,
                "mean_steps": float(np.mean(result.steps)),
                "accuracy": float(np.mean(result.labels == labels)),
                "mean_energy_mj": None if energy is None
                else float(np.mean([energy[s - 1] for s in result.steps])),
                **timings[threshold],
                "step_ratio": float(np.mean(result.steps)) / time_steps,
            })
        results[preset] = {
            "preset": preset, "dataset": dataset, "split": "test", "samples": int(len(labels)),
            "time_steps": time_steps, "accuracy_after_steps": accuracy_after,
            "energy_mj_after_steps": energy, "exit_rule": rule,
            "timing": {"batch_size": 64, "repeats": args.repeats, "backend": keras.backend.backend(),
                       "baseline": "running_logits (all T steps)"},
            "matmul_peak_gflops": peak, "load_average": load, "command": command,
        }
        if args.timing_only:
            if args.json:
                with open(args.json, "a", encoding="utf-8") as file:
                    file.write(json.dumps(results[preset]) + "\n")
            continue
        latencies = {"keras": keras_step_latency_ms(model, inputs)}
        with tempfile.TemporaryDirectory() as directory:
            for format, suffix in (("litert", ".tflite"), ("onnx", ".onnx")):
                report = export_step_model(model, os.path.join(directory, f"step{suffix}"),
                                           format=format, verification_inputs=inputs[:32],
                                           labels=labels[:32])
                latencies[format] = report["step_latency_ms_median"]
                latencies[f"{format}_max_abs_logit_diff"] = report["max_abs_logit_diff"]
        results[preset]["step_latency_ms"] = latencies
        results[preset]["load_average_end"] = os.getloadavg()[0]
        if args.json:
            with open(args.json, "a", encoding="utf-8") as file:
                file.write(json.dumps(results[preset]) + "\n")
    for preset, result in results.items():
        steps = len(result["accuracy_after_steps"])
        print(f"\n{preset} ({result['samples']} test samples, T = {steps})\n")
        rule = result["exit_rule"]
        print("| exit threshold | mean steps | accuracy | wall time per image, ratio to all T steps "
              "| steps, ratio to T |\n|---|---|---|---|---|")
        for r in rule:
            print(f"| {r['threshold']:g} | {r['mean_steps']:.2f} | {100 * r['accuracy']:.2f} % | "
                  f"{r['wall_time_ratio']:.2f} ({r['wall_ms_per_image']:.2f} / "
                  f"{r['all_steps_wall_ms_per_image']:.2f} ms; best runs "
                  f"{r['wall_time_ratio_of_best']:.2f}) | {r['step_ratio']:.2f} |")
        if args.timing_only:
            continue
        print("\n| steps t | accuracy after t steps | energy (µJ / sample) |\n|---|---|---|")
        for t in range(steps):
            print(f"| {t + 1} | {100 * result['accuracy_after_steps'][t]:.2f} % | "
                  f"{1e3 * result['energy_mj_after_steps'][t]:.2f} |")
        print("\n| exit threshold | mean steps | accuracy | mean energy (µJ / sample) |\n|---|---|---|---|")
        for r in result["exit_rule"]:
            print(f"| {r['threshold']:g} | {r['mean_steps']:.2f} | {100 * r['accuracy']:.2f} % | "
                  f"{1e3 * r['mean_energy_mj']:.2f} |")
        lat = result["step_latency_ms"]
        print(f"\none step, batch 1: Keras {lat['keras']:.2f} ms, LiteRT {lat['litert']:.2f} ms, "
              f"ONNX Runtime {lat['onnx']:.2f} ms (matmul peak {peak:.0f} GFLOP/s, load {load:.2f})")
    print(f"\nmatmul peak {peak:.0f} GFLOP/s, load {load:.2f} at the start")
    if args.plot and not args.timing_only:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
