"""Train, validation and test splits: what every data set loader returns.

Each data set has three splits. *train* is what the model learns from;
*validation* is held out of the data set's training split and is what the
trainer selects the best epoch on; *test* is the data set's own test split,
used only for the final numbers, never to choose anything. The validation
split is a fixed fraction of the training split, drawn per class
(stratified) with a fixed seed (`VALIDATION_SEED`), so every run of every
seed validates on the same examples (`validation_indices`).
"""

import dataclasses

import numpy as np
import tensorflow as tf

VALIDATION_SEED = 0


@dataclasses.dataclass
class DataSplits:
    """Unbatched train, validation and test splits of one data set.

    Attributes:
        train, validation, test: `tf.data.Dataset`s of
            `(uint8 image, int64 label)` (or `(frames, label)` for event
            data); validation is held out of the data set's training split.
        num_train, num_validation, num_test: split sizes.
        num_classes: label count.
        channels: image channels (as delivered, after any conversion).
        validation_rule: how the validation split was drawn, in words.
        class_names: one name per label, or `None` (ImageNet, whose
            classifiers use KerasHub's ImageNet names).
        notes: what the loader did to the data that a user should know,
            in words (e.g. "48 RGB files converted to grayscale").
        skipped_files: `{"count": n, "files": [...]}` of unreadable files
            left out (`skip_bad_images`), or `None`.
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
    notes: list = dataclasses.field(default_factory=list)
    skipped_files: dict | None = None


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
    """The validation rule in words, for `DataSplits.validation_rule`."""
    return (
        f"{count} of the {total} training examples ({fraction:.0%}), held out "
        f"per class (stratified), seed {VALIDATION_SEED}"
    )


def hold_out(train_labels, fraction):
    """`(keep, held_out)`: a boolean mask of the examples that train and the
    sorted indices of those held out for validation."""
    held_out = validation_indices(train_labels, fraction)
    keep = np.ones(len(train_labels), bool)
    keep[held_out] = False
    return keep, held_out


def splits_from_arrays(x_train, y_train, x_test, y_test, num_classes, fraction):
    """`DataSplits` of in-memory arrays, the validation split held out of
    `(x_train, y_train)`."""
    keep, held_out = hold_out(y_train, fraction)
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
