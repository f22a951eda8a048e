"""Attention sub-blocks, MLP, patch splitting, encoder block and BatchNorm.

Each block is compared with a straightforward NumPy (float64) re-computation
from its own weights, written from design.md §3; SPS is compared with PyTorch's
`conv2d` / `max_pool2d` (padding 1 on both sides), the layout SDT uses.
"""

import keras
import numpy as np
import pytest
from conftest import to_numpy
from keras import ops
from test_neurons import reference_lif

from keras_spiking_tf.layers import A2OS2A
from keras_spiking_tf.layers import LIF
from keras_spiking_tf.layers import SDSA
from keras_spiking_tf.layers import SSA
from keras_spiking_tf.layers import SpikingBatchNormalization
from keras_spiking_tf.layers import SpikingMLP
from keras_spiking_tf.layers import SpikingPatchSplitting
from keras_spiking_tf.layers import SpikingTransformerEncoderBlock
from keras_spiking_tf.layers import TernaryLIF
from keras_spiking_tf.layers import get_attention_class

EPSILON = 1e-5  # design.md §3.4
# design.md §8: a spike can flip when a membrane lies within float rounding of the
# threshold (float32 layer vs float64 reference, or another summation order).
# Such flips are rare, so >= 99.9% of the spikes must agree; membranes are
# compared at atol 1e-4 on the tokens whose spikes all agree.
MIN_SPIKE_AGREEMENT = 0.999
ATOL = 1e-4

B, T, N, D = 2, 3, 16, 32


# ---------------------------------------------------------------------------
# Helpers: random non-trivial weights and the NumPy references
# ---------------------------------------------------------------------------


def randomize_weights(layer, rng, gain=3.0, beta_range=(0.0, 2.0)):
    """Random kernels and BN parameters / moving statistics (not the init).

    Kernels have std `gain / sqrt(fan_in)` and BN shifts are mostly positive,
    so that every neuron of the block fires at a non-trivial rate.
    """
    for variable in layer.weights:
        name = variable.path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        if name == "kernel":
            fan_in = np.prod(shape[:-1])
            value = gain / np.sqrt(fan_in) * rng.standard_normal(shape)
        elif name == "bias":
            value = 0.2 * rng.standard_normal(shape)
        elif name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "beta":
            value = rng.uniform(*beta_range, shape)
        elif name == "moving_mean":
            value = 0.3 * rng.standard_normal(shape)
        elif name == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise AssertionError(f"unexpected weight {variable.path}")
        variable.assign(value.astype(np.float32))


def params(layer):
    """A sub-layer's weights as float64 NumPy arrays, by attribute name."""
    names = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
    return {
        name: to_numpy(getattr(layer, name)).astype(np.float64)
        for name in names
        if getattr(layer, name, None) is not None
    }


def bn_inference(x, bn_layer):
    p = params(bn_layer)
    return p["gamma"] * (x - p["moving_mean"]) / np.sqrt(
        p["moving_variance"] + EPSILON
    ) + p["beta"]


def dense(x, dense_layer):
    p = params(dense_layer)
    return x @ p["kernel"] + p.get("bias", 0.0)


def lif(x, **kwargs):
    return reference_lif(x, **kwargs)[0]


def per_head_qkv(q, k, v, heads):
    """Q K^T V per head on (B, T, N, D) arrays; no softmax, no scaling."""
    b, t, n, d = q.shape
    q, k, v = (a.reshape(b, t, n, heads, d // heads) for a in (q, k, v))
    scores = np.einsum("btnhc,btmhc->bthnm", q, k)
    return np.einsum("bthnm,btmhc->btnhc", scores, v).reshape(b, t, n, d)


def attention_reference(layer, u, variant):
    """design.md §3.2 in NumPy, inference mode. Returns the intermediate tensors."""
    r = {"S": lif(u)}
    for name in "qkv":
        r[name] = bn_inference(dense(r["S"], getattr(layer, f"{name}_conv")),
                               getattr(layer, f"{name}_bn"))
    heads = layer.num_heads
    if variant == "a2os2a":
        r["Q"], r["K"], r["V"] = lif(r["q"]), np.maximum(r["k"], 0), lif(r["v"], ternary=True)
        r["A"] = lif(per_head_qkv(r["Q"], r["K"], r["V"], heads), v_threshold=0.5)
    elif variant == "ssa":
        r["Q"], r["K"], r["V"] = lif(r["q"]), lif(r["k"]), lif(r["v"])
        r["A"] = lif(0.125 * per_head_qkv(r["Q"], r["K"], r["V"], heads), v_threshold=0.5)
    elif variant == "sdsa":
        r["Q"], r["K"], r["V"] = lif(r["q"]), lif(r["k"]), lif(r["v"])
        r["KV"] = lif(np.sum(r["K"] * r["V"], axis=2, keepdims=True), v_threshold=0.5)
        r["A"] = r["Q"] * r["KV"]
    r["out"] = u + bn_inference(dense(r["A"], layer.proj_conv), layer.proj_bn)
    return r


def mlp_reference(layer, u):
    hidden = bn_inference(dense(lif(u), layer.fc1_conv), layer.fc1_bn)
    return u + bn_inference(dense(lif(hidden), layer.fc2_conv), layer.fc2_bn)


def assert_spikes_agree(actual, expected, what):
    actual = np.asarray(actual)
    agreement = np.mean(actual == expected)
    assert agreement >= MIN_SPIKE_AGREEMENT, f"{what}: only {agreement:.4%} agree"
    return np.all(actual == expected, axis=-1)  # per-token agreement


def assert_membranes_close(actual, expected, token_mask, what):
    assert token_mask.mean() >= 0.9, f"{what}: too many tokens with flipped spikes"
    np.testing.assert_allclose(
        np.asarray(actual)[token_mask], expected[token_mask], atol=ATOL, err_msg=what
    )


def assert_nontrivial(spikes, what):
    rate = np.mean(spikes != 0)
    assert 0.02 < rate < 0.98, f"{what} firing rate {rate} makes the test vacuous"


def build_attention(layer_class, rng, shape=(B, T, N, D), **kwargs):
    layer = layer_class(**kwargs)
    layer.build(shape)
    randomize_weights(layer, rng)
    u = (3.0 * rng.standard_normal(shape)).astype(np.float32)
    return layer, u


def layer_intermediates(layer, u, variant):
    """The same intermediates, from the layer's own sub-layers (inference)."""
    out = {"S": layer.shortcut_lif(u)}
    for name in "qkv":
        conv, bn = getattr(layer, f"{name}_conv"), getattr(layer, f"{name}_bn")
        out[name] = bn(conv(out["S"]), training=False)
    out["Q"] = layer.q_lif(out["q"])
    if variant == "a2os2a":
        out["V"] = layer.v_lif(out["v"])
    else:
        out["K"], out["V"] = layer.k_lif(out["k"]), layer.v_lif(out["v"])
    out["A"] = layer.attend(out["q"], out["k"], out["v"])
    out["out"] = layer(u, training=False)
    return {key: to_numpy(value) for key, value in out.items()}


# ---------------------------------------------------------------------------
# Attention variants vs NumPy
# ---------------------------------------------------------------------------

VARIANTS = {"a2os2a": A2OS2A, "sdsa": SDSA, "ssa": SSA}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_attention_matches_numpy_reference(rng, variant):
    layer, u = build_attention(VARIANTS[variant], rng, num_heads=8)
    got = layer_intermediates(layer, u, variant)
    ref = attention_reference(layer, u, variant)

    spikes = ["S", "Q", "V", "A"] + ([] if variant == "a2os2a" else ["K"])
    token_ok = np.ones(ref["out"].shape[:-1], bool)
    for name in spikes:
        assert_nontrivial(ref[name], name)
        token_ok &= assert_spikes_agree(got[name], ref[name], name)
    for name in ("q", "k", "v", "out"):
        assert_membranes_close(got[name], ref[name], token_ok, name)


def test_a2os2a_intermediate_value_sets(rng):
    layer, u = build_attention(A2OS2A, rng)
    got = layer_intermediates(layer, u, "a2os2a")
    assert set(np.unique(got["Q"])) == {0.0, 1.0}
    assert set(np.unique(got["V"])) == {-1.0, 0.0, 1.0}
    assert set(np.unique(got["A"])) == {0.0, 1.0}
    # K = ReLU(k) >= 0: the attention output ignores how negative k is ...
    q, k, v = got["q"], got["k"], got["v"]
    assert np.mean(k < 0) > 0.05 and np.mean(k > 0) > 0.05
    more_negative = np.where(k < 0, k - 5.0, k)
    np.testing.assert_array_equal(to_numpy(layer.attend(q, more_negative, v)), got["A"])
    # ... but not the real values of its positive part (K is not a spike tensor).
    rescaled = np.where(k > 0, 3.0 * k, k)
    assert not np.array_equal(to_numpy(layer.attend(q, rescaled, v)), got["A"])
    assert isinstance(layer.v_lif, TernaryLIF)
    assert type(layer.q_lif) is LIF and type(layer.attn_lif) is LIF
    assert layer.attn_lif.cell.v_threshold == 0.5


def test_sdsa_kv_neuron_hits_threshold_exactly(rng):
    # design.md §2.4 / §8: KV is a sum of spikes, so H = KV / tau lands exactly on
    # 0.5 (KV = 1 at t=0); `>=` must fire there. Checked against the NumPy
    # reference, whose `>=` is explicit.
    layer, u = build_attention(SDSA, rng)
    ref = attention_reference(layer, u, "sdsa")
    kv_sum = np.sum(ref["K"] * ref["V"], axis=2, keepdims=True)
    assert np.any(kv_sum[:, 0] == 1.0)  # exact ties exist at t = 0
    got = layer_intermediates(layer, u, "sdsa")
    np.testing.assert_array_equal(got["A"], ref["A"])


@pytest.mark.parametrize("variant", ["a2os2a", "ssa"])
@pytest.mark.parametrize("num_heads,num_tokens", [(8, 16), (2, 8)])
def test_association_orders_agree(variant, num_heads, num_tokens):
    shape = (B, T, num_tokens, D)
    outputs = {}
    for association in ("kv_first", "qk_first"):
        layer, u = build_attention(
            VARIANTS[variant], np.random.default_rng(1), shape,
            num_heads=num_heads, association=association,
        )
        assert layer.product_association == association
        outputs[association] = layer_intermediates(layer, u, variant)
    a, b = outputs["kv_first"], outputs["qk_first"]
    token_ok = assert_spikes_agree(a["A"], b["A"], "A")
    assert_membranes_close(a["out"], b["out"], token_ok, "out")


@pytest.mark.parametrize(
    "num_heads,num_tokens,expected",
    [(8, 16, "kv_first"),   # d = 4 <= N = 16
     (2, 16, "kv_first"),   # d = 16 <= N = 16 (tie: kv_first)
     (2, 8, "qk_first"),    # d = 16 > N = 8
     (1, 4, "qk_first")],   # d = 32 > N = 4
)
def test_auto_association_picks_the_cheaper_order(num_heads, num_tokens, expected):
    layer = A2OS2A(num_heads=num_heads)
    layer.build((1, 2, num_tokens, D))
    assert layer.product_association == expected


def test_sdsa_is_head_independent(rng):
    # SDSA is channel-wise: the number of heads must not change the output.
    u = (2.0 * rng.standard_normal((B, T, N, D))).astype(np.float32)
    outputs = []
    for heads in (1, 8):
        layer = SDSA(num_heads=heads)
        layer.build(u.shape)
        randomize_weights(layer, np.random.default_rng(5))
        outputs.append(to_numpy(layer(u, training=False)))
    np.testing.assert_array_equal(outputs[0], outputs[1])


# ---------------------------------------------------------------------------
# MLP, encoder block, BatchNorm
# ---------------------------------------------------------------------------


def test_mlp_matches_numpy_reference(rng):
    layer = SpikingMLP(mlp_ratio=4)
    layer.build((B, T, N, D))
    randomize_weights(layer, rng)
    u = (2.0 * rng.standard_normal((B, T, N, D))).astype(np.float32)
    np.testing.assert_allclose(to_numpy(layer(u, training=False)),
                               mlp_reference(layer, u), atol=ATOL)
    assert layer.fc1_conv.kernel.shape == (D, 4 * D)
    assert layer.fc2_conv.kernel.shape == (4 * D, D)


@pytest.mark.parametrize("variant", ["a2os2a", "sdsa"])
def test_encoder_block_is_attention_then_mlp(rng, variant):
    block = SpikingTransformerEncoderBlock(attention=variant)
    block.build((B, T, N, D))
    randomize_weights(block, rng)
    assert isinstance(block.attn, VARIANTS[variant])
    u = (2.0 * rng.standard_normal((B, T, N, D))).astype(np.float32)
    expected = mlp_reference(block.mlp, attention_reference(block.attn, u, variant)["out"])
    np.testing.assert_allclose(to_numpy(block(u, training=False)), expected, atol=ATOL)


def test_batch_norm_defaults_and_shared_statistics(rng):
    bn = SpikingBatchNormalization()
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5
    x = (1.0 + 2.0 * rng.standard_normal((4, 3, 5, 6))).astype(np.float32)
    y = to_numpy(bn(x, training=True))
    # Statistics over every axis but the channels: batch, time and tokens.
    mean = x.astype(np.float64).mean(axis=(0, 1, 2))
    var = x.astype(np.float64).var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + EPSILON), atol=1e-4)
    # Moving averages with PyTorch momentum 0.1 (Keras 0.9) from (0, 1).
    np.testing.assert_allclose(to_numpy(bn.moving_mean), 0.1 * mean, atol=1e-5)
    # Keras updates the moving variance with the biased batch variance; PyTorch
    # uses the unbiased one (factor n / (n - 1)). Accept either.
    n = x.size // x.shape[-1]
    moving_var = to_numpy(bn.moving_variance)
    assert np.all(moving_var >= 0.9 + 0.1 * var - 1e-5)
    assert np.all(moving_var <= 0.9 + 0.1 * var * n / (n - 1) + 1e-5)
    # Inference uses the moving statistics.
    y = to_numpy(bn(x, training=False))
    expected = (x - to_numpy(bn.moving_mean)) / np.sqrt(moving_var + EPSILON)
    np.testing.assert_allclose(y, expected, atol=1e-4)


def numpy_batch_norm_training(x, gamma, beta, upstream):
    """Training-mode BN over all axes but the last, forward and backward, in
    float64 from the textbook formulas (Ioffe & Szegedy 2015)."""
    x = x.astype(np.float64).reshape(-1, x.shape[-1])
    g = upstream.astype(np.float64).reshape(x.shape)
    n = x.shape[0]
    mean, var = x.mean(0), x.var(0)
    inv = 1.0 / np.sqrt(var + EPSILON)
    x_hat = (x - mean) * inv
    y = gamma * x_hat + beta
    d_beta = g.sum(0)
    d_gamma = (g * x_hat).sum(0)
    dx = gamma * inv / n * (n * g - d_beta - x_hat * d_gamma)
    return y, dx, d_gamma, d_beta, mean, var


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 4, 5, 4), (12, 4)])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_batch_norm_training_step_matches_numpy(rng, shape, policy):
    # On TensorFlow this is the fused-kernel path; elsewhere Keras' own.
    x = (0.5 + 2.0 * rng.standard_normal(shape)).astype(np.float32)
    upstream = rng.standard_normal(shape).astype(np.float32)
    gamma = (1.0 + 0.3 * rng.standard_normal(shape[-1])).astype(np.float32)
    beta = rng.standard_normal(shape[-1]).astype(np.float32)
    bn = SpikingBatchNormalization(dtype=policy)
    bn.build(shape)
    bn.gamma.assign(gamma)
    bn.beta.assign(beta)
    # The layer sees its input in the compute dtype (bfloat16 under mixed).
    seen = to_numpy(ops.cast(ops.cast(x, bn.compute_dtype), "float32"))
    y_ref, dx_ref, d_gamma_ref, d_beta_ref, mean, var = numpy_batch_norm_training(
        seen, gamma, beta, upstream
    )
    tolerance = 1e-4 if policy == "float32" else 3e-2
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = bn(xt, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
        dx, d_gamma, d_beta = tape.gradient(loss, [xt, bn.gamma.value, bn.beta.value])
        np.testing.assert_allclose(to_numpy(dx), dx_ref.reshape(shape), atol=tolerance * 10, rtol=tolerance)
        np.testing.assert_allclose(to_numpy(d_gamma), d_gamma_ref, atol=tolerance * 10, rtol=tolerance)
        np.testing.assert_allclose(to_numpy(d_beta), d_beta_ref, atol=tolerance * 10, rtol=tolerance)
    else:
        y = bn(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == bn.compute_dtype
    np.testing.assert_allclose(
        to_numpy(ops.cast(y, "float32")), y_ref.reshape(shape), atol=tolerance * 10, rtol=tolerance
    )
    # Keras' moving averages: biased batch variance, momentum 0.9, from (0, 1).
    np.testing.assert_allclose(to_numpy(bn.moving_mean), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(bn.moving_variance), 0.9 + 0.1 * var, rtol=1e-5)


# ---------------------------------------------------------------------------
# Spiking Patch Splitting vs PyTorch
# ---------------------------------------------------------------------------


def import_torch():
    """torch and torch.nn.functional, the independent SPS reference."""
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


def sps_reference(layer, images, pooling, time_steps, training):
    """design.md §3.1 with torch.nn.functional, NCHW, float64."""
    torch, F = import_torch()

    def torch_lif(x):  # binary LIF over axis 1 of (B, T, ...), NumPy loop
        return torch.from_numpy(lif(x.numpy()))

    def conv(x, conv_layer):
        kernel = torch.from_numpy(params(conv_layer)["kernel"]).permute(3, 2, 0, 1)
        return F.conv2d(x, kernel, padding=1)

    def bn(x, bn_layer):
        p = {k: torch.from_numpy(v).view(1, -1, 1, 1) for k, v in params(bn_layer).items()}
        if training:  # batch statistics over (T*B, H, W), shared across time
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        else:
            mean, var = p["moving_mean"], p["moving_variance"]
        return p["gamma"] * (x - mean) / torch.sqrt(var + EPSILON) + p["beta"]

    def pool(x):
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)

    def fold(x):  # (B, T, C, H, W) -> (B*T, C, H, W)
        return x.reshape(-1, *x.shape[2:])

    def unfold(x):
        return x.reshape(-1, time_steps, *x.shape[1:])

    x = torch.from_numpy(images.astype(np.float64)).permute(0, 3, 1, 2)
    x = x[:, None].repeat(1, time_steps, 1, 1, 1)  # direct encoding
    for stage in range(3):
        x = fold(x)
        x = bn(conv(x, layer.stage_convs[stage]), layer.stage_bns[stage])
        x = fold(torch_lif(unfold(x)))
        if pooling[stage] == "1":
            x = pool(x)
        x = unfold(x)
    x_feat = bn(conv(fold(x), layer.stage_convs[3]), layer.stage_bns[3])
    if pooling[3] == "1":
        x_feat = pool(x_feat)
    rpe_spikes = fold(torch_lif(unfold(x_feat)))
    u0 = bn(conv(rpe_spikes, layer.rpe_conv), layer.rpe_bn) + x_feat
    u0 = unfold(u0)  # (B, T, D, h, w) -> (B, T, h*w, D)
    b, t, d, h, w = u0.shape
    return u0.permute(0, 1, 3, 4, 2).reshape(b, t, h * w, d).numpy(), rpe_spikes


@pytest.mark.parametrize(
    "pooling,size,training",
    [("0011", 16, False), ("1111", 32, False), ("0011", 16, True)],
)
def test_patch_splitting_matches_torch_reference(rng, pooling, size, training):
    # 32x32 for "1111" keeps 2x2 tokens (16x16 would pool down to one token,
    # where a window shift no longer shows). Firing rates kept moderate, so
    # max-pooled spike maps don't saturate at 1 and hide shifted windows.
    dim, steps = 16, 2
    layer = SpikingPatchSplitting(hidden_dim=dim, time_steps=steps, pooling=pooling)
    images = rng.standard_normal((2, size, size, 3)).astype(np.float32)
    layer.build(images.shape)
    randomize_weights(layer, rng, beta_range=(-0.5, 0.5))
    expected, rpe_spikes = sps_reference(layer, images, pooling, steps, training)
    assert_nontrivial(rpe_spikes.numpy(), "stage-3 LIF")
    got = to_numpy(layer(images, training=training))
    side = size // 2 ** pooling.count("1")
    assert got.shape == (2, steps, side * side, dim)
    assert layer.compute_output_shape(images.shape) == got.shape
    # A flipped spike upstream would spread through the 3x3 convolutions;
    # require (nearly) every element to match.
    close = np.abs(got - expected) <= ATOL
    assert close.mean() >= MIN_SPIKE_AGREEMENT, f"{1 - close.mean():.4%} differ"


def test_patch_splitting_pools_with_padding_on_both_sides():
    # The explicit-padding requirement of design.md §3.1, isolated: on an even
    # size, torch-style padding (1 on both sides) differs from Keras "same".
    from keras_spiking_tf.layers.spiking_patch_splitting import max_pool_3x3_stride_2

    torch, F = import_torch()
    x = np.arange(2 * 6 * 6 * 2, dtype=np.float32).reshape(2, 6, 6, 2)
    x = np.random.default_rng(3).permutation(x.ravel()).reshape(x.shape) - 50.0
    expected = F.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 3, 2, 1)
    expected = expected.permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(to_numpy(max_pool_3x3_stride_2(x)), expected)
    keras_same = to_numpy(ops.max_pool(x, 3, strides=2, padding="same"))
    assert not np.array_equal(keras_same, expected)


# ---------------------------------------------------------------------------
# Parameter counts (design.md §4)
# ---------------------------------------------------------------------------


def trainable_count(layer):
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


@pytest.mark.parametrize("dim", [32, 64])
def test_parameter_counts(dim):
    sps = SpikingPatchSplitting(hidden_dim=dim, time_steps=4, pooling="0011")
    sps.build((1, 32, 32, 3))
    assert trainable_count(sps) == 14.90625 * dim**2 + 9.125 * dim
    for attention in ("a2os2a", "sdsa", "ssa"):
        block = SpikingTransformerEncoderBlock(attention=attention)
        block.build((1, 4, 64, dim))
        assert trainable_count(block) == 12 * dim**2 + 24 * dim


# ---------------------------------------------------------------------------
# Serialization, functional models, training
# ---------------------------------------------------------------------------

SEQ_SHAPE = (2, 16, 16)  # (T, N, D) per sample
IMAGE_SHAPE = (16, 16, 3)
LAYER_FACTORIES = {
    "LIF": (lambda: LIF(tau=3.0, v_reset=None), SEQ_SHAPE),
    "TernaryLIF": (lambda: TernaryLIF(detach_reset=False), SEQ_SHAPE),
    "SpikingBatchNormalization": (lambda: SpikingBatchNormalization(), SEQ_SHAPE),
    "A2OS2A": (lambda: A2OS2A(num_heads=4, association="qk_first"), SEQ_SHAPE),
    "SDSA": (lambda: SDSA(num_heads=2, neuron_config={"tau": 1.5}), SEQ_SHAPE),
    "SSA": (lambda: SSA(num_heads=4, scale=0.25), SEQ_SHAPE),
    "SpikingMLP": (lambda: SpikingMLP(mlp_ratio=2), SEQ_SHAPE),
    "SpikingTransformerEncoderBlock": (
        lambda: SpikingTransformerEncoderBlock(attention="ssa", num_heads=2, mlp_ratio=2),
        SEQ_SHAPE,
    ),
    "SpikingPatchSplitting": (
        lambda: SpikingPatchSplitting(hidden_dim=16, time_steps=2, pooling="0011"),
        IMAGE_SHAPE,
    ),
}


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_config_round_trip(name):
    factory, _ = LAYER_FACTORIES[name]
    layer = factory()
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    # Through Keras' registered-object serialization as well.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == config


def compile_for_test(model, optimizer):
    # XLA compilation (TensorFlow's "auto" choice) of these unrolled graphs
    # takes longer than the two steps it runs; JAX is only fast jitted.
    model.compile(optimizer=optimizer, loss="mse",
                  jit_compile=keras.backend.backend() == "jax")


def functional_model(name):
    factory, input_shape = LAYER_FACTORIES[name]
    inputs = keras.Input(input_shape)
    # A Dense in front gives every model trainable weights upstream of the layer.
    x = keras.layers.Dense(input_shape[-1], name="pre")(inputs)
    return keras.Model(inputs, factory()(x)), input_shape


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_keras_save_load_in_functional_model(name, rng, tmp_path):
    model, input_shape = functional_model(name)
    x = (2.0 * rng.standard_normal((4, *input_shape))).astype(np.float32)
    model(x, training=True)  # move BN statistics away from their init
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is type(model.layers[-1])
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    for training in (False, True):
        np.testing.assert_array_equal(
            to_numpy(loaded(x, training=training)), to_numpy(model(x, training=training))
        )


def test_every_layer_trains_in_one_functional_model(rng, tmp_path):
    # One model chaining every layer (one compilation instead of nine keeps
    # the suite fast, JAX in particular): fit for 2 steps, then save/load.
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Dense(IMAGE_SHAPE[-1], name="pre")(inputs)
    layers = [LAYER_FACTORIES["SpikingPatchSplitting"][0]()]
    layers += [LAYER_FACTORIES[name][0]() for name in sorted(LAYER_FACTORIES)
               if name != "SpikingPatchSplitting"]
    for layer in layers:
        x = layer(x)
    model = keras.Model(inputs, x)
    assert model.output_shape == (None, *SEQ_SHAPE)

    images = rng.standard_normal((4, *IMAGE_SHAPE)).astype(np.float32)
    targets = rng.standard_normal((4, *SEQ_SHAPE)).astype(np.float32)
    before = {w.path: to_numpy(w).copy() for w in model.trainable_weights}
    compile_for_test(model, keras.optimizers.Adam(1e-2))
    history = model.fit(images, targets, batch_size=2, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    assert int(to_numpy(model.optimizer.iterations)) == 2
    moved = {w.path for w in model.trainable_weights
             if not np.array_equal(before[w.path], to_numpy(w))}
    # Gradients reach the Dense at the very front, through every layer, and
    # every layer with weights. (Not necessarily all of its weights: at SDT's
    # init an attention neuron may stay silent, and a kernel fed only zero
    # spikes gets an exactly zero gradient.)
    assert "pre/kernel" in moved
    for layer in layers:
        own = {w.path for w in layer.trainable_weights}
        assert not own or own & moved, layer.name

    path = tmp_path / "all_layers.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        to_numpy(loaded(images, training=False)), to_numpy(model(images, training=False))
    )


def test_a2os2a_weights_all_receive_gradients(rng):
    # With firing neurons, every A2OS2A weight moves in one step: gradients
    # flow through the Q, V and attention neurons' surrogates, not only the
    # shortcut.
    model, input_shape = functional_model("A2OS2A")
    attention = model.layers[-1]
    randomize_weights(attention, rng)
    x = (2.0 * rng.standard_normal((4, *input_shape))).astype(np.float32)
    y = rng.standard_normal((4, *input_shape)).astype(np.float32)
    before = {w.path: to_numpy(w).copy() for w in attention.trainable_weights}
    compile_for_test(model, keras.optimizers.SGD(0.1))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for w in attention.trainable_weights:
        if w is attention.proj_conv.bias:
            # A bias right before a training-mode BN cancels out (BN subtracts
            # the batch mean): its gradient is zero up to rounding.
            continue
        assert not np.array_equal(before[w.path], to_numpy(w)), w.path


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer_class", [A2OS2A, SDSA, SSA])
def test_attention_rejects_rank_3_input(layer_class):
    with pytest.raises(ValueError, match=r"\(batch, T, N, D\)"):
        layer_class()(np.zeros((2, 16, 32), np.float32))


@pytest.mark.parametrize("layer_class", [A2OS2A, SDSA, SSA])
def test_attention_rejects_width_not_divisible_by_heads(layer_class):
    with pytest.raises(ValueError, match="D=20 is not divisible by num_heads=8"):
        layer_class(num_heads=8)(np.zeros((1, 2, 4, 20), np.float32))


def test_unknown_attention_name():
    assert get_attention_class("a2os2a") is A2OS2A
    assert get_attention_class("sdsa") is SDSA and get_attention_class("ssa") is SSA
    with pytest.raises(ValueError, match="Unknown attention 'softmax'"):
        get_attention_class("softmax")
    with pytest.raises(ValueError, match="Unknown attention"):
        SpikingTransformerEncoderBlock(attention="A2OS2A ")


def test_unknown_association():
    with pytest.raises(ValueError, match="Unknown association"):
        A2OS2A(association="left")


@pytest.mark.parametrize("pooling", ["001", "00111", "0a11", "", "0 11"])
def test_bad_pooling_string(pooling):
    with pytest.raises(ValueError, match="pooling"):
        SpikingPatchSplitting(hidden_dim=16, pooling=pooling)


def test_patch_splitting_bad_width_and_rank():
    with pytest.raises(ValueError, match="divisible by 8"):
        SpikingPatchSplitting(hidden_dim=20)
    with pytest.raises(ValueError, match=r"\(batch, H, W, C\) or frame sequences"):
        SpikingPatchSplitting(hidden_dim=16)(np.zeros((16, 16, 3), np.float32))
    # A frame sequence (batch, T, H, W, C) brings its own T.
    frames = SpikingPatchSplitting(hidden_dim=16, time_steps=4, pooling="0011")(
        np.zeros((2, 3, 16, 16, 2), np.float32))
    assert tuple(frames.shape) == (2, 3, 16, 16)
