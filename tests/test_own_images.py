"""A user's own images, start to finish: image files and folders as users
have them (grayscale, RGB, corrupt files), pretrained weights into another
number of channels, the fine-tuning recipe, and `kst-predict`."""

import json
import os
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import subprocess_env
from conftest import tool_command

import keras_spiking_tf
from keras_spiking_tf import image_files
from keras_spiking_tf.models.input_adaptation import adapt_channel_values
from keras_spiking_tf.models.input_adaptation import adapt_input_kernel
from keras_spiking_tf.training.datasets import load_dataset
from keras_spiking_tf.training.datasets import load_digits_arrays
from keras_spiking_tf.training.example_images import write_png
from keras_spiking_tf.training.example_images import write_stripes_folder

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.data and the command-line tools"
)
LUMA = np.array([0.2989, 0.5870, 0.1140])  # ITU-R 601, as tf.image.rgb_to_grayscale


def corrupt_png(path, source):
    """A PNG cut off after 100 bytes: a file a camera or a copy left broken."""
    with open(source, "rb") as file:
        head = file.read(100)
    assert len(head) == 100 and os.path.getsize(source) > 100
    with open(path, "wb") as file:
        file.write(head)


# --- image files ---------------------------------------------------------------


def test_list_image_files_takes_files_directories_and_globs(tmp_path):
    image = np.zeros((4, 4, 1), np.uint8)
    write_png(str(tmp_path / "a" / "1.png"), image)
    write_png(str(tmp_path / "b" / "3.png"), image)
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "2.JPG").write_bytes(tf.io.encode_jpeg(image).numpy())
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    found = image_files.list_image_files([tmp_path / "a", str(tmp_path / "b" / "*.png"),
                                          tmp_path / "a" / "1.png"])
    assert found == [str(tmp_path / "a" / "1.png"), str(tmp_path / "a" / "sub" / "2.JPG"),
                     str(tmp_path / "b" / "3.png")]  # each once, notes.txt left alone
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        image_files.list_image_files([tmp_path / "missing.png"])
    with pytest.raises(FileNotFoundError, match="is not an image file"):
        image_files.list_image_files([tmp_path / "a" / "notes.txt"])
    with pytest.raises(FileNotFoundError, match="matches no image file"):
        image_files.list_image_files([str(tmp_path / "*.gif")])


def test_channel_conversion_against_numpy(rng):
    rgb = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    gray = np.asarray(image_files.convert_channels(tf.constant(rgb), 1))
    expected = np.clip(np.round(rgb.astype(np.float64) @ LUMA), 0, 255)[..., None]
    assert gray.dtype == np.uint8 and np.max(np.abs(gray.astype(int) - expected)) <= 1
    rgba = np.concatenate([rgb, np.full((5, 6, 1), 7, np.uint8)], -1)
    np.testing.assert_array_equal(image_files.convert_channels(tf.constant(rgba), 3), rgb)
    single = rgb[..., :1]
    np.testing.assert_array_equal(image_files.convert_channels(tf.constant(single), 3),
                                  np.repeat(single, 3, -1))
    with pytest.raises(ValueError, match="Cannot convert 3-channel images to 2 channels"):
        image_files.convert_channels(tf.constant(rgb), 2)


def test_bad_files_are_named_and_counted(tmp_path, rng):
    good = str(tmp_path / "good.png")
    write_png(good, rng.integers(0, 256, (16, 16, 3)).astype(np.uint8))  # > 100 bytes
    bad = []
    for index in range(7):
        path = str(tmp_path / f"bad{index}.png")
        corrupt_png(path, good) if index % 2 else open(path, "w").write("text")
        bad.append(path)
    scan = image_files.scan_image_files([good, *bad], channels=1)
    assert scan.files == [good] and [b.path for b in scan.bad] == bad
    assert scan.conversions == {(3, 1): 1}
    assert scan.describe_conversions() == "1 RGB file converted to grayscale"
    with pytest.raises(image_files.BadImagesError) as error:
        scan.raise_if_bad()
    message = str(error.value)
    assert message.startswith("7 image files cannot be read or decoded")
    assert all(path in message for path in bad[:5]) and bad[5] not in message
    assert "and 2 more" in message and "function_node" not in message


# --- image folders -------------------------------------------------------------


@TF_ONLY
def test_image_folder_is_decoded_with_the_models_channels(tmp_path):
    folder = write_stripes_folder(tmp_path / "rgb", train_per_class=10, test_per_class=3,
                                  channels=3)
    (tmp_path / "rgb" / "train" / ".ipynb_checkpoints").mkdir()  # not a label
    gray = load_dataset(f"imagefolder:{folder}", channels=1)
    assert gray.class_names == ["horizontal", "vertical"]
    assert (gray.num_train, gray.num_validation, gray.num_test, gray.channels) == (18, 2, 6, 1)
    assert gray.notes == ["26 RGB files converted to grayscale"]
    image, label = next(iter(gray.test))
    # The first test file of the first class, converted here with NumPy.
    pixels = tf.io.decode_png(tf.io.read_file(os.path.join(folder, "test", "horizontal",
                                                           "000.png"))).numpy()
    expected = np.clip(np.round(pixels.astype(np.float64) @ LUMA), 0, 255)
    assert image.shape == (16, 16, 1) and int(label) == 0
    assert np.max(np.abs(image.numpy()[..., 0].astype(int) - expected)) <= 1
    rgb = load_dataset(f"imagefolder:{folder}", channels=3)
    assert rgb.channels == 3 and rgb.notes == []
    assert next(iter(rgb.test))[0].shape == (16, 16, 3)


@TF_ONLY
def test_image_folder_refuses_or_skips_corrupt_files(tmp_path):
    folder = write_stripes_folder(tmp_path / "gray", train_per_class=10, test_per_class=3)
    broken = os.path.join(folder, "train", "vertical", "broken.png")
    corrupt_png(broken, os.path.join(folder, "train", "vertical", "000.png"))
    with pytest.raises(image_files.BadImagesError, match="1 image file cannot be read") as error:
        load_dataset(f"imagefolder:{folder}", channels=1)
    assert broken in str(error.value) and "--skip_bad_images" in str(error.value)
    splits = load_dataset(f"imagefolder:{folder}", channels=1, skip_bad_images=True)
    assert splits.skipped_files["count"] == 1 and splits.skipped_files["files"][0]["path"] == broken
    assert splits.num_train + splits.num_validation == 20  # the 20 good training files
    assert sum(1 for _ in splits.train) == splits.num_train  # nothing fails while reading


def test_image_folder_layout_errors(tmp_path):
    folder = write_stripes_folder(tmp_path / "f", train_per_class=4, test_per_class=1)
    write_png(os.path.join(folder, "test", "diagonal", "0.png"), np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"has labels that train lacks: \['diagonal'\]"):
        load_dataset(f"imagefolder:{folder}", channels=1)
    with pytest.raises(ValueError, match="Unknown dataset 'digit': .*Did you mean 'digits'"):
        load_dataset("digit")


def test_tfds_style_images_are_converted_to_the_models_channels():
    splits = load_dataset("digits", channels=3)
    image, _ = next(iter(splits.train))
    assert splits.channels == 3 and image.shape == (16, 16, 3)
    assert splits.notes == ["grayscale images converted to RGB"]
    np.testing.assert_array_equal(image.numpy()[..., 0], image.numpy()[..., 2])


# --- pretrained weights into another number of channels ------------------------


def reference_adapt(kernel, channels):
    """timm's rule written out channel by channel: (kh, kw, in, out)."""
    have = kernel.shape[2]
    out = np.zeros(kernel.shape[:2] + (channels,) + kernel.shape[3:])
    for new in range(channels):
        if channels >= have:
            out[:, :, new] = kernel[:, :, new % have] * have / channels
        else:
            out[:, :, new] = sum(kernel[:, :, old] for old in range(have) if old % channels == new)
    return out


@pytest.mark.parametrize("have,channels", [(1, 3), (3, 1), (3, 4), (4, 3), (2, 5), (3, 3)])
def test_adapt_input_kernel_matches_the_reference(rng, have, channels):
    kernel = rng.normal(size=(3, 3, have, 8))
    adapted = adapt_input_kernel(kernel, channels)
    np.testing.assert_allclose(adapted, reference_adapt(kernel, channels), rtol=1e-12)
    if channels % have == 0 or have % channels == 0:
        # A gray image (every channel equal) gives the same response.
        np.testing.assert_allclose(adapted.sum(axis=2), kernel.sum(axis=2), rtol=1e-9)
    assert adapt_channel_values([0.1, 0.2, 0.3], 1) == pytest.approx([0.2])
    assert adapt_channel_values([0.5], 3) == [0.5, 0.5, 0.5]


def test_shipped_grayscale_weights_start_an_rgb_model(capfd):
    _, _, images, labels = load_digits_arrays()
    images, labels = images[:96], labels[:96]
    gray = keras_spiking_tf.from_preset("st_2_64_digits")
    rgb = keras_spiking_tf.from_preset("st_2_64_digits", image_shape=(16, 16, 3))
    assert "adapted 'patch_embed/proj_conv/kernel'" in capfd.readouterr().err
    assert rgb.backbone.image_shape == (16, 16, 3)
    # The same digits as RGB (R = G = B) give the same logits.
    gray_logits = gray.predict(images, verbose=0)
    rgb_logits = rgb.predict(np.repeat(images, 3, axis=-1), verbose=0)
    np.testing.assert_allclose(rgb_logits, gray_logits, atol=1e-4)
    assert np.mean(rgb_logits.argmax(-1) == labels) > 0.9
    # Overrides that change other weights' shapes: one line that names the
    # weight and the fix, no kernel values.
    for override, hint in ((dict(hidden_dim=128), "hidden_dim"), (dict(num_layers=3), "num_layers")):
        with pytest.raises(ValueError, match=f"Keep the preset's architecture .e.g. its {hint}") as error:
            keras_spiking_tf.from_preset("st_2_64_digits", **override)
        assert "\n" not in str(error.value) and len(str(error.value)) < 400
        assert "config files" not in str(error.value)
    # Another image size: the preprocessor resizes to it; the weights load as they are.
    large = keras_spiking_tf.from_preset("st_2_64_digits", image_shape=(32, 32, 1))
    assert tuple(large.preprocessor.image_converter.image_size) == (32, 32)
    for ours, shipped in zip(large.backbone.weights, gray.backbone.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours),
                                      keras.ops.convert_to_numpy(shipped))


def test_rgb_preset_weights_start_a_grayscale_model(tmp_path, capfd):
    rgb = keras_spiking_tf.from_preset("st_2_256_cifar10", load_weights=False, num_layers=1,
                                       hidden_dim=32, time_steps=2)
    keras_spiking_tf.save_to_preset(rgb, str(tmp_path / "rgb"))
    gray = keras_spiking_tf.from_preset(str(tmp_path / "rgb"), image_shape=(32, 32, 1))
    assert "from 3-channel to 1-channel input" in capfd.readouterr().err
    by_path = {w.path: keras.ops.convert_to_numpy(w) for w in rgb.backbone.weights}
    for weight in gray.backbone.weights:
        value = keras.ops.convert_to_numpy(weight)
        if weight.path == "patch_embed/proj_conv/kernel":
            expected = by_path[weight.path].astype(np.float64).sum(axis=2, keepdims=True)
            np.testing.assert_allclose(value, expected.astype(np.float32), rtol=1e-6)
        else:
            np.testing.assert_array_equal(value, by_path[weight.path])
    scale = gray.preprocessor.image_converter.scale
    assert len(scale) == 1 and scale[0] == pytest.approx(
        np.mean(rgb.preprocessor.image_converter.scale))
    with pytest.raises(ValueError, match="not a change of input channels"):
        from keras_spiking_tf.models.input_adaptation import transfer_weights

        other = keras_spiking_tf.from_preset(str(tmp_path / "rgb"), load_weights=False,
                                             image_shape=(32, 32, 1), hidden_dim=64)
        transfer_weights(rgb.backbone, other.backbone, "a test")


# --- the recipe ---------------------------------------------------------------------


def test_image_folders_and_init_weights_fine_tune_by_default():
    from keras_spiking_tf.training.recipes import load_recipe
    from keras_spiking_tf.training.trainer import default_recipe

    assert default_recipe("imagefolder:/x", 4) == "finetune"
    assert default_recipe("imagefolder:/x", 4, init_weights=True) == "finetune"
    assert default_recipe("digits", 4, init_weights=True) == "finetune"
    assert default_recipe("digits", 4) == "digits"
    assert default_recipe("event_digits", 4, init_weights=True) == "event_digits"
    recipe = load_recipe("finetune")
    assert not recipe.mixes and recipe.rand_augment is None and not recipe.horizontal_flip
    assert recipe.learning_rate < load_recipe("digits").learning_rate


# --- end to end, as a new user runs it -----------------------------------------


def run_tool(name, *args, cwd):
    return subprocess.run(
        [*tool_command(name), *args], cwd=cwd, capture_output=True, text=True, timeout=900,
        env=subprocess_env(),
    )


@TF_ONLY
def test_kst_train_fine_tunes_a_grayscale_folder_with_the_default_command(tmp_path):
    folder = write_stripes_folder(tmp_path / "stripes", train_per_class=30, test_per_class=10)
    result = run_tool("kst-train", "--preset", "st_2_64_digits", "--init_weights",
                      "--dataset", f"imagefolder:{folder}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "recipe 'finetune': 20 epochs of batch 16, learning rate 0.0005" in output
    assert "fine-tuning from the preset's weights" in output
    assert [f"Epoch {e}/20" for e in range(1, 21)] == [
        line.strip() for line in output.splitlines() if line.strip().startswith("Epoch ")]
    assert "ran out of data" not in output and "will be ignored" not in output
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95, summary["test_accuracy"]
    assert summary["config"]["recipe"] is None and summary["recipe"]["learning_rate"] == 5e-4
    # The run's preset predicts the test images on its own (kst-predict, a new path).
    answer = run_tool("kst-predict", "--preset", str(run / "final_preset"), "--json",
                      "--top_k", "1", os.path.join(folder, "test"), cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr[-2000:]
    results = json.loads(answer.stdout)["results"]
    assert len(results) == 20
    correct = [r["predictions"][0]["class"] == os.path.basename(os.path.dirname(r["image"]))
               for r in results]
    assert np.mean(correct) == pytest.approx(summary["test_accuracy"])


@TF_ONLY
def test_rgb_folder_fine_tunes_an_rgb_model_from_the_grayscale_weights(tmp_path):
    from keras_spiking_tf.training.trainer import TrainConfig
    from keras_spiking_tf.training.trainer import train

    folder = write_stripes_folder(tmp_path / "rgb", train_per_class=12, test_per_class=4,
                                  channels=3)
    broken = os.path.join(folder, "test", "vertical", "broken.png")
    corrupt_png(broken, os.path.join(folder, "test", "vertical", "000.png"))
    summary = train(TrainConfig(preset="st_2_64_digits", init_weights=True, image_channels=3,
                                dataset=f"imagefolder:{folder}", epochs=2, skip_bad_images=True,
                                output_dir=str(tmp_path / "run"), verbose=0))
    assert summary["skipped_images"]["files"][0]["path"] == broken
    # 24 training files, round(10 %) = 2 held out; 8 of the 9 test files read.
    assert summary["splits"]["sizes"] == {"train": 22, "validation": 2, "test": 8}
    trained = keras_spiking_tf.from_preset(summary["preset_dir"])
    assert trained.backbone.image_shape == (16, 16, 3) and trained.class_names == [
        "horizontal", "vertical"]


@TF_ONLY
def test_a_refused_run_leaves_no_directory(tmp_path):
    folder = write_stripes_folder(tmp_path / "f", train_per_class=4, test_per_class=2)
    broken = os.path.join(folder, "train", "horizontal", "zz.png")
    corrupt_png(broken, os.path.join(folder, "train", "horizontal", "000.png"))
    result = run_tool("kst-train", "--dataset", f"imagefolder:{folder}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 image file cannot be read")
    assert broken in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@TF_ONLY
def test_kst_predict_on_png_files(tmp_path):
    _, _, images, _ = load_digits_arrays()
    paths = []
    for index in range(3):
        paths.append(str(tmp_path / "digits" / f"{index}.png"))
        write_png(paths[-1], images[index])
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    probabilities = keras.ops.convert_to_numpy(
        keras.ops.softmax(model.predict(images[:3], verbose=0)))
    answer = run_tool("kst-predict", "--json", "--top_k", "2", str(tmp_path / "digits" / "*.png"),
                      cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr[-2000:]
    results = json.loads(answer.stdout)["results"]
    assert [r["image"] for r in results] == paths
    for result, row in zip(results, probabilities):
        top = np.argsort(-row)[:2]
        assert [p["class"] for p in result["predictions"]] == [str(i) for i in top]
        np.testing.assert_allclose([p["probability"] for p in result["predictions"]], row[top],
                                   rtol=1e-4)
    table = run_tool("kst-predict", "--top_k", "1", paths[0], cwd=tmp_path)
    assert table.returncode == 0
    header, row = table.stdout.strip().splitlines()
    assert header.split() == ["image", "rank", "class", "probability"]
    assert row.split()[:3] == [paths[0], "1", str(int(np.argmax(probabilities[0])))]
    corrupt_png(str(tmp_path / "broken.png"), paths[0])
    refused = run_tool("kst-predict", paths[0], str(tmp_path / "broken.png"), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert str(tmp_path / "broken.png") in refused.stderr
    too_many = run_tool("kst-predict", "--top_k", "11", paths[0], cwd=tmp_path)
    assert too_many.returncode == 2 and "exceeds the model's 10 classes" in too_many.stderr


def test_make_example_folder_tool(tmp_path):
    import sys

    from conftest import REPO

    command = [sys.executable, str(REPO / "tools" / "make_example_folder.py")]
    result = subprocess.run([*command, "--output_dir", str(tmp_path / "ex"), "--channels", "3",
                             "--train_per_class", "3", "--test_per_class", "2"],
                            capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(p.relative_to(tmp_path / "ex").as_posix() for p in (tmp_path / "ex").rglob("*.png"))
    assert len(files) == 10 and files[0] == "test/horizontal/000.png"
    pixels = tf.io.decode_png(tf.io.read_file(str(tmp_path / "ex" / files[0]))).numpy()
    assert pixels.shape == (16, 16, 3)
    again = subprocess.run([*command, "--output_dir", str(tmp_path / "ex")],
                           capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert again.returncode == 2 and "exists already" in again.stderr
