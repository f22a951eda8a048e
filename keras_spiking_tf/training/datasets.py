"""The data set registry: a data set is a name and a loader.

Images and event-camera recordings alike: every entry's loader returns a
`DataSplits` (`splits.py`) with train, validation (held out of train, for
model selection) and test splits. `load_dataset(name)` looks the name up.

| name               | kind   | source                                                  |
|--------------------|--------|---------------------------------------------------------|
| `digits`           | images | scikit-learn's bundled 8x8 digits, upsampled to 16x16, a fixed stratified 80/20 split (no download, ever) |
| `cifar10`, `cifar100` | images | TFDS, prepared in `data_dir`                         |
| `imagenet2012`     | images | TFDS from the two ILSVRC2012 tars in `data_dir/manual`  |
| `imagefolder:PATH` | images | your own images: `PATH/{train,test}/<label>/<image>` (`image_data.py`) |
| `event_digits`, `dvs_gesture`, `cifar10_dvs`, `nmnist` | events | event cameras, through tonic: frame sequences (`event_data.py`) |

A new data set is one `register_dataset` call; `kst-train --dataset` and
`load_dataset` then know it.

Example:

```python
splits = load_dataset("digits")
splits.num_train, splits.num_validation, splits.num_test   # (1293, 144, 360)
```
"""

import dataclasses
from typing import Callable

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import MAX_TIME_STEPS
from keras_spiking_tf.training import event_data
from keras_spiking_tf.training import image_data
from keras_spiking_tf.training.image_data import IMAGE_FOLDER_PREFIX
from keras_spiking_tf.training.image_data import load_digits_arrays  # noqa: F401  (public)
from keras_spiking_tf.training.splits import DataSplits  # noqa: F401  (public)

DEFAULT_VALIDATION_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One registered data set.

    Attributes:
        name: what `--dataset` and `load_dataset` take.
        kind: `"images"` (`(H, W, C)` uint8) or `"events"` (frame
            sequences `(T, H, W, 2)`).
        load: `load(data_dir, validation_fraction, time_steps)` returning
            a `DataSplits`.
        validation_fraction: the default part of train held out.
        recipe: the training recipe it trains with by default.
    """

    name: str
    kind: str
    load: Callable
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    recipe: str = "cifar"


DATASETS = {}


def register_dataset(dataset):
    """Adds a `Dataset` to the registry (a name registered twice is an error).

    Example:

    ```python
    register_dataset(Dataset("my_data", "images", lambda data_dir, fraction, time_steps: ...))
    ```
    """
    if not isinstance(dataset, Dataset):
        raise validation.invalid("dataset", dataset, "a training.datasets.Dataset",
                                 error=TypeError)
    validation.check_string("dataset.name", dataset.name)
    if dataset.name in DATASETS or dataset.name.startswith(IMAGE_FOLDER_PREFIX):
        raise validation.invalid("dataset.name", dataset.name,
                                 "a name not registered already (nor imagefolder:...)")
    validation.check_choice("dataset.kind", dataset.kind, ("images", "events"))
    if not callable(dataset.load):
        raise validation.invalid("dataset.load", dataset.load,
                                 "a function load(data_dir, validation_fraction, time_steps)",
                                 error=TypeError)
    check_validation_fraction("dataset.validation_fraction", dataset.validation_fraction)
    validation.check_string("dataset.recipe", dataset.recipe)
    DATASETS[dataset.name] = dataset
    return dataset


def check_validation_fraction(name, fraction, allow_none=False):
    """`fraction` (argument or flag `name`): a number strictly between 0 and 1."""
    allowed = "a number > 0 and < 1 (e.g. 0.1 holds out 10 % of the training split)"
    if fraction is None and allow_none:
        return None
    validation.check_number(name, fraction)
    if not 0 < fraction < 1:
        raise validation.invalid(name, fraction, allowed)
    return float(fraction)


def _images(loader):
    return lambda data_dir, fraction, time_steps: loader(data_dir, fraction)


def _events(name):
    return lambda data_dir, fraction, time_steps: event_data.load_event_dataset(
        name, data_dir, time_steps, fraction
    )


register_dataset(Dataset("digits", "images", _images(image_data.load_digits), recipe="digits"))
for _name in ("cifar10", "cifar100"):
    register_dataset(Dataset(_name, "images", _images(image_data.load_cifar(_name))))
register_dataset(Dataset("imagenet2012", "images", _images(image_data.load_imagenet),
                         validation_fraction=0.01, recipe="imagenet"))
for _name, _recipe in (("event_digits", "event_digits"), ("dvs_gesture", "dvs_gesture_t16"),
                       ("cifar10_dvs", "cifar10_dvs"), ("nmnist", "nmnist")):
    register_dataset(Dataset(_name, "events", _events(_name), recipe=_recipe))
# Image folders are named by their path: `imagefolder:PATH` (see `find_dataset`).
IMAGE_FOLDER = Dataset("imagefolder:PATH", "images", None, recipe="finetune")

DATASET_NAMES = (*DATASETS, IMAGE_FOLDER.name)
EVENT_DATASET_NAMES = tuple(name for name, entry in DATASETS.items() if entry.kind == "events")


def is_image_folder(name):
    """Whether `name` is `imagefolder:PATH` with a path."""
    return isinstance(name, str) and name.startswith(IMAGE_FOLDER_PREFIX) and len(name) > len(
        IMAGE_FOLDER_PREFIX)


def find_dataset(name, argument="dataset"):
    """The registry entry of `name` (`IMAGE_FOLDER` for `imagefolder:PATH`);
    `argument` is what gave it (`"dataset"`, `"--dataset"`), for the message.

    Raises:
        ValueError: an unknown name, with close names suggested.
    """
    validation.check_string(argument, name)
    if is_image_folder(name):
        return IMAGE_FOLDER
    if name in DATASETS:
        return DATASETS[name]
    raise ValueError(
        f"Unknown dataset {validation.describe(name)}: `{argument}` must be one of "
        f"{list(DATASET_NAMES)} (PATH: a folder of PATH/train/<label>/ and PATH/test/<label>/)."
        + validation.suggestion(name, DATASET_NAMES)
    )


def check_dataset_name(name, argument="dataset"):
    """Raises a clear error for a data set name `load_dataset` does not
    know, or an image folder that does not exist (nothing is read)."""
    import os

    find_dataset(name, argument)
    if is_image_folder(name):
        folder = os.path.expanduser(name[len(IMAGE_FOLDER_PREFIX):])
        if not os.path.isdir(folder):
            raise validation.NoSuchPathError(
                f"`{argument}` names the image folder '{folder}', which does not exist"
                + (" as a directory" if os.path.exists(folder) else "")
                + ": give imagefolder:PATH with PATH/train/<label>/ and PATH/test/<label>/."
            )
    return name


def check_channels(name, channels):
    """`channels` (argument or flag `name`): `None`, 1 (grayscale) or 3 (RGB)."""
    validation.check_integer(name, channels, minimum=1, maximum=3, allow_none=True)
    if channels == 2:
        raise validation.invalid(name, channels, "1 (grayscale), 3 (RGB) or None")
    return channels


def check_data_dir(name, data_dir):
    """`data_dir` (argument or flag `name`): `None` or a path that is, or
    can become, a directory (event data sets are written there)."""
    return validation.check_output_path(name, data_dir, kind="directory", allow_none=True)


def load_dataset(name, data_dir=None, validation_fraction=None, time_steps=None, channels=None,
                 skip_bad_images=False):
    """Loads a registered data set (see the module table) as `DataSplits`.

    Args:
        name: a registered name (`digits`, `cifar10`, `cifar100`,
            `imagenet2012`, `event_digits`, `dvs_gesture`, `cifar10_dvs`,
            `nmnist`) or `imagefolder:PATH`.
        data_dir: TFDS data directory (event data sets: tonic's `save_to`).
        validation_fraction: the part of the training split held out for
            validation (default: the data set's, 0.01 for imagenet2012,
            else 0.1).
        time_steps: `T`, the frames per sequence (event data sets only).
        channels: image data sets: deliver images with this many channels
            (the model's), converting when the data differ; `None` keeps
            the data set's own (image folders: RGB).
        skip_bad_images: image folders: leave unreadable files out (they
            are recorded in `skipped_files`) instead of refusing the folder.

    Example:

    ```python
    splits = load_dataset("digits")
    splits.num_train, splits.num_validation, splits.num_test   # (1293, 144, 360)
    ```
    """
    check_dataset_name(name, "name")
    dataset = find_dataset(name, "name")
    check_data_dir("data_dir", data_dir)
    check_validation_fraction("validation_fraction", validation_fraction, allow_none=True)
    validation.check_integer("time_steps", time_steps, minimum=1, maximum=MAX_TIME_STEPS,
                             allow_none=True)
    check_channels("channels", channels)
    validation.check_bool("skip_bad_images", skip_bad_images)
    fraction = validation_fraction or dataset.validation_fraction
    if dataset.kind == "events":
        if not time_steps:
            raise ValueError(f"Event data set {name!r} needs time_steps (frames per sequence).")
        return dataset.load(data_dir, fraction, time_steps)
    if dataset is IMAGE_FOLDER:
        return image_data.load_image_folder(
            name[len(IMAGE_FOLDER_PREFIX):], fraction, channels or 3, skip_bad_images
        )
    return image_data.with_channels(dataset.load(data_dir, fraction, time_steps), channels)
