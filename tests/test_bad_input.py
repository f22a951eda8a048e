"""Mistakes get an error that names the problem and the fix, before any work
is done and with nothing written: images `predict` cannot take, broken or
missing presets, unreachable hubs, int8 export without calibration data."""

import json
import re
import shutil
import socket
import subprocess

import keras
import numpy as np
import pytest
from conftest import subprocess_env
from conftest import tool_command

import keras_spiking_tf


@pytest.fixture(scope="module")
def digits_model():
    return keras_spiking_tf.from_preset("st_2_64_digits")


def test_predict_on_an_empty_batch(digits_model):
    with pytest.raises(ValueError, match=r"empty batch of images \(shape \(0, 16, 16, 1\)\)"):
        digits_model.predict(np.zeros((0, 16, 16, 1), "uint8"), verbose=0)


@pytest.mark.parametrize("images", [
    np.full((2, 16, 16, 1), "a"),
    np.full((2, 16, 16, 1), b"\x00"),
    np.array([[[[object()]] * 16] * 16] * 2, dtype=object),
])
def test_predict_on_non_numeric_images(digits_model, images):
    with pytest.raises(TypeError, match=f"numeric images .* dtype {images.dtype}.*Decode image files"):
        digits_model.predict(images, verbose=0)


# --- layouts: the error says which reshaping fixes the batch, verified --------------


def suggested_fix(message):
    """The code between backticks in an error message, e.g. `x[..., None]`."""
    found = re.findall(r"`([^`]+)`", message)
    assert len(found) == 1, message
    return found[0]


@pytest.mark.parametrize("layout, shape, code", [
    ("channels_last", (2, 1, 16, 16), "np.transpose(x, (0, 2, 3, 1))"),  # NCHW into NHWC
    ("channels_last", (2, 16, 16), "x[..., None]"),                     # no channel axis
    ("channels_last", (16, 16, 1), "x[None]"),                          # one image
    ("channels_first", (2, 16, 16, 1), "np.transpose(x, (0, 3, 1, 2))"),  # NHWC into NCHW
    ("channels_first", (2, 16, 16), "x[:, None]"),
])
def test_layout_errors_suggest_a_reshaping_that_works(digits_model, layout, shape, code):
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(layout)  # the preprocessor's layout too
    try:
        model = digits_model
        if layout == "channels_first":
            model = keras_spiking_tf.from_preset("st_2_64_digits")
            assert model.backbone.image_layout == "channels_first"
        check_layout_hint(model, shape, code)
    finally:
        keras.config.set_image_data_format(previous)


def check_layout_hint(model, shape, code):
    expected = tuple(model.backbone.input.shape[1:])
    images = np.random.default_rng(0).integers(0, 256, shape).astype("uint8")
    with pytest.raises(ValueError, match=r"Expected .* for x, got shape") as raised:
        model.predict(images, verbose=0)
    assert suggested_fix(str(raised.value)) == code
    fixed = eval(code, {"np": np, "x": images})
    # Independently of the message: the reshaped batch has the model's
    # input shape, holds the same pixels, and predict takes it.
    assert fixed.shape[1:] == expected
    assert sorted(fixed.ravel().tolist()) == sorted(images.ravel().tolist())
    assert model.predict(fixed, verbose=0).shape == (fixed.shape[0], 10)


def test_no_reshaping_is_suggested_when_none_works(digits_model):
    with pytest.raises(ValueError, match=r"Expected 1-channel images.*\(2, 16, 16, 2\)\. "
                                         r"Convert them to 1 channel\.$"):
        digits_model.predict(np.zeros((2, 16, 16, 2), "uint8"), verbose=0)


# --- presets -----------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_preset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("presets") / "digits"
    keras_spiking_tf.save_to_preset(keras_spiking_tf.from_preset("st_2_64_digits"), str(directory))
    return directory


@pytest.mark.parametrize("filename", ["config.json", "metadata.json", "task.json", "preprocessor.json"])
def test_preset_file_that_is_not_json_names_file_and_line(saved_preset, tmp_path, filename):
    broken = tmp_path / "broken"
    shutil.copytree(saved_preset, broken)
    text = (broken / filename).read_text().splitlines()
    text[2] = text[2] + " oops,"  # a syntax error on line 3
    (broken / filename).write_text("\n".join(text))
    with pytest.raises(ValueError) as raised:
        keras_spiking_tf.from_preset(str(broken))
    message = str(raised.value)
    assert f"{broken / filename}' is not valid JSON" in message
    assert "line 3" in message and "save or download the preset again" in message


def test_preset_file_that_is_binary_is_named(saved_preset, tmp_path):
    broken = tmp_path / "binary"
    shutil.copytree(saved_preset, broken)
    (broken / "task.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="task.json' is not a text"):
        keras_spiking_tf.from_preset(str(broken))


@pytest.mark.parametrize("relative", ["no/such/preset", "./missing_preset", "~/no_such_preset_kst"])
def test_missing_local_path_is_called_missing(tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="Preset directory .* does not exist") as raised:
        keras_spiking_tf.from_preset(relative)
    assert "Unknown preset" not in str(raised.value)


def test_unknown_bare_name_says_it_is_neither_a_name_nor_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no built-in name and no directory of that name"):
        keras_spiking_tf.from_preset("my_preset")


def test_a_file_is_not_a_preset_directory(tmp_path):
    path = tmp_path / "model.weights.h5"
    path.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file, not a preset directory"):
        keras_spiking_tf.from_preset(str(path))


def _hf_constants(monkeypatch, tmp_path, offline, endpoint=None):
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    if endpoint is not None:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE",
            endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )


def test_hf_handle_while_offline_names_offline_mode(monkeypatch, tmp_path):
    _hf_constants(monkeypatch, tmp_path, offline=True)
    with pytest.raises(OSError) as raised:
        keras_spiking_tf.from_preset("hf://someorg/some_preset")
    message = str(raised.value)
    assert "hf://someorg/some_preset" in message and "offline mode (HF_HUB_OFFLINE=1)" in message
    assert "doesn't exist" not in message


def closed_loopback_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def test_hf_handle_with_the_network_down_names_the_network_failure(monkeypatch, tmp_path):
    _hf_constants(monkeypatch, tmp_path, offline=False,
                  endpoint=f"http://127.0.0.1:{closed_loopback_port()}")
    with pytest.raises(OSError) as raised:
        keras_spiking_tf.from_preset("hf://someorg/some_preset")
    message = str(raised.value)
    # (huggingface_hub retries a refused connection for about 20 s first.)
    assert "could not be reached" in message and "network error" in message
    assert "Connection refused" in message or "ConnectError" in message


# --- export -----------------------------------------------------------------------


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on TF")
def test_int8_export_without_calibration_data_is_refused(tmp_path):
    output = tmp_path / "model.tflite"
    base = [*tool_command("kst-export"), "--preset", "st_2_64_digits", "--format", "litert",
            "--quantization", "int8", "--output", str(output)]
    refused = subprocess.run(base, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2
    assert "int8 needs real images to calibrate on" in refused.stderr
    assert "--calibrate_on_random_images" in refused.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on TF")
def test_int8_export_on_random_images_needs_the_opt_in_and_says_so(tmp_path):
    output, report = tmp_path / "model.tflite", tmp_path / "report.json"
    result = subprocess.run(
        [*tool_command("kst-export"), "--preset", "st_2_64_digits", "--quantization", "int8",
         "--calibrate_on_random_images", "--num_calibration_images", "16", "--num_verification_images", "4",
         "--output", str(output), "--report", str(report)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(report.read_text())["calibration_data"].startswith("random uniform images")
