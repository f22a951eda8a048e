"""Event-camera data sets: events -> frames -> `tf.data` (design.md §9).

Every event data set goes through one pipeline: a `tonic` data set yields
each recording's events `(x, y, t, p)`; tonic's
`ToFrame(sensor_size, n_event_bins=T)` integrates them into `T` frames with an
equal number of events each (SDT's `split_by="number"`), every frame holding
the event count per pixel and polarity; the frames, transposed to
`(T, H, W, 2)`, become a `tf.data` split. (tonic's equal-count bins drop
the fewer than `T` events left over; SpikingJelly's put them into the last
frame.)

| name           | source (tonic)                    | sensor  | classes | splits                                    |
|----------------|-----------------------------------|---------|---------|-------------------------------------------|
| `event_digits` | written here from the bundled digits | 16×16 | 10      | the digits image split (80/20, stratified) |
| `dvs_gesture`  | `DVSGesture`                      | 128×128 | 11      | official train / test                     |
| `cifar10_dvs`  | `CIFAR10DVS`                      | 128×128 | 10      | no official split: per class, the first 90 % of the recordings (in file-name order) train, the last 10 % test, as SDT |
| `nmnist`       | `NMNIST`                          | 34×34   | 10      | official train / test                     |

Nothing is downloaded: a data set that is not in `data_dir` is an error
saying where tonic expects its files (`<data_dir>/<tonic class name>/...`).

`event_digits` is the offline event set for the default event job and CI:
each bundled digits image (scaled to the 16×16 sensor) is moved along
three saccades forming a triangle, as N-MNIST was recorded by moving a DVS
camera in front of MNIST digits, and a simulated sensor emits an ON (OFF)
event whenever a pixel's log intensity has risen (fallen) by the contrast
threshold since its last event. The events are written once, in tonic's
event format (structured `x, y, t, p` arrays in `.npy` files), into
`<data_dir>/EventDigits/` and read back like any other tonic data set.
"""

import os

import numpy as np
import tensorflow as tf

from keras_spiking_tf.training.image_data import load_digits_arrays
from keras_spiking_tf.training.splits import DataSplits
from keras_spiking_tf.training.splits import describe_hold_out
from keras_spiking_tf.training.splits import validation_indices

EVENT_DATASETS = ("event_digits", "dvs_gesture", "cifar10_dvs", "nmnist")
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
DEFAULT_DATA_DIR = os.path.join("~", ".keras", "datasets")
CIFAR10_DVS_TRAIN_FRACTION = 0.9


# --- the offline event set ------------------------------------------------------


def saccade_events(image, rng, saccade_us=100_000, substeps=24, amplitude=1.5,
                   contrast=0.4, noise_rate_hz=0.5):
    """Events of a sensor watching `image` (H, W in [0, 1]) move along three
    saccades (a triangle of side `2 * amplitude` pixels), as N-MNIST.

    Args:
        image: the scene, `(H, W)` floats in [0, 1]; the sensor is H x W.
        rng: a `np.random.Generator` (jitter of the thresholds, noise).
        saccade_us: duration of one saccade in microseconds.
        substeps: simulated sensor updates per saccade.
        amplitude: the triangle's half-size in pixels.
        contrast: the log-intensity change that fires an event (a DVS's
            contrast threshold; each pixel's threshold is jittered by 10 %).
        noise_rate_hz: background events per pixel and second.

    Returns:
        A structured array of events (`EVENT_DTYPE`), sorted by time.
    """
    from scipy.ndimage import shift

    height, width = image.shape
    corners = np.array([(-amplitude, -amplitude), (amplitude, -amplitude), (0.0, amplitude)])
    path = []
    for leg in range(3):
        start, end = corners[leg], corners[(leg + 1) % 3]
        for k in range(substeps):
            path.append(start + (end - start) * (k + 1) / substeps)
    step_us = saccade_us // substeps
    times = np.arange(1, len(path) + 1, dtype=np.int64) * step_us

    def log_intensity(offset):
        return np.log(np.clip(shift(image, offset, order=1, mode="constant"), 0, 1) + 0.1)

    reference = log_intensity(corners[0])
    threshold = contrast * (1 + 0.1 * rng.standard_normal((height, width)))
    columns = {key: [] for key in ("x", "y", "t", "p")}
    for offset, t in zip(path, times):
        change = log_intensity(offset) - reference
        count = np.floor(np.abs(change) / threshold).astype(np.int64)
        ys, xs = np.nonzero(count)
        repeats = count[ys, xs]
        columns["x"].append(np.repeat(xs, repeats))
        columns["y"].append(np.repeat(ys, repeats))
        columns["p"].append(np.repeat((change[ys, xs] > 0).astype(np.int8), repeats))
        columns["t"].append(t - rng.integers(0, step_us, size=int(repeats.sum())))
        reference += np.sign(change) * count * threshold
    noise = int(rng.poisson(noise_rate_hz * 3 * saccade_us * 1e-6 * height * width))
    columns["x"].append(rng.integers(0, width, noise))
    columns["y"].append(rng.integers(0, height, noise))
    columns["t"].append(rng.integers(0, int(times[-1]), noise))
    columns["p"].append(rng.integers(0, 2, noise).astype(np.int8))
    events = np.zeros(sum(len(c) for c in columns["x"]), dtype=EVENT_DTYPE)
    for key, parts in columns.items():
        events[key] = np.concatenate(parts)
    return np.sort(events, order="t")


def write_event_digits(directory, seed=0):
    """Writes the offline event set into `directory/EventDigits/`: for each
    digits image of the fixed image split, its events as
    `<split>/<label>/<index>.npy`. Written once, atomically per file."""
    from keras_spiking_tf.atomic_directory import make_staging_directory
    from keras_spiking_tf.atomic_directory import replace_directory

    root = os.path.join(os.path.expanduser(directory), "EventDigits")
    if os.path.isdir(root):
        return root
    x_train, y_train, x_test, y_test = load_digits_arrays()
    staging = make_staging_directory(os.path.dirname(root), ".eventdigits")
    rng = np.random.default_rng(seed)
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = os.path.join(staging, split, str(int(label)))
            os.makedirs(folder, exist_ok=True)
            events = saccade_events(image[..., 0].astype("float32") / 255.0, rng)
            np.save(os.path.join(folder, f"{index:04d}.npy"), events)
    replace_directory(staging, root)
    return root


def import_tonic():
    from keras_spiking_tf.optional_dependencies import require

    return require("tonic", "Event-camera data sets (tonic)")


def event_digits_dataset(data_dir, train):
    """The offline event set as a tonic data set (`tonic.Dataset` API:
    `dataset[i] -> (events, label)`, `sensor_size`, `classes`)."""
    tonic = import_tonic()

    class EventDigits(tonic.Dataset):
        sensor_size = (16, 16, 2)
        classes = [str(label) for label in range(10)]
        dtype = EVENT_DTYPE
        ordering = EVENT_DTYPE.names

        def __init__(self, save_to, train=True, transform=None):
            super().__init__(save_to, transform=transform)
            self.folder_name = "train" if train else "test"
            if not self._check_exists():
                write_event_digits(save_to)
            folder = os.path.join(self.location_on_system, self.folder_name)
            for label in sorted(os.listdir(folder), key=int):
                for name in sorted(os.listdir(os.path.join(folder, label))):
                    self.data.append(os.path.join(folder, label, name))
                    self.targets.append(int(label))

        def __getitem__(self, index):
            events = np.load(self.data[index])
            if self.transform is not None:
                events = self.transform(events)
            return events, self.targets[index]

        def __len__(self):
            return len(self.data)

        def _check_exists(self):
            return self._folder_contains_at_least_n_files_of_type(100, ".npy")

    return EventDigits(data_dir, train=train)


# --- the public data sets, never downloaded ------------------------------------------


def _missing(name, location, what):
    return FileNotFoundError(
        f"Event data set '{name}' is not in '{location}'. Download it once ({what}) and "
        f"unpack it there, or pass the --data_dir that holds it; this tool never downloads "
        "data sets itself."
    )


def _offline(tonic_class, name, what):
    """`tonic_class` with its download replaced by a clear error (same class
    name, so tonic looks for the files in the same place)."""

    def download(self):
        raise _missing(name, self.location_on_system, what)

    return type(tonic_class.__name__, (tonic_class,), {"download": download})


def tonic_dataset(name, data_dir, train):
    """The tonic data set `name` (see the module table), from `data_dir`."""
    tonic = import_tonic()

    data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_DIR)
    if name == "event_digits":
        return event_digits_dataset(data_dir, train)
    if name == "dvs_gesture":
        cls = _offline(tonic.datasets.DVSGesture, name,
                       "tonic.datasets.DVSGesture(save_to=DATA_DIR) downloads ibmGestureTrain/Test")
        return cls(data_dir, train=train)
    if name == "nmnist":
        cls = _offline(tonic.datasets.NMNIST, name,
                       "tonic.datasets.NMNIST(save_to=DATA_DIR) downloads train.zip/test.zip")
        return cls(data_dir, train=train)
    if name == "cifar10_dvs":
        cls = _offline(tonic.datasets.CIFAR10DVS, name,
                       "tonic.datasets.CIFAR10DVS(save_to=DATA_DIR) downloads CIFAR10DVS.zip")
        return cls(data_dir)
    raise ValueError(f"Unknown event data set {name!r}; use one of {list(EVENT_DATASETS)}.")


def cifar10_dvs_split(targets, files):
    """SDT's CIFAR10-DVS split: per class, recordings in file-name order
    (numbers compared as numbers), the first 90 % train, the rest test.
    Returns `(train indices, test indices)`."""
    import re

    def natural(path):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]

    train, test = [], []
    targets = np.asarray(targets)
    for label in np.unique(targets):
        members = sorted(np.nonzero(targets == label)[0], key=lambda i: natural(files[i]))
        cut = int(round(CIFAR10_DVS_TRAIN_FRACTION * len(members)))
        train += members[:cut]
        test += members[cut:]
    return np.array(sorted(train)), np.array(sorted(test))


def frames_of(dataset, indices, time_steps):
    """A `tf.data` split of `(frames (T, H, W, 2) float32, label int64)`:
    each recording's events through tonic's `ToFrame(n_event_bins=T)`."""
    tonic = import_tonic()

    width, height, polarities = dataset.sensor_size
    to_frames = tonic.transforms.ToFrame(sensor_size=dataset.sensor_size, n_event_bins=time_steps)
    indices = np.asarray(indices)

    def generate():
        for index in indices:
            events, label = dataset[int(index)]
            frames = to_frames(events)  # (T, P, H, W) event counts
            yield np.transpose(frames, (0, 2, 3, 1)).astype("float32"), np.int64(label)

    signature = (
        tf.TensorSpec((time_steps, height, width, polarities), tf.float32),
        tf.TensorSpec((), tf.int64),
    )
    data = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if len(indices) * time_steps * height * width * polarities * 4 < (512 << 20):
        data = data.cache()  # small sets are framed once
    return data


def load_event_dataset(name, data_dir, time_steps, validation_fraction):
    """`DataSplits` of frame sequences of event data set `name`."""
    if name == "cifar10_dvs":
        whole = tonic_dataset(name, data_dir, train=True)
        train_set = test_set = whole
        train_indices, test_indices = cifar10_dvs_split(whole.targets, whole.data)
    else:
        train_set = tonic_dataset(name, data_dir, train=True)
        test_set = tonic_dataset(name, data_dir, train=False)
        train_indices, test_indices = np.arange(len(train_set)), np.arange(len(test_set))
    labels = np.asarray(train_set.targets)[train_indices]
    held = validation_indices(labels, validation_fraction)
    keep = np.setdiff1d(np.arange(len(train_indices)), held)
    classes = train_set.classes
    class_names = list(classes) if not isinstance(classes, dict) else [
        name for name, _ in sorted(classes.items(), key=lambda item: item[1])
    ]
    return DataSplits(
        train=frames_of(train_set, train_indices[keep], time_steps),
        validation=frames_of(train_set, train_indices[held], time_steps),
        test=frames_of(test_set, test_indices, time_steps),
        num_train=len(keep),
        num_validation=len(held),
        num_test=len(test_indices),
        num_classes=len(class_names),
        channels=train_set.sensor_size[2],
        validation_rule=describe_hold_out(validation_fraction, len(held), len(labels)),
        class_names=class_names,
    )
