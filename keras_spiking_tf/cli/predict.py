r"""`kst-predict`: classify your own image files with a preset.

    kst-predict my_digit.png                          # st_2_64_digits, top 5
    kst-predict --preset runs/my-run/best_preset photos/ "scans/*.png" --top_k 2
    kst-predict --preset st_2_64_digits --json my_digit.png > predictions.json

(`python tools/predict.py` in a checkout is the same program.) Takes image
files, directories (searched recursively) and glob patterns; any preset name,
preset directory (such as a `kst-train` run's `best_preset`) or hub handle.
Every file is decoded once, with the channel count the model takes (RGB
files for a grayscale model through their luma, grayscale files for an RGB
model repeated), resized to the model's input size, and classified; the
answer is each image's top-k classes with their names and probabilities, as
a table or, with --json, as JSON. Unreadable files are named and nothing is
classified, unless --skip_bad_images leaves them out.
"""

import json

from absl import flags

from keras_spiking_tf import validation
from keras_spiking_tf.cli import tool

flags.DEFINE_string("preset", "st_2_64_digits", "Preset name, preset directory or hub handle.")
flags.DEFINE_integer(
    "top_k", None, "Classes to list per image, >= 1 (default: 5, or all if fewer).",
    lower_bound=1,
)
flags.DEFINE_bool("json", False, "Print JSON instead of a table.")
flags.DEFINE_integer("batch_size", 32, "Images classified at once, >= 1.", lower_bound=1)
flags.DEFINE_bool("skip_bad_images", False, "Leave unreadable image files out (named on stderr).")
FLAGS = flags.FLAGS
DEFAULT_TOP_K = 5


MAX_TOP_K = 1 << 20  # the most classes a classifier takes


def check_flags():
    """Every flag's value (absl checked the types and bounds it knows),
    before anything is loaded."""
    from keras_spiking_tf.edge_export.export_utils import check_batch_size
    from keras_spiking_tf.models.model_family import check_preset

    check_preset("--preset", FLAGS.preset)
    validation.check_integer("--top_k", FLAGS.top_k, minimum=1, maximum=MAX_TOP_K, allow_none=True)
    check_batch_size(FLAGS.batch_size, "--batch_size")


def load_images(paths, image_shape, skip_bad_images=False):
    """`(files, float32 0..255 images (N, H, W, C), bad files)` of the image
    files `paths` names, decoded to `image_shape`'s channels and resized to
    its size as the evaluation pipeline resizes (bilinear); each file is
    decoded once."""
    import numpy as np
    import tensorflow as tf

    from keras_spiking_tf import image_files

    height, width, channels = image_shape
    scan = image_files.scan_image_files(image_files.list_image_files(paths), channels,
                                        keep_pixels=True)
    if scan.bad and not skip_bad_images:
        scan.raise_if_bad("remove or replace them, or pass --skip_bad_images")
    if not scan.files:
        raise ValueError("None of the image files could be read; nothing to classify.")
    images = np.stack([
        tf.image.resize(tf.cast(pixels, tf.float32), (height, width)).numpy()
        for pixels in scan.pixels
    ])
    return scan.files, np.clip(images, 0, 255), scan.bad


def predict_files(model, paths, top_k=None, batch_size=32, skip_bad_images=False):
    """Top-k predictions of `model` for image files.

    Args:
        model: a `SpikingTransformerImageClassifier` with a preprocessor.
        paths: image files, directories or glob patterns.
        top_k: classes per image (`None`: 5, or every class if fewer).
        batch_size: images per `predict` batch.
        skip_bad_images: leave unreadable files out instead of raising.

    Returns:
        `(results, bad)`: `results` a list of `{"image": path, "predictions":
        [{"class": name, "probability": p}, ...]}`, most likely first;
        `bad` the `image_files.BadImageFile`s left out.

    Example:

    ```python
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    results, _ = predict_files(model, ["my_digit.png"], top_k=2)
    results[0]["predictions"][0]     # {"class": "7", "probability": 0.98}
    ```
    """
    if model.backbone.input_type != "image" or model.preprocessor is None:
        raise ValueError(
            "kst-predict classifies image files: this preset takes "
            + ("event-camera frame sequences" if model.backbone.input_type != "image"
               else "normalised images and has no preprocessor")
            + "; choose an image preset with a preprocessor (e.g. st_2_64_digits)."
        )
    if top_k is None:
        top_k = min(DEFAULT_TOP_K, model.num_classes)
    if top_k > model.num_classes:
        raise ValueError(
            f"--top_k {top_k} exceeds the model's {model.num_classes} classes; use at most "
            f"{model.num_classes}."
        )
    files, images, bad = load_images(paths, model.backbone.image_shape, skip_bad_images)
    if model.backbone.image_layout == "channels_first":
        images = images.transpose(0, 3, 1, 2)
    predictions = model.predict(images, batch_size=batch_size, verbose=0)
    decoded = model.decode_predictions(predictions, top=top_k)
    results = [
        {"image": path,
         "predictions": [{"class": str(name), "probability": float(p)} for name, p in row]}
        for path, row in zip(files, decoded)
    ]
    return results, bad


def format_table(results):
    """The predictions as an aligned text table, one row per class."""
    rows = [("image", "rank", "class", "probability")]
    for result in results:
        for rank, prediction in enumerate(result["predictions"], 1):
            rows.append((result["image"] if rank == 1 else "", str(rank),
                         prediction["class"], f"{prediction['probability']:.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def _main(argv):
    import sys

    import keras_spiking_tf

    check_flags()
    paths = argv[1:]
    if not paths:
        raise ValueError(
            "Give the image files to classify: kst-predict [--preset P] IMAGE [IMAGE ...] "
            "(files, directories or glob patterns)."
        )
    model = keras_spiking_tf.from_preset(FLAGS.preset)
    results, bad = predict_files(model, paths, FLAGS.top_k, FLAGS.batch_size,
                                 FLAGS.skip_bad_images)
    for file in bad:
        print(f"skipped: '{file.path}' ({file.reason})", file=sys.stderr)
    if FLAGS.json:
        print(json.dumps({"preset": FLAGS.preset, "results": results,
                          "skipped": [{"path": b.path, "reason": b.reason} for b in bad]},
                         indent=2))
    else:
        print(format_table(results))


def main():
    tool.run(_main)


if __name__ == "__main__":
    main()
