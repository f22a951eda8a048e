"""Files a user downloads cannot run code: SDT checkpoints are unpickled with
`weights_only=True` (tensors and SDT's `argparse.Namespace` only), and preset
configs are deserialised by Keras in safe mode (registered Keras objects
only, no Python lambdas)."""

import argparse
import json
import shutil
import subprocess

import keras
import numpy as np
import pytest
from conftest import subprocess_env
from conftest import tool_command

import keras_spiking_tf

torch = pytest.importorskip("torch")

from keras_spiking_tf.conversion import convert_sdt_checkpoint  # noqa: E402
from keras_spiking_tf.conversion import load_sdt_state_dict  # noqa: E402
from keras_spiking_tf.models import SpikingTransformerImageClassifier  # noqa: E402


class WritesAFile:
    """Unpickling this runs `exec`, which writes `self.target`."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('the payload ran')",))


@pytest.fixture
def crafted_checkpoint(tmp_path):
    """An SDT-shaped checkpoint whose `args` entry runs code when unpickled
    unsafely; the test checks that `payload` never appears."""
    payload = tmp_path / "payload_ran.txt"
    path = tmp_path / "crafted.pth.tar"
    torch.save({"state_dict": {"head.weight": torch.zeros(10, 64)}, "epoch": 1,
                "args": WritesAFile(payload)}, path)
    return path, payload


def test_crafted_checkpoint_is_refused_unread(crafted_checkpoint, tmp_path):
    path, payload = crafted_checkpoint
    output = tmp_path / "converted"
    with pytest.raises(ValueError) as raised:
        convert_sdt_checkpoint(path, "sdt_2_256_cifar10", output)
    message = str(raised.value)
    assert str(path) in message and "exec" in message and "could run code" in message
    assert "weights_only=False" not in message  # no advice to drop the check
    assert not payload.exists()
    assert not output.exists()
    with pytest.raises(ValueError, match="Refusing to load"):
        load_sdt_state_dict(path)
    assert not payload.exists()


def test_crafted_checkpoint_through_the_tool(crafted_checkpoint, tmp_path):
    path, payload = crafted_checkpoint
    output = tmp_path / "converted"
    result = subprocess.run(
        [*tool_command("kst-convert-sdt"), "--checkpoint", str(path), "--preset",
         "sdt_2_256_cifar10", "--output_dir", str(output)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Refusing to load") and "Traceback" not in result.stderr
    assert not payload.exists() and not output.exists()


def test_sdt_style_checkpoint_with_arguments_and_optimizer_loads(tmp_path):
    path = tmp_path / "ok.pth.tar"
    state = {"head.weight": torch.ones(10, 64), "head.bias": torch.zeros(10)}
    torch.save({"state_dict": state, "epoch": 309, "arch": "sdt",
                "optimizer": torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1).state_dict(),
                "args": argparse.Namespace(model="sdt", lr=3e-4, input_size=(3, 32, 32), T=4)}, path)
    loaded = load_sdt_state_dict(path)
    assert sorted(loaded) == ["head.bias", "head.weight"]
    np.testing.assert_array_equal(loaded["head.weight"].numpy(), np.ones((10, 64)))


@pytest.mark.parametrize("content,reason", [
    (np.random.default_rng(0).bytes(4096), "not a readable PyTorch checkpoint"),
    (b"", "is empty"),
    (b"state_dict = {'a': 1}\nthis is a text file\n", "not a readable PyTorch checkpoint"),
    (b"PK\x03\x04" + b"\x00" * 60, "not a readable PyTorch checkpoint"),  # a broken zip
])
def test_files_that_are_not_checkpoints_get_an_error_naming_them(tmp_path, content, reason):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=reason) as raised:
        load_sdt_state_dict(path)
    assert str(path) in str(raised.value)
    assert "Traceback" not in str(raised.value)


# --- presets: Keras safe mode --------------------------------------------------


@pytest.fixture(scope="module")
def saved_preset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("safe") / "digits"
    keras_spiking_tf.save_to_preset(keras_spiking_tf.from_preset("st_2_64_digits"), str(directory))
    return directory


def tampered(saved_preset, tmp_path, filename, change):
    """A copy of the preset with `change(config)` applied to `filename`."""
    copy = tmp_path / "tampered"
    shutil.copytree(saved_preset, copy)
    config = json.loads((copy / filename).read_text())
    change(config)
    (copy / filename).write_text(json.dumps(config))
    return str(copy)


def test_preset_naming_a_non_keras_class_is_refused(saved_preset, tmp_path):
    def to_os_system(config):
        config.update(module="os", class_name="system", registered_name="system")

    preset = tampered(saved_preset, tmp_path, "config.json", to_os_system)
    # The family registry refuses it before Keras reads the config ...
    with pytest.raises(ValueError, match="holds a 'system' backbone .*no registered model family"):
        keras_spiking_tf.from_preset(preset, load_weights=False)
    # ... and Keras' safe deserialisation does, when the family is named.
    with pytest.raises((TypeError, ValueError), match="Could not build preset .*class.* system"):
        SpikingTransformerImageClassifier.from_preset(preset, load_weights=False)


def test_preset_naming_an_unregistered_function_is_refused(saved_preset, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("os.system", lambda *args: calls.append(args))

    def activation_os_system(config):
        config["config"]["activation"] = {
            "module": "os", "class_name": "function", "config": "system", "registered_name": "system",
        }

    preset = tampered(saved_preset, tmp_path, "task.json", activation_os_system)
    with pytest.raises((TypeError, ValueError), match="Could not build preset"):
        keras_spiking_tf.from_preset(preset, load_weights=False)
    assert calls == []


def test_preset_with_a_python_lambda_is_refused(saved_preset, tmp_path):
    marker = tmp_path / "lambda_ran.txt"
    target = str(marker)
    code = keras.saving.serialize_keras_object(lambda x: open(target, "w") and x)

    def activation_lambda(config):
        config["config"]["activation"] = code

    preset = tampered(saved_preset, tmp_path, "task.json", activation_lambda)
    with pytest.raises(ValueError, match="safe_mode"):
        model = keras_spiking_tf.from_preset(preset, load_weights=False)
        model.predict(np.zeros((1, 16, 16, 1), "uint8"), verbose=0)
    assert not marker.exists()
