"""Parity of every export format on the trained digits preset (docs/guides/edge-export.md, "Parity on digits").

    python benchmarks/export_digits.py --json benchmarks/results/export_digits.jsonl

Runs `kst-export` once per row (each in its own process, verified on the
360 images of the digits test split; int8 calibrates on 512 training
images), collects the reports, writes them as JSON lines and prints the
table of docs/guides/edge-export.md. Accuracies are on the digits test split.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROWS = [  # (label for the table, extra kst-export flags, file name)
    ("LiteRT | none | float32 | logits", ["--format", "litert"], "digits.tflite"),
    ("LiteRT | float16 | float32 | logits", ["--format", "litert", "--quantization", "float16"],
     "digits_float16.tflite"),
    ("LiteRT | dynamic_int8 | float32 | logits",
     ["--format", "litert", "--quantization", "dynamic_int8"], "digits_dynamic_int8.tflite"),
    ("LiteRT | int8 | float32 | logits", ["--format", "litert", "--quantization", "int8"],
     "digits_int8.tflite"),
    ("LiteRT | int8, `--int8_io` | int8 | logits (int8)",
     ["--format", "litert", "--quantization", "int8", "--int8_io"], "digits_int8_io.tflite"),
    ("ONNX | none | float32 | logits", ["--format", "onnx"], "digits.onnx"),
    ("SavedModel | none | float32 | logits", ["--format", "saved_model"], "digits_saved_model"),
    ("LiteRT | none, `--include_preprocessing` | raw uint8 | logits",
     ["--format", "litert", "--include_preprocessing"], "digits_raw.tflite"),
    ("ONNX | none, `--include_preprocessing` | raw uint8 | probabilities",
     ["--format", "onnx", "--include_preprocessing", "--output_kind", "probabilities"],
     "digits_raw_probabilities.onnx"),
]


def difference(value):
    return "0" if value == 0 else f"{value:.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="append the reports here")
    parser.add_argument("--preset", default="st_2_64_digits")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="export_digits_")
    print("| format | quantization | input | output | file | Keras acc. | exported acc. | "
          "top-1 agreement | max \\|Δ\\| | mean \\|Δ\\| | samples with \\|Δ\\| > 1e-4 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, flags, filename in ROWS:
        report_path = os.path.join(directory, filename + ".json")
        command = ["kst-export", "--preset", args.preset, "--dataset", "digits", *flags,
                   "--output", os.path.join(directory, filename), "--report", report_path]
        subprocess.run(command, check=True, capture_output=True)
        with open(report_path, encoding="utf-8") as file:
            report = json.load(file)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as file:
                file.write(json.dumps(report) + "\n")
        print(f"| {label} | {report['file_bytes'] / 1000:.0f} kB | "
              f"{100 * report['accuracy_keras']:.2f}% | {100 * report['accuracy_exported']:.2f}% | "
              f"{100 * report['top1_agreement']:.2f}% | {difference(report['max_abs_logit_diff'])} | "
              f"{difference(report['mean_abs_logit_diff'])} | {report['num_samples_over_rounding']} |",
              flush=True)
    print(f"(files in {directory}; command: python benchmarks/export_digits.py {' '.join(sys.argv[1:])})")


if __name__ == "__main__":
    main()
