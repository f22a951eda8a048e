"""Microcontroller files of both shipped digits presets, in TFLM (docs/guides/edge-export.md, "Microcontrollers (TFLM)").

    python benchmarks/export_micro.py --json benchmarks/results/export_micro.jsonl

For `st_2_64_digits` (images) and `st_2_64_event_digits` (event frame
sequences): the whole classifier (`export(format="litert_micro")`) in
float32 and int8 (calibrated on 512 training samples, as `kst-export`), and
the step model (`export_step_model(format="litert_micro")`, one frame per
invoke with the state in and out; float32 and int8), each verified in the TFLM Python interpreter against
Keras on the full test split (360 samples). Writes one JSON line per file
(file bytes, the arena TFLM used, top-1 agreement, accuracies; over the
256 KiB target, the tensors live where the activations peak) and prints the
table of the guide.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

PRESETS = ("st_2_64_digits", "st_2_64_event_digits")
NUM_CALIBRATION = 512
KIB = 1024


def splits(model, preset):
    """`(calibration inputs, test inputs, test labels)` as NumPy arrays."""
    rng = np.random.default_rng(0)
    backbone = model.backbone
    if backbone.input_type == "frames":
        from keras_spiking_tf.training.datasets import load_dataset

        data = load_dataset("event_digits", os.path.join(tempfile.gettempdir(), "kst_event_digits"),
                            time_steps=backbone.time_steps)
        train = list(data.train.as_numpy_iterator())
        test = list(data.test.as_numpy_iterator())
        x_train = np.stack([x for x, _ in train])
        x_test = np.stack([x for x, _ in test])
        y_test = np.array([y for _, y in test])
    else:
        from keras_spiking_tf.training.datasets import load_digits_arrays

        x_train, _, x_test, y_test = load_digits_arrays()
    chosen = np.sort(rng.permutation(len(x_train))[:NUM_CALIBRATION])
    return x_train[chosen], x_test, y_test


def row(preset, kind, quantization, report, seconds):
    over = report["arena_bytes"] > 256 * KIB
    return {
        "preset": preset,
        "model": kind,
        "quantization": quantization or "none",
        "file_bytes": report["file_bytes"],
        "arena_bytes": report["arena_bytes"],
        "arena_head_bytes": report["arena_head_bytes"],
        "arena_tail_bytes": report["arena_tail_bytes"],
        "fits_1mb_flash_256kb_ram": report["fits_1mb_flash_256kb_ram"],
        "num_samples": report["num_samples"],
        "top1_agreement": report["top1_agreement"],
        "accuracy_keras": report["accuracy_keras"],
        "accuracy_exported": report["accuracy_exported"],
        "max_abs_logit_diff": report["max_abs_logit_diff"],
        "ops": report.get("ops"),
        "op_counts": report.get("op_counts"),
        "arena_peak_tensors": report["arena_peak_tensors"] if over else None,
        "seconds": round(seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="append the rows here")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--num_test", type=int, default=None, help="first N test samples only")
    args = parser.parse_args()

    import tensorflow as tf
    import tflite_micro

    import keras_spiking_tf
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export import export_step_model

    versions = {"tensorflow": tf.__version__, "tflite_micro": tflite_micro.__version__}
    directory = tempfile.mkdtemp(prefix="export_micro_")
    print("| preset | model | quantization | file | arena (head + tail) | fits 1 MB / 256 KB | "
          "top-1 agreement | Keras acc. | TFLM acc. |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        model = keras_spiking_tf.from_preset(preset)
        calibration, x_test, y_test = splits(model, preset)
        if args.num_test:
            x_test, y_test = x_test[: args.num_test], y_test[: args.num_test]
        runs = [("classifier", None), ("classifier", "int8"), ("step", None), ("step", "int8")]
        for kind, quantization in runs:
            path = os.path.join(directory, f"{preset}_{kind}_{quantization or 'float32'}.tflite")
            started = time.perf_counter()
            if kind == "classifier":
                report = dict(export(
                    model, path, format="litert_micro", quantization=quantization,
                    representative_images=calibration if quantization else None,
                    verification_images=x_test, labels=y_test,
                ))
            else:
                report = export_step_model(
                    model, path, format="litert_micro", verification_inputs=x_test,
                    labels=y_test, quantization=quantization,
                    representative_inputs=calibration if quantization else None,
                )
            result = row(preset, kind, quantization, report, time.perf_counter() - started)
            result.update(versions)
            result["command"] = "python benchmarks/export_micro.py " + " ".join(sys.argv[1:])
            if args.json:
                with open(args.json, "a", encoding="utf-8") as file:
                    file.write(json.dumps(result) + "\n")
            print(f"| {preset} | {kind} | {result['quantization']} | "
                  f"{result['file_bytes'] / KIB:.0f} KiB | {result['arena_bytes'] / KIB:.0f} KiB "
                  f"({result['arena_head_bytes'] / KIB:.0f} + {result['arena_tail_bytes'] / KIB:.0f}) | "
                  f"{'yes' if result['fits_1mb_flash_256kb_ram'] else 'no'} | "
                  f"{100 * result['top1_agreement']:.2f}% | {100 * result['accuracy_keras']:.2f}% | "
                  f"{100 * result['accuracy_exported']:.2f}% |", flush=True)
    print(f"(files in {directory})")


if __name__ == "__main__":
    main()
