r"""`kst-export`: export a preset to LiteRT, ONNX or SavedModel, verified against Keras.

    kst-export --preset st_2_64_digits --format litert \
        --output exports/digits.tflite --dataset digits --report exports/digits.json
    kst-export --preset st_2_64_digits --format litert \
        --quantization int8 --dataset digits --output exports/digits_int8.tflite
    kst-export --preset st_2_64_digits --format onnx \
        --include_preprocessing --output exports/digits_raw.onnx
    kst-export --preset st_2_64_digits --format litert_micro \
        --quantization int8 --dataset digits --output exports/digits_micro.tflite

(`python tools/export.py` in a checkout is the same program.) With
--dataset digits the exported file is verified on the digits test split
(360 images; --num_verification_images limits it) and the report carries top-1 agreement
with Keras and both accuracies; int8 calibrates on --num_calibration_images digits
training images. Without a dataset (--dataset random) verification uses
--num_verification_images random images. Full int8 then has no data to calibrate on and
is refused: calibrating on noise gives activation ranges unlike real
inputs'. --calibrate_on_random_images opts in to it anyway (for a file whose
size or operators you want to inspect), and the report says so.

A preset without weights is exported at random initialisation with BatchNorm
statistics calibrated on one batch of calibration images: the first
--batch_size of them (said in the report's "weights"; the statistics of one
training-mode pass, which cannot be split into batches).

Memory: images go through the models --batch_size at a time (preprocessing,
verification in Keras and in the exported file's runtime, int8 calibration);
the results do not depend on it. By default it is the most images whose
largest activation stays within 256 MiB (64 for the CIFAR and digits
presets, 5 for the 224 x 224, T=4 ImageNet presets). After an out-of-memory
error (one `error:` line, exit status 1) lower --batch_size, or
--num_verification_images / --num_calibration_images.

Writes the file atomically (nothing is left behind on any error), prints a
one-line summary and, with --report, writes the JSON report.

Any backend: under KERAS_BACKEND=jax or torch the preset is loaded on that
backend, the file is converted in a TensorFlow child process from the
model's config and weights (the same file a TensorFlow export writes) and
verified against the model on that backend
(keras_spiking_tf/edge_export/tensorflow_bridge.py).
"""

import json
import sys

import numpy as np
from absl import flags

from keras_spiking_tf.analysis import calibrate_batch_norm
from keras_spiking_tf.atomic_directory import write_text_atomically
from keras_spiking_tf import validation
from keras_spiking_tf.cli import tool
from keras_spiking_tf.edge_export.formats import FORMATS
from keras_spiking_tf.edge_export.formats import OUTPUT_KINDS
from keras_spiking_tf.edge_export.formats import QUANTIZATIONS

flags.DEFINE_string("preset", "st_2_64_digits", "Preset name or preset directory.")
flags.DEFINE_enum("format", "litert", list(FORMATS), "Export format.")
flags.DEFINE_enum(
    "quantization", "none", ["none", *QUANTIZATIONS[1:]],
    "LiteRT quantization (see keras_spiking_tf/edge_export/exporter.py).",
)
flags.DEFINE_string(
    "output", None, "Destination file (.tflite/.onnx) or SavedModel directory (`path` of export())."
)
flags.DEFINE_bool(
    "include_preprocessing", False,
    "Bake resize + normalisation into the graph: the file takes raw 0..255 images.",
)
flags.DEFINE_enum("input_dtype", "uint8", ["uint8", "float32"],
                  "Raw input dtype with --include_preprocessing.")
flags.DEFINE_bool("int8_io", False, "With --quantization int8: int8 input and output too.")
flags.DEFINE_enum("output_kind", "logits", list(OUTPUT_KINDS), "What the graph returns.")
flags.DEFINE_string(
    "dataset", "random",
    "Images for verification (test split) and int8 calibration (train split): "
    "digits, cifar10, cifar100 (TFDS, --data_dir), or random.",
)
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_integer(
    "num_verification_images", None,
    "Verification images (default: the whole test split, or 16 random images).",
    lower_bound=1,
)
flags.DEFINE_integer("num_calibration_images", 512, "Calibration images for int8.", lower_bound=1)
flags.DEFINE_integer(
    "batch_size", None,
    "Images per batch in preprocessing, verification and int8 calibration (results "
    "do not depend on it; memory does), and the images a preset without weights "
    "calibrates BatchNorm on. Default: the most images whose largest activation stays "
    "within 256 MiB, 1 to 64 (st_8_512_imagenet: 5). Lower it after an out-of-memory error.",
    lower_bound=1,
)
flags.DEFINE_bool(
    "calibrate_on_random_images", False,
    "With --quantization int8 and --dataset random: calibrate on random images "
    "(refused otherwise; the ranges then do not describe real inputs).",
)
flags.DEFINE_bool(
    "optimize_graph", True,
    "Convert the inference graph (keras_spiking_tf.optimize_for_inference); "
    "--nooptimize_graph converts the training graph as it is.",
)
flags.DEFINE_bool("verify", True, "Run the written file and compare with Keras.")
flags.DEFINE_float("min_top1_agreement", None, "Fail (write nothing) below this agreement.")
flags.DEFINE_string("report", None, "Write the JSON report here.")
flags.DEFINE_integer("seed", 0, "Seed for random images, subsets and random initialisation.")
flags.mark_flag_as_required("output")
FLAGS = flags.FLAGS


DATASETS = ("random", "digits", "cifar10", "cifar100")


def check_flags():
    """Every flag's value, with `export`'s own checks (absl checked the
    types, enums and bounds it knows), before anything is loaded or written."""
    from keras_spiking_tf.edge_export.export_utils import MAX_BATCH_SIZE
    from keras_spiking_tf.edge_export.export_utils import check_batch_size
    from keras_spiking_tf.edge_export.exporter import MAX_SEED
    from keras_spiking_tf.models.model_family import check_preset
    from keras_spiking_tf.training.datasets import check_data_dir

    check_preset("--preset", FLAGS.preset)
    validation.check_output_path(
        "--output", FLAGS.output,
        kind="directory" if FORMATS[FLAGS.format].is_directory else "file",
    )
    validation.check_choice("--dataset", FLAGS.dataset, DATASETS, what="dataset")
    check_data_dir("--data_dir", FLAGS.data_dir)
    validation.check_integer("--num_verification_images", FLAGS.num_verification_images,
                             minimum=1, maximum=MAX_BATCH_SIZE, allow_none=True)
    validation.check_integer("--num_calibration_images", FLAGS.num_calibration_images,
                             minimum=1, maximum=MAX_BATCH_SIZE)
    check_batch_size(FLAGS.batch_size, "--batch_size")
    validation.check_number("--min_top1_agreement", FLAGS.min_top1_agreement, minimum=0.0,
                            maximum=1.0, allow_none=True)
    validation.check_output_path("--report", FLAGS.report, kind="file", allow_none=True)
    validation.check_integer("--seed", FLAGS.seed, minimum=0, maximum=MAX_SEED)


def dataset_arrays(name, data_dir, num_samples, num_calibration, seed):
    """`(calibration images, test images, test labels)` as uint8 arrays."""
    rng = np.random.default_rng(seed)
    if name == "digits":
        from keras_spiking_tf.training.datasets import load_digits_arrays

        x_train, _, x_test, y_test = load_digits_arrays()
    else:
        from keras_spiking_tf.training.datasets import load_dataset

        splits = load_dataset(name, data_dir)
        limit = max(num_calibration * 4, 2048)
        train = list(splits.train.take(limit).as_numpy_iterator())
        test = list(splits.test.take(num_samples or splits.num_test).as_numpy_iterator())
        x_train = np.stack([image for image, _ in train])
        x_test = np.stack([image for image, _ in test])
        y_test = np.array([label for _, label in test])
    chosen = rng.permutation(len(x_train))[:num_calibration]
    if num_samples:
        x_test, y_test = x_test[:num_samples], y_test[:num_samples]
    return x_train[np.sort(chosen)], x_test, y_test


def check_calibration(dataset, quantization, calibrate_on_random_images):
    """The calibration data int8 uses, in words; refuses random images
    unless opted in."""
    if quantization != "int8":
        return None
    if dataset != "random":
        return f"{dataset} training images"
    if not calibrate_on_random_images:
        raise ValueError(
            "--quantization int8 needs real images to calibrate on: pass --dataset "
            "(digits, cifar10, cifar100) whose training images resemble the model's "
            "inputs. To calibrate on random noise anyway, pass "
            "--calibrate_on_random_images (the file's int8 ranges will not describe "
            "real inputs)."
        )
    return "random uniform images (--calibrate_on_random_images; not real data)"


def _main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    check_flags()
    import keras

    import keras_spiking_tf
    from keras_spiking_tf.models.model_family import weights_available
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export.tensorflow_bridge import default_batch_size

    quantization = None if FLAGS.quantization == "none" else FLAGS.quantization
    calibration_data = check_calibration(
        FLAGS.dataset, quantization, FLAGS.calibrate_on_random_images
    )
    keras.utils.set_random_seed(FLAGS.seed)
    trained = weights_available(FLAGS.preset)
    model = keras_spiking_tf.from_preset(FLAGS.preset, load_weights=trained)
    height, width, channels = model.backbone.image_shape
    rng = np.random.default_rng(FLAGS.seed)
    if FLAGS.dataset == "random":
        count = FLAGS.num_verification_images or 16
        test_images = rng.integers(0, 256, (count, height, width, channels)).astype("uint8")
        labels = None
        calibration = rng.integers(
            0, 256, (FLAGS.num_calibration_images, height, width, channels)
        ).astype("uint8")
    else:
        calibration, test_images, labels = dataset_arrays(
            FLAGS.dataset, FLAGS.data_dir, FLAGS.num_verification_images,
            FLAGS.num_calibration_images, FLAGS.seed,
        )
    batch_size = FLAGS.batch_size
    if batch_size is None and (keras.backend.backend() == "tensorflow" or not trained):
        # On JAX and PyTorch this traces the model in a TensorFlow process,
        # needed only for the BatchNorm calibration below; else export's own
        # TensorFlow process chooses it (the report says which).
        batch_size = default_batch_size(model)
    FLAGS.batch_size = batch_size  # an out-of-memory error names the value in use
    bn_images = min(batch_size or len(calibration), len(calibration))
    if not trained:
        calibrate_batch_norm(model, model.preprocessor(calibration[:bn_images].astype("float32")))
    report = export(
        model,
        FLAGS.output,
        format=FLAGS.format,
        quantization=quantization,
        representative_images=calibration if quantization == "int8" else None,
        include_preprocessing=FLAGS.include_preprocessing,
        output_kind=FLAGS.output_kind,
        verify=FLAGS.verify,
        verification_images=test_images,
        labels=labels,
        input_dtype=FLAGS.input_dtype,
        int8_io=FLAGS.int8_io,
        optimize_graph=FLAGS.optimize_graph,
        min_top1_agreement=FLAGS.min_top1_agreement,
        batch_size=batch_size,
        seed=FLAGS.seed,
    )
    report = {
        "preset": FLAGS.preset,
        "weights": "trained" if trained else (
            f"random init, BN calibrated on the first {bn_images} calibration images"
        ),
        "dataset": FLAGS.dataset,
        "calibration_data": calibration_data,
        "command": " ".join(["kst-export", *sys.argv[1:]]),
        **report,
    }
    if FLAGS.report:
        write_text_atomically(FLAGS.report, json.dumps(report, indent=2))
    summary = (
        f"{report['format']} quantization={report['quantization']} -> {report['path']} "
        f"({report['file_bytes']} bytes)"
    )
    if report["top1_agreement"] is not None:
        summary += (
            f"; {report['num_samples']} images: top-1 agreement "
            f"{report['top1_agreement']:.4f}, max |logit diff| {report['max_abs_logit_diff']:.3g}"
        )
    if report["accuracy_keras"] is not None:
        summary += (
            f", accuracy Keras {report['accuracy_keras']:.4f} / exported "
            f"{report['accuracy_exported']:.4f}"
        )
    if report.get("arena_bytes") is not None:  # --format litert_micro
        summary += f"; TFLM tensor arena {report['arena_bytes']} bytes"
    print(summary)


def main():
    tool.run(_main)


if __name__ == "__main__":
    main()
