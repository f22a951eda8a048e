"""Event-camera data: the offline event set, the tonic pipeline, the public
data sets' placement errors and CIFAR10-DVS split, and training on events.
Nothing is downloaded: the offline set is written into tmp directories."""

import json
import os
import subprocess

import numpy as np
import pytest
from conftest import subprocess_env
from conftest import tool_command

import keras_spiking_tf
from keras_spiking_tf.training.datasets import load_dataset
from keras_spiking_tf.training.datasets import load_digits_arrays
from keras_spiking_tf.training.event_data import EVENT_DTYPE
from keras_spiking_tf.training.event_data import cifar10_dvs_split
from keras_spiking_tf.training.event_data import saccade_events
from keras_spiking_tf.training.event_data import tonic_dataset

tonic = pytest.importorskip("tonic")


@pytest.fixture(scope="module")
def event_dir(tmp_path_factory):
    """The offline event set, written once for this module."""
    directory = tmp_path_factory.mktemp("events")
    tonic_dataset("event_digits", str(directory), train=True)
    return str(directory)


def test_saccade_events_are_a_plausible_recording():
    x_train, _, _, _ = load_digits_arrays()
    image = x_train[0][..., 0] / 255.0
    events = saccade_events(image, np.random.default_rng(0))
    again = saccade_events(image, np.random.default_rng(0))
    np.testing.assert_array_equal(events, again)  # seeded: reproducible
    assert events.dtype == EVENT_DTYPE and 300 < len(events) < 5000
    assert np.all(np.diff(events["t"]) >= 0) and events["t"].min() >= 0
    assert events["t"].max() < 300_000  # three saccades of 100 ms
    assert set(np.unique(events["p"])) == {0, 1}
    assert events["x"].min() >= 0 and events["x"].max() < 16
    assert events["y"].min() >= 0 and events["y"].max() < 16
    # A blank scene gives background noise only, a few events.
    blank = saccade_events(np.zeros((16, 16)), np.random.default_rng(0))
    assert len(blank) < 0.05 * len(events)
    # Events come from where the digit's edges are: more where the image
    # has structure than in its empty border columns.
    counts = np.zeros((16, 16))
    np.add.at(counts, (events["y"], events["x"]), 1)
    assert counts[:, 5:11].sum() > 5 * counts[:, :2].sum()


def test_offline_event_set_is_written_in_tonic_format(event_dir):
    train = tonic_dataset("event_digits", event_dir, train=True)
    test = tonic_dataset("event_digits", event_dir, train=False)
    assert (len(train), len(test)) == (1437, 360)  # the digits image split
    assert isinstance(train, tonic.Dataset) and train.sensor_size == (16, 16, 2)
    events, label = train[0]
    assert events.dtype.names == ("x", "y", "t", "p") and 0 <= label < 10
    _, y_train, _, y_test = load_digits_arrays()
    assert sorted(train.targets) == sorted(y_train.tolist())
    assert sorted(test.targets) == sorted(y_test.tolist())


def test_frames_are_tonics_equal_event_bins(event_dir):
    """The pipeline's frames equal an independent binning of the events:
    sorted by time, cut into T runs of len // T events, counted per pixel
    and polarity (tonic's `ToFrame(n_event_bins=T)`, SDT's split by number)."""
    steps = 5
    splits = load_dataset("event_digits", event_dir, time_steps=steps)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (1293, 144, 360)
    assert splits.class_names == [str(i) for i in range(10)] and splits.channels == 2
    test = tonic_dataset("event_digits", event_dir, train=False)
    for (frames, label), index in zip(splits.test.take(3).as_numpy_iterator(), range(3)):
        events, expected_label = test[index]
        assert label == expected_label and frames.shape == (steps, 16, 16, 2)
        per_bin = len(events) // steps
        for t in range(steps):
            chunk = events[t * per_bin : (t + 1) * per_bin]
            expected = np.zeros((16, 16, 2))
            np.add.at(expected, (chunk["y"], chunk["x"], chunk["p"].astype(int)), 1)
            np.testing.assert_array_equal(frames[t], expected)


def test_missing_public_data_sets_say_where_to_put_them(tmp_path):
    for name, folder in (("dvs_gesture", "DVSGesture"), ("nmnist", "NMNIST"),
                         ("cifar10_dvs", "CIFAR10DVS")):
        with pytest.raises(FileNotFoundError) as raised:
            load_dataset(name, str(tmp_path), time_steps=10)
        message = str(raised.value)
        assert os.path.join(str(tmp_path), folder) in message and "never downloads" in message
    assert list(tmp_path.iterdir()) == [] or all(not any(p.iterdir()) for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="needs time_steps"):
        load_dataset("event_digits", str(tmp_path))


def test_cifar10_dvs_split_is_the_first_ninety_percent_of_each_class():
    files, targets = [], []
    for label, name in enumerate(("airplane", "cat")):
        for index in (0, 1, 2, 10, 11, 12, 13, 14, 15, 16, 17, 100, 101, 3, 4, 5, 6, 7, 8, 9):
            files.append(f"/data/CIFAR10DVS/{name}/cifar10_{name}_{index}.aedat4")
            targets.append(label)
    train, test = cifar10_dvs_split(targets, files)
    assert len(train) == 36 and len(test) == 4
    held = sorted(os.path.basename(files[i]) for i in test)
    # The last 10 % in natural (numeric) order: 100 and 101 of each class.
    assert held == ["cifar10_airplane_100.aedat4", "cifar10_airplane_101.aedat4",
                    "cifar10_cat_100.aedat4", "cifar10_cat_101.aedat4"]
    again_train, again_test = cifar10_dvs_split(targets, files)
    np.testing.assert_array_equal(train, again_train)


def test_event_presets_are_sdts_configurations():
    presets = keras_spiking_tf.list_presets()
    for name, (steps, size, classes) in {
        "st_2_256_dvs_gesture_t16": (16, (128, 128), 11), "sdt_2_256_dvs_gesture_t10": (10, (128, 128), 11),
        "st_2_256_cifar10_dvs": (10, (64, 64), 10), "sdt_2_256_cifar10_dvs": (10, (64, 64), 10),
    }.items():
        meta = presets[name]
        assert (meta["time_steps"], meta["image_size"], meta["num_classes"]) == (steps, size, classes)
    gesture = keras_spiking_tf.from_preset("st_2_256_dvs_gesture_t16", load_weights=False)
    assert gesture.backbone.input_type == "frames" and gesture.backbone.pooling == "0111"
    assert gesture.backbone.num_tokens == 256  # 128 / 2**3 = 16, 16 x 16 tokens
    dvs = keras_spiking_tf.from_preset("sdt_2_256_cifar10_dvs", load_weights=False)
    assert dvs.backbone.erode and dvs.backbone.num_tokens == 256
    assert tuple(dvs.backbone.input.shape[1:]) == (10, 64, 64, 2)


def test_train_tool_on_the_offline_event_set(tmp_path, event_dir):
    """kst-train on event frames: a tiny frames preset, one epoch, through
    checkpoints, metrics and summary like any image run."""
    preset = tmp_path / "tiny_events"
    keras_spiking_tf.save_to_preset(
        keras_spiking_tf.from_preset("st_2_64_event_digits", load_weights=False, num_layers=1,
                                     hidden_dim=32, time_steps=4), str(preset))
    output = tmp_path / "run"
    result = subprocess.run(
        [*tool_command("kst-train"), "--preset", str(preset), "--dataset", "event_digits",
         "--data_dir", event_dir, "--epochs", "1", "--output_dir", str(output), "--verbose", "0"],
        env=subprocess_env(), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on event_digits: 1,293 train / 144 validation / 360 test" in result.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert summary["global_step"] == 1293 // 64 and 0.0 <= summary["test_accuracy"] <= 1.0
    model = keras_spiking_tf.from_preset(summary["preset_dir"])
    assert model.backbone.input_type == "frames" and model.backbone.time_steps == 4


def test_image_preset_on_event_data_is_refused(tmp_path, event_dir):
    from keras_spiking_tf.training.trainer import TrainConfig
    from keras_spiking_tf.training.trainer import train

    with pytest.raises(ValueError, match="takes image inputs but dataset 'event_digits' yields frame"):
        train(TrainConfig(preset="st_2_64_digits", dataset="event_digits", data_dir=event_dir,
                          output_dir=str(tmp_path / "run"), verbose=0))
    assert not (tmp_path / "run").exists()
