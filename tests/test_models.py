"""The Spiking Transformer classifier and the preset hub: forward pass, head,
saving/loading (local path, KerasHub API, hf:// from an offline cache, .keras),
fine-tuning helpers, mixed precision, and the hub's error messages.

Backend-agnostic: run under KERAS_BACKEND=tensorflow, jax and torch. Models
are tiny (1 block, D=32, T=2, 16x16 images) to keep tracing cheap.
"""

import hashlib
import json
import os
import re
import shutil
import types

import h5py
import keras
import keras_hub
import numpy as np
import pytest

import keras_spiking_tf
from keras_spiking_tf.models import SpikingTransformerBackbone
from keras_spiking_tf.models import SpikingTransformerImageClassifier
from keras_spiking_tf.models import SpikingTransformerImageClassifierPreprocessor
from keras_spiking_tf.models import SpikingTransformerImageConverter

IMAGE_SHAPE = (16, 16, 3)
MEAN = (0.5, 0.45, 0.4)
STD = (0.25, 0.2, 0.3)
NUM_CLASSES = 10
HIDDEN_DIM = 32
TIME_STEPS = 2
TOKENS = 16  # 16x16, pooling "0011": two stride-2 pools -> 4x4 tokens (design.md §3.1)
# Documented in SpikingTransformerImageClassifier.save_to_preset; KerasHub
# also writes image_converter.json.
DOCUMENTED_PRESET_FILES = {
    "config.json", "metadata.json", "model.weights.h5", "task.json",
    "task.weights.h5", "preprocessor.json", "README.md",
}
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def make_tiny(num_classes=NUM_CLASSES, **backbone_kwargs):
    backbone = SpikingTransformerBackbone(
        num_layers=1,
        hidden_dim=HIDDEN_DIM,
        time_steps=TIME_STEPS,
        pooling="0011",
        image_shape=IMAGE_SHAPE,
        **backbone_kwargs,
    )
    converter = SpikingTransformerImageConverter.from_dataset_stats(
        image_size=IMAGE_SHAPE[:2], mean=MEAN, std=STD
    )
    preprocessor = SpikingTransformerImageClassifierPreprocessor(converter)
    return SpikingTransformerImageClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor
    )


def randomize(model, rng):
    """Weights of O(1) effect (the SDT init, std 0.02, barely moves anything)."""
    for weight in model.trainable_weights:
        shape = tuple(weight.shape)
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, 1.5 / np.sqrt(fan_in), shape)
        elif "gamma" in weight.path:
            value = rng.uniform(0.8, 1.6, shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        weight.assign(value.astype("float32"))


def raw_images(rng, batch, shape=IMAGE_SHAPE):
    """0..255 images with a per-image brightness, so images differ."""
    base = rng.uniform(0, 255, (batch, 1, 1, shape[-1]))
    noise = rng.normal(0, 40, (batch,) + tuple(shape))
    return np.clip(base + noise, 0, 255).astype("float32")


def compile_sgd(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def weight_dict(model):
    return {w.path: to_np(w) for w in model.weights}


def assert_same_weights(model, expected, prefix=""):
    actual = {p: v for p, v in weight_dict(model).items() if p.startswith(prefix)}
    expected = {p: v for p, v in expected.items() if p.startswith(prefix)}
    assert actual.keys() == expected.keys()
    assert expected
    for path, value in expected.items():
        np.testing.assert_array_equal(actual[path], value, err_msg=path)


def is_bn_stat(path):
    return path.endswith("moving_mean") or path.endswith("moving_variance")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier after one short fit (moving BN statistics updated),
    saved with keras_spiking_tf.save_to_preset."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = make_tiny()
    randomize(model, rng)
    x = raw_images(rng, 8)
    y = rng.integers(0, NUM_CLASSES, 8)
    compile_sgd(model, 0.01)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    normalised = to_np(model.preprocessor(x))
    logits = model.predict(x, verbose=0)
    membrane = model.backbone.predict(normalised, verbose=0)
    preset_dir = str(tmp_path_factory.mktemp("saved") / "tiny_preset")
    keras_spiking_tf.save_to_preset(model, preset_dir)
    return types.SimpleNamespace(
        model=model,
        x=x,
        y=y,
        normalised=normalised,
        logits=logits,
        membrane=membrane,
        weights=weight_dict(model),
        preset_dir=preset_dir,
    )


def assert_same_model(loaded, trained, check_membrane=True):
    assert isinstance(loaded, SpikingTransformerImageClassifier)
    assert_same_weights(loaded, trained.weights)
    np.testing.assert_allclose(
        loaded.predict(trained.x, verbose=0), trained.logits, rtol=0, atol=1e-6
    )
    if check_membrane:
        np.testing.assert_allclose(
            loaded.backbone.predict(trained.normalised, verbose=0),
            trained.membrane,
            rtol=0,
            atol=1e-6,
        )


def copy_preset(trained, tmp_path):
    target = str(tmp_path / "copy")
    shutil.copytree(trained.preset_dir, target)
    return target


# --- Forward pass and head ------------------------------------------------


def test_tiny_preset_forward_shape():
    model = keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=32, time_steps=2
    )
    assert model.backbone.num_layers == 1
    assert model.backbone.hidden_dim == 32
    assert model.backbone.time_steps == 2
    # digits: 16x16 grey -> (16/4)^2 = 16 tokens (design.md §3.1, pattern "0011").
    assert tuple(model.backbone.output.shape) == (None, 2, 16, 32)
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 1)).astype("uint8")
    logits = model.predict(images, verbose=0)
    assert logits.shape == (3, 10)
    assert logits.dtype == np.float32
    assert np.all(np.isfinite(logits))


def test_trained_fixture_is_nontrivial(trained):
    """Guards the round-trip tests: BN statistics moved away from their
    initial values (0, 1) and the membrane differs between images."""
    stats = {p: v for p, v in trained.weights.items() if is_bn_stat(p)}
    # 5 SPS BNs (design.md §3.1) + q, k, v, proj (§3.2) + fc1, fc2 (§3.3) = 11 BNs.
    assert len(stats) == 2 * 11
    for path, value in stats.items():
        initial = 0.0 if path.endswith("moving_mean") else 1.0
        assert np.abs(value - initial).max() > 1e-3, path
    assert trained.membrane.shape == (8, TIME_STEPS, TOKENS, HIDDEN_DIM)
    assert trained.membrane.std(axis=0).mean() > 1e-2
    assert trained.logits.shape == (8, NUM_CLASSES)


def test_preprocessor_normalises(trained):
    expected = (trained.x / 255.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(trained.normalised, expected, rtol=0, atol=1e-4)


def test_head_follows_spec(trained):
    """design.md §1.4: mean over tokens -> binary LIF over T (design.md §2.1 defaults)
    -> Linear at each step -> mean over T. Recomputed in NumPy from the
    backbone's membrane output."""
    token_mean = trained.membrane.astype(np.float64).mean(axis=2)  # (B, T, D)
    tau, v_th = 2.0, 1.0
    v = np.zeros_like(token_mean[:, 0])
    spikes, margins = [], []
    for t in range(token_mean.shape[1]):
        h = v + (token_mean[:, t] - v) / tau
        s = (h - v_th >= 0).astype(np.float64)
        margins.append(np.abs(h - v_th))
        spikes.append(s)
        v = h * (1 - s)
    spikes = np.stack(spikes, axis=1)
    # The check is only meaningful with some (but not all) neurons firing and
    # no membrane within rounding distance of the threshold.
    assert 0 < spikes.mean() < 1
    assert np.min(margins) > 1e-5
    kernel = to_np(trained.model.output_dense.kernel).astype(np.float64)
    bias = to_np(trained.model.output_dense.bias).astype(np.float64)
    expected = (spikes @ kernel + bias).mean(axis=1)
    np.testing.assert_allclose(trained.logits, expected, rtol=0, atol=1e-5)


def test_softmax_activation():
    model = keras_spiking_tf.from_preset(
        "st_2_64_digits",
        load_weights=False,
        num_layers=1,
        hidden_dim=32,
        time_steps=2,
        num_classes=4,
        activation="softmax",
    )
    images = np.random.default_rng(2).uniform(0, 255, (2, 16, 16, 1)).astype("float32")
    probs = model.predict(images, verbose=0)
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probs > 0)


# --- Round trips ----------------------------------------------------------


def test_save_to_preset_writes_documented_files(trained):
    files = set(os.listdir(trained.preset_dir))
    assert DOCUMENTED_PRESET_FILES <= files
    with open(os.path.join(trained.preset_dir, "metadata.json")) as file:
        checksums = json.load(file)["weights_sha256"]
    for name in ("model.weights.h5", "task.weights.h5"):
        with open(os.path.join(trained.preset_dir, name), "rb") as file:
            assert checksums[name] == hashlib.sha256(file.read()).hexdigest()


def test_saved_preset_has_no_optimizer_state(trained):
    # The fixture's model is compiled and fitted: KerasHub's own
    # save_to_preset would store the optimizer's variables in task.weights.h5.
    with h5py.File(os.path.join(trained.preset_dir, "task.weights.h5"), "r") as file:
        assert "optimizer" not in file.keys()
        assert "layers" in file.keys()


def test_round_trip_by_path(trained):
    loaded = keras_spiking_tf.from_preset(trained.preset_dir)
    assert_same_model(loaded, trained)
    # BN moving statistics survived (also covered by assert_same_weights).
    for path, value in weight_dict(loaded).items():
        if is_bn_stat(path):
            np.testing.assert_array_equal(value, trained.weights[path])
    assert loaded.preprocessor is not None


def test_round_trip_with_keras_hub_api(trained):
    loaded = keras_hub.models.ImageClassifier.from_preset(trained.preset_dir)
    assert type(loaded) is SpikingTransformerImageClassifier
    assert_same_model(loaded, trained, check_membrane=False)
    backbone = keras_hub.models.Backbone.from_preset(trained.preset_dir)
    assert type(backbone) is SpikingTransformerBackbone
    assert_same_weights(
        backbone,
        {p: v for p, v in trained.weights.items() if not p.startswith("head")},
    )


def _offline_hf_cache(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 with HF_HUB_CACHE in tmp_path, also patched into
    huggingface_hub.constants (which reads the environment at import)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _populate_hf_cache(cache, org, name, source_dir):
    repo = cache / f"models--{org}--{name}"
    snapshot = repo / "snapshots" / HF_COMMIT
    shutil.copytree(source_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HF_COMMIT)  # no newline, as the Hub writes


def test_round_trip_through_offline_hf_cache(trained, monkeypatch, tmp_path):
    cache = _offline_hf_cache(monkeypatch, tmp_path)
    _populate_hf_cache(cache, "testorg", "tiny_st", trained.preset_dir)
    loaded = keras_spiking_tf.from_preset("hf://testorg/tiny_st")
    assert_same_model(loaded, trained, check_membrane=False)


def test_hf_handle_missing_from_offline_cache(monkeypatch, tmp_path):
    _offline_hf_cache(monkeypatch, tmp_path)
    handle = "hf://testorg/not_in_cache"
    with pytest.raises(OSError, match=re.escape(handle)):
        keras_spiking_tf.from_preset(handle)


def test_hf_checksum_mismatch(trained, monkeypatch, tmp_path):
    cache = _offline_hf_cache(monkeypatch, tmp_path)
    source = copy_preset(trained, tmp_path)
    with open(os.path.join(source, "model.weights.h5"), "ab") as file:
        file.write(b"\0")
    _populate_hf_cache(cache, "testorg", "tampered", source)
    with pytest.raises(ValueError, match=r"model\.weights\.h5.*SHA-256"):
        keras_spiking_tf.from_preset("hf://testorg/tampered")


def test_keras_file_round_trip(trained, tmp_path):
    path = str(tmp_path / "tiny.keras")
    trained.model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is SpikingTransformerImageClassifier
    assert loaded.preprocessor is not None
    assert_same_model(loaded, trained, check_membrane=False)


# --- Fine-tuning helpers --------------------------------------------------


def test_num_classes_change_keeps_backbone(trained):
    model = keras_spiking_tf.from_preset(trained.preset_dir, num_classes=5)
    assert model.num_classes == 5
    assert tuple(model.output_dense.kernel.shape) == (HIDDEN_DIM, 5)
    # A fresh head: zero-initialised bias (the saved head's bias is not zero).
    assert np.all(to_np(model.output_dense.bias) == 0)
    assert np.any(trained.weights["head/bias"] != 0)
    backbone = {p: v for p, v in trained.weights.items() if not p.startswith("head")}
    assert_same_weights(model.backbone, backbone)
    assert model.predict(trained.x, verbose=0).shape == (8, 5)


def test_backbone_overrides_on_saved_preset(trained):
    """Shape-preserving backbone arguments can be changed when loading a
    saved preset; the saved weights are still loaded."""
    model = keras_spiking_tf.from_preset(trained.preset_dir, time_steps=3, attention="sdsa")
    assert model.backbone.time_steps == 3
    assert model.backbone.attention == "sdsa"
    assert tuple(model.backbone.output.shape) == (None, 3, TOKENS, HIDDEN_DIM)
    assert_same_weights(model, trained.weights)
    model = keras_spiking_tf.from_preset(trained.preset_dir, num_classes=4, time_steps=3)
    assert tuple(model.output.shape) == (None, 4)
    assert np.all(to_np(model.output_dense.bias) == 0)
    backbone = {p: v for p, v in trained.weights.items() if not p.startswith("head")}
    assert_same_weights(model.backbone, backbone)


def test_frozen_backbone_only_trains_head(trained):
    model = keras_spiking_tf.from_preset(trained.preset_dir)
    model.backbone.trainable = False
    trainable = sorted(w.path for w in model.trainable_weights)
    assert trainable == ["head/bias", "head/kernel"]
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert count == HIDDEN_DIM * NUM_CLASSES + NUM_CLASSES
    compile_sgd(model, 0.5)
    model.fit(trained.x, trained.y, batch_size=8, epochs=1, verbose=0)
    after = weight_dict(model)
    for path, value in trained.weights.items():
        if path.startswith("head"):
            continue
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    assert not np.array_equal(after["head/kernel"], trained.weights["head/kernel"])


@pytest.mark.parametrize(
    "policy, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")]
)
def test_mixed_precision(policy, compute):
    model = keras_spiking_tf.from_preset(
        "st_2_64_digits",
        load_weights=False,
        num_layers=1,
        hidden_dim=32,
        time_steps=2,
        dtype=policy,
    )
    backbone = model.backbone
    assert backbone.compute_dtype == compute
    layers = [
        layer
        for layer in backbone._flatten_layers(include_self=False)
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert len(layers) > 20  # convs, BNs and neurons inside SPS and the block
    for layer in layers:
        assert layer.compute_dtype == compute, layer.name
    assert keras.backend.standardize_dtype(backbone.output.dtype) == compute
    # Variables stay float32 under a mixed policy.
    assert all(
        keras.backend.standardize_dtype(w.dtype) == "float32" for w in model.weights
    )
    assert model.output_dense.compute_dtype == "float32"
    assert model.head_lif.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(model.output.dtype) == "float32"
    images = np.random.default_rng(3).uniform(0, 255, (2, 16, 16, 1)).astype("float32")
    logits = model.predict(images, verbose=0)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))


def test_global_mixed_policy_keeps_head_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = make_tiny()
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.backbone.compute_dtype == "bfloat16"
    assert keras.backend.standardize_dtype(model.backbone.output.dtype) == "bfloat16"
    assert model.output_dense.compute_dtype == "float32"
    assert model.head_lif.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(model.output.dtype) == "float32"


# --- Input checks ---------------------------------------------------------


@pytest.mark.parametrize("explicit", [False, True])
def test_channels_first_images_give_the_same_predictions(trained, explicit):
    """NCHW input (as JAX and PyTorch users feed it) through a backbone that
    follows `keras.config.image_data_format()` (or is told explicitly)
    gives exactly the channels-last model's outputs, same weights."""
    rng = np.random.default_rng(3)
    images = raw_images(rng, 4)
    expected = to_np(trained.model.predict(images, verbose=0))
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        kwargs = {"data_format": "channels_first"} if explicit else {}
        first = keras_spiking_tf.from_preset(trained.preset_dir, **kwargs)
        assert first.backbone.image_layout == "channels_first"
        assert first.backbone.get_config()["data_format"] == (
            "channels_first" if explicit else None)
        assert tuple(first.backbone.input.shape[1:]) == (3, 16, 16)
        nchw = np.transpose(images, (0, 3, 1, 2))
        np.testing.assert_allclose(to_np(first.predict(nchw, verbose=0)), expected,
                                   rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match=r"shaped \(batch, C, H, W\).*np.transpose"):
            first.predict(images, verbose=0)  # NHWC into a channels-first model
    finally:
        keras.config.set_image_data_format(previous)


def test_predict_rejects_wrong_channels(trained):
    images = np.zeros((2, 16, 16, 2), "float32")
    with pytest.raises(ValueError, match=r"3-channel.*\(2, 16, 16, 2\)"):
        trained.model.predict(images, verbose=0)


def test_predict_rejects_unbatched_image(trained):
    with pytest.raises(ValueError, match=r"\(batch, H, W, C\).*single image without a batch axis: `x\[None\]`"):
        trained.model.predict(np.zeros((16, 16, 3), "float32"), verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_predict_rejects_non_finite(trained, bad):
    images = np.array(trained.x[:2])
    images[1, 3, 4, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        trained.model.predict(images, verbose=0)


# --- Broken presets -------------------------------------------------------


def test_wrong_checksum_in_metadata(trained, tmp_path):
    preset = copy_preset(trained, tmp_path)
    metadata_path = os.path.join(preset, "metadata.json")
    with open(metadata_path) as file:
        metadata = json.load(file)
    metadata["weights_sha256"]["model.weights.h5"] = "0" * 64
    with open(metadata_path, "w") as file:
        json.dump(metadata, file)
    with pytest.raises(ValueError, match=r"model\.weights\.h5.*SHA-256.*0{64}"):
        keras_spiking_tf.from_preset(preset)


@pytest.mark.parametrize("filename", ["model.weights.h5", "task.weights.h5"])
def test_tampered_weights_file(trained, tmp_path, filename):
    preset = copy_preset(trained, tmp_path)
    path = os.path.join(preset, filename)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as file:
        file.write(bytes(data))
    with pytest.raises(ValueError, match=re.escape(filename) + r".*SHA-256"):
        keras_spiking_tf.from_preset(preset)
    # Not loading weights skips the check.
    model = keras_spiking_tf.from_preset(preset, load_weights=False)
    assert isinstance(model, SpikingTransformerImageClassifier)


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.truncate(size // 2)


def test_truncated_weights_file(trained, tmp_path):
    preset = copy_preset(trained, tmp_path)
    _truncate(os.path.join(preset, "model.weights.h5"))
    with pytest.raises(ValueError, match=r"model\.weights\.h5"):
        keras_spiking_tf.from_preset(preset)


def test_truncated_weights_file_without_checksums(trained, tmp_path):
    """A preset saved by plain KerasHub has no checksums: the HDF5 check
    still names the file instead of building a random model."""
    preset = copy_preset(trained, tmp_path)
    metadata_path = os.path.join(preset, "metadata.json")
    with open(metadata_path) as file:
        metadata = json.load(file)
    del metadata["weights_sha256"]
    with open(metadata_path, "w") as file:
        json.dump(metadata, file)
    path = os.path.join(preset, "model.weights.h5")
    _truncate(path)
    with pytest.raises(OSError):
        h5py.File(path, "r")  # precondition: really unreadable
    with pytest.raises(ValueError, match=r"model\.weights\.h5.*(truncated|HDF5)"):
        keras_spiking_tf.from_preset(preset)


def test_preset_dir_without_config(trained, tmp_path):
    preset = copy_preset(trained, tmp_path)
    os.remove(os.path.join(preset, "config.json"))
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        keras_spiking_tf.from_preset(preset)


# --- Atomic save ----------------------------------------------------------


def _leftovers(parent):
    return [n for n in os.listdir(parent) if n.startswith((".preset-", ".retired-"))]


def _snapshot(directory):
    return {
        name: open(os.path.join(directory, name), "rb").read()
        for name in sorted(os.listdir(directory))
    }


def test_save_twice_replaces_directory(trained, tmp_path):
    target = str(tmp_path / "preset")
    keras_spiking_tf.save_to_preset(trained.model, target)
    first = set(os.listdir(target))
    assert DOCUMENTED_PRESET_FILES <= first
    open(os.path.join(target, "stale.txt"), "w").write("from an older save")
    returned = keras_spiking_tf.save_to_preset(trained.model, target)
    assert os.path.abspath(returned) == os.path.abspath(target)
    assert set(os.listdir(target)) == first
    assert os.listdir(tmp_path) == ["preset"]
    assert not _leftovers(tmp_path)


def _failing_save(self, preset_dir, max_shard_size=10):
    with open(os.path.join(preset_dir, "config.json"), "w") as file:
        file.write("{}")
    raise RuntimeError("disk full (simulated)")


def test_failed_save_leaves_no_directory(trained, tmp_path, monkeypatch):
    # KerasHub's own writer (which ours calls into a staging directory) fails.
    monkeypatch.setattr(keras_hub.models.Task, "save_to_preset", _failing_save)
    target = str(tmp_path / "preset")
    with pytest.raises(RuntimeError, match="simulated"):
        keras_spiking_tf.save_to_preset(trained.model, target)
    assert not os.path.exists(target)
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_previous_preset(trained, tmp_path, monkeypatch):
    target = str(tmp_path / "preset")
    keras_spiking_tf.save_to_preset(trained.model, target)
    before = _snapshot(target)
    monkeypatch.setattr(keras_hub.models.Task, "save_to_preset", _failing_save)
    with pytest.raises(RuntimeError, match="simulated"):
        keras_spiking_tf.save_to_preset(trained.model, target)
    assert _snapshot(target) == before
    assert os.listdir(tmp_path) == ["preset"]
    monkeypatch.undo()
    assert_same_weights(keras_spiking_tf.from_preset(target), trained.weights)
