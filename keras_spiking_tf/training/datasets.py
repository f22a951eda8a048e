"""Data sets for training: digits (offline default), CIFAR, ImageNet, folders.

Every loader returns a `DataSplits` of unbatched `(image, label)` pairs with
`uint8` images `(H, W, C)` and integer labels; `input_pipeline.py` resizes,
augments and batches them.

Each data set has three splits. *train* is what the model learns from;
*validation* is held out of the data set's training split and is what the
trainer selects the best epoch on; *test* is the data set's own test split,
used only for the final numbers, never to choose anything. The validation
split is a fixed fraction of the training split (`DEFAULT_VALIDATION_FRACTION`,
or `validation_fraction=`), drawn per class (stratified) with a fixed seed,
so every run of every seed validates on the same images:

| data set           | validation split                                         |
|--------------------|----------------------------------------------------------|
| digits, CIFAR, image folders | 10 % of train, stratified by label, seed 0     |
| `imagenet2012`     | the last 1 % of TFDS's train split (12,812 images), not stratified: stratifying needs a pass over all 1.28 M labels; TFDS shuffles the examples when it prepares the set, so the slice is close to balanced (about 13 per class) |

| name               | source                                                  |
|--------------------|---------------------------------------------------------|
| `digits`           | scikit-learn's bundled 8x8 digits, upsampled to 16x16, a |
|                    | fixed stratified 80/20 split (no download, ever)        |
| `cifar10/cifar100` | TFDS, prepared in `data_dir`                             |
| `imagenet2012`     | TFDS from the two ILSVRC2012 tars in `data_dir/manual`  |
| `imagefolder:PATH` | TFDS `ImageFolder`: `PATH/{train,test}/<label>/<image>` |
| `event_digits`, `dvs_gesture`, `cifar10_dvs`, `nmnist` | event cameras, through tonic: frame sequences (`event_data.py`) |
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

DIGITS_SIZE = 16
DEFAULT_VALIDATION_FRACTION = {"imagenet2012": 0.01}  # everything else: 0.1
VALIDATION_SEED = 0
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
EVENT_DATASET_NAMES = ("event_digits", "dvs_gesture", "cifar10_dvs", "nmnist")
DATASET_NAMES = ("digits", "cifar10", "cifar100", "imagenet2012", *EVENT_DATASET_NAMES,
                 "imagefolder:PATH")


@dataclasses.dataclass
class DataSplits:
    """Unbatched train, validation and test splits of one data set.

    Attributes:
        train, validation, test: `tf.data.Dataset`s of
            `(uint8 image, int64 label)`; validation is held out of the data
            set's training split (see the module docstring).
        num_train, num_validation, num_test: split sizes.
        num_classes: label count.
        channels: image channels.
        validation_rule: how the validation split was drawn, in words.
        class_names: one name per label, or `None` (ImageNet, whose
            classifiers use KerasHub's ImageNet names).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    num_train: int
    num_validation: int
    num_test: int
    num_classes: int
    channels: int
    validation_rule: str
    class_names: list | None = None


def load_digits_arrays():
    """Digits as `(x_train, y_train, x_test, y_test)`, 16x16x1 uint8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).astype("float32")[..., None]
    images = tf.image.resize(images, (DIGITS_SIZE, DIGITS_SIZE)).numpy()
    images = np.clip(np.round(images), 0, 255).astype("uint8")
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    return x_train, y_train.astype("int64"), x_test, y_test.astype("int64")


def validation_indices(labels, fraction, seed=VALIDATION_SEED):
    """Indices of a stratified validation hold-out of `labels`, sorted.

    `round(fraction * len(labels))` examples, at least one per class, drawn
    per class with scikit-learn's `train_test_split(stratify=...)`.

    Raises:
        ValueError: too few examples to hold out one per class.
    """
    labels = np.asarray(labels)
    classes = len(np.unique(labels))
    count = max(int(round(fraction * len(labels))), classes)
    if count > len(labels) - classes or np.min(np.unique(labels, return_counts=True)[1]) < 2:
        raise ValueError(
            f"The training split has {len(labels)} examples in {classes} classes: "
            f"too few to hold out a stratified validation split of {count} "
            "(each class needs at least two examples). Add training data or "
            "lower --validation_fraction."
        )
    from sklearn.model_selection import train_test_split

    _, held_out = train_test_split(
        np.arange(len(labels)), test_size=count, stratify=labels, random_state=seed
    )
    return np.sort(held_out)


def describe_hold_out(fraction, count, total):
    return (
        f"{count} of the {total} training examples ({fraction:.0%}), held out "
        f"per class (stratified), seed {VALIDATION_SEED}"
    )


def _from_arrays(x_train, y_train, x_test, y_test, num_classes, fraction):
    held_out = validation_indices(y_train, fraction)
    keep = np.ones(len(y_train), bool)
    keep[held_out] = False
    return DataSplits(
        train=tf.data.Dataset.from_tensor_slices((x_train[keep], y_train[keep])),
        validation=tf.data.Dataset.from_tensor_slices((x_train[held_out], y_train[held_out])),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        num_train=int(keep.sum()),
        num_validation=len(held_out),
        num_test=len(x_test),
        num_classes=num_classes,
        channels=x_train.shape[-1],
        validation_rule=describe_hold_out(fraction, len(held_out), len(y_train)),
        class_names=[str(label) for label in range(num_classes)],
    )


def _stratified_tfds_splits(builder, train_split, test_split, fraction):
    """Train/validation/test of a TFDS builder, the validation split held
    out of `train_split` per class (labels read without decoding images)."""
    import tensorflow_datasets as tfds

    labels = np.array([
        int(example["label"])
        for example in builder.as_dataset(
            split=train_split, decoders={"image": tfds.decode.SkipDecoding()}
        ).as_numpy_iterator()
    ])
    held_out = np.zeros(len(labels), bool)
    held_out[validation_indices(labels, fraction)] = True
    held_out = tf.constant(held_out)

    def part(validation):
        numbered = builder.as_dataset(split=train_split, as_supervised=True).enumerate()
        return numbered.filter(lambda index, _: held_out[index] == validation).map(
            lambda _, example: _cast_label(*example)
        )

    count = int(np.sum(held_out))
    test = builder.as_dataset(split=test_split, as_supervised=True)
    info = builder.info
    return DataSplits(
        train=part(False),
        validation=part(True),
        test=test.map(_cast_label),
        num_train=len(labels) - count,
        num_validation=count,
        num_test=_split_size(info, test_split, test),
        num_classes=info.features["label"].num_classes,
        channels=info.features["image"].shape[-1],
        validation_rule=describe_hold_out(fraction, count, len(labels)),
        class_names=list(info.features["label"].names),
    )


def _sliced_tfds_splits(builder, train_split, test_split, fraction):
    """Train/validation/test with the validation split the last
    `fraction` of `train_split` (TFDS slicing; no pass over the labels)."""
    info = builder.info
    total = info.splits[train_split].num_examples
    count = int(round(fraction * total))
    splits = {
        "train": f"{train_split}[:-{count}]",
        "validation": f"{train_split}[-{count}:]",
        "test": test_split,
    }
    data = {
        name: builder.as_dataset(split=split, as_supervised=True).map(_cast_label)
        for name, split in splits.items()
    }
    return DataSplits(
        **data,
        num_train=total - count,
        num_validation=count,
        num_test=info.splits[test_split].num_examples,
        num_classes=info.features["label"].num_classes,
        channels=info.features["image"].shape[-1],
        validation_rule=(
            f"the last {count} of the {total} training examples ({fraction:.0%}; "
            "TFDS slicing, not stratified)"
        ),
    )


def _split_size(info, split, dataset):
    """The split's size from the TFDS metadata; counted when the metadata
    lacks it (data sets served by `tfds.testing.mock_data`)."""
    if split in info.splits:
        return info.splits[split].num_examples
    return int(dataset.reduce(0, lambda count, _: count + 1))


def _cast_label(image, label):
    return image, tf.cast(label, tf.int64)


def _prepared_tfds_splits(name, data_dir, fraction):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    try:
        return _stratified_tfds_splits(builder, "train", "test", fraction)
    except (AssertionError, KeyError) as error:  # how TFDS reports "not prepared"
        raise FileNotFoundError(
            f"TFDS data set '{name}' is not prepared in data_dir "
            f"'{data_dir or tfds.core.constants.DATA_DIR}'. Prepare it once on "
            f"a machine with internet (`tfds build {name} --data_dir DIR`) "
            "and pass that directory with --data_dir; this tool never "
            "downloads silently."
        ) from error


def _imagenet_builder(data_dir):
    import tensorflow_datasets as tfds

    if data_dir is None:
        raise ValueError(
            "imagenet2012 needs --data_dir: a directory whose 'manual' "
            f"sub-directory holds {' and '.join(IMAGENET_TARS)}."
        )
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not builder.is_prepared():
        manual_dir = os.path.join(data_dir, "manual")
        missing = [t for t in IMAGENET_TARS if not os.path.exists(os.path.join(manual_dir, t))]
        if missing:
            raise FileNotFoundError(
                f"imagenet2012 is not prepared in '{data_dir}' and the manual "
                f"directory '{manual_dir}' lacks {', '.join(missing)}. "
                "Download them from image-net.org into that directory."
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    return builder


def _image_folder(path, fraction):
    import tensorflow_datasets as tfds

    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Image folder '{path}' does not exist. Lay it out as "
            "PATH/train/<label>/<image> and PATH/test/<label>/<image>."
        )
    splits = sorted(os.listdir(path))
    if "train" not in splits or "test" not in splits:
        raise FileNotFoundError(
            f"Image folder '{path}' needs 'train' and 'test' sub-directories "
            f"(found {splits}), each with one directory per label."
        )
    return _stratified_tfds_splits(tfds.ImageFolder(path), "train", "test", fraction)


def check_dataset_name(name):
    """Raises a clear error for a data set name `load_dataset` does not know."""
    if name in DATASET_NAMES[:-1] or (name.startswith("imagefolder:") and len(name) > 12):
        return
    raise ValueError(f"Unknown dataset {name!r}; use one of {list(DATASET_NAMES)}.")


def load_dataset(name, data_dir=None, validation_fraction=None, time_steps=None):
    """Loads a data set by name (see the module table) as `DataSplits`.

    Args:
        name: `digits`, `cifar10`, `cifar100`, `imagenet2012`,
            `imagefolder:PATH`, or an event data set (`event_digits`,
            `dvs_gesture`, `cifar10_dvs`, `nmnist`; see `event_data.py`),
            whose splits are frame sequences `(T, H, W, 2)`.
        data_dir: TFDS data directory (event data sets: tonic's `save_to`).
        validation_fraction: the part of the training split held out for
            validation (default: 0.01 for imagenet2012, else 0.1).
        time_steps: `T`, the frames per sequence (event data sets only).

    Example:

    ```python
    splits = load_dataset("digits")
    splits.num_train, splits.num_validation, splits.num_test   # (1293, 144, 360)
    ```
    """
    check_dataset_name(name)
    fraction = validation_fraction or DEFAULT_VALIDATION_FRACTION.get(name, 0.1)
    if name in EVENT_DATASET_NAMES:
        if not time_steps:
            raise ValueError(f"Event data set {name!r} needs time_steps (frames per sequence).")
        from keras_spiking_tf.training.event_data import load_event_dataset

        return load_event_dataset(name, data_dir, time_steps, fraction)
    if name == "digits":
        return _from_arrays(*load_digits_arrays(), num_classes=10, fraction=fraction)
    if name in ("cifar10", "cifar100"):
        return _prepared_tfds_splits(name, data_dir, fraction)
    if name == "imagenet2012":
        return _sliced_tfds_splits(_imagenet_builder(data_dir), "train", "validation", fraction)
    return _image_folder(name[len("imagefolder:") :], fraction)
