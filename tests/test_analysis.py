"""Spike analysis: firing rates, energy, addition-only audit, callback, tool."""

import json
import os
import subprocess

import keras
import numpy as np
import pytest

import keras_spiking_tf
from conftest import subprocess_env
from conftest import tool_command
from keras_spiking_tf.analysis import FiringRateMonitor
from keras_spiking_tf.analysis import addition_only_audit
from keras_spiking_tf.analysis import calibrate_batch_norm
from keras_spiking_tf.analysis import energy_report
from keras_spiking_tf.analysis import firing_rates
from keras_spiking_tf.layers import LIF
from keras_spiking_tf.layers import TernaryLIF



def tiny_model(attention="a2os2a"):
    """1 block, D=32, T=2, 16x16x1 input, pooling "0011" -> 4x4 = 16 tokens."""
    return keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=32,
        time_steps=2, attention=attention,
    )


@pytest.fixture(scope="module")
def calibrated():
    model = tiny_model()
    images = np.random.default_rng(0).normal(size=(8, 16, 16, 1)).astype("float32")
    calibrate_batch_norm(model, images)
    return model, images


def test_rates_of_a_known_spike_pattern():
    # tau=2, V_th=1, hard reset: constant 1.5 fires 0,1,0,1; input 0 never.
    inputs = np.zeros((2, 4, 6), "float32")
    inputs[:, :, :3] = 1.5
    model = keras.Sequential([keras.Input((4, 6)), LIF(name="lif")])
    rates = firing_rates(model, inputs)["layers"]
    (name,) = rates
    assert rates[name]["per_step"] == pytest.approx([0.0, 0.5, 0.0, 0.5])
    assert rates[name]["mean"] == pytest.approx(0.25)


def test_ternary_rate_counts_negative_spikes():
    inputs = np.full((1, 4, 5), -1.5, "float32")  # fires -1 at t = 1, 3
    model = keras.Sequential([keras.Input((4, 5)), TernaryLIF(name="ternary")])
    (rates,) = firing_rates(model, inputs)["layers"].values()
    assert rates["per_step"] == pytest.approx([0.0, 1.0, 0.0, 1.0])
    assert rates["ternary"] is True


def test_flops_of_each_layer_match_hand_count(calibrated):
    model, images = calibrated
    flops = {row["layer"]: row["flops"] for row in energy_report(model, images).rows}
    k = 9  # 3x3 kernels
    hand = {
        # SPS widths D/8, D/4, D/2, D = 4, 8, 16, 32; pools after stages 2, 3.
        "patch_embed/proj_conv": k * 16 * 16 * 1 * 4,
        "patch_embed/proj_conv1": k * 16 * 16 * 4 * 8,
        "patch_embed/proj_conv2": k * 16 * 16 * 8 * 16,
        "patch_embed/proj_conv3": k * 8 * 8 * 16 * 32,
        "patch_embed/rpe_conv": k * 4 * 4 * 32 * 32,
        # 16 tokens of width 32; MLP hidden 128.
        "block_0/attn/q_conv": 16 * 32 * 32,
        "block_0/attn/k_conv": 16 * 32 * 32,
        "block_0/attn/v_conv": 16 * 32 * 32,
        "block_0/attn/proj_conv": 16 * 32 * 32,
        "block_0/mlp/fc1_conv": 16 * 32 * 128,
        "block_0/mlp/fc2_conv": 16 * 128 * 32,
        "head": 32 * 10,
        # 8 heads of width d=4 over N=16 tokens: d <= N, so Q (K^T V).
        "block_0/attn:K^T x V": 8 * 16 * 4 * 4,
        "block_0/attn:Q x (K^T V)": 8 * 16 * 4 * 4,
    }
    assert flops == hand


def test_energy_rows_follow_the_spec_formula(calibrated):
    model, images = calibrated
    report = energy_report(model, images)
    rates = firing_rates(model, images)["layers"]
    rows = {row["layer"]: row for row in report.rows}
    # Independent rate: the q/k/v convs read the shortcut neuron's output.
    shortcut_rate = rates["block_0/attn/shortcut_lif"]["mean"]
    assert shortcut_rate > 0.01
    assert rows["block_0/attn/q_conv"]["input_firing_rate"] == pytest.approx(shortcut_rate)
    for row in report.rows:
        if row["input_kind"] == "real":
            assert row["macs"] == 2 * row["flops"] and row["sops"] == 0
        else:
            assert row["sops"] == pytest.approx(row["input_firing_rate"] * 2 * row["flops"])
            assert row["macs"] == 0
        assert row["energy_pj"] == pytest.approx(4.6 * row["macs"] + 0.9 * row["sops"])
    assert report.sops == pytest.approx(sum(r["sops"] for r in report.rows))
    assert report.macs == pytest.approx(sum(r["macs"] for r in report.rows))
    assert report.energy_mj == pytest.approx((4.6 * report.macs + 0.9 * report.sops) * 1e-9)
    assert "total per image" in report.table()


def test_first_layer_macs_of_st_8_512_imagenet():
    # The first conv does not depend on depth: one block keeps this cheap.
    model = keras_spiking_tf.from_preset("st_8_512_imagenet", load_weights=False, num_layers=1)
    images = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype("float32")
    rows = {row["layer"]: row for row in energy_report(model, images).rows}
    first = rows["patch_embed/proj_conv"]
    assert first["input_kind"] == "real"
    assert first["flops"] == 9 * 224 * 224 * 3 * 64 == 86_704_128
    assert first["macs"] == 4 * 86_704_128 == 346_816_512


@pytest.mark.parametrize("attention", ["a2os2a", "ssa", "sdsa"])
def test_audit_flags_only_the_first_conv(attention):
    model = tiny_model(attention)
    images = np.random.default_rng(1).normal(size=(4, 16, 16, 1)).astype("float32")
    calibrate_batch_norm(model, images)
    audit = addition_only_audit(model, images)
    assert [a["layer"] for a in audit if a["needs_multiplication"]] == ["patch_embed/proj_conv"]
    attention_rows = [a for a in audit if a["operation"] == "attention"]
    assert len(attention_rows) == 2
    if attention == "a2os2a":
        kinds = {a["operands"]: (a["input_kind"], a["other_kind"]) for a in attention_rows}
        # Q K^T V with Q binary, K real (ReLU), V ternary: additions only.
        assert kinds == {"K^T x V": ("ternary", "real"), "Q x (K^T V)": ("binary", "real")}


def test_firing_rate_monitor_records_history_and_tensorboard(tmp_path):
    model = tiny_model()
    images = np.random.default_rng(2).uniform(0, 255, (8, 16, 16, 1)).astype("float32")
    labels = np.arange(8) % 10
    monitor = FiringRateMonitor(model.preprocessor(images), log_dir=str(tmp_path / "tb"))
    csv = tmp_path / "log.csv"
    model.compile(optimizer="adam")
    model.fit(images, labels, epochs=2, batch_size=4, verbose=0,
              callbacks=[monitor, keras.callbacks.CSVLogger(str(csv))])
    assert len(monitor.history) == 2
    assert set(monitor.history[0]) >= {"mean", "block_0/attn/q_lif", "head_lif"}
    assert all(0.0 <= v <= 1.0 for v in monitor.history[-1].values())
    assert "firing_rate/block_0/attn/q_lif" in csv.read_text().splitlines()[0]
    if keras.backend.backend() == "tensorflow":
        assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb"))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tool runs on TF")
def test_analyze_tool_writes_json_and_plots(tmp_path):
    result = subprocess.run(
        [*tool_command("kst-analyze"), "--preset", "st_2_64_digits",
         "--num_images", "8", "--output_dir", str(tmp_path)],
        env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    assert analysis["weights"] == "trained"
    assert analysis["multiplications"] == ["patch_embed/proj_conv"]
    assert analysis["energy"]["sops"] == pytest.approx(sum(r["sops"] for r in analysis["energy"]["rows"]))
    for picture in ("firing_rates.png", "energy.png", "spike_raster.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
