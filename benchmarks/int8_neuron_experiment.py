"""Experiment (not a library feature): an int8 neuron step for full-int8 LiteRT.

    python benchmarks/int8_neuron_experiment.py --neuron quantizable --int8_ops all \\
        --preset st_2_64_digits --gain 1024

The shipped `quantization="int8"` keeps the neuron step float32: its spike
`clip(floor(H), 0, 1)` has no int8 kernel (`FLOOR`). This script swaps in a
step the converter can quantize, `relu6(gain * (H - V_th) + 6) / 6` (the
`relu6` fuses into the int8 `MUL`, whose output then has its own [0, 6]
scale; at the int8 membrane's resolution the result is 0 or 1, in float it
is graded within `6 / gain` below the threshold, so not the reference
spikes), quantizes every operator but the attention products
(`--int8_ops all`), and reports accuracy, XNNPACK delegation and latency.

Measured (2 threads, quiet machine): st_2_64_digits test accuracy 98.06 %
(gain 256) and 98.89 % (gain 1024) against 98.61 % float, batch-1 0.51 ms
against 0.54 ms for the shipped int8 file; on st_2_256_cifar10 (random init)
batch-1 5.4-5.8 ms against 4.5 ms and batch-32 137 ms against 169 ms: XNNPACK
refuses 30 of the int8 elementwise operators (their scale ratios), which
split the graph into 14 partitions. Hence not shipped.
"""

import argparse
import time

import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neuron", choices=["exact", "quantizable"], default="quantizable")
    parser.add_argument("--int8_ops", choices=["synapses", "all"], default="all")
    parser.add_argument("--preset", default="st_2_64_digits")
    parser.add_argument("--gain", type=float, default=1024.0)
    parser.add_argument("--output", default="/tmp/int8_neuron_experiment.tflite")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def quantizable_neurons(gain):
    """Replaces the inference graph's spike step (this process only)."""
    from keras import ops

    from keras_spiking_tf.layers import lif_cell

    def step(h, v_threshold):
        return ops.relu6((h - (v_threshold - 6.0 / gain)) * gain) * (1.0 / 6.0)

    def binary(cell, h):
        spikes = step(h, cell.v_threshold)
        return spikes, spikes

    def ternary(cell, h):
        up, down = step(h, cell.v_threshold), step(-h, cell.v_threshold)
        return up - down, up + down

    lif_cell.LIFCell.fire_without_comparison = binary
    lif_cell.TernaryLIFCell.fire_without_comparison = ternary


def main():
    args = parse_args()
    import keras_spiking_tf
    from keras_spiking_tf.analysis import calibrate_batch_norm
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export import litert
    from keras_spiking_tf.edge_export import load_exported
    from keras_spiking_tf.edge_export.profile import litert_delegation
    from keras_spiking_tf.training.datasets import load_digits_arrays

    if args.neuron == "quantizable":
        quantizable_neurons(args.gain)
    if args.int8_ops == "all":
        litert.INT8_OPERATORS = tuple(sorted(set(litert._builtin_names().values())
                                             - {"BATCH_MATMUL"}))
    trained = keras_spiking_tf.list_presets()[args.preset]["weights_available"]
    model = keras_spiking_tf.from_preset(args.preset, load_weights=trained)
    rng = np.random.default_rng(0)
    if args.preset.endswith("digits"):
        x_train, _, images, labels = load_digits_arrays()
        calibration = x_train[rng.permutation(len(x_train))[:512]]
    else:
        shape = tuple(model.backbone.image_shape)
        calibration = rng.integers(0, 256, (64, *shape)).astype("uint8")
        images, labels = calibration[:32], None
    if not trained:
        calibrate_batch_norm(model, model.preprocessor(calibration.astype("float32")))
    report = export(model, args.output, format="litert", quantization="int8",
                    representative_images=calibration, verification_images=images,
                    labels=labels)
    delegation = litert_delegation(args.output)
    print({key: delegation[key] for key in ("partitions", "not_delegated", "quantize",
                                            "dequantize")})
    print(f"accuracy Keras {report['accuracy_keras']}, int8 {report['accuracy_exported']}, "
          f"top-1 agreement {report['top1_agreement']:.4f}")
    run = load_exported(args.output, num_threads=args.threads)
    batch = np.asarray(model.preprocessor(images[:32].astype("float32")))
    for size, calls in ((1, 30), (32, 6)):
        for _ in range(3):
            run(batch[:size])
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            run(batch[:size])
            times.append(time.perf_counter() - start)
        print(f"batch {size}: {1e3 * np.median(times):.2f} ms (median of {calls})")


if __name__ == "__main__":
    main()
