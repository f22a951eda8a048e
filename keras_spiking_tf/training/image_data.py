"""Image data sets: the bundled digits, TFDS sets (CIFAR, ImageNet) and
folders of the user's own images.

Every loader returns a `DataSplits` (`splits.py`) of unbatched
`(uint8 image (H, W, C), int64 label)` pairs; `input_pipeline.py` resizes,
augments and batches them. The validation split is held out of the training
split (`splits.py`):

| data set           | validation split                                         |
|--------------------|----------------------------------------------------------|
| digits, CIFAR, image folders | 10 % of train, stratified by label, seed 0     |
| `imagenet2012`     | the last 1 % of TFDS's train split (12,812 images), not stratified: stratifying needs a pass over all 1.28 M labels; TFDS shuffles the examples when it prepares the set, so the slice is close to balanced (about 13 per class) |

Images reach the model with the channel count it takes: `channels=` converts
a data set's images (RGB to grayscale by luma, grayscale to RGB by
repetition; `image_files.convert_channels`), and the splits' `notes` say so.

Image folders (`imagefolder:PATH`) are laid out as
`PATH/train/<label>/<image>` and `PATH/test/<label>/<image>`; the labels are
the sorted names of the train sub-directories. Every file is decoded once
before anything trains (`image_files.scan_image_files`): unreadable files
are an error that names them, or, with `skip_bad_images=True`, left out and
recorded in `DataSplits.skipped_files`.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_spiking_tf import image_files
from keras_spiking_tf.training.splits import DataSplits
from keras_spiking_tf.training.splits import describe_hold_out
from keras_spiking_tf.training.splits import hold_out
from keras_spiking_tf.training.splits import splits_from_arrays
from keras_spiking_tf.training.splits import validation_indices

DIGITS_SIZE = 16
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
IMAGE_FOLDER_PREFIX = "imagefolder:"


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


def load_digits(data_dir, fraction):
    """The bundled digits (16x16x1), the validation split held out of train."""
    del data_dir  # bundled with scikit-learn: nothing to read
    return splits_from_arrays(*load_digits_arrays(), num_classes=10, fraction=fraction)


def load_cifar(name):
    """A loader of the prepared TFDS set `name` (`cifar10`, `cifar100`)."""

    def load(data_dir, fraction):
        return _prepared_tfds_splits(name, data_dir, fraction)

    return load


def load_imagenet(data_dir, fraction):
    """ImageNet-1k from TFDS, prepared from the two ILSVRC2012 tars."""
    return _sliced_tfds_splits(_imagenet_builder(data_dir), "train", "validation", fraction)


def _class_files(directory):
    """`{label: sorted image files}` of the sub-directories of `directory`."""
    return {
        label: sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(os.path.join(directory, label))
            for name in names
            if image_files.is_image_file(name)
        )
        for label in sorted(os.listdir(directory))
        if os.path.isdir(os.path.join(directory, label)) and not label.startswith(".")
    }


def _scan_progress(total):
    """A progress bar for the pass over a large folder, else `None`."""
    if total < 2000:
        return None
    import keras

    bar = keras.utils.Progbar(total, unit_name="file")
    print(f"Checking {total:,} image files (each decoded once)...")
    return lambda done, _: bar.update(done)


def load_image_folder(path, fraction, channels, skip_bad_images=False):
    """`DataSplits` of a folder `path/{train,test}/<label>/<image>`.

    Args:
        path: the folder.
        fraction: the part of `train` held out (stratified) for validation.
        channels: the channel count to decode every image to (the model's).
        skip_bad_images: leave unreadable files out (recorded in
            `skipped_files`) instead of refusing the folder.

    Raises:
        FileNotFoundError: the folder, or its `train`/`test` parts, or the
            images in a class, are missing.
        image_files.BadImagesError: unreadable files, `skip_bad_images` off.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Image folder '{path}' does not exist. Lay it out as "
            "PATH/train/<label>/<image> and PATH/test/<label>/<image>."
        )
    parts = sorted(os.listdir(path))
    if "train" not in parts or "test" not in parts:
        raise FileNotFoundError(
            f"Image folder '{path}' needs 'train' and 'test' sub-directories "
            f"(found {parts}), each with one directory per label."
        )
    train_files = _class_files(os.path.join(path, "train"))
    test_files = _class_files(os.path.join(path, "test"))
    class_names = [label for label, found in train_files.items() if found]
    empty = [label for label, found in train_files.items() if not found]
    if len(class_names) < 2 or empty:
        raise FileNotFoundError(
            f"Image folder '{path}/train' needs at least two label directories holding "
            f"images ({', '.join(image_files.IMAGE_EXTENSIONS)}); found "
            f"{len(class_names)} with images" + (f", and none in {empty}" if empty else "") + "."
        )
    unknown = sorted(label for label, found in test_files.items() if found and label not in class_names)
    if unknown or not any(test_files.values()):
        raise FileNotFoundError(
            f"Image folder '{path}/test' " + (
                f"has labels that train lacks: {unknown}; give every test label training images."
                if unknown else "holds no images; put each label's test images in test/<label>/."
            )
        )

    def listed(class_files):
        pairs = [(f, class_names.index(label)) for label, found in class_files.items() for f in found]
        return [f for f, _ in pairs], np.array([y for _, y in pairs], np.int64)

    (train_paths, train_labels), (test_paths, test_labels) = listed(train_files), listed(test_files)
    everything = train_paths + test_paths
    scan = image_files.scan_image_files(everything, channels, _scan_progress(len(everything)))
    skipped = None
    if scan.bad:
        if not skip_bad_images:
            scan.raise_if_bad(
                "remove or replace them, or pass --skip_bad_images (skip_bad_images=True) to "
                "train without them"
            )
        skipped = {"count": len(scan.bad),
                   "files": [{"path": b.path, "reason": b.reason} for b in scan.bad]}
        good = set(scan.files)
        keep = [i for i, f in enumerate(train_paths) if f in good]
        train_paths, train_labels = [train_paths[i] for i in keep], train_labels[keep]
        keep = [i for i, f in enumerate(test_paths) if f in good]
        test_paths, test_labels = [test_paths[i] for i in keep], test_labels[keep]
    keep, held = hold_out(train_labels, fraction)
    notes = [f"{skipped['count']} unreadable files skipped"] if skipped else []
    if scan.conversions:
        notes.append(scan.describe_conversions())
    return DataSplits(
        train=image_files.image_file_dataset(
            [p for p, k in zip(train_paths, keep) if k], train_labels[keep], channels),
        validation=image_files.image_file_dataset(
            [train_paths[i] for i in held], train_labels[held], channels),
        test=image_files.image_file_dataset(test_paths, test_labels, channels),
        num_train=int(keep.sum()),
        num_validation=len(held),
        num_test=len(test_paths),
        num_classes=len(class_names),
        channels=channels,
        validation_rule=describe_hold_out(fraction, len(held), len(train_labels)),
        class_names=class_names,
        notes=notes,
        skipped_files=skipped,
    )


def with_channels(splits, channels):
    """`splits` with every image converted to `channels` channels (a note
    says so); unchanged when they already have that many."""
    if channels is None or channels == splits.channels:
        return splits
    have = splits.channels
    if not image_files.can_convert(have, channels):
        raise ValueError(
            f"The data set's images have {have} channels and the model takes {channels}: "
            "only grayscale (1) and RGB (3) models take converted images; choose a preset "
            f"for {have}-channel images."
        )

    def convert(image, label):
        return image_files.convert_channels(image, channels), label

    names = image_files.CHANNEL_NAMES
    note = (f"{names.get(have, f'{have}-channel')} images converted to "
            f"{names.get(channels, f'{channels}-channel')}")
    return dataclasses.replace(
        splits,
        train=splits.train.map(convert), validation=splits.validation.map(convert),
        test=splits.test.map(convert), channels=channels, notes=[*splits.notes, note],
    )
