"""Training: recipes, schedule, data paths, distribution, resume, errors.

The expensive end-to-end runs use a tiny preset (1 block, D=32, T=2) on
digits and run in subprocesses where TensorFlow must be configured before it
starts (logical CPUs, TF_CONFIG) or where the test kills the process.
"""

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
from conftest import REPO
from conftest import subprocess_env
from conftest import tool_command

import keras_spiking_tf
from keras_spiking_tf.training.checkpointing import CheckpointDirectory
from keras_spiking_tf.training.checkpointing import NonFiniteLossError
from keras_spiking_tf.training.checkpointing import ResumableCheckpoint
from keras_spiking_tf.training.checkpointing import initial_state
from keras_spiking_tf.training.datasets import load_dataset
from keras_spiking_tf.training.datasets import load_digits_arrays
from keras_spiking_tf.training.optimization import make_optimizer
from keras_spiking_tf.training import precision
from keras_spiking_tf.training.recipes import builtin_recipes
from keras_spiking_tf.training.recipes import load_recipe
from keras_spiking_tf.training.schedules import WarmupCosineSchedule

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute / tf.data paths"
)


def tiny_preset(directory, base="st_2_64_digits"):
    """A 1-block, D=32, T=2 preset saved to `directory` (fast to train)."""
    model = keras_spiking_tf.from_preset(
        base, load_weights=False, num_layers=1, hidden_dim=32, time_steps=2
    )
    keras_spiking_tf.save_to_preset(model, directory)
    return str(directory)


@pytest.fixture(scope="module")
def tiny_digits_preset(tmp_path_factory):
    return tiny_preset(tmp_path_factory.mktemp("presets") / "tiny_digits")


# digits: 1437 training images, 144 of them held out for validation.
DIGITS_TRAIN = 1293
DIGITS_STEPS = DIGITS_TRAIN // 64  # 20 steps per epoch at the recipe's batch


def run_worker(config, weights_path, logical_cpus=1, env=None, timeout=600):
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "_train_worker.py"),
         json.dumps(config), str(weights_path), str(logical_cpus)],
        env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(weights_path)


# --- recipes and schedule ---------------------------------------------------


def test_builtin_recipes_parse_with_spec_values():
    assert set(builtin_recipes()) >= {"cifar", "imagenet", "digits"}
    cifar = load_recipe("cifar")
    # design.md §6, CIFAR: AdamW 3e-4, wd 0.06, batch 64, 20 warm-up epochs from
    # 1e-6, min 1e-5, 300 + 10 cool-down, mixup 0.5 off after 200, ls 0.1.
    assert (cifar.optimizer, cifar.learning_rate, cifar.weight_decay) == ("adamw", 3e-4, 0.06)
    assert (cifar.batch_size, cifar.warmup_epochs, cifar.warmup_learning_rate) == (64, 20, 1e-6)
    assert (cifar.min_learning_rate, cifar.epochs, cifar.cooldown_epochs) == (1e-5, 300, 10)
    assert (cifar.mixup_alpha, cifar.cutmix_alpha, cifar.mix_off_epoch) == (0.5, 0.0, 200)
    assert cifar.rand_augment == {"num_ops": 1, "magnitude": 9, "magnitude_std": 0.4}
    assert cifar.label_smoothing == 0.1 and cifar.random_resized_crop_scale is None
    imagenet = load_recipe("imagenet")
    assert (imagenet.optimizer, imagenet.optimizer_epsilon, imagenet.clipnorm) == ("lamb", 1e-6, 1.0)
    assert imagenet.weight_decay == 0.01 and imagenet.mixup_alpha == 0.2
    assert imagenet.cutmix_alpha == 1.0 and imagenet.mixed_precision == "mixed_bfloat16"


def test_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="Unknown recipe 'cifar1000'"):
        load_recipe("cifar1000")
    bad = tmp_path / "bad.json"
    values = json.loads(json.dumps(load_recipe("digits").__dict__))
    values["warmup"] = 3
    del values["epochs"]
    bad.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=r"unknown keys \['warmup'\].*lacks keys \['epochs'\]"):
        load_recipe(str(bad))


def timm_cosine(epoch, base=3e-4, warmup_lr=1e-6, min_lr=1e-5, warmup=20, epochs=300):
    """timm's CosineLRScheduler (warmup_prefix=False, t_in_epochs), by hand."""
    if epoch < warmup:
        return warmup_lr + epoch * (base - warmup_lr) / warmup
    if epoch >= epochs:
        return min_lr
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * epoch / epochs))


@pytest.mark.parametrize("epoch", [0, 1, 10, 19, 20, 150, 299, 300, 309])
def test_per_epoch_cosine_schedule_matches_timm(epoch):
    steps = 782
    schedule = WarmupCosineSchedule(3e-4, 1e-6, 1e-5, 20, 300, steps, unit="epoch")
    for step in (epoch * steps, epoch * steps + steps // 2, epoch * steps + steps - 1):
        got = float(keras.ops.convert_to_numpy(schedule(step)))
        assert got == pytest.approx(timm_cosine(epoch), rel=1e-5)


def test_per_step_schedule_interpolates_within_epochs():
    schedule = WarmupCosineSchedule(1e-3, 0.0, 0.0, 2, 10, 100, unit="step")
    # Half-way through warm-up epoch 1: t = 1.5 epochs -> 1.5 / 2 of the peak.
    assert float(keras.ops.convert_to_numpy(schedule(150))) == pytest.approx(0.75e-3, rel=1e-5)
    # t = 5 of 10 epochs: the cosine is at its midpoint.
    assert float(keras.ops.convert_to_numpy(schedule(500))) == pytest.approx(0.5e-3, rel=1e-5)


def test_weight_decay_skips_biases_and_batch_norm():
    recipe = load_recipe("cifar", batch_size=64)
    model = keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=16, time_steps=1
    )
    optimizer = make_optimizer(recipe, model, steps_per_epoch=1)
    model.compile(optimizer=optimizer)
    variables = model.trainable_variables
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    zeros = [keras.ops.zeros_like(v) for v in variables]
    optimizer.apply_gradients(zip(zeros, variables))
    lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    for variable, old in zip(variables, before):
        new = keras.ops.convert_to_numpy(variable)
        if len(variable.shape) >= 2:  # decoupled decay: w - lr * wd * w
            np.testing.assert_allclose(new, old * (1 - lr * 0.06), rtol=1e-6, atol=1e-12)
        else:  # biases, BN gamma/beta: untouched by a zero gradient
            np.testing.assert_array_equal(new, old)


# --- data -------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,native",
    [("fpu vme avx512f avx512_bf16 avx512_vnni", True), ("fpu sse4_2 amx_bf16 amx_tile", True),
     ("fpu sse4_2 avx2 avx512f", False), ("fpu avx512_bf16x", False)],
)
def test_native_bfloat16_is_read_from_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
    assert precision.cpu_has_native_bfloat16(str(cpuinfo)) is native
    assert precision.cpu_has_native_bfloat16(str(tmp_path / "missing")) is False


def test_dtype_policy_resolution(monkeypatch):
    monkeypatch.setattr(precision, "fastest_dtype_policy", lambda: "FASTEST")
    assert precision.resolve_dtype_policy("float32", "mixed_bfloat16") == "float32"
    assert precision.resolve_dtype_policy("auto", "mixed_bfloat16") == "mixed_bfloat16"
    assert precision.resolve_dtype_policy("auto", None) == "FASTEST"
    assert precision.resolve_dtype_policy(None, None) == "FASTEST"


def test_fastest_dtype_policy_on_this_machine():
    # Only CPUs here: bfloat16 exactly when the CPU has it (see the
    # measurements in docs/guides/performance.md).
    assert precision.accelerator()[0] == "cpu"
    expected = "mixed_bfloat16" if precision.cpu_has_native_bfloat16() else "float32"
    assert precision.fastest_dtype_policy() == expected


def split_arrays(split):
    pairs = list(split.as_numpy_iterator())
    return np.stack([x for x, _ in pairs]), np.array([int(y) for _, y in pairs])


def test_digits_split_is_fixed_and_stratified():
    splits = load_dataset("digits")
    sizes = (splits.num_train, splits.num_validation, splits.num_test)
    assert sizes == (DIGITS_TRAIN, 144, 360) and (splits.num_classes, splits.channels) == (10, 1)
    x_test, y_test = split_arrays(splits.test)
    assert np.all(np.bincount(y_test, minlength=10) >= 35)  # about 36 per class
    # Train and validation partition scikit-learn's 1437 training images...
    from sklearn.datasets import load_digits

    x_train, y_train = split_arrays(splits.train)
    x_val, y_val = split_arrays(splits.validation)
    assert (len(x_train), len(x_val)) == (DIGITS_TRAIN, 144)
    every = np.concatenate([x_train, x_val])
    original, original_labels, _, _ = load_digits_arrays()
    assert sorted(map(bytes, every)) == sorted(map(bytes, original))
    # ... per class: each class's share of the validation split is its share
    # of the training data, to within one image.
    per_class = np.bincount(original_labels, minlength=10)
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - per_class * 144 / 1437) <= 1)
    assert len(load_digits().target) == 1797  # 1437 + 360: the test split is untouched
    again_x, _ = split_arrays(load_dataset("digits").validation)
    np.testing.assert_array_equal(x_val, again_x)
    assert x_val.shape[1:] == (16, 16, 1) and x_val.dtype == np.uint8
    assert "stratified" in splits.validation_rule and "144" in splits.validation_rule


def test_validation_hold_out_is_stratified_and_refuses_tiny_classes():
    from keras_spiking_tf.training.splits import validation_indices

    labels = np.repeat(np.arange(4), [40, 20, 20, 20])
    held_out = validation_indices(labels, 0.1)
    assert np.array_equal(np.bincount(labels[held_out], minlength=4), [4, 2, 2, 2])
    np.testing.assert_array_equal(held_out, validation_indices(labels, 0.1))  # seeded
    with pytest.raises(ValueError, match="too few to hold out"):
        validation_indices(np.array([0, 0, 1, 2, 2]), 0.1)  # class 1 has one example


def test_unknown_dataset_and_missing_data_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="not prepared in data_dir"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_train.tar"):
        load_dataset("imagenet2012", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")


@TF_ONLY
def test_cifar10_path_through_tfds_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    from keras_spiking_tf.training.trainer import TrainConfig
    from keras_spiking_tf.training.trainer import train

    preset = tiny_preset(tmp_path / "tiny_cifar", base="st_2_256_cifar10")
    with tfds.testing.mock_data(num_examples=200):
        splits = load_dataset("cifar10")
        assert (splits.num_train, splits.num_validation) == (180, 20)
        assert (splits.num_classes, splits.channels) == (10, 3)
        assert sum(1 for _ in splits.train) == 180 and sum(1 for _ in splits.validation) == 20
        summary = train(
            TrainConfig(preset=preset, dataset="cifar10", epochs=1, batch_size=16,
                        output_dir=str(tmp_path / "run"), verbose=0)
        )
    assert summary["global_step"] == 180 // 16 and 0.0 <= summary["test_accuracy"] <= 1.0
    # The CIFAR recipe's augmentation (flip, RandAugment, mixup) ran.
    assert summary["recipe"]["mixup_alpha"] == 0.5


@TF_ONLY
def test_imagefolder_path_on_written_images(tmp_path):
    from PIL import Image

    from keras_spiking_tf.training.trainer import TrainConfig
    from keras_spiking_tf.training.trainer import train

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label, colour in (("red", 0), ("blue", 2)):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 60, (40, 36, 3), dtype=np.uint8)
                pixels[..., colour] = 220
                Image.fromarray(pixels).save(folder / f"{index}.png")
    splits = load_dataset(f"imagefolder:{tmp_path / 'images'}")
    assert (splits.num_train, splits.num_validation, splits.num_test) == (22, 2, 8)
    assert splits.num_classes == 2
    # One image of each class is held out (stratified).
    assert sorted(int(y) for _, y in splits.validation.as_numpy_iterator()) == [0, 1]
    preset = tiny_preset(tmp_path / "tiny_rgb", base="st_2_256_cifar10")
    summary = train(
        TrainConfig(preset=preset, dataset=f"imagefolder:{tmp_path / 'images'}",
                    recipe="digits", epochs=1, batch_size=8,
                    output_dir=str(tmp_path / "run"), verbose=0)
    )
    trained = keras_spiking_tf.from_preset(summary["preset_dir"])
    assert trained.num_classes == 2  # a fresh head sized for the folder's labels
    assert summary["global_step"] == 22 // 8


# --- the main job, end to end -------------------------------------------------


def read_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_accuracy(preset_dir, split="test"):
    """Accuracy of a saved preset on a digits split, computed here with
    `predict` (independently of the trainer's evaluation)."""
    x, y = split_arrays(getattr(load_dataset("digits"), split))
    model = keras_spiking_tf.from_preset(preset_dir)
    return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))


test_accuracy.__test__ = False  # a helper, not a test


@TF_ONLY
def test_train_tool_end_to_end(tmp_path, tiny_digits_preset):
    """`kst-train` as a user runs it: no --output_dir, so the run goes to a
    fresh runs/<preset>-<time>/ in the working directory; run again, the
    second run gets a directory of its own instead of an error."""
    command = [*tool_command("kst-train"), "--preset", tiny_digits_preset, "--verbose", "0"]
    result = subprocess.run(command + ["--epochs", "2"], cwd=tmp_path, env=subprocess_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (output,) = (tmp_path / "runs").iterdir()
    assert output.name.startswith("tiny_digits-")
    # One line says what is trained, before training, and no TensorFlow
    # start-up lines reach the console.
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("Training ") and "; T=2, " in first_line
    assert "(a2os2a; Spiking Transformer (SDT layout), 1 encoder blocks of width 32" in first_line
    assert f"{DIGITS_TRAIN:,} train / 144 validation / 360 test images" in first_line
    assert "cuda" not in result.stderr.lower() and "oneDNN" not in result.stderr

    summary = json.loads((output / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["global_step"] == 2 * DIGITS_STEPS
    assert summary["splits"]["sizes"] == {"train": DIGITS_TRAIN, "validation": 144, "test": 360}
    assert summary["splits"]["test_accuracy"].startswith("test")
    assert summary["splits"]["best_val_accuracy"].startswith("validation")
    rows = read_rows(output / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(int(r["steps"]) == DIGITS_STEPS for r in rows)
    # Model selection is on the validation split: the selected epoch is the
    # first with the highest val_accuracy (ties: the lowest val_loss), and
    # best_preset holds it.
    val = [float(r["val_accuracy"]) for r in rows]
    val_loss = [float(r["val_loss"]) for r in rows]
    assert summary["best_epoch"] == max(range(len(rows)), key=lambda i: (val[i], -val_loss[i])) + 1
    assert summary["best_val_accuracy"] == pytest.approx(max(val))
    assert summary["val_accuracy"] == pytest.approx(val[-1])
    best_metadata = json.loads((output / "best_preset" / "metadata.json").read_text())
    assert best_metadata["training"]["epochs_completed"] == summary["best_epoch"]
    assert best_metadata["training"]["val_accuracy"] == pytest.approx(summary["best_val_accuracy"])
    # The reported accuracies are those of the saved presets, on their splits.
    assert summary["test_accuracy"] == pytest.approx(test_accuracy(summary["preset_dir"]), abs=1e-9)
    assert summary["best_test_accuracy"] == pytest.approx(
        test_accuracy(summary["best_preset_dir"]), abs=1e-9)
    assert summary["best_val_accuracy"] == pytest.approx(
        test_accuracy(summary["best_preset_dir"], "validation"), abs=1e-6)
    assert any(name.startswith("events") for _, _, files in os.walk(output / "tensorboard") for name in files)
    assert "test accuracy" in result.stdout.splitlines()[-1]
    # Both presets carry their record, model card and the data set's class names.
    final_metadata = json.loads((output / "final_preset" / "metadata.json").read_text())
    assert final_metadata["evaluation"]["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert final_metadata["evaluation"]["test_images"] == 360
    assert final_metadata["energy"]["images"] == "the first 32 validation images"
    assert final_metadata["energy"]["energy_mj"] > 0 and final_metadata["energy"]["sops"] > 0
    best_card = (output / "best_preset" / "README.md").read_text()
    assert f"{100 * summary['best_test_accuracy']:.2f} % top-1 on the test split, 360 images" in best_card
    assert "(the epoch with the best validation accuracy)" in best_card
    assert keras_spiking_tf.from_preset(summary["preset_dir"]).class_names == [str(i) for i in range(10)]

    again = subprocess.run(command + ["--epochs", "1"], cwd=tmp_path, env=subprocess_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_shipped_preset_loads_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the load
        model = keras_spiking_tf.from_preset("st_2_64_digits")
    assert model.num_classes == 10


@pytest.mark.parametrize(
    "field,value,flag",
    [("epochs", 0, "`epochs`"), ("epochs", -3, "`epochs`"), ("batch_size", 0, "`batch_size`"),
     ("batch_size", -1, "`batch_size`"), ("checkpoint_every", 0, "`checkpoint_every`"),
     ("checkpoint_every", -5, "`checkpoint_every`"), ("time_steps", 0, "`time_steps`"),
     ("validation_fraction", 1.5, "`validation_fraction`"), ("attention", "ssx", "`attention`")],
)
def test_bad_training_arguments_are_refused_before_anything_is_written(tmp_path, field, value, flag):
    from keras_spiking_tf.training.trainer import TrainConfig
    from keras_spiking_tf.training.trainer import train

    output = tmp_path / "run"
    with pytest.raises(ValueError, match=flag):
        train(TrainConfig(output_dir=str(output), verbose=0, **{field: value}))
    assert not output.exists()


@TF_ONLY
@pytest.mark.parametrize("flags", [["--batch_size", "0"], ["--batch_size=-4"], ["--epochs", "0"],
                                   ["--epochs=-1"], ["--checkpoint_every", "0"]])
def test_train_tool_refuses_non_positive_numbers(tmp_path, flags):
    result = subprocess.run([*tool_command("kst-train"), *flags], cwd=tmp_path,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    name = flags[0].split("=")[0]
    assert f"flag {name}=" in result.stderr and "is not a positive integer" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, no runs/ directory


@TF_ONLY
def test_output_dir_and_preset_errors(tmp_path, tiny_digits_preset):
    from keras_spiking_tf.training.trainer import TrainConfig
    from keras_spiking_tf.training.trainer import train

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"`output_dir` must be a path where a directory can be "
                                         r"written.*is a file, not a directory"):
        train(TrainConfig(preset=tiny_digits_preset, output_dir=str(blocker / "run"), verbose=0))
    with pytest.raises(ValueError, match="Unknown preset 'st_2_64_digit'"):
        train(TrainConfig(preset="st_2_64_digit", output_dir=str(tmp_path / "r1"), verbose=0))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(TrainConfig(preset=str(tmp_path / "no_preset"), output_dir=str(tmp_path / "r2"), verbose=0))
    with pytest.raises(ValueError, match="takes frames inputs but dataset 'digits' yields images"):
        train(TrainConfig(preset="st_2_64_event_digits", epochs=1, output_dir=str(tmp_path / "r3"),
                          verbose=0))
    with pytest.raises(FileNotFoundError, match="no checkpoint to continue from"):
        train(TrainConfig(preset=tiny_digits_preset, resume=True, output_dir=str(tmp_path / "r4"), verbose=0))
    # Nothing was created for any of the refused runs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_resume_without_output_dir_picks_the_newest_unfinished_run(tmp_path, monkeypatch):
    from keras_spiking_tf.training.trainer import TrainConfig
    from keras_spiking_tf.training.trainer import resolve_output_dir

    monkeypatch.chdir(tmp_path)
    for name, finished in (("st_2_64_digits-20260101-000000", False),
                           ("st_2_64_digits-20260102-000000", False),
                           ("st_2_64_digits-20260103-000000", True),
                           ("other-20260104-000000", False)):
        (tmp_path / "runs" / name / "checkpoints" / "ckpt-0000000001").mkdir(parents=True)
        if finished:
            (tmp_path / "runs" / name / "summary.json").write_text("{}")
    assert resolve_output_dir(TrainConfig(resume=True)) == os.path.join(
        "runs", "st_2_64_digits-20260102-000000")
    fresh = resolve_output_dir(TrainConfig())
    assert fresh.startswith(os.path.join("runs", "st_2_64_digits-")) and not os.path.exists(fresh)
    with pytest.raises(FileNotFoundError, match="no unfinished run of 'st_2_256_cifar10'"):
        resolve_output_dir(TrainConfig(preset="st_2_256_cifar10", resume=True))


# --- fault tolerance ------------------------------------------------------------


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 3), "float32")
    x[6] = np.nan  # batch size 2: the 4th step sees a NaN
    checkpoints = CheckpointDirectory(str(tmp_path / "ckpt"))
    callback = ResumableCheckpoint(checkpoints, steps_per_epoch=4, every_steps=1)
    with pytest.raises(NonFiniteLossError, match="global step 4"):
        model.fit(x, np.zeros((8, 1)), batch_size=2, shuffle=False, callbacks=[callback], verbose=0)
    latest = checkpoints.latest()
    assert latest.endswith("ckpt-0000000003")
    state = json.loads(open(os.path.join(latest, "state.json")).read())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 3, 3)
    with h5py.File(os.path.join(latest, "model.weights.h5")) as weights:
        def all_finite(group):
            return all(
                all_finite(item) if isinstance(item, h5py.Group) else np.all(np.isfinite(item[()]))
                for item in group.values()
            )

        assert all_finite(weights)


def test_epoch_means_combine_segments_by_steps():
    from keras_spiking_tf.training.checkpointing import combine_means

    # 3 steps at mean loss 2.0, then 5 steps at 1.2: (6 + 6) / 8 = 1.5.
    combined = combine_means({"steps": 3, "loss": 2.0, "accuracy": 0.5},
                             {"steps": 5, "loss": 1.2, "accuracy": 0.9})
    assert combined == {"steps": 8, "loss": pytest.approx(1.5), "accuracy": pytest.approx(0.75)}
    assert combine_means(None, {"steps": 2, "loss": 1.0}) == {"steps": 2, "loss": 1.0}


def test_checkpoint_and_preset_directories_follow_the_umask(tmp_path):
    import stat

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    old = os.umask(0o027)
    try:
        path = CheckpointDirectory(str(tmp_path / "ckpt")).save(model, {"global_step": 1})
        preset = keras_spiking_tf.save_to_preset(
            keras_spiking_tf.from_preset("st_2_64_digits"), str(tmp_path / "preset"))
    finally:
        os.umask(old)
    for directory in (path, preset):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o750, directory
    assert stat.S_IMODE(os.stat(os.path.join(path, "state.json")).st_mode) == 0o640


def test_best_preset_lost_to_a_kill_after_its_checkpoint_is_rewritten(tmp_path):
    """A kill between the epoch-end checkpoint that records a new best epoch
    and the best_preset write that follows: resuming writes it from the
    restored model, which holds exactly that epoch's weights."""
    from keras_spiking_tf.training.trainer import _repair_best_preset

    model = keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=16, time_steps=1)
    best = tmp_path / "best_preset"
    state = {**initial_state(), "epoch": 3, "step_in_epoch": 0, "best_epoch": 2,
             "best_val_accuracy": 0.5}
    _repair_best_preset(str(best), state, model, chief=True)
    metadata = json.loads((best / "metadata.json").read_text())
    assert metadata["training"] == {"epochs_completed": 3, "val_accuracy": 0.5}
    _repair_best_preset(str(best), state, model, chief=True)  # consistent: untouched
    assert json.loads((best / "metadata.json").read_text()) == metadata
    # A best_preset that is not the recorded epoch, and no way to rebuild it.
    with pytest.raises(FileNotFoundError, match="best epoch \\(2\\)"):
        _repair_best_preset(str(best), {**state, "best_epoch": 1, "epoch": 3}, model, chief=True)


def plant_staging(directory, prefix, pid):
    """A staging entry as an interrupted save of process `pid` leaves it."""
    from keras_spiking_tf import atomic_directory

    name = f"{prefix}-{atomic_directory._HOST}-{pid}-deadbeef"
    (directory / name).mkdir(parents=True)
    (directory / name / "model.weights.h5").write_bytes(b"half a file")
    return directory / name


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@TF_ONLY
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, tiny_digits_preset):
    config = dict(preset=tiny_digits_preset, epochs=2, checkpoint_every=4, seed=3, verbose=0)
    reference = run_worker({**config, "output_dir": str(tmp_path / "whole")}, tmp_path / "whole.npz")

    # Start the same run, kill it as soon as a checkpoint inside epoch 2 exists.
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        [*tool_command("kst-train"), "--preset", tiny_digits_preset,
         "--epochs", "2", "--checkpoint_every", "4", "--seed", "3", "--verbose", "0",
         "--output_dir", str(interrupted)],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    killed_at = None
    while time.time() < deadline and process.poll() is None:
        checkpoints = CheckpointDirectory(str(interrupted / "checkpoints")).complete_checkpoints()
        steps = [int(path.rsplit("-", 1)[1]) for path in checkpoints]
        if steps and DIGITS_STEPS < max(steps) < 2 * DIGITS_STEPS:
            process.send_signal(signal.SIGKILL)
            killed_at = max(steps)
            break
        time.sleep(0.05)
    process.wait()
    assert killed_at is not None, "the run ended before a mid-epoch checkpoint was seen"
    assert not (interrupted / "summary.json").exists()
    killed_state = json.loads(
        (interrupted / "checkpoints" / f"ckpt-{killed_at:010d}" / "state.json").read_text())
    assert killed_state["epoch"] == 1 and 0 < killed_state["step_in_epoch"] < DIGITS_STEPS
    # Before the kill, metrics.csv had only the finished first epoch.
    assert [r["epoch"] for r in read_rows(interrupted / "metrics.csv")] == ["0"]

    # What interrupted saves leave behind: swept at the next start, unless
    # the process that owns it is still alive.
    stale = [plant_staging(interrupted / "checkpoints", ".ckpt", dead_pid()),
             plant_staging(interrupted, ".preset", dead_pid())]
    live = plant_staging(interrupted, ".preset", os.getpid())

    resumed = run_worker({**config, "output_dir": str(interrupted), "resume": True}, tmp_path / "resumed.npz")
    whole_summary = json.loads(str(reference["summary"]))
    resumed_summary = json.loads(str(resumed["summary"]))
    assert resumed_summary["global_step"] == whole_summary["global_step"] == 2 * DIGITS_STEPS
    names = [n for n in reference.files if n.startswith("all/")]
    assert names
    for name in names:
        np.testing.assert_allclose(resumed[name], reference[name], rtol=1e-5, atol=1e-6, err_msg=name)

    # metrics.csv: one complete row per epoch; the interrupted epoch's means
    # combine both segments and equal the uninterrupted run's.
    whole_rows, resumed_rows = (read_rows(d / "metrics.csv") for d in (tmp_path / "whole", interrupted))
    assert [r["epoch"] for r in resumed_rows] == ["0", "1"]
    for whole_row, resumed_row in zip(whole_rows, resumed_rows):
        assert int(resumed_row["steps"]) == DIGITS_STEPS
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(resumed_row[key]) == pytest.approx(float(whole_row[key]), rel=1e-4, abs=1e-6), key
    # The training time adds up all segments.
    assert resumed_summary["segments"] == 2
    assert resumed_summary["train_seconds"] > killed_state["train_seconds"] > 0
    assert resumed_summary["best_epoch"] == whole_summary["best_epoch"]
    assert all(not path.exists() for path in stale) and live.exists()


# --- distribution -----------------------------------------------------------------


@TF_ONLY
def test_mirrored_strategy_on_two_logical_cpus(tmp_path, tiny_digits_preset):
    config = dict(preset=tiny_digits_preset, epochs=1, strategy="mirrored",
                  output_dir=str(tmp_path / "run"), verbose=0)
    weights = run_worker(config, tmp_path / "mirrored.npz", logical_cpus=2)
    summary = json.loads(str(weights["summary"]))
    assert summary["replicas"] == 2 and summary["global_step"] == DIGITS_STEPS
    replica_pairs = [n for n in weights.files if n.startswith("trainable/") and n.endswith("/1")]
    assert len(replica_pairs) == len([n for n in weights.files if n.startswith("trainable/")]) // 2
    for name in replica_pairs:
        np.testing.assert_array_equal(weights[name], weights[name[:-1] + "0"])


@TF_ONLY
def test_batch_size_not_divisible_by_replicas(tmp_path, tiny_digits_preset):
    config = dict(preset=tiny_digits_preset, epochs=1, strategy="mirrored", batch_size=33,
                  output_dir=str(tmp_path / "run"), verbose=0)
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "_train_worker.py"),
         json.dumps(config), str(tmp_path / "w.npz"), "2"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "Global batch size 33 is not divisible by the 2 replicas" in result.stderr


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@TF_ONLY
def test_multi_worker_two_processes_agree_and_learn(tmp_path, tiny_digits_preset):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        config = dict(preset=tiny_digits_preset, epochs=2, strategy="multi_worker",
                      output_dir=str(tmp_path / "run"), verbose=0)
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "_train_worker.py"),
             json.dumps(config), str(tmp_path / f"worker{index}.npz")],
            env=subprocess_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ))
    for process in processes:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr[-3000:]
    chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    names = [n for n in chief.files if n.startswith("trainable/")]
    assert names
    for name in names:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    losses = [float(row.split(",")[header.index("loss")]) for row in rows[1:]]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert (tmp_path / "run" / "final_preset" / "model.weights.h5").exists()


def test_jax_data_parallel_on_two_host_devices(tmp_path, tiny_digits_preset):
    output = tmp_path / "run"
    env = subprocess_env(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [*tool_command("kst-train"), "--preset", tiny_digits_preset,
         "--epochs", "1", "--output_dir", str(output), "--verbose", "0"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["backend"], summary["replicas"]) == ("jax", 2)
    assert summary["global_step"] == DIGITS_STEPS


@TF_ONLY
def test_a_failed_run_records_it_and_resume_finishes_it(tmp_path, tiny_digits_preset, monkeypatch):
    from keras_spiking_tf.training import trainer

    config = trainer.TrainConfig(preset=tiny_digits_preset, epochs=2,
                                 output_dir=str(tmp_path / "run"), verbose=0)
    real_accuracy_on = trainer.accuracy_on

    def broken(*args, **kwargs):
        raise MemoryError("out of memory in the final evaluation")

    monkeypatch.setattr(trainer, "accuracy_on", broken)
    with pytest.raises(MemoryError):
        trainer.train(config)
    failure = json.loads((tmp_path / "run" / "failure.json").read_text())
    assert failure["status"] == "failed" and "out of memory" in failure["error"]
    assert failure["last_checkpoint"].startswith(str(tmp_path / "run" / "checkpoints"))
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / ".kst-run.lock").exists()  # the lock went with the failure
    monkeypatch.setattr(trainer, "accuracy_on", real_accuracy_on)
    summary = trainer.train(dataclasses.replace(config, resume=True))
    assert summary["status"] == "finished" and summary["resumed_after"] == failure
    assert summary["global_step"] == 2 * DIGITS_STEPS  # no step trained twice
    assert not (tmp_path / "run" / "failure.json").exists()


def test_model_selection_breaks_accuracy_ties_by_validation_loss(tmp_path):
    """A small validation split ties often (6 images: accuracy 1.0 from the
    second epoch on): of equal accuracies, the lower validation loss wins."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    selected = []
    callback = ResumableCheckpoint(
        CheckpointDirectory(str(tmp_path / "ckpt")), steps_per_epoch=1,
        on_new_best=lambda _, epoch, accuracy: selected.append((epoch, accuracy)),
    )
    callback.set_model(model)
    epochs = [(0.5, 0.9), (1.0, 0.6), (1.0, 0.4), (1.0, 0.5), (0.8, 0.1), (1.0, 0.4)]
    for epoch, (accuracy, loss) in enumerate(epochs):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": accuracy, "val_loss": loss})
    # Epoch 2 beats epoch 1 (same accuracy, lower loss); 3 (higher loss), 4
    # (lower accuracy) and 5 (an exact tie) do not.
    assert selected == [(0, 0.5), (1, 1.0), (2, 1.0)]
    assert (callback.state["best_epoch"], callback.best_val_accuracy) == (2, 1.0)
