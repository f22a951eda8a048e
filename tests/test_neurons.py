"""LIF / TernaryLIF neurons, their RNN cells and the surrogate gradients.

Expected values come from hand derivations (design.md §2) or from the small NumPy
loops below, written from docs/design.md, never from the code under test.
"""

import math

import keras
import numpy as np
import pytest
from conftest import to_numpy
from keras import ops

from keras_spiking_tf.layers import LIF
from keras_spiking_tf.layers import LIFCell
from keras_spiking_tf.layers import TernaryLIF
from keras_spiking_tf.layers import TernaryLIFCell
from keras_spiking_tf.layers import heaviside_with_surrogate
from keras_spiking_tf.layers import surrogate_derivative

# ---------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------


def reference_lif(
    x,
    tau=2.0,
    v_threshold=1.0,
    v_reset=0.0,
    decay_input=True,
    ternary=False,
):
    """design.md §2.1 / §2.3 in float64 on `x` shaped (batch, T, ...).

    Returns (spikes, final membrane).
    """
    x = np.asarray(x, np.float64)
    rest = 0.0 if v_reset is None else v_reset
    v = np.zeros_like(x[:, 0])
    spikes = []
    for t in range(x.shape[1]):
        if decay_input:
            h = v + (x[:, t] - (v - rest)) / tau
        else:
            h = v - (v - rest) / tau + x[:, t]
        s = (h >= v_threshold).astype(np.float64)
        if ternary:
            s = s - (h <= -v_threshold)
        if v_reset is None:  # soft reset
            v = h - s * v_threshold
        else:  # hard reset, wherever the neuron fired (either sign)
            v = h * (1 - np.abs(s)) + v_reset * np.abs(s)
        spikes.append(s)
    return np.stack(spikes, axis=1), v


def reference_paper_lif(x, beta, v_threshold, v_reset=0.0):
    """The paper's eq. 1-3 exactly as design.md §2.2 writes them:

    U[t] = H[t-1] + X[t];  S = Hea(U - V_th);  H = V_reset S + beta U (1 - S).
    """
    x = np.asarray(x, np.float64)
    h = np.zeros_like(x[:, 0])
    spikes = []
    for t in range(x.shape[1]):
        u = h + x[:, t]
        s = (u - v_threshold >= 0).astype(np.float64)
        h = v_reset * s + beta * u * (1 - s)
        spikes.append(s)
    return np.stack(spikes, axis=1)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# The docstring table of surrogate.py, re-typed in NumPy.
SURROGATE_FORMULAS = {
    "sigmoid": lambda x, a: a * np_sigmoid(a * x) * (1 - np_sigmoid(a * x)),
    "atan": lambda x, a: (a / 2) / (1 + (math.pi / 2 * a * x) ** 2),
    "triangle": lambda x, a: a * np.maximum(0.0, 1 - a * np.abs(x)),
    "rectangle": lambda x, a: a * (np.abs(x) < 1 / (2 * a)).astype(np.float64),
}
DEFAULT_ALPHA = {"sigmoid": 4.0, "atan": 2.0, "triangle": 1.0, "rectangle": 1.0}


def sigmoid_surrogate(x, alpha=4.0):
    return SURROGATE_FORMULAS["sigmoid"](np.asarray(x, np.float64), alpha)


def grad_of(fn, x):
    """d fn(x) / dx as NumPy, for a scalar-valued `fn`, in the active backend."""
    backend = keras.backend.backend()
    x = np.asarray(x, np.float32)
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        fn(x).backward()
        return x.grad.numpy()
    pytest.skip(f"no gradient helper for backend {backend}")


def random_membranes(rng, shape, scale=1.5):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------------------
# Hand-derived spike trains
# ---------------------------------------------------------------------------


def test_constant_input_hand_derived_binary():
    # tau=2, V_th=1: H1 = 1.5/2 = 0.75 (no spike, V=0.75);
    # H2 = 0.75 + (1.5 - 0.75)/2 = 1.125 -> spike, reset to 0; then repeat.
    x = np.full((2, 6, 3), 1.5, np.float32)
    spikes = to_numpy(LIF(tau=2.0, v_threshold=1.0)(x))
    np.testing.assert_array_equal(spikes[0, :, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(spikes, np.broadcast_to(spikes[:1, :, :1], x.shape))


def test_constant_input_hand_derived_ternary():
    # Mirror image of the binary case: H = -0.75, -1.125 (fires -1), 0, ...
    x = np.full((1, 6, 3), -1.5, np.float32)
    spikes = to_numpy(TernaryLIF(tau=2.0, v_threshold=1.0)(x))
    np.testing.assert_array_equal(spikes[0, :, 0], [0, -1, 0, -1, 0, -1])
    # Positive input is the same train with +1.
    spikes = to_numpy(TernaryLIF()(-x))
    np.testing.assert_array_equal(spikes[0, :, 0], [0, 1, 0, 1, 0, 1])


def test_binary_neuron_ignores_negative_input():
    x = np.full((1, 4, 2), -5.0, np.float32)
    np.testing.assert_array_equal(to_numpy(LIF()(x)), 0.0)


def test_soft_reset_hand_derived():
    # tau=2, V_th=1, soft reset, constant 3:
    # H1 = 1.5 -> S=1, V = 0.5; H2 = 0.5 + (3 - 0.5)/2 = 1.75 -> S=1, V=0.75;
    # H3 = 0.75 + 1.125 = 1.875 -> S=1, V=0.875.  Constant 0.9:
    # H1 = 0.45, H2 = 0.675, H3 = 0.7875, H4 = 0.84375 -> never fires.
    x = np.stack([np.full((3,), 3.0), np.full((3,), 0.9)], axis=-1)[None]
    spikes = to_numpy(LIF(v_reset=None)(x.astype(np.float32)))
    np.testing.assert_array_equal(spikes[0, :, 0], [1, 1, 1])
    np.testing.assert_array_equal(spikes[0, :, 1], [0, 0, 0])


@pytest.mark.parametrize("ternary", [False, True])
def test_tie_at_threshold_fires(ternary):
    # H1 = 2/2 = 1.0 exactly equals V_th: `>=` must fire (design.md §2.1, §2.4).
    layer_class = TernaryLIF if ternary else LIF
    x = np.array([[[2.0], [0.0]]], np.float32)  # (1, T=2, 1)
    np.testing.assert_array_equal(to_numpy(layer_class()(x))[0, :, 0], [1, 0])
    # Without input decay the tie is H1 = X1 = 1.0.
    x = np.array([[[1.0]]], np.float32)
    spikes = to_numpy(layer_class(decay_input=False)(x))
    assert spikes.item() == 1.0
    # Just below the threshold does not fire.
    x = np.array([[[np.nextafter(np.float32(1.0), np.float32(0.0))]]])
    spikes = to_numpy(layer_class(decay_input=False)(x.astype(np.float32)))
    assert spikes.item() == 0.0
    if ternary:  # the negative tie H = -V_th fires -1
        x = np.array([[[-1.0]]], np.float32)
        assert to_numpy(TernaryLIF(decay_input=False)(x)).item() == -1.0


def test_heaviside_forward_exact():
    step = heaviside_with_surrogate()
    x = ops.convert_to_tensor(np.array([-0.5, -1e-7, 0.0, 1e-7, 0.5], np.float32))
    np.testing.assert_array_equal(to_numpy(step(x)), [0, 0, 1, 1, 1])


# ---------------------------------------------------------------------------
# Random inputs vs the NumPy loop
# ---------------------------------------------------------------------------

NEURON_CASES = {
    "hard_reset": dict(),
    "soft_reset": dict(v_reset=None),
    "no_input_decay": dict(decay_input=False),
    "negative_v_reset": dict(v_reset=-0.2),
    "tau4_threshold_half": dict(tau=4.0, v_threshold=0.5),
    "soft_no_decay_tau3": dict(v_reset=None, decay_input=False, tau=3.0),
}


@pytest.mark.parametrize("ternary", [False, True], ids=["binary", "ternary"])
@pytest.mark.parametrize("case", sorted(NEURON_CASES))
def test_lif_matches_numpy_loop(rng, case, ternary):
    kwargs = NEURON_CASES[case]
    x = random_membranes(rng, (3, 6, 4, 8))
    layer_class = TernaryLIF if ternary else LIF
    spikes = to_numpy(layer_class(**kwargs)(x))
    expected, _ = reference_lif(x, ternary=ternary, **kwargs)
    # float32 vs float64: a flip would need a membrane within ~1e-7 of the
    # threshold; with this seed there is none, so the trains must be equal.
    np.testing.assert_array_equal(spikes, expected)
    # The test is only meaningful if the neurons actually fire (and, for the
    # ternary case, fire both ways).
    assert 0.05 < np.mean(expected > 0) < 0.95
    if ternary:
        assert np.mean(expected < 0) > 0.05
    else:
        assert set(np.unique(spikes)) <= {0.0, 1.0}


@pytest.mark.parametrize("beta", [0.5, 0.75])
def test_paper_form_mapping_decay_input_false(rng, beta):
    # lif_cell.py: the paper's eq. 1-3 is decay_input=False, tau = 1/(1-beta),
    # with the paper's threshold as v_threshold (V_reset = 0).
    x = random_membranes(rng, (2, 6, 32))
    for v_th in (1.0, 0.7):
        layer = LIF(tau=1.0 / (1.0 - beta), v_threshold=v_th, decay_input=False)
        expected = reference_paper_lif(x, beta=beta, v_threshold=v_th)
        np.testing.assert_array_equal(to_numpy(layer(x)), expected)
        assert expected.any()


def test_paper_form_with_scaled_threshold_is_the_sdt_neuron(rng):
    # design.md §2.2: with u = tau h, the SDT neuron (decay_input=True, V_th) is the
    # paper's with beta = 1 - 1/tau and threshold tau V_th.
    x = random_membranes(rng, (2, 6, 32), scale=3.0)
    for tau, v_th in ((2.0, 1.0), (4.0, 0.5)):
        expected = reference_paper_lif(x, beta=1 - 1 / tau, v_threshold=tau * v_th)
        spikes = to_numpy(LIF(tau=tau, v_threshold=v_th, decay_input=True)(x))
        np.testing.assert_array_equal(spikes, expected)


def test_paper_beta_half_is_not_the_sdt_neuron():
    # Constant 1.5. SDT (tau 2, V_th 1): 0,1,0,1 (see above). Paper form with
    # beta 0.5, V_th 1: U1 = 1.5 >= 1 fires at once, reset to 0, repeat: 1,1,1,1.
    x = np.full((1, 4, 1), 1.5, np.float32)
    np.testing.assert_array_equal(reference_paper_lif(x, 0.5, 1.0)[0, :, 0], [1] * 4)
    paper = to_numpy(LIF(tau=2.0, decay_input=False)(x))
    sdt = to_numpy(LIF(tau=2.0, decay_input=True)(x))
    np.testing.assert_array_equal(paper[0, :, 0], [1, 1, 1, 1])
    np.testing.assert_array_equal(sdt[0, :, 0], [0, 1, 0, 1])


# ---------------------------------------------------------------------------
# Exact spike values under reduced-precision dtype policies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy", ["float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16"]
)
@pytest.mark.parametrize("ternary", [False, True], ids=["binary", "ternary"])
def test_spike_values_exact_under_dtype_policy(rng, policy, ternary):
    x = random_membranes(rng, (2, 4, 64), scale=2.0)
    layer = (TernaryLIF if ternary else LIF)(dtype=policy)
    spikes = layer(x)
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    assert keras.backend.standardize_dtype(spikes.dtype) == compute_dtype
    values = to_numpy(ops.cast(spikes, "float32"))
    allowed = {-1.0, 0.0, 1.0} if ternary else {0.0, 1.0}
    assert set(np.unique(values)) == allowed


def test_spike_values_exact_under_global_policy(rng):
    x = random_membranes(rng, (2, 4, 64), scale=2.0)
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        spikes = TernaryLIF()(x)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(spikes.dtype) == "bfloat16"
    values = to_numpy(ops.cast(spikes, "float32"))
    assert set(np.unique(values)) == {-1.0, 0.0, 1.0}


# ---------------------------------------------------------------------------
# Surrogate gradients
# ---------------------------------------------------------------------------

# Avoid the rectangle's discontinuities at |x| = 1/(2 alpha) for alpha 1 and 3.
SAMPLE_POINTS = np.array(
    [-2.0, -0.9, -0.45, -0.2, -0.05, 0.0, 0.03, 0.1, 0.15, 0.3, 0.7, 1.6], np.float32
)


@pytest.mark.parametrize("alpha", [None, 3.0])
@pytest.mark.parametrize("name", sorted(SURROGATE_FORMULAS))
def test_surrogate_derivative_matches_docstring_formula(name, alpha):
    a = DEFAULT_ALPHA[name] if alpha is None else alpha
    expected = SURROGATE_FORMULAS[name](SAMPLE_POINTS.astype(np.float64), a)
    step = heaviside_with_surrogate(name, alpha)
    grad = grad_of(lambda z: ops.sum(step(z)), SAMPLE_POINTS)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
    direct = surrogate_derivative(ops.convert_to_tensor(SAMPLE_POINTS), name, alpha)
    np.testing.assert_allclose(to_numpy(direct), expected, rtol=1e-5, atol=1e-6)
    # Forward is still the exact step, whatever the surrogate.
    np.testing.assert_array_equal(to_numpy(step(SAMPLE_POINTS)), SAMPLE_POINTS >= 0)


def test_surrogate_gradient_is_chained_with_upstream():
    # d/dx sum(w * step(x)) = w * surrogate'(x).
    w = np.array([2.0, -3.0, 0.5], np.float32)
    x = np.array([0.1, -0.2, 0.0], np.float32)
    step = heaviside_with_surrogate("sigmoid")
    grad = grad_of(lambda z: ops.sum(ops.convert_to_tensor(w) * step(z)), x)
    np.testing.assert_allclose(grad, w * sigmoid_surrogate(x), rtol=1e-5)


@pytest.mark.parametrize("decay_input", [True, False])
def test_one_step_lif_gradient(decay_input):
    # One step from V = 0: H = X / tau (decay_input) or H = X, S = Hea(H - V_th),
    # so dS/dX = sigma'(H - V_th) * dH/dX.
    tau, v_th = 2.0, 1.0
    x = np.array([[[0.5, 1.6, 2.0, 2.3, -1.0, 3.5]]], np.float32)  # (1, T=1, 6)
    h = x / tau if decay_input else x
    dh_dx = 1 / tau if decay_input else 1.0
    layer = LIF(tau=tau, v_threshold=v_th, decay_input=decay_input)
    grad = grad_of(lambda z: ops.sum(layer(z)), x)
    expected = sigmoid_surrogate(h - v_th) * dh_dx
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_one_step_ternary_gradient_acts_at_both_thresholds():
    # S = Hea(H - V_th) - Hea(-H - V_th): dS/dH = sigma'(H - V_th) + sigma'(-H - V_th).
    x = np.array([[[-2.4, -2.0, -0.3, 0.0, 0.3, 2.0, 2.4]]], np.float32)
    h = x / 2.0
    expected = (sigmoid_surrogate(h - 1) + sigmoid_surrogate(-h - 1)) / 2.0
    grad = grad_of(lambda z: ops.sum(TernaryLIF()(z)), x)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def two_step_expected_gradient(x1, x2, tau, v_th, detach_reset, soft):
    """dS2/dX1 and dS2/dX2 for a 2-step binary LIF with V_reset = 0, by hand.

    H1 = X1/tau; S1 = Hea(H1 - V_th); V1 = H1 (1 - S1)  [hard] or H1 - S1 V_th [soft]
    H2 = (1 - 1/tau) V1 + X2/tau; S2 = Hea(H2 - V_th)
    dS2/dX1 = sigma'(H2 - V_th) (1 - 1/tau) dV1/dH1 / tau, where the reset path
    contributes -H1 sigma'(H1 - V_th) [hard] or -V_th sigma'(H1 - V_th) [soft]
    to dV1/dH1 unless the reset is detached.
    """
    h1 = x1 / tau
    s1 = (h1 >= v_th).astype(np.float64)
    v1 = h1 - s1 * v_th if soft else h1 * (1 - s1)
    h2 = (1 - 1 / tau) * v1 + x2 / tau
    if soft:
        dv1_dh1 = np.ones_like(h1)
        reset_path = -v_th * sigmoid_surrogate(h1 - v_th)
    else:
        dv1_dh1 = 1 - s1
        reset_path = -h1 * sigmoid_surrogate(h1 - v_th)
    if not detach_reset:
        dv1_dh1 = dv1_dh1 + reset_path
    d_x1 = sigmoid_surrogate(h2 - v_th) * (1 - 1 / tau) * dv1_dh1 / tau
    d_x2 = sigmoid_surrogate(h2 - v_th) / tau
    return d_x1, d_x2


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_two_step_gradient_reset_path(detach_reset, soft):
    tau, v_th = 2.0, 1.0
    # S1 = 0 for the first three elements, 1 for the last three.
    x1 = np.array([1.2, 1.8, 1.95, 2.05, 2.3, 3.0])
    x2 = np.array([1.3, 1.0, 0.9, 2.0, 1.7, 1.4])
    x = np.stack([x1, x2])[None].astype(np.float32)  # (1, T=2, 6)
    layer = LIF(
        tau=tau, v_threshold=v_th, v_reset=None if soft else 0.0,
        detach_reset=detach_reset,
    )
    grad = grad_of(lambda z: ops.sum(layer(z)[:, 1]), x)
    d_x1, d_x2 = two_step_expected_gradient(
        x1, x2, tau, v_th, detach_reset=detach_reset, soft=soft
    )
    np.testing.assert_allclose(grad[0, 0], d_x1, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grad[0, 1], d_x2, rtol=1e-4, atol=1e-7)


def test_detach_reset_changes_gradient_only_by_the_reset_path():
    x1 = np.array([1.8, 2.05, 2.3])
    x2 = np.array([1.0, 2.0, 1.7])
    x = np.stack([x1, x2])[None].astype(np.float32)
    grads = {
        detach: grad_of(lambda z: ops.sum(LIF(detach_reset=detach)(z)[:, 1]), x)
        for detach in (True, False)
    }
    h1, v_th, tau = x1 / 2.0, 1.0, 2.0
    v1 = h1 * (h1 < v_th)
    h2 = 0.5 * v1 + x2 / tau
    reset_path = (
        sigmoid_surrogate(h2 - v_th) * 0.5 * (-h1 * sigmoid_surrogate(h1 - v_th)) / tau
    )
    np.testing.assert_allclose(grads[False][0, 0] - grads[True][0, 0], reset_path, rtol=1e-4)
    np.testing.assert_allclose(grads[False][0, 1], grads[True][0, 1], rtol=1e-6)
    assert np.all(np.abs(reset_path) > 1e-3)


@pytest.mark.parametrize("detach_reset", [True, False])
def test_two_step_ternary_gradient_reset_path(detach_reset):
    # Hard reset V1 = H1 (1 - |S1|), where |S1| = Hea(H1 - V_th) + Hea(-H1 - V_th)
    # ("fired either way"), so without detaching, the reset path adds
    # -H1 (sigma'(H1 - V_th) - sigma'(-H1 - V_th)) to dV1/dH1 -- also where
    # S1 = 0, as for the binary neuron. dS2/dH2 = sigma'(H2 - V_th) + sigma'(-H2 - V_th).
    tau, v_th, beta = 2.0, 1.0, 0.5
    x1 = np.array([1.6, -1.7, 0.4, 2.1, -2.2, 2.6])  # S1 = 0, 0, 0, 1, -1, 1
    x2 = np.array([1.1, -1.0, 1.8, 2.0, -1.9, -2.1])
    x = np.stack([x1, x2])[None].astype(np.float32)
    grad = grad_of(lambda z: ops.sum(TernaryLIF(detach_reset=detach_reset)(z)[:, 1]), x)

    h1 = x1 / tau
    fired = (np.abs(h1) >= v_th).astype(np.float64)
    dv1_dh1 = 1 - fired
    if not detach_reset:
        d_fired = sigmoid_surrogate(h1 - v_th) - sigmoid_surrogate(-h1 - v_th)
        dv1_dh1 = dv1_dh1 - h1 * d_fired
    h2 = beta * h1 * (1 - fired) + x2 / tau
    ds2_dh2 = sigmoid_surrogate(h2 - v_th) + sigmoid_surrogate(-h2 - v_th)
    np.testing.assert_allclose(grad[0, 0], ds2_dh2 * beta * dv1_dh1 / tau, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grad[0, 1], ds2_dh2 / tau, rtol=1e-4, atol=1e-7)


def test_bptt_gradient_reaches_earlier_steps():
    # No spikes (inputs small): V passes with factor (1 - 1/tau) per step, so
    # dS3/dX1 = sigma'(H3 - V_th) (1 - 1/tau)^2 / tau.
    x = np.array([[[0.4, 0.2], [0.3, 0.6], [0.5, 1.0]]], np.float32)  # (1, T=3, 2)
    tau = 2.0
    grad = grad_of(lambda z: ops.sum(LIF(tau=tau)(z)[:, 2]), x)
    h1 = x[0, 0] / tau
    h2 = 0.5 * h1 + x[0, 1] / tau
    h3 = 0.5 * h2 + x[0, 2] / tau
    assert np.all(np.maximum.reduce([h1, h2, h3]) < 1.0)
    expected = sigmoid_surrogate(h3 - 1.0) * 0.25 / tau
    assert np.all(np.abs(grad[0, 0]) > 1e-3)
    np.testing.assert_allclose(grad[0, 0], expected, rtol=1e-4)


def test_bptt_gradient_is_cut_by_a_detached_hard_reset():
    # A spike at t=1 resets V to 0 with the reset detached: no path from X1.
    x = np.array([[[3.0], [0.5], [1.5]]], np.float32)
    grad = grad_of(lambda z: ops.sum(LIF()(z)[:, 2]), x)
    assert grad[0, 0, 0] == 0.0
    assert grad[0, 2, 0] != 0.0


def cell_loop_gradient(cell, x, weights):
    """d sum(weights * spikes) / dx by automatic differentiation of the plain
    cell loop (`LIFCell.call` per step: the surrogate step's own gradient
    and autodiff of charge and reset) -- independent of the multi-step
    layer's hand-written BPTT."""

    def loss(z):
        v = ops.zeros_like(z[:, 0])
        total = 0.0
        for t in range(z.shape[1]):
            s, (v,) = cell.call(z[:, t], [v])
            total = total + ops.sum(ops.convert_to_tensor(weights[:, t]) * s)
        return total

    return grad_of(loss, x)


@pytest.mark.parametrize("ternary", [False, True], ids=["binary", "ternary"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"detach_reset": False},
        {"v_reset": None},
        {"v_reset": None, "detach_reset": False},
        {"v_reset": -0.3, "detach_reset": False, "tau": 3.0},
        {"decay_input": False, "tau": 1.5, "v_threshold": 0.8},
        {"surrogate": "atan", "detach_reset": False},
        {"surrogate": "triangle", "alpha": 0.7},
        {"surrogate": "rectangle"},
    ],
)
def test_bptt_gradient_equals_autodiff_of_the_cell_loop(rng, ternary, kwargs):
    # The layer's backward pass (backpropagate_through_time, XLA-fused on
    # TensorFlow) must be the gradient of the very loop it replaces.
    x = random_membranes(rng, (3, 5, 4, 6), scale=2.0)
    weights = rng.standard_normal(x.shape).astype(np.float32)
    layer = (TernaryLIF if ternary else LIF)(**kwargs)
    from_layer = grad_of(lambda z: ops.sum(ops.convert_to_tensor(weights) * layer(z)), x)
    from_loop = cell_loop_gradient(layer.cell, x, weights)
    assert np.count_nonzero(from_loop) > x.size // 4
    np.testing.assert_allclose(from_layer, from_loop, rtol=1e-5, atol=1e-6)


def test_bptt_gradient_under_bfloat16_policy(rng):
    # Mixed precision: bfloat16 gradient, computed in float32 inside, so it
    # is the float32 gradient rounded once.
    x = random_membranes(rng, (2, 4, 8), scale=2.0)
    weights = rng.standard_normal(x.shape).astype(np.float32)
    layer = LIF(detach_reset=False, dtype="mixed_bfloat16")
    weights_tensor = ops.convert_to_tensor(weights)
    grad = grad_of(lambda z: ops.sum(ops.cast(layer(z), "float32") * weights_tensor), x)
    exact = cell_loop_gradient(LIFCell(detach_reset=False), x, weights)
    np.testing.assert_allclose(grad, exact, rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------------------
# Cells: keras.layers.RNN and streaming
# ---------------------------------------------------------------------------

CELL_PAIRS = [(LIFCell, LIF, False), (TernaryLIFCell, TernaryLIF, True)]


@pytest.mark.parametrize("cell_class,layer_class,ternary", CELL_PAIRS)
@pytest.mark.parametrize("kwargs", [{}, {"v_reset": None, "tau": 3.0}])
def test_rnn_of_cell_equals_multistep_layer(rng, cell_class, layer_class, ternary, kwargs):
    x = random_membranes(rng, (3, 5, 16))
    rnn = keras.layers.RNN(cell_class(units=16, **kwargs), return_sequences=True)
    from_rnn = to_numpy(rnn(x))
    from_layer = to_numpy(layer_class(**kwargs)(x))
    expected, _ = reference_lif(x, ternary=ternary, **kwargs)
    np.testing.assert_array_equal(from_rnn, from_layer)
    np.testing.assert_array_equal(from_rnn, expected)


@pytest.mark.parametrize("cell_class,layer_class,ternary", CELL_PAIRS)
def test_streaming_cell_equals_multistep_layer(rng, cell_class, layer_class, ternary):
    x = random_membranes(rng, (2, 6, 4, 8))  # trailing (tokens, channels)
    cell = cell_class()
    states = cell.get_initial_state(batch_size=2, feature_shape=(4, 8))
    streamed = []
    for t in range(x.shape[1]):
        spikes, states = cell(x[:, t], states)
        streamed.append(to_numpy(spikes))
    streamed = np.stack(streamed, axis=1)
    np.testing.assert_array_equal(streamed, to_numpy(layer_class()(x)))
    expected, membrane = reference_lif(x, ternary=ternary)
    np.testing.assert_array_equal(streamed, expected)
    np.testing.assert_allclose(to_numpy(states[0]), membrane, atol=1e-5)


def test_cell_initial_state_from_units():
    cell = LIFCell(units=5)
    (state,) = cell.get_initial_state(batch_size=3)
    assert tuple(state.shape) == (3, 5)
    np.testing.assert_array_equal(to_numpy(state), 0.0)
    with pytest.raises(ValueError, match="feature_shape"):
        LIFCell().get_initial_state(batch_size=3)


# ---------------------------------------------------------------------------
# Configuration and bad inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer_class", [LIF, TernaryLIF, LIFCell, TernaryLIFCell])
def test_neuron_config_round_trip(layer_class):
    layer = layer_class(
        tau=3.0, v_threshold=0.7, v_reset=None, decay_input=False,
        detach_reset=False, surrogate="atan", alpha=1.5, name="neuron",
    )
    config = layer.get_config()
    clone = layer_class.from_config(config)
    assert clone.get_config() == config
    for key, value in dict(tau=3.0, v_threshold=0.7, v_reset=None,
                           decay_input=False, detach_reset=False,
                           surrogate="atan", alpha=1.5).items():
        assert config[key] == value


def test_default_alpha_recorded_in_config():
    assert LIF().get_config()["alpha"] == 4.0
    assert LIF(surrogate="atan").get_config()["alpha"] == 2.0


def test_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match="time axis"):
        LIF()(np.zeros((2, 8), np.float32))


def test_time_steps_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"time_steps=3 but received T=4"):
        LIF(time_steps=3)(np.zeros((1, 4, 2), np.float32))
    # The matching T is fine.
    assert LIF(time_steps=4)(np.zeros((1, 4, 2), np.float32)).shape == (1, 4, 2)


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        LIF()(ops.zeros((1, 2, 3), dtype="int32"))


@pytest.mark.parametrize("v_threshold", [0.0, -1.0])
def test_non_positive_threshold_is_rejected(v_threshold):
    with pytest.raises(ValueError, match="v_threshold"):
        LIF(v_threshold=v_threshold)
    with pytest.raises(ValueError, match="v_threshold"):
        TernaryLIFCell(v_threshold=v_threshold)


def test_unknown_surrogate_is_rejected():
    with pytest.raises(ValueError, match="Unknown surrogate 'relu'"):
        LIF(surrogate="relu")
    with pytest.raises(ValueError, match="Unknown surrogate"):
        heaviside_with_surrogate("step")


def test_non_positive_alpha_is_rejected():
    with pytest.raises(ValueError, match="alpha"):
        LIF(alpha=0.0)


@pytest.mark.parametrize("tau", [0.5, 0.0, -2.0])
def test_tau_below_one_is_rejected(tau):
    with pytest.raises(ValueError, match="tau"):
        LIF(tau=tau)


# --- exact ties, in SpikingJelly's operation order ------------------------------------


def spikingjelly_charge(x, v, tau, v_reset, decay_input):
    """SpikingJelly's `LIFNode.neuronal_charge_*`, in float32, operation by
    operation as it writes them."""
    tau = np.float32(tau)
    if decay_input:
        if v_reset is None or v_reset == 0.0:
            return v + (x - v) / tau
        return v + (x - (v - np.float32(v_reset))) / tau
    if v_reset is None or v_reset == 0.0:
        return v * np.float32(1.0 - 1.0 / float(tau)) + x
    return v - (v - np.float32(v_reset)) / tau + x


def spikingjelly_float32(x, tau, v_threshold, v_reset, decay_input):
    """SpikingJelly's `LIFNode` in float32: `(spikes, membrane after each
    step)`, the reference for exact ties."""
    x = np.asarray(x, np.float32)
    v = np.zeros_like(x[:, 0])
    spikes, membranes = [], []
    for t in range(x.shape[1]):
        h = spikingjelly_charge(x[:, t], v, tau, v_reset, decay_input)
        s = (h - np.float32(v_threshold) >= 0).astype(np.float32)
        v = h - s * np.float32(v_threshold) if v_reset is None else np.where(s > 0, np.float32(v_reset), h)
        spikes.append(s)
        membranes.append(v)
    return np.stack(spikes, axis=1), np.stack(membranes, axis=1)


def tie_inputs(rng, tau, v_threshold, v_reset, decay_input, size=4096):
    """Two-step inputs whose second charge is solved to land on the
    threshold; in the reference's float32 arithmetic many land exactly on it
    (the reference decides which)."""
    x1 = (rng.uniform(0.05, 0.95, size) * v_threshold).astype(np.float32)
    _, membranes = spikingjelly_float32(x1[:, None], tau, v_threshold, v_reset, decay_input)
    v1 = membranes[:, 0]
    threshold = np.float32(v_threshold)
    tau32 = np.float32(tau)
    if decay_input:  # v1 + (x2 - d) / tau = V_th, d = v1 - V_reset
        distance = v1 if (v_reset is None or v_reset == 0.0) else v1 - np.float32(v_reset)
        x2 = (threshold - v1) * tau32 + distance
    elif v_reset is None or v_reset == 0.0:  # v1 * (1 - 1/tau) + x2 = V_th
        x2 = threshold - v1 * np.float32(1.0 - 1.0 / tau)
    else:  # v1 - (v1 - V_reset) / tau + x2 = V_th
        x2 = threshold - (v1 - (v1 - np.float32(v_reset)) / tau32)
    x = np.stack([x1, x2.astype(np.float32)], axis=1)
    spikes, _ = spikingjelly_float32(x, tau, v_threshold, v_reset, decay_input)
    return x, spikes


@pytest.mark.parametrize("tau", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None, 0.25])
def test_exact_ties_fire_as_in_spikingjelly(rng, tau, decay_input, v_reset):
    """Membranes on the threshold to the last bit: the neuron must fire
    exactly where SpikingJelly's float32 arithmetic does (`>=`), in every
    reset and decay variant, on every backend (JAX's XLA included)."""
    x, expected = tie_inputs(rng, tau, 1.0, v_reset, decay_input)
    got = to_numpy(LIF(tau=tau, v_reset=v_reset, decay_input=decay_input)(x[:, :, None]))[..., 0]
    assert expected[:, 1].mean() > 0.3, "the crafted inputs must tie often"
    np.testing.assert_array_equal(got, expected)


# --- the inference graph's neurons (optimize_for_inference) ---------------------


def inference_lif(layer):
    """`layer` switched to the inference graph's arithmetic."""
    layer.inference_graph = True
    return layer


@pytest.mark.parametrize("tau", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None, 0.25])
def test_inference_neurons_fire_on_exact_ties_as_in_spikingjelly(rng, tau, decay_input, v_reset):
    """The comparison-free step (floor and clip instead of `>=`, the first
    step charged from rest) keeps SpikingJelly's spikes on exact ties."""
    x, expected = tie_inputs(rng, tau, 1.0, v_reset, decay_input)
    layer = inference_lif(LIF(tau=tau, v_reset=v_reset, decay_input=decay_input))
    got = to_numpy(layer(x[:, :, None]))[..., 0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("ternary", [False, True])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"v_reset": None},
        {"v_reset": 0.25, "tau": 3.0},
        {"decay_input": False, "tau": 1.5},
        {"v_threshold": 0.5},
        {"v_threshold": 0.3, "v_reset": None, "decay_input": False},
        {"v_threshold": 2.0, "v_reset": None, "decay_input": False},
    ],
)
def test_inference_neurons_equal_the_training_neurons(rng, ternary, kwargs):
    """Spikes bit for bit on random membranes, many of them near a
    threshold, over 6 steps."""
    layer_class = TernaryLIF if ternary else LIF
    x = random_membranes(rng, (64, 6, 37))
    x[:, :, :8] = np.float32(kwargs.get("v_threshold", 1.0))  # exactly on it
    x[:, :, 8:12] = -np.float32(kwargs.get("v_threshold", 1.0))
    expected = to_numpy(layer_class(**kwargs)(x))
    got = to_numpy(inference_lif(layer_class(**kwargs))(x))
    assert np.mean(np.abs(expected)) > 0.05, "the inputs must make the neurons fire"
    np.testing.assert_array_equal(got, expected)


def test_heaviside_without_comparison_on_edge_values():
    from keras_spiking_tf.layers.lif_cell import heaviside_without_comparison

    # (No subnormals: runtimes that flush them to zero do so in comparisons too.)
    values = np.array(
        [0.0, -0.0, 1.2e-38, -1.2e-38, 1e-7, -1e-7, 0.5, -0.5, 1.0, -1.0,
         np.nextafter(np.float32(-1), np.float32(0)), 3e38, -3e38, np.inf, -np.inf],
        dtype=np.float32,
    )
    got = to_numpy(heaviside_without_comparison(ops.convert_to_tensor(values)))
    np.testing.assert_array_equal(got, (values >= 0).astype(np.float32))


@pytest.mark.parametrize("threshold", [1.0, 2.0, 3.0, 0.5, 1.5, 0.3])
def test_threshold_step_without_comparison_on_edge_values(threshold):
    from keras_spiking_tf.layers.lif_cell import threshold_step_without_comparison

    k = np.float32(threshold)
    around = [k, np.nextafter(k, np.float32(0)), np.nextafter(k, np.float32(10)), -k,
              np.nextafter(-k, np.float32(0)), np.float32(k - 1), np.float32(k + 1)]
    values = np.array(
        [*around, 0.0, -0.0, 1e-7, -1e-7, 0.999, 1.0, 2.0, 2**24, 2**24 + 2, -(2**24),
         3e38, -3e38, np.inf, -np.inf],
        dtype=np.float32,
    )
    got = to_numpy(threshold_step_without_comparison(ops.convert_to_tensor(values), threshold))
    np.testing.assert_array_equal(got, (values >= k).astype(np.float32))
