"""Data sets for training: digits (offline default), CIFAR, ImageNet, folders.

Every loader returns a `DataSplits` of unbatched `(image, label)` pairs with
`uint8` images `(H, W, C)` and integer labels; `input_pipeline.py` resizes,
augments and batches them.

| name               | source                                                  |
|--------------------|---------------------------------------------------------|
| `digits`           | scikit-learn's bundled 8x8 digits, upsampled to 16x16, a |
|                    | fixed stratified 80/20 split (no download, ever)        |
| `cifar10/cifar100` | TFDS, prepared in `data_dir`                             |
| `imagenet2012`     | TFDS from the two ILSVRC2012 tars in `data_dir/manual`  |
| `imagefolder:PATH` | TFDS `ImageFolder`: `PATH/{train,test}/<label>/<image>` |
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

DIGITS_SIZE = 16
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
DATASET_NAMES = ("digits", "cifar10", "cifar100", "imagenet2012", "imagefolder:PATH")


@dataclasses.dataclass
class DataSplits:
    """Unbatched train and test splits of one data set.

    Attributes:
        train, test: `tf.data.Dataset`s of `(uint8 image, int64 label)`.
        num_train, num_test: split sizes.
        num_classes: label count.
        channels: image channels.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    num_train: int
    num_test: int
    num_classes: int
    channels: int


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


def _from_arrays(x_train, y_train, x_test, y_test, num_classes):
    return DataSplits(
        train=tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        num_train=len(x_train),
        num_test=len(x_test),
        num_classes=num_classes,
        channels=x_train.shape[-1],
    )


def _tfds_splits(builder, train_split, test_split):
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=0)
    train = builder.as_dataset(split=train_split, as_supervised=True, read_config=read_config)
    test = builder.as_dataset(split=test_split, as_supervised=True)
    info = builder.info
    return DataSplits(
        train=train.map(_cast_label),
        test=test.map(_cast_label),
        num_train=_split_size(info, train_split, train),
        num_test=_split_size(info, test_split, test),
        num_classes=info.features["label"].num_classes,
        channels=info.features["image"].shape[-1],
    )


def _split_size(info, split, dataset):
    """The split's size from the TFDS metadata; counted when the metadata
    lacks it (data sets served by `tfds.testing.mock_data`)."""
    if split in info.splits:
        return info.splits[split].num_examples
    return int(dataset.reduce(0, lambda count, _: count + 1))


def _cast_label(image, label):
    return image, tf.cast(label, tf.int64)


def _prepared_tfds_splits(name, data_dir):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    try:
        return _tfds_splits(builder, "train", "test")
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


def _image_folder(path):
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
    return _tfds_splits(tfds.ImageFolder(path), "train", "test")


def load_dataset(name, data_dir=None):
    """Loads a data set by name (see the module table) as `DataSplits`.

    Example:

    ```python
    splits = load_dataset("digits")
    splits.num_train, splits.num_classes   # (1437, 10)
    ```
    """
    if name == "digits":
        return _from_arrays(*load_digits_arrays(), num_classes=10)
    if name in ("cifar10", "cifar100"):
        return _prepared_tfds_splits(name, data_dir)
    if name == "imagenet2012":
        return _tfds_splits(_imagenet_builder(data_dir), "train", "validation")
    if name.startswith("imagefolder:"):
        return _image_folder(name[len("imagefolder:") :])
    raise ValueError(f"Unknown dataset {name!r}; use one of {list(DATASET_NAMES)}.")
