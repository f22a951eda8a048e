"""KerasHub-native presets: KerasHub's own `from_preset` by name, `.presets`,
one verified loading path, `save_to_preset` either way, model cards,
publishing to a (local stand-in) hub, class names, and attention variants
registered in one place."""

import json
import os
import shutil
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
from conftest import REPO
from conftest import subprocess_env

import keras_spiking_tf
from keras_spiking_tf.analysis import energy_report
from keras_spiking_tf.layers import SpikingSelfAttention
from keras_spiking_tf.layers import register_attention
from keras_spiking_tf.layers.spiking_self_attention import ATTENTIONS
from keras_spiking_tf.layers.spiking_self_attention import AttentionProduct
from keras_spiking_tf.models import MetaSpikeFormerBackbone
from keras_spiking_tf.models import MetaSpikeFormerImageClassifier
from keras_spiking_tf.models import SpikingTransformerBackbone
from keras_spiking_tf.models import SpikingTransformerImageClassifier
from keras_spiking_tf.models.preset_files import DamagedPresetError
from keras_spiking_tf.training.datasets import load_digits_arrays

HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def weights_of(model):
    return [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]


@pytest.fixture(scope="module")
def digits():
    _, _, x_test, y_test = load_digits_arrays()
    return x_test, y_test


def test_keras_hub_from_preset_by_name_gives_our_classifier_with_the_shipped_weights(digits):
    x_test, y_test = digits
    ours = keras_spiking_tf.from_preset("st_2_64_digits")
    theirs = keras_hub.models.ImageClassifier.from_preset("st_2_64_digits")
    assert type(theirs) is SpikingTransformerImageClassifier
    for a, b in zip(weights_of(ours), weights_of(theirs)):
        np.testing.assert_array_equal(a, b)
    # The shipped weights classify the digits test split (an accuracy
    # computed here, not read from the package).
    accuracy = np.mean(theirs.predict(x_test, verbose=0).argmax(-1) == y_test)
    assert accuracy >= 0.97
    backbone = keras_hub.models.Backbone.from_preset("st_2_64_digits")
    assert type(backbone) is SpikingTransformerBackbone
    for a, b in zip(weights_of(ours.backbone), weights_of(backbone)):
        np.testing.assert_array_equal(a, b)


def test_presets_are_listed_by_keras_hub():
    names = set(keras_spiking_tf.list_presets(family="spiking_transformer"))
    assert len(names) == 38
    assert set(SpikingTransformerImageClassifier.presets) == names
    assert set(SpikingTransformerBackbone.presets) == names
    assert names <= set(keras_hub.models.ImageClassifier.presets)
    entry = SpikingTransformerImageClassifier.presets["st_8_512_imagenet"]
    assert entry["metadata"]["params"] == 29_689_384
    v2 = set(keras_spiking_tf.list_presets(family="meta_spikeformer"))
    assert len(v2) == 6 and set(MetaSpikeFormerImageClassifier.presets) == v2
    assert v2 <= set(keras_hub.models.ImageClassifier.presets)
    assert MetaSpikeFormerBackbone.presets["sdt_v2_8_512_imagenet"]["metadata"]["params"] == (
        55_991_248)  # SPEC §10, with the KD head


def test_keras_hub_builds_a_preset_without_weights():
    model = keras_hub.models.ImageClassifier.from_preset("st_2_256_cifar10", load_weights=False)
    assert type(model) is SpikingTransformerImageClassifier
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 2_566_954  # design.md §4
    assert model.class_names[:3] == ["airplane", "automobile", "bird"]
    with pytest.raises(ValueError, match="has no published weights"):
        keras_spiking_tf.from_preset("st_2_256_cifar10")


def test_keras_hub_loading_verifies_checksums_too(tmp_path):
    preset = tmp_path / "tampered"
    shutil.copytree(keras_spiking_tf.list_presets()["st_2_64_digits"]["path"], preset)
    weights = preset / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedPresetError, match=r"model\.weights\.h5.*SHA-256"):
        keras_hub.models.ImageClassifier.from_preset(str(preset))


def test_shipped_preset_directories_match_the_registry():
    """Every registry entry has its preset directory, whose configs say what
    the registry says (a cheap check of all 38; the full regeneration of a
    few is the next test)."""
    for name, meta in keras_spiking_tf.list_presets().items():
        directory = meta["path"]
        config = json.load(open(os.path.join(directory, "config.json")))["config"]
        task = json.load(open(os.path.join(directory, "task.json")))["config"]
        architecture = (("num_layers", "hidden_dim") if meta["family"] == "spiking_transformer"
                        else ("embed_dims", "num_blocks", "kd"))
        assert [config.get(key, task.get(key)) for key in architecture] == [
            list(meta[key]) if isinstance(meta[key], tuple) else meta[key]
            for key in architecture], name
        assert (config["time_steps"], config["attention"]) == (
            meta["time_steps"], meta["attention"]), name
        assert config["data_format"] is None, name  # follows the loading program
        assert task["num_classes"] == meta["num_classes"], name
        assert task["class_names"] == meta["class_names"], name
        has_weights = os.path.exists(os.path.join(directory, "model.weights.h5"))
        assert has_weights == meta["weights_available"], name
        card = open(os.path.join(directory, "README.md"), encoding="utf-8").read()
        assert f"# {name}" in card and f"{meta['params']:,}" in card, name


def test_write_presets_tool_reproduces_shipped_directories():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "write_presets.py"), "--check",
         "--only", "st_2_256_cifar10,sdt_2_256_cifar100,st_2_64_digits,st_v2_8_384_imagenet"],
        capture_output=True, text=True, env=subprocess_env(), timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("in sync") == 4


# --- saving ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    model = keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=32, time_steps=2)
    model.compile(optimizer="adam", loss="mse")  # an optimizer a preset must not carry
    return model


def comparable_preset(directory):
    files = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith(".json"):
            content = json.load(open(path))
            content.pop("date_saved", None)
            content.pop("weights_sha256", None)
            files[name] = content
        elif name.endswith(".h5"):
            files[name] = "weights"
        else:
            files[name] = open(path, encoding="utf-8").read()
    return files


def test_save_to_preset_is_the_same_either_way(small_model, tmp_path):
    method = small_model.save_to_preset(str(tmp_path / "a" / "tiny"),
                                        metadata={"dataset": "digits"})
    function = keras_spiking_tf.save_to_preset(small_model, str(tmp_path / "b" / "tiny"),
                                               metadata={"dataset": "digits"})
    assert comparable_preset(method) == comparable_preset(function)
    for directory in (method, function):
        names = set(os.listdir(directory))
        assert {"config.json", "task.json", "metadata.json", "model.weights.h5",
                "task.weights.h5", "preprocessor.json", "README.md"} <= names
        checksums = json.load(open(os.path.join(directory, "metadata.json")))["weights_sha256"]
        assert set(checksums) == {"model.weights.h5", "task.weights.h5"}
        loaded = keras_spiking_tf.from_preset(directory)  # verified on load
        for a, b in zip(weights_of(loaded), weights_of(small_model)):
            np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path / "a") == os.listdir(tmp_path / "b") == ["tiny"]  # no staging left


def test_model_card_says_what_the_metadata_knows(small_model, tmp_path):
    metadata = {
        "dataset": "digits",
        "evaluation": {"test_accuracy": 0.875, "test_images": 360,
                       "val_accuracy": 0.9, "val_images": 144},
        "energy": {"energy_mj": 0.0123, "macs": 2.5e6, "sops": 7.5e6, "time_steps": 2,
                   "mean_firing_rate": 0.25, "images": "the first 32 validation images"},
        "training": {"epochs_completed": 3, "epochs": 5, "selected": True,
                     "recipe": "digits", "dtype_policy": "float32", "seed": 7},
    }
    directory = small_model.save_to_preset(str(tmp_path / "card"), metadata=metadata)
    card = open(os.path.join(directory, "README.md"), encoding="utf-8").read()
    params = sum(int(np.prod(w.shape)) for w in small_model.trainable_weights)
    for expected in ("# card", "1 encoder blocks of width 32", "A2OS2A", "| time steps T | 2 |",
                     "16×16×1 images", f"| trainable parameters | {params:,} |", "| dataset | digits |",
                     "87.50 % top-1 on the test split, 360 images",
                     "90.00 % top-1 on the validation split, 144 images",
                     "0.0123 mJ per image", "2.500 M MACs", "7.500 M SOPs",
                     "over the first 32 validation images", "after epoch 3 of 5",
                     "best validation accuracy", "seed 7", "| classes | 10 (0, 1, 2"):
        assert expected in card, expected
    bare = small_model.save_to_preset(str(tmp_path / "bare"))
    bare_card = open(os.path.join(bare, "README.md"), encoding="utf-8").read()
    assert "| accuracy | not measured |" in bare_card
    assert "| energy estimate | not measured |" in bare_card


def test_upload_to_a_local_stand_in_hub_and_load_it_back(small_model, tmp_path, monkeypatch):
    """`upload_preset("hf://...")` against a stand-in for the Hub's upload
    API (files land in a local repository folder), then loaded back through
    an offline Hugging Face cache made from that folder."""
    import huggingface_hub
    import huggingface_hub.constants

    remote = tmp_path / "remote"
    uploads = []

    class Repo:
        def __init__(self, repo_id):
            self.repo_id = repo_id

    def create_repo(repo_id, exist_ok=False):
        (remote / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        return Repo(repo_id)

    def upload_folder(repo_id, folder_path):
        uploads.append(repo_id)
        shutil.copytree(folder_path, remote / repo_id, dirs_exist_ok=True)

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    preset = small_model.save_to_preset(str(tmp_path / "local"), metadata={"dataset": "digits"})
    assert keras_spiking_tf.upload_preset("hf://testorg/tiny_st", preset) == "testorg/tiny_st"
    assert uploads == ["testorg/tiny_st"]
    uploaded = remote / "testorg" / "tiny_st"
    assert sorted(os.listdir(uploaded)) == sorted(os.listdir(preset))
    assert (uploaded / "README.md").read_text() == (tmp_path / "local" / "README.md").read_text()
    assert os.path.exists(os.path.join(preset, "README.md"))  # the local card is kept

    cache = tmp_path / "hub"
    snapshot = cache / "models--testorg--tiny_st" / "snapshots" / HF_COMMIT
    shutil.copytree(uploaded, snapshot)
    (cache / "models--testorg--tiny_st" / "refs").mkdir()
    (cache / "models--testorg--tiny_st" / "refs" / "main").write_text(HF_COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = keras_spiking_tf.from_preset("hf://testorg/tiny_st")
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1)).astype("uint8")
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  small_model.predict(images, verbose=0))


def test_upload_refuses_a_damaged_preset(small_model, tmp_path):
    preset = small_model.save_to_preset(str(tmp_path / "damaged"))
    with open(os.path.join(preset, "task.weights.h5"), "ab") as file:
        file.write(b"\0")
    with pytest.raises(DamagedPresetError, match="task.weights.h5"):
        keras_spiking_tf.upload_preset("hf://testorg/damaged", preset)
    with pytest.raises(ValueError, match="Unknown hub URI"):
        keras_spiking_tf.upload_preset("s3://bucket/x", str(tmp_path / "damaged"))


# --- class names ---------------------------------------------------------------


def test_decode_predictions_names_the_top_classes(digits):
    x_test, y_test = digits
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    logits = model.predict(x_test[:8], verbose=0)
    decoded = model.decode_predictions(logits, top=3)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    for row, top in zip(probabilities, decoded):
        order = np.argsort(-row)[:3]
        assert [name for name, _ in top] == [str(i) for i in order]
        np.testing.assert_allclose([p for _, p in top], row[order], rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(batch, 10\)"):
        model.decode_predictions(logits[:, :5])


def test_imagenet_presets_decode_with_keras_hub_names():
    model = keras_spiking_tf.from_preset("st_8_384_imagenet", load_weights=False, num_layers=1,
                                         hidden_dim=16, time_steps=1)
    predictions = np.full((1, 1000), -10.0, "float32")
    predictions[0, 1] = 10.0  # ImageNet class 1 is the goldfish
    (top,) = model.decode_predictions(predictions, top=1)
    assert top[0][0] == "goldfish" and top[0][1] > 0.99


def test_class_names_must_match_the_head():
    with pytest.raises(ValueError, match="`class_names` must be one name per class, or None; got "
                                         r".*It has 3 names for num_classes=10\."):
        keras_spiking_tf.from_preset("st_2_64_digits", class_names=["a", "b", "c"])
    fresh = keras_spiking_tf.from_preset("st_2_64_digits", num_classes=3,
                                         class_names=["cat", "dog", "emu"])
    assert fresh.class_names == ["cat", "dog", "emu"]
    assert keras_spiking_tf.from_preset("st_2_64_digits", num_classes=3).class_names is None


# --- one registration per attention variant -----------------------------------------


class ToyAttention(SpikingSelfAttention):
    """A made-up variant: binary Q, gated by the token-mean of binary V."""

    def build_attention_neurons(self):
        self.q_lif = self.neuron("q_lif")
        self.v_lif = self.neuron("v_lif")

    def attend(self, q, k, v):
        return self.q_lif(q) * keras.ops.mean(self.v_lif(v), axis=2, keepdims=True)

    def products(self):
        size = self.num_tokens * self.dim
        return [AttentionProduct("Q * mean(V)", self.q_lif, "real", size)]


def test_a_new_attention_needs_only_its_class_and_one_registration(tmp_path):
    registered = keras.saving.register_keras_serializable(package="tests")(ToyAttention)
    register_attention("toy")(registered)
    try:
        model = keras_spiking_tf.from_preset("st_2_64_digits", attention="toy", load_weights=False,
                                             num_layers=1, hidden_dim=16, time_steps=2)
        images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1)).astype("uint8")
        assert model.predict(images, verbose=0).shape == (2, 10)
        report = energy_report(model, model.preprocessor(images.astype("float32")))
        toy_rows = [row for row in report.rows if "Q * mean(V)" in row["layer"]]
        assert len(toy_rows) == 1 and toy_rows[0]["flops"] == 16 * 16
        from keras_spiking_tf.training.trainer import TrainConfig

        TrainConfig(attention="toy", output_dir=str(tmp_path)).validate()  # accepted by the tool
        loaded = keras_spiking_tf.from_preset(model.save_to_preset(str(tmp_path / "toy")))
        assert loaded.backbone.attention == "toy"
    finally:
        del ATTENTIONS["toy"]


def no_network(monkeypatch):
    """Name lookups fail, as on a machine without a network; returns the
    list of the hosts looked up."""
    import socket

    looked_up = []

    def getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.mark.parametrize("handle,host", [("hf://someone/missing", "huggingface.co"),
                                         ("kaggle://someone/m/keras/v", "www.kaggle.com")])
def test_an_unreachable_hub_fails_at_once(monkeypatch, handle, host):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://huggingface.co")
    looked_up = no_network(monkeypatch)
    with pytest.raises(OSError, match=f"the name of its host {host} could not be looked up"):
        keras_spiking_tf.from_preset(handle)
    assert looked_up == [host]  # one lookup, no retries of the download


def test_an_unreachable_hub_loads_a_cached_preset(small_model, tmp_path, monkeypatch, capfd):
    import huggingface_hub.constants

    preset = small_model.save_to_preset(str(tmp_path / "local"))
    snapshot = tmp_path / "hub" / "models--testorg--cached" / "snapshots" / HF_COMMIT
    shutil.copytree(preset, snapshot)
    (tmp_path / "hub" / "models--testorg--cached" / "refs").mkdir()
    (tmp_path / "hub" / "models--testorg--cached" / "refs" / "main").write_text(HF_COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # restored after
    no_network(monkeypatch)
    loaded = keras_spiking_tf.from_preset("hf://testorg/cached")
    assert "cannot be reached; loading 'hf://testorg/cached' from the local cache" in (
        capfd.readouterr().err)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1)).astype("uint8")
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  small_model.predict(images, verbose=0))
