"""SDT PyTorch checkpoint conversion, checked against an independent reference.

The numbers come from `sdt_reference.py`, a PyTorch SDT written from the
docs/design.md (not from this library's code), given random weights and calibrated BN
statistics, and saved in SDT's checkpoint format. The checkpoint is
converted to a Keras preset and both models run on the same normalised
images: logits and every spike of every neuron are compared.

Tolerances: design.md §8 measured an independent TensorFlow port of SDT against
the reference at 5e-8 max-abs logit difference with every spike identical,
so 1e-4 and >= 99.9% spike agreement per neuron leave room only for float32
rounding (a conv summed in another order flipping an element sitting within
~1e-7 of a threshold). A larger gap means a structural difference: a wrong
layout, a swapped or missing tensor, a shifted pooling window.
"""

import subprocess
import sys
import types

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras_spiking_tf  # noqa: E402
import sdt_reference  # noqa: E402
from conftest import subprocess_env  # noqa: E402
from conftest import tool_command  # noqa: E402
from keras_spiking_tf.conversion import convert_sdt_checkpoint  # noqa: E402
from keras_spiking_tf.conversion import convert_sdt_state_dict  # noqa: E402
from keras_spiking_tf.conversion import load_sdt_state_dict  # noqa: E402
from keras_spiking_tf.layers import LIF  # noqa: E402
from keras_spiking_tf.models import SpikingTransformerBackbone  # noqa: E402
from keras_spiking_tf.models import SpikingTransformerImageClassifier  # noqa: E402
from keras_spiking_tf.models import (  # noqa: E402
    SpikingTransformerImageClassifierPreprocessor,
)
from keras_spiking_tf.models import SpikingTransformerImageConverter  # noqa: E402
from keras_spiking_tf.models.spiking_transformer import (  # noqa: E402
    spiking_transformer_checkpoint as sdt_keys,
)

# Two shared cores: with more than one thread, torch's OpenMP workers spin
# against the other processes and a forward takes ~20x longer.
torch.set_num_threads(1)

LOGIT_TOLERANCE = 1e-4
SPIKE_AGREEMENT = 0.999
# The parity model: 2 blocks, D=64, T=4, 32x32 CIFAR-sized input, "0011".
PARITY = dict(
    num_layers=2, dim=64, time_steps=4, num_classes=10, image=32, pooling="0011"
)
BATCH = 4
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def keras_classifier(
    num_layers, dim, time_steps, num_classes, image, pooling, attention
):
    """A random-initialised classifier like a preset's (with a preprocessor)."""
    backbone = SpikingTransformerBackbone(
        num_layers=num_layers,
        hidden_dim=dim,
        time_steps=time_steps,
        pooling=pooling,
        image_shape=(image, image, 3),
        attention=attention,
    )
    converter = SpikingTransformerImageConverter.from_dataset_stats(
        image_size=(image, image), mean=CIFAR_MEAN, std=CIFAR_STD
    )
    return SpikingTransformerImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        preprocessor=SpikingTransformerImageClassifierPreprocessor(converter),
    )


def torch_reference(
    num_layers, dim, time_steps, num_classes, image, pooling, attention, seed
):
    model = sdt_reference.SDTReference(
        num_layers, dim, num_classes, time_steps=time_steps, pooling=pooling,
        attention=attention,
    )
    return sdt_reference.randomize_(model, seed=seed, image_size=image)


def normalised_images(seed, batch, image):
    """Already-normalised NHWC images (the classifier's `call` input)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (batch, image, image, 3)).astype("float32")


def run_torch(model, images_nhwc):
    record, handles = sdt_reference.record_spikes(model)
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.transpose(images_nhwc, (0, 3, 1, 2))))
    finally:
        for handle in handles:
            handle.remove()
    return logits.numpy(), {name: canonical_torch(s) for name, s in record.items()}


def canonical_torch(spikes):
    """Torch spikes -> `(B, T, positions, C)`: `(T, B, C, H, W)` and `(T, B, D)`."""
    spikes = spikes.numpy()
    if spikes.ndim == 5:
        steps, batch, channels = spikes.shape[:3]
        return np.transpose(spikes, (1, 0, 3, 4, 2)).reshape(batch, steps, -1, channels)
    assert spikes.ndim == 3, spikes.shape
    return np.transpose(spikes, (1, 0, 2))[:, :, None, :]


def keras_neuron_names(classifier):
    """`id(LIF layer)` -> the SDT name of the same neuron."""
    names = {}
    patch_embed = classifier.backbone.patch_embed
    for suffix, lif in zip(("", "1", "2", "3"), patch_embed.stage_lifs):
        names[id(lif)] = f"patch_embed.proj_lif{suffix}"
    attention_neurons = {
        "shortcut_lif": "shortcut_lif", "q_lif": "q_lif", "k_lif": "k_lif",
        "v_lif": "v_lif", "kv_lif": "talking_heads_lif", "attn_lif": "attn_lif",
    }
    for index, block in enumerate(classifier.backbone.blocks):
        for attribute, name in attention_neurons.items():
            if hasattr(block.attn, attribute):
                names[id(getattr(block.attn, attribute))] = f"block.{index}.attn.{name}"
        for attribute in ("fc1_lif", "fc2_lif"):
            names[id(getattr(block.mlp, attribute))] = f"block.{index}.mlp.{attribute}"
    names[id(classifier.head_lif)] = "head_lif"
    return names


def run_keras(classifier, images, monkeypatch):
    """Logits of `classifier(images)` and the spikes of every neuron.

    Records by wrapping `LIF.call` (test-only, undone by `monkeypatch`): the
    spikes are those of the real eager forward pass, not a re-implementation.
    """
    names = keras_neuron_names(classifier)
    record = {}
    original_call = LIF.call

    def recording_call(self, inputs):
        spikes = original_call(self, inputs)
        name = names[id(self)]
        assert name not in record, f"{name} ran twice"
        array = to_np(spikes)
        batch, steps, channels = array.shape[0], array.shape[1], array.shape[-1]
        record[name] = array.reshape(batch, steps, -1, channels)
        return spikes

    with monkeypatch.context() as patch:
        patch.setattr(LIF, "call", recording_call)
        logits = to_np(classifier(images, training=False))
    return logits, record


def save_checkpoint(model, path):
    torch.save(sdt_reference.sdt_checkpoint(model), path)
    return str(path)


@pytest.fixture(scope="module", params=["sdsa", "a2os2a"])
def parity_case(request, tmp_path_factory):
    """A reference checkpoint converted through a preset directory.

    SDSA: the SDT checkpoint into an `sdt`-like preset. A2OS2A: a checkpoint
    of the torch A2OS2A (same keys) into the same SDSA preset with
    `init_attention="a2os2a"`, as when fine-tuning A2OS2A from SDT weights.
    """
    attention = request.param
    root = tmp_path_factory.mktemp(f"parity_{attention}")
    seed = {"sdsa": 1, "a2os2a": 2}[attention]
    reference = torch_reference(**PARITY, attention=attention, seed=seed)
    checkpoint = save_checkpoint(reference, root / "checkpoint.pth.tar")
    target = keras_classifier(**PARITY, attention="sdsa")
    target_dir = keras_spiking_tf.save_to_preset(target, str(root / "sdt_target"))
    init_attention = None if attention == "sdsa" else "a2os2a"
    report = convert_sdt_checkpoint(
        checkpoint, target_dir, str(root / "converted"), init_attention=init_attention
    )
    images = normalised_images(seed=10 + seed, batch=BATCH, image=PARITY["image"])
    torch_logits, torch_spikes = run_torch(reference, images)
    return types.SimpleNamespace(
        attention=attention, reference=reference, checkpoint=checkpoint,
        target_dir=target_dir, report=report, images=images,
        torch_logits=torch_logits, torch_spikes=torch_spikes,
    )


def test_reference_is_nontrivial(parity_case):
    """Parity on silent neurons or constant logits would prove nothing."""
    assert np.std(parity_case.torch_logits) > 0.05
    for name, spikes in parity_case.torch_spikes.items():
        rate = np.mean(spikes != 0)
        assert 0.005 < rate < 0.6, (name, rate)
    if parity_case.attention == "a2os2a":
        v_spikes = parity_case.torch_spikes["block.0.attn.v_lif"]
        assert set(np.unique(v_spikes)) == {-1.0, 0.0, 1.0}


def test_converted_preset_matches_reference(parity_case, monkeypatch):
    model = keras_spiking_tf.from_preset(parity_case.report["output_dir"])
    assert model.backbone.attention == parity_case.attention
    assert parity_case.report["attention"] == parity_case.attention
    # KerasHub convention: `call` takes normalised images, no preprocessing.
    logits, spikes = run_keras(model, parity_case.images, monkeypatch)

    difference = np.max(np.abs(logits - parity_case.torch_logits))
    agreements = {}
    assert spikes.keys() == parity_case.torch_spikes.keys()
    for name, expected in parity_case.torch_spikes.items():
        assert spikes[name].shape == expected.shape, name
        agreements[name] = np.mean(spikes[name] == expected)
    worst = min(agreements, key=agreements.get)
    print(
        f"\n{parity_case.attention}: max |logit diff| = {difference:.3g}; worst spike "
        f"agreement {agreements[worst]:.6f} at {worst}; "
        f"{sum(a == 1.0 for a in agreements.values())}/{len(agreements)} neurons "
        "identical"
    )
    for name, agreement in agreements.items():
        assert agreement >= SPIKE_AGREEMENT, (name, agreement)
    assert difference < LOGIT_TOLERANCE


def test_round_trip_equals_in_memory_conversion(parity_case):
    """The saved preset reloads to the model `convert_sdt_state_dict` built."""
    in_memory = keras_spiking_tf.from_preset(parity_case.target_dir, load_weights=False)
    if parity_case.attention != "sdsa":
        in_memory = sdt_keys.build_target(
            parity_case.target_dir, parity_case.attention, None, kd=False
        )[1]
    state_dict = load_sdt_state_dict(parity_case.checkpoint)
    report = convert_sdt_state_dict(state_dict, in_memory)
    reloaded = keras_spiking_tf.from_preset(parity_case.report["output_dir"])
    np.testing.assert_allclose(
        to_np(in_memory(parity_case.images)),
        to_np(reloaded(parity_case.images)),
        rtol=0, atol=1e-6,
    )
    assert report["num_tensors"] == len(report["mapped"])
    reloaded_weights = {w.path: to_np(w) for w in reloaded.weights}
    for weight in in_memory.weights:
        np.testing.assert_array_equal(to_np(weight), reloaded_weights[weight.path])


def test_report_counts(parity_case):
    """Every SDT tensor but the skipped ones is mapped, each exactly once."""
    state_dict = load_sdt_state_dict(parity_case.checkpoint)
    report = parity_case.report
    mapped = [key for key, _ in report["mapped"]]
    assert len(mapped) == len(set(mapped))
    assert len({path for _, path in report["mapped"]}) == len(mapped)
    assert set(mapped) | set(report["skipped"]) == set(state_dict)
    assert not set(mapped) & set(report["skipped"])
    layers = PARITY["num_layers"]
    assert {k for k in report["skipped"] if "talking_heads" in k} == {
        f"block.{i}.attn.talking_heads.weight" for i in range(layers)
    }
    num_bn = 5 + layers * 6
    assert sum(k.endswith("num_batches_tracked") for k in report["skipped"]) == num_bn
    assert report["num_values"] == sum(
        v.numel() for k, v in state_dict.items() if k in set(mapped)
    )
    # Every weight of the Keras model (trainable and BN statistics) is set.
    model = keras_spiking_tf.from_preset(report["output_dir"])
    assert {path for _, path in report["mapped"]} == {w.path for w in model.weights}
    assert report["epoch"] == 309 and report["arch"] == "sdt"


# --- Error cases and file formats (small models, no calibration needed) ---

SMALL = dict(num_layers=1, time_steps=2, num_classes=10, image=16, pooling="0011")


@pytest.fixture(scope="module")
def small_model():
    return keras_classifier(dim=64, attention="sdsa", **SMALL)


def small_state_dict(dim=64, num_layers=1, num_classes=10, attention="sdsa"):
    model = sdt_reference.SDTReference(num_layers, dim, num_classes, time_steps=2)
    return model.state_dict()


def test_shape_mismatch_names_first_key_and_both_shapes(small_model):
    state_dict = small_state_dict(dim=32)  # a D=32 checkpoint into a D=64 model
    with pytest.raises(ValueError) as info:
        convert_sdt_state_dict(state_dict, small_model)
    message = str(info.value)
    assert "'patch_embed.proj_conv.weight'" in message
    assert "[4, 3, 3, 3]" in message  # the checkpoint's, PyTorch OIHW
    assert "[8, 3, 3, 3]" in message  # the model's, PyTorch OIHW
    assert "(3, 3, 3, 8)" in message  # the model's, Keras HWIO
    assert "D=32" in message and "D=64" in message


def test_shape_mismatch_in_head(small_model):
    state_dict = small_state_dict(num_classes=7)
    with pytest.raises(ValueError, match=r"'head.weight'.*\[7, 64\].*\[10, 64\]"):
        convert_sdt_state_dict(state_dict, small_model)


def test_unknown_keys_are_listed(small_model):
    state_dict = small_state_dict()
    state_dict["block.0.attn.extra_conv.weight"] = torch.zeros(64, 64, 1, 1)
    state_dict["patch_embed.proj_lif.w"] = torch.zeros(())  # a PLIF checkpoint
    with pytest.raises(ValueError) as info:
        convert_sdt_state_dict(state_dict, small_model)
    message = str(info.value)
    assert "block.0.attn.extra_conv.weight" in message
    assert "patch_embed.proj_lif.w" in message
    assert "missing" not in message


def test_extra_block_is_listed(small_model):
    state_dict = small_state_dict(num_layers=2)
    with pytest.raises(ValueError, match=r"block\.1\.attn\.q_conv\.weight") as info:
        convert_sdt_state_dict(state_dict, small_model)
    assert "L=2" in str(info.value) and "L=1" in str(info.value)


def test_missing_keys_are_listed(small_model):
    state_dict = small_state_dict()
    del state_dict["block.0.mlp.fc2_bn.running_var"]
    del state_dict["head.bias"]
    with pytest.raises(ValueError, match="missing") as info:
        convert_sdt_state_dict(state_dict, small_model)
    assert "block.0.mlp.fc2_bn.running_var" in str(info.value)
    assert "head.bias" in str(info.value)


def test_failed_conversion_assigns_nothing(small_model):
    before = [to_np(w).copy() for w in small_model.weights]
    state_dict = small_state_dict()
    state_dict["block.0.mlp.fc2_conv.bias"] = torch.zeros(65)  # the last conv
    with pytest.raises(ValueError, match="fc2_conv.bias"):
        convert_sdt_state_dict(state_dict, small_model)
    for old, weight in zip(before, small_model.weights):
        np.testing.assert_array_equal(old, to_np(weight), err_msg=weight.path)


def test_talking_heads_and_counters_are_skipped_not_required(small_model):
    state_dict = small_state_dict()
    report = convert_sdt_state_dict(state_dict, small_model)
    assert "block.0.attn.talking_heads.weight" in report["skipped"]
    assert "patch_embed.rpe_bn.num_batches_tracked" in report["skipped"]
    bare = {
        k: v for k, v in state_dict.items()
        if "talking_heads" not in k and not k.endswith("num_batches_tracked")
    }
    assert convert_sdt_state_dict(bare, small_model)["skipped"] == {}


def test_layouts_of_converted_tensors(small_model):
    """Spot checks of the layout conventions, element by element."""
    state_dict = small_state_dict()
    for value in state_dict.values():
        if value.is_floating_point():
            value.copy_(torch.randn(value.shape))
    convert_sdt_state_dict(state_dict, small_model)
    patch_embed = small_model.backbone.patch_embed
    conv = state_dict["patch_embed.proj_conv1.weight"].numpy()  # O, I, H, W
    kernel = to_np(patch_embed.stage_convs[1].kernel)  # H, W, I, O
    assert kernel[0, 2, 3, 5] == conv[5, 3, 0, 2]
    dense = state_dict["block.0.mlp.fc1_conv.weight"].numpy()  # 4D, D, 1, 1
    fc1_kernel = to_np(small_model.backbone.blocks[0].mlp.fc1_conv.kernel)  # D, 4D
    assert fc1_kernel[7, 200] == dense[200, 7, 0, 0]
    head = state_dict["head.weight"].numpy()  # K, D
    assert to_np(small_model.output_dense.kernel)[11, 3] == head[3, 11]
    bn = small_model.backbone.blocks[0].attn.v_bn
    for torch_name, variable in (
        ("weight", bn.gamma), ("bias", bn.beta),
        ("running_mean", bn.moving_mean), ("running_var", bn.moving_variance),
    ):
        np.testing.assert_array_equal(
            to_np(variable), state_dict[f"block.0.attn.v_bn.{torch_name}"].numpy()
        )


def test_load_accepts_module_prefix_and_model_key(tmp_path):
    state_dict = small_state_dict(dim=32)
    prefixed = {f"module.{k}": v for k, v in state_dict.items()}
    torch.save(prefixed, tmp_path / "bare.pth")
    torch.save({"model": prefixed, "epoch": 3}, tmp_path / "deit_style.pth")
    for name in ("bare.pth", "deit_style.pth"):
        loaded = load_sdt_state_dict(tmp_path / name)
        assert list(loaded) == list(state_dict)
        for key, value in state_dict.items():
            assert torch.equal(loaded[key], value)


def test_load_rejects_non_checkpoints(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_sdt_state_dict(tmp_path / "list.pth")
    torch.save({"epoch": 1, "note": "no weights"}, tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="state_dict"):
        load_sdt_state_dict(tmp_path / "meta.pth")
    with pytest.raises(FileNotFoundError):
        load_sdt_state_dict(tmp_path / "absent.pth")


def test_missing_torch_explains_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    (tmp_path / "any.pth").write_bytes(b"a checkpoint file (its path is checked first)")
    with pytest.raises(ImportError, match=r'pip install "keras-spiking-tf\[backends\]"'):
        load_sdt_state_dict(tmp_path / "any.pth")


def test_builtin_preset_targets(monkeypatch):
    """sdt_* -> st_* of the same size for init_attention="a2os2a"; the head is
    resized only when the checkpoint's class count differs. (The models are
    stubbed: building an ImageNet-sized model here would take minutes.)"""
    calls = []

    def fake_from_preset(preset, **kwargs):
        calls.append((preset, kwargs))
        return "model"

    monkeypatch.setattr(sdt_keys, "from_preset", fake_from_preset)
    build = sdt_keys.build_target
    assert build("sdt_8_512_imagenet", "a2os2a", 1000, False)[0] == "st_8_512_imagenet"
    assert calls[-1] == ("st_8_512_imagenet", {"load_weights": False})
    build("sdt_8_512_imagenet", None, 100, False)
    assert calls[-1] == (
        "sdt_8_512_imagenet", {"load_weights": False, "num_classes": 100}
    )
    build("sdt_2_256_cifar10", "ssa", 10, False)  # no ssa preset: override the attention
    assert calls[-1] == (
        "sdt_2_256_cifar10", {"load_weights": False, "attention": "ssa"}
    )


def test_refuses_existing_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "any.pth").write_bytes(b"never read: the existing output is refused first")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_sdt_checkpoint(
            tmp_path / "any.pth", "sdt_2_256_cifar10", tmp_path / "out"
        )


@pytest.mark.slow
def test_convert_tool_end_to_end(tmp_path):
    """tools/convert_sdt_checkpoint.py on a tiny checkpoint whose head has
    another class count than the target preset directory, into A2OS2A."""
    tiny = dict(num_layers=1, dim=32, time_steps=2, image=16, pooling="0011")
    sdsa = torch_reference(**tiny, num_classes=7, attention="sdsa", seed=3)
    checkpoint = save_checkpoint(sdsa, tmp_path / "tiny.pth.tar")
    target = keras_classifier(**tiny, num_classes=10, attention="sdsa")
    target_dir = keras_spiking_tf.save_to_preset(target, str(tmp_path / "target"))
    output = tmp_path / "converted"
    env = subprocess_env()
    result = subprocess.run(
        [*tool_command("kst-convert-sdt"),
         "--checkpoint", checkpoint, "--preset", target_dir,
         "--output_dir", str(output), "--init_attention", "a2os2a"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert str(output) in result.stdout
    assert "a2os2a" in result.stdout

    model = keras_spiking_tf.from_preset(str(output))
    assert model.backbone.attention == "a2os2a"
    assert model.num_classes == 7
    # Same weights in the torch A2OS2A: the converted model must match it.
    a2os2a = sdt_reference.SDTReference(1, 32, 7, time_steps=2, attention="a2os2a")
    a2os2a.load_state_dict(sdsa.state_dict())
    images = normalised_images(seed=4, batch=2, image=16)
    torch_logits, _ = run_torch(a2os2a.eval(), images)
    np.testing.assert_allclose(
        to_np(model(images)), torch_logits, rtol=0, atol=LOGIT_TOLERANCE
    )

    again = subprocess.run(
        [*tool_command("kst-convert-sdt"),
         "--checkpoint", checkpoint, "--preset", target_dir, "--output_dir", str(output)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert again.returncode != 0
    assert "--overwrite" in again.stdout + again.stderr


# --- frame sequences (event-camera input) --------------------------------------------


@pytest.mark.parametrize("attention,erode", [("sdsa", False), ("sdsa", True), ("a2os2a", True)])
def test_frame_sequences_match_the_reference(attention, erode, monkeypatch):
    """The frames path (`input_type="frames"`, 2 polarity channels, SDT's
    CIFAR10-DVS erode) against the PyTorch SDT fed `(T, B, C, H, W)` frames,
    as SDT's forward takes a 5-D input: logits and every spike."""
    steps, image = 4, 16
    reference = sdt_reference.SDTReference(
        1, 32, 10, time_steps=steps, pooling="0011", in_channels=2, attention=attention,
        erode=erode,
    )
    sdt_reference.randomize_(reference, seed=7, image_size=image)
    backbone = SpikingTransformerBackbone(
        num_layers=1, hidden_dim=32, time_steps=steps, pooling="0011",
        image_shape=(image, image, 2), attention=attention, erode=erode, input_type="frames",
    )
    model = SpikingTransformerImageClassifier(backbone=backbone, num_classes=10)
    convert_sdt_state_dict(reference.state_dict(), model)
    rng = np.random.default_rng(8)
    frames = rng.poisson(0.8, (BATCH, steps, image, image, 2)).astype("float32")
    record, handles = sdt_reference.record_spikes(reference)
    try:
        with torch.no_grad():
            torch_logits = reference(torch.from_numpy(np.transpose(frames, (1, 0, 4, 2, 3)))).numpy()
    finally:
        for handle in handles:
            handle.remove()
    torch_spikes = {name: canonical_torch(s) for name, s in record.items()}
    logits, spikes = run_keras(model, frames, monkeypatch)
    assert np.std(torch_logits) > 0.01
    np.testing.assert_allclose(logits, torch_logits, rtol=0, atol=LOGIT_TOLERANCE)
    assert spikes.keys() == torch_spikes.keys()
    for name, expected in torch_spikes.items():
        assert np.mean(spikes[name] == expected) >= SPIKE_AGREEMENT, name
