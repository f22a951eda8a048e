"""The energy report and the addition-only audit on Meta-SpikeFormer (SPEC
§10): counts worked out by hand from the architecture, the attention rows
from the one attention registry, for both attentions.

Tiny models: widths (8, 16, 32, 48), one block per stage, T = 2, 32x32
images, so the stem gives 16x16 frames of C0/2 = 4 channels and the
transformer stages a 2x2 token grid.
"""

import keras
import numpy as np
import pytest

from keras_spiking_tf.analysis import addition_only_audit
from keras_spiking_tf.analysis import calibrate_batch_norm
from keras_spiking_tf.analysis import energy_report
from keras_spiking_tf.analysis import record_forward
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerBackbone
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier

TIME_STEPS = 2
IMAGE = 32


@pytest.fixture(scope="module", params=["ssa", "a2os2a"])
def calibrated(request):
    """`(attention, model, images)`: random weights, BatchNorm statistics
    calibrated on the random images (else nothing fires)."""
    keras.utils.set_random_seed(0)
    backbone = MetaSpikeFormerBackbone(
        embed_dims=(8, 16, 32, 48), num_blocks=(1, 1, 1, 1, 1), num_heads=4,
        time_steps=TIME_STEPS, image_shape=(IMAGE, IMAGE, 3), attention=request.param,
    )
    model = MetaSpikeFormerImageClassifier(backbone, 5, kd=True)
    images = np.random.default_rng(0).normal(size=(8, IMAGE, IMAGE, 3)).astype("float32")
    calibrate_batch_norm(model, images)
    return request.param, model, images


def test_first_layer_macs_in_closed_form(calibrated):
    _, model, images = calibrated
    rows = {row["layer"]: row for row in energy_report(model, images).rows}
    first = rows["downsample1_1/encode_conv"]
    # 7x7, stride 2, padding 3, 3 -> C0/2 = 4 channels: a 16x16 output.
    assert first["input_kind"] == "real" and first["operation"] == "conv"
    assert first["flops"] == 16 * 16 * 4 * 3 * 7 * 7 == 150_528
    assert first["macs"] == TIME_STEPS * 150_528 and first["sops"] == 0


def test_depthwise_counts_by_hand(calibrated):
    _, model, images = calibrated
    report = energy_report(model, images)
    rows = {row["layer"]: row for row in report.rows}
    # SepConv of the first conv block: 7x7 depthwise over 2 x 4 = 8 hidden
    # channels of a 16x16 frame, on the spikes of `lif2`.
    sep = rows["conv_block1_1_0/sep_conv/dwconv"]
    assert sep["operation"] == "depthwise_conv"
    assert sep["flops"] == 16 * 16 * 8 * 7 * 7 == 100_352
    _, records = record_forward(model, images)
    spikes = next(r.value for r in records if r.name == "conv_block1_1_0/sep_conv/lif2")
    rate = np.count_nonzero(spikes) / spikes.size
    assert sep["input_kind"] == "binary" and 0 < rate < 1
    assert sep["sops"] == pytest.approx(rate * TIME_STEPS * 100_352) and sep["macs"] == 0
    # RepConv's 3x3 depthwise (padding 0) on the BatchNormAndPad output: a
    # 2x2 grid of C2 = 32 (block3) and C3 = 48 (block4) channels; real
    # operands, border of BN(0) included: MACs.
    for layer, channels in (("block3_0/attn/q_conv/depthwise", 32),
                            ("block4_0/attn/v_conv/depthwise", 48)):
        row = rows[layer]
        assert row["flops"] == 2 * 2 * channels * 3 * 3
        assert row["input_kind"] == "real" and row["macs"] == TIME_STEPS * row["flops"]
    assert report.macs == pytest.approx(sum(r["macs"] for r in report.rows))
    assert report.energy_mj == pytest.approx((4.6 * report.macs + 0.9 * report.sops) * 1e-9)


def test_audit_attention_products_are_addition_only(calibrated):
    attention, model, images = calibrated
    audit = addition_only_audit(model, images)
    rows = [a for a in audit if a["operation"] == "attention"]
    assert {a["layer"].split(":")[0] for a in rows} == {"block3_0/attn", "block4_0/attn"}
    assert len(rows) == 4 and not any(a["needs_multiplication"] for a in rows)
    # 2x2 tokens, head width 32/4 = 8 and 48/4 = 12 > 4 tokens: (Q K^T) V.
    kinds = {(a["operands"], a["input_kind"], a["other_kind"]) for a in rows}
    if attention == "a2os2a":  # Q binary x K = ReLU(k) real; V ternary x Q K^T real
        assert kinds == {("Q x K^T", "binary", "real"), ("(Q K^T) x V", "ternary", "real")}
    else:  # binary Q, K, V: Q K^T counts spikes (integers)
        assert kinds == {("Q x K^T", "binary", "binary"), ("(Q K^T) x V", "binary", "integer")}


def test_audit_lists_the_products_on_real_values(calibrated):
    attention, model, images = calibrated
    audit = addition_only_audit(model, images)
    needs = [a["layer"] for a in audit if a["needs_multiplication"]]
    # The stem on pixels; SepConv's pwconv2 after the depthwise conv (no
    # neuron between); RepConv's depthwise and pointwise convs (real values
    # after BatchNormAndPad). Every other product streams spikes.
    expected = ["downsample1_1/encode_conv"] + [
        f"{block}/sep_conv/pwconv2" for block in ("conv_block1_1_0", "conv_block1_2_0",
                                                  "conv_block2_0")]
    for block in ("block3_0", "block4_0"):
        for name in ("q", "k", "v", "proj"):
            expected += [f"{block}/attn/{name}_conv/{part}" for part in ("depthwise", "pointwise")]
    if attention == "ssa":
        # At random init the official attention's neuron stays silent: the
        # output projection then sees a constant 0 (calibrated BatchNorm of
        # zeros), which is no real product. Read off the values, not assumed.
        silent = [a["layer"] for a in audit if "proj_conv" in a["layer"]
                  and a["input_kind"] != "real"]
        expected = [layer for layer in expected if layer not in silent]
    assert sorted(needs) == sorted(expected)
