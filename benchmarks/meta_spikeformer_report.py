"""Export parity and the energy report of a Meta-SpikeFormer preset, in one run.

    nice python benchmarks/meta_spikeformer_report.py \\
        --json benchmarks/results/meta_spikeformer_report.jsonl

Builds `--preset` (default `sdt_v2_8_512_imagenet`) at random
initialisation, `--num_images` uniform-noise images (0..255, through the
model's preprocessor) as `kst-analyze --dataset random` makes them, and
calibrates the BatchNorm statistics on them (`calibrate_batch_norm`, as the
random-init rows of docs/guides/analysis.md). Then, on those images:

1. compares the folded inference graph (`optimize_for_inference`) with
   the model in Keras: logits on every image, and every neuron's spikes on
   the first image (how many differ, and the first neuron where one does:
   folding changes float32 rounding, and a deep random-init network, whose
   membranes crowd the thresholds, carries one flipped spike onwards);
2. exports the classifier (the folded inference graph) to each of
   `--formats` with `keras_spiking_tf.edge_export.export`, verified against
   the unfolded Keras model: max |logit diff|, top-1 agreement, file size,
   seconds; and the file's logits against the folded Keras graph, which
   separates the converter's rounding from the folding's;
3. the energy report (`energy_report`, 45 nm: 4.6 pJ per MAC, 0.9 pJ per
   accumulate) and the addition-only audit (which products need a
   multiplier, by operation).

Appends one JSON line per export and one for the energy report to `--json`
(and prints them). The exported files go to `--work_dir` (a temporary
directory by default) and are removed at the end unless `--keep_files`.
Random-init figures describe an untrained network; say so when quoting them.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

SUFFIXES = {"litert": ".tflite", "onnx": ".onnx"}


def progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="sdt_v2_8_512_imagenet",
                        help="a MetaSpikeFormerImageClassifier preset")
    parser.add_argument("--num_images", type=int, default=4,
                        help="noise images: BatchNorm calibration, verification, energy")
    parser.add_argument("--formats", default="litert,onnx", help="comma-separated")
    parser.add_argument("--json", default=None, help="append the JSON lines here")
    parser.add_argument("--work_dir", default=None, help="where the exported files go")
    parser.add_argument("--keep_files", action="store_true", help="keep the exported files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f"--num_images must be >= 1, got {args.num_images}.")
    args.formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    unknown = sorted(set(args.formats) - set(SUFFIXES))
    if unknown or not args.formats:
        parser.error(f"--formats takes a list of {sorted(SUFFIXES)}, got {unknown or 'none'}.")
    return args


def predict(model, images):
    """Logits of `model` on `images`, one image at a time (memory)."""
    return np.concatenate([np.asarray(model(images[i : i + 1], training=False))
                           for i in range(len(images))])


def comparison(logits, reference, prefix):
    """Max |logit diff| and top-1 agreement of `logits` with `reference`."""
    return {
        f"{prefix}_max_abs_logit_diff": float(np.abs(logits - reference).max()),
        f"{prefix}_top1_agreement": float(np.mean(logits.argmax(1) == reference.argmax(1))),
    }


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import keras

    from keras_spiking_tf.analysis import addition_only_audit
    from keras_spiking_tf.analysis import calibrate_batch_norm
    from keras_spiking_tf.analysis import energy_report
    from keras_spiking_tf import optimize_for_inference
    from keras_spiking_tf.analysis import record_forward
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export import load_exported
    from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier

    command = "python benchmarks/meta_spikeformer_report.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    common = {"preset": args.preset, "num_images": args.num_images,
              "weights": "random init, BN calibrated on uniform-noise images",
              "backend": keras.backend.backend(), "command": command}
    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    model = MetaSpikeFormerImageClassifier.from_preset(args.preset, load_weights=False)
    height, width, channels = model.backbone.image_shape
    raw = np.random.default_rng(args.seed).uniform(
        0, 255, (args.num_images, height, width, channels)).astype("float32")
    images = raw if model.preprocessor is None else np.asarray(model.preprocessor(raw), "float32")
    progress(f"built {args.preset} ({model.count_params():,} parameters); calibrating BatchNorm")
    calibrate_batch_norm(model, images)
    progress(f"calibrated ({time.perf_counter() - started:.0f} s)")

    lines = []
    began = time.perf_counter()
    reference = predict(model, images)
    folded_model = optimize_for_inference(model)
    folded = predict(folded_model, images)
    _, reference_records = record_forward(model, images[:1])
    _, folded_records = record_forward(folded_model, images[:1])
    spikes = [(a.name, a.value, b.value) for a, b in zip(reference_records, folded_records)
              if a.kind == "neuron"]
    flipped = [(name, int(np.count_nonzero(a != b))) for name, a, b in spikes]
    first = next(((name, count) for name, count in flipped if count), (None, 0))
    lines.append({
        **common, "kind": "folding",
        **comparison(folded, reference, "keras_folded_vs_keras"),
        "flipped_spikes_image0": sum(count for _, count in flipped),
        "spikes_image0": sum(a.size for _, a, _ in spikes),
        "first_flipped_neuron_image0": first[0],
        "first_flipped_count_image0": first[1],
        "reference_logit_std": float(reference.std(axis=1).mean()),
        "seconds": round(time.perf_counter() - began, 1),
    })
    progress(json.dumps(lines[-1]))
    del reference_records, folded_records, spikes
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="meta_spikeformer_report_")
    os.makedirs(work_dir, exist_ok=True)
    try:
        for format in args.formats:
            path = os.path.join(work_dir, args.preset + SUFFIXES[format])
            progress(f"exporting {format}")
            began = time.perf_counter()
            report = export(model, path, format=format, verification_images=images,
                            preprocess_images=False)
            lines.append({
                **common, "kind": "export", "format": format,
                "file_bytes": report["file_bytes"],
                "max_abs_logit_diff": report["max_abs_logit_diff"],
                "mean_abs_logit_diff": report["mean_abs_logit_diff"],
                "top1_agreement": report["top1_agreement"],
                "num_samples": report["num_samples"],
                "num_samples_over_rounding": report["num_samples_over_rounding"],
                "convert_seconds": round(report["convert_seconds"], 1),
                "verify_seconds": round(report["verify_seconds"], 1),
                **comparison(load_exported(path)(images), folded, "file_vs_keras_folded"),
                "seconds": round(time.perf_counter() - began, 1),
            })
            progress(json.dumps(lines[-1]))
            if not args.keep_files:
                os.remove(path)
    finally:
        if args.work_dir is None and not args.keep_files:
            shutil.rmtree(work_dir, ignore_errors=True)

    progress("energy report and audit")
    began = time.perf_counter()
    energy = energy_report(model, images, e_mac_pj=4.6, e_ac_pj=0.9)
    audit = addition_only_audit(model, images)
    by_operation = {}
    for row in energy.rows:
        totals = by_operation.setdefault(row["operation"], {"macs": 0.0, "sops": 0.0})
        totals["macs"] += row["macs"]
        totals["sops"] += row["sops"]
    attention = [a for a in audit if a["operation"] == "attention"]
    lines.append({
        **common, "kind": "energy", "time_steps": energy.time_steps,
        "e_mac_pj": 4.6, "e_ac_pj": 0.9,
        "macs": energy.macs, "sops": energy.sops, "energy_mj": energy.energy_mj,
        "by_operation": by_operation,
        "first_layer": next(r for r in energy.rows if r["layer"].endswith("encode_conv")),
        "products_needing_multiplication": sum(a["needs_multiplication"] for a in audit),
        "products": len(audit),
        "attention_products_addition_only": not any(a["needs_multiplication"]
                                                    for a in attention),
        "seconds": round(time.perf_counter() - began, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    })
    for line in lines:
        print(json.dumps(line))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as file:
            for line in lines:
                file.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
