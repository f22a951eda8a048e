"""The official SDT V2 (Meta-SpikeFormer) checkpoint format converts.

A small V2 model of the independent PyTorch reference
(`meta_spikeformer_reference.py`, module names = the official keys; random
weights, calibrated BatchNorm statistics) is saved as the official training
script saves it, `{"model", "optimizer", "epoch", "scaler", "args"}`, and
converted by `convert_sdt_checkpoint` / `kst-convert-sdt` into a saved
small-size Meta-SpikeFormer preset directory (the size override). The
converted preset must give the reference's logits (within 1e-4) and spikes
(>= 99.9 % per neuron, as `test_meta_spikeformer.py`), and a checkpoint
with an unknown, a missing or a mis-shaped key, or a pickled class outside
the allow-list, is refused by name with nothing written.
"""

import argparse
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import test_meta_spikeformer as v2  # noqa: E402
from conftest import subprocess_env  # noqa: E402
from conftest import tool_command  # noqa: E402
from keras_spiking_tf.conversion import convert_sdt_checkpoint  # noqa: E402
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier  # noqa: E402
from keras_spiking_tf.models.meta_spikeformer import (  # noqa: E402
    meta_spikeformer_checkpoint as v2_keys,
)


class NotAllowListed:
    """A class a crafted checkpoint could ask to unpickle."""


def save_official_checkpoint(state_dict, path, **extra):
    """The official `main_finetune.py` layout (`misc.save_model`)."""
    checkpoint = {
        "model": state_dict,
        "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5, "params": [0, 1]}]},
        "epoch": 49,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "args": argparse.Namespace(model="metaspikformer_8_512", time_steps=4, kd=True),
        **extra,
    }
    torch.save(checkpoint, path)
    return str(path)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """The reference (official attention), its checkpoint and a target
    preset directory of the same small size with other random weights."""
    root = tmp_path_factory.mktemp("v2_conversion")
    reference = v2.torch_reference("ssa", seed=5)
    checkpoint = save_official_checkpoint(reference.state_dict(), root / "small_kd.pth")
    target = v2.keras_model("ssa")
    target.save_to_preset(str(root / "target"))
    return reference, checkpoint, str(root / "target"), root


def test_official_checkpoint_matches_reference(official, monkeypatch):
    reference, checkpoint, target_dir, root = official
    report = convert_sdt_checkpoint(checkpoint, target_dir, root / "converted")
    assert (report["family"], report["attention"], report["kd"]) == ("sdt_v2", "ssa", True)
    assert report["epoch"] == 49
    assert report["num_tensors"] == len(
        [k for k in reference.state_dict() if not k.endswith("num_batches_tracked")])
    assert set(report["skipped"]) == {
        k for k in reference.state_dict() if k.endswith("num_batches_tracked")}

    model = MetaSpikeFormerImageClassifier.from_preset(report["output_dir"])
    inputs = v2.images(21)
    torch_logits, torch_spikes = v2.run_torch(reference, inputs)
    logits, spikes = v2.run_keras(model, inputs, monkeypatch)
    assert np.std(torch_logits) > 0.05
    np.testing.assert_allclose(logits, torch_logits, rtol=0, atol=v2.LOGIT_TOLERANCE)
    assert set(spikes) == set(torch_spikes)
    for name, expected in torch_spikes.items():
        assert 0.005 < np.mean(expected != 0) < 0.7, name
        assert np.mean(spikes[name] == expected) >= v2.SPIKE_AGREEMENT, name


def test_init_attention_a2os2a_matches_the_torch_a2os2a(official, monkeypatch):
    """The V2 weights in the A2OS2A model equal the torch A2OS2A with them."""
    reference, checkpoint, target_dir, root = official
    report = convert_sdt_checkpoint(checkpoint, target_dir, root / "a2os2a",
                                    init_attention="a2os2a")
    model = MetaSpikeFormerImageClassifier.from_preset(report["output_dir"])
    assert model.backbone.attention == "a2os2a"
    a2os2a = reference_module_copy(reference, "a2os2a")
    inputs = v2.images(22)
    torch_logits, _ = v2.run_torch(a2os2a, inputs)
    logits, _ = v2.run_keras(model, inputs, monkeypatch)
    np.testing.assert_allclose(logits, torch_logits, rtol=0, atol=v2.LOGIT_TOLERANCE)


def reference_module_copy(reference, attention):
    model = v2.reference_module.MetaSpikeFormerReference(
        v2.EMBED_DIMS, v2.NUM_CLASSES, time_steps=v2.TIME_STEPS, block3=1, block4=1, kd=True,
        num_heads=v2.NUM_HEADS, attention=v2.ATTENTIONS[attention])
    model.load_state_dict(reference.state_dict())
    return model.eval()


def broken_state_dicts(state_dict):
    """name -> (state_dict, the key the message must name)."""
    unknown = dict(state_dict, **{"block3.0.attn.talking_heads.weight": torch.zeros(2, 2, 1)})
    missing = dict(state_dict)
    del missing["block3.0.attn.v_conv.0.body.2.0.weight"]
    misshaped = dict(state_dict)
    misshaped["ConvBlock1_1.0.Conv.dwconv.weight"] = torch.zeros(8, 1, 5, 5)
    return {
        "unknown": (unknown, "block3.0.attn.talking_heads.weight"),
        "missing": (missing, "block3.0.attn.v_conv.0.body.2.0.weight"),
        "misshaped": (misshaped, "ConvBlock1_1.0.Conv.dwconv.weight"),
    }


@pytest.mark.parametrize("problem", ["unknown", "missing", "misshaped"])
def test_refuses_bad_keys_by_name_writing_nothing(official, problem):
    reference, _, target_dir, root = official
    state_dict, key = broken_state_dicts(reference.state_dict())[problem]
    checkpoint = save_official_checkpoint(state_dict, root / f"{problem}.pth")
    output = root / f"out_{problem}"
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as error:
        convert_sdt_checkpoint(checkpoint, target_dir, output)
    if problem == "misshaped":
        assert "[8, 1, 5, 5]" in str(error.value) and "[8, 1, 7, 7]" in str(error.value)
    assert not output.exists()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


def test_refuses_a_pickled_class_outside_the_allow_list(official):
    reference, _, target_dir, root = official
    checkpoint = save_official_checkpoint(
        reference.state_dict(), root / "crafted.pth", extra=NotAllowListed())
    output = root / "out_crafted"
    with pytest.raises(ValueError, match="NotAllowListed"):
        convert_sdt_checkpoint(checkpoint, target_dir, output)
    assert not output.exists()


def test_builtin_v2_presets_build_the_checkpoint_head(monkeypatch):
    """Built-in names: `init_attention="a2os2a"` picks the st_v2 sibling, and
    the KD head and class count follow the checkpoint."""
    calls = []
    monkeypatch.setattr(MetaSpikeFormerImageClassifier, "from_preset",
                        classmethod(lambda cls, preset, **kwargs: calls.append((preset, kwargs))))
    build = v2_keys.build_target
    assert build("sdt_v2_8_512_imagenet", None, 1000, True)[0] == "sdt_v2_8_512_imagenet"
    assert build("sdt_v2_8_512_imagenet", "a2os2a", 1000, True)[0] == "st_v2_8_512_imagenet"
    assert build("st_v2_8_384_imagenet", "ssa", 10, False)[0] == "sdt_v2_8_384_imagenet"
    assert calls == [
        ("sdt_v2_8_512_imagenet", {"load_weights": False, "num_classes": 1000, "kd": True}),
        ("st_v2_8_512_imagenet", {"load_weights": False, "num_classes": 1000, "kd": True}),
        ("sdt_v2_8_384_imagenet", {"load_weights": False, "num_classes": 10, "kd": False}),
    ]


@pytest.mark.slow
def test_convert_tool_on_the_official_format(official):
    reference, checkpoint, target_dir, root = official
    output = root / "tool_output"
    result = subprocess.run(
        [*tool_command("kst-convert-sdt"), "--checkpoint", checkpoint,
         "--preset", target_dir, "--output_dir", str(output)],
        capture_output=True, text=True, env=subprocess_env(), timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "keras_spiking_tf.from_preset" in result.stdout
    assert "Meta-SpikeFormer" in result.stdout and "with the distillation head" in result.stdout
    model = MetaSpikeFormerImageClassifier.from_preset(str(output))
    inputs = v2.images(23, batch=2)
    torch_logits, _ = v2.run_torch(reference, inputs)
    np.testing.assert_allclose(v2.to_np(model(inputs)), torch_logits, rtol=0,
                               atol=v2.LOGIT_TOLERANCE)
