"""Leaky integrate-and-fire neurons for one time step, as Keras RNN cells.

The neuron follows SpikingJelly's `LIFNode`, which the Spike-driven Transformer
uses (design.md §2.1). Per element, with membrane `V` (0 at the first step):

    charge  H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau    decay_input=True
            H[t] = V[t-1] - (V[t-1] - V_reset) / tau + X[t]      decay_input=False
    fire    S[t] = Heaviside(H[t] - V_th)                       (>=, not >)
    reset   V[t] = H[t] (1 - S[t]) + V_reset S[t]                hard reset
            V[t] = H[t] - S[t] V_th                              soft (v_reset=None)

With `v_reset=None` the charge uses `V_reset = 0`. With `detach_reset=True` the
spike used in the reset carries no gradient.

Backward through one step (what the multi-step `LIF` layer uses for its
hand-written backpropagation through time), with surrogate `sigma'`:

    dH[t]/dX[t] = 1/tau (decay_input) or 1,   dH[t]/dV[t-1] = 1 - 1/tau
    dS[t]/dH[t] = sigma'(H[t] - V_th)
    dV[t]/dH[t] = 1 - S[t] + (V_reset - H[t]) sigma'(H[t] - V_th)      hard
                = 1 - V_th sigma'(H[t] - V_th)                         soft
    (the sigma' term of dV/dH only without `detach_reset`)

**The paper's form** (eq. 1-3: `U[t] = beta H[t-1] + X[t]`) is
`decay_input=False, tau = 1 / (1 - beta), v_reset=0` (with another reset
potential this cell decays towards it, the paper's towards 0), with the paper's threshold as
`v_threshold`. Its `beta = 0.5, V_th = 1` is therefore `tau=2, decay_input=False`,
which is *not* numerically the SDT neuron (`decay_input=True`), whose membrane
is the paper's divided by `tau`.

`TernaryLIFCell` fires +1 at `H >= V_th`, -1 at `H <= -V_th` and resets the
membrane wherever it fired (design.md §2.3).
"""

import keras
import numpy as np
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.surrogate import SURROGATES
from keras_spiking_tf.layers.surrogate import heaviside_with_surrogate
from keras_spiking_tf.layers.surrogate import surrogate_derivative
from keras_spiking_tf.layers.surrogate import validate_surrogate


def heaviside_without_comparison(x):
    """`1.0` where `x >= 0`, else `0.0`, for floating-point `x`, from
    `floor`, `+` and `clip` alone: `floor(x) + 1` is at least 1 where
    `x >= 0` (also `x = -0.0`) and at most 0 where `x < 0`. Used with
    `x = H - V_th`, whose sign is exact in IEEE arithmetic (`H - V_th` is 0
    only where `H == V_th`), so the spikes are those of `H >= V_th` bit for
    bit, in operators that every runtime fuses (no comparison, select or
    boolean cast)."""
    return ops.clip(ops.floor(x) + 1.0, 0.0, 1.0)


def threshold_step_without_comparison(h, v_threshold):
    """`1.0` where `h >= v_threshold`, else `0.0`, without a comparison.

    For an integer threshold `k` (SDT's `V_th = 1`) one operation fewer
    than `heaviside_without_comparison(h - k)`: `floor(h) >= k` exactly
    where `h >= k`, so `clip(floor(h) + 1 - k, 0, 1)`, which for `k = 1` is
    `clip(floor(h), 0, 1)`. (The sum is exact below 2**24 and keeps its
    sign above.) Any other threshold goes through `h - V_th`.
    """
    if float(v_threshold).is_integer():
        offset = 1.0 - float(v_threshold)
        floored = ops.floor(h)
        return ops.clip(floored + offset if offset else floored, 0.0, 1.0)
    return heaviside_without_comparison(h - v_threshold)


def exact_divide(x, divisor):
    """`x / divisor`, correctly rounded on every backend.

    XLA's algebraic simplifier rewrites a division by a broadcast scalar,
    `x / broadcast(c)`, as `x * broadcast(1 / c)`, whose rounding differs in
    about a third of float32 elements (and so moves membranes off exact
    ties with the threshold). Under JAX the divisor is therefore broadcast
    to `x`'s shape behind an optimization barrier, which XLA does not look
    through: a true elementwise division. TensorFlow's graph and PyTorch
    divide as written.
    """
    if keras.backend.backend() == "jax":
        import jax

        divisor = jax.lax.optimization_barrier(ops.full_like(x, divisor))
    return x / divisor


NEURON_ARGUMENTS = (
    "tau",
    "v_threshold",
    "v_reset",
    "decay_input",
    "detach_reset",
    "surrogate",
    "alpha",
)
# The largest number of units of a layer that a check lets through.
MAX_UNITS = 1 << 24


def check_neuron_arguments(config_name=None, **arguments):
    """Checks neuron arguments (any of `NEURON_ARGUMENTS`) and returns them
    in normal form (floats, bools); `alpha=None` stays `None`.

    With `config_name` (e.g. `"neuron_config"`) the arguments are the keys
    of that dict argument: an unknown key is an error, and messages name
    `neuron_config['tau']`.

    Example:

    ```python
    check_neuron_arguments("neuron_config", **{"tau": 2.0, "v_threshold": 1.0})
    ```
    """
    if config_name is not None:
        validation.check_keys(config_name, arguments, NEURON_ARGUMENTS)
    else:
        validation.check_keyword_arguments("LIF", arguments, NEURON_ARGUMENTS)

    def named(key):
        return key if config_name is None else f"{config_name}[{key!r}]"

    checked = {}
    for key, value in arguments.items():
        if key == "tau":
            value = validation.check_number(named(key), value, minimum=1.0)
        elif key == "v_threshold":
            value = validation.check_number(
                named(key), value, minimum=0.0, exclusive_minimum=True
            )
        elif key == "v_reset":
            value = validation.check_number(named(key), value, allow_none=True)
        elif key in ("decay_input", "detach_reset"):
            value = validation.check_bool(named(key), value)
        elif key == "surrogate":
            value = validation.check_choice(
                named(key), value, SURROGATES, what="surrogate"
            )
        elif key == "alpha":
            value = validation.check_number(
                named(key), value, minimum=0.0, exclusive_minimum=True, allow_none=True
            )
        checked[key] = value
    return checked


def check_neuron_config(neuron_config, name="neuron_config"):
    """A `neuron_config` argument (a dict of neuron arguments, or `None`)
    checked key by key, as a new dict (empty for `None`).

    Example:

    ```python
    self.neuron_config = check_neuron_config(neuron_config)
    ```
    """
    config = validation.check_keys(name, neuron_config, NEURON_ARGUMENTS, allow_none=True)
    check_neuron_arguments(name, **config)
    return config


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class LIFCell(keras.layers.Layer):
    """Binary leaky integrate-and-fire neuron for one time step.

    A Keras RNN cell: `call(inputs, states)` returns `(spikes, [membrane])`.
    Run it over a sequence with `keras.layers.RNN(LIFCell(units),
    return_sequences=True)`, or step by step with an explicit state for
    streaming inference.

    Args:
        units: number of neurons (the last input dimension). Needed only by
            `keras.layers.RNN`, which reads `state_size` at construction;
            the cell itself accepts any trailing shape.
        tau: membrane time constant (>= 1).
        v_threshold: firing threshold (> 0).
        v_reset: reset potential; `None` selects the soft reset `V - S V_th`.
        decay_input: whether the input is divided by `tau` (SDT form) or
            added as is (the paper's form, see the module docstring).
        detach_reset: stop the gradient through the spike used in the reset.
        surrogate: surrogate gradient name, see `surrogate.py`.
        alpha: surrogate sharpness; `None` takes the surrogate's default.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:

    ```python
    cell = LIFCell()
    v = cell.get_initial_state(batch_size=1, feature_shape=(3,))
    for x in stream:                       # x: (1, 3) per time step
        spikes, v = cell(x, v)
    ```
    """

    def __init__(
        self,
        units=None,
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        decay_input=True,
        detach_reset=True,
        surrogate="sigmoid",
        alpha=None,
        **kwargs,
    ):
        units = validation.check_integer(
            "units", units, minimum=1, maximum=MAX_UNITS, allow_none=True
        )
        neuron = check_neuron_arguments(
            tau=tau,
            v_threshold=v_threshold,
            v_reset=v_reset,
            decay_input=decay_input,
            detach_reset=detach_reset,
            surrogate=surrogate,
            alpha=alpha,
        )
        super().__init__(**kwargs)
        self.units = units
        self.tau = neuron["tau"]
        self.v_threshold = neuron["v_threshold"]
        self.v_reset = neuron["v_reset"]
        self.decay_input = neuron["decay_input"]
        self.detach_reset = neuron["detach_reset"]
        self.surrogate = surrogate
        self.alpha = validate_surrogate(surrogate, neuron["alpha"])
        self._step = heaviside_with_surrogate(surrogate, self.alpha, self.v_threshold)

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def get_initial_state(self, batch_size=None, feature_shape=None):
        """A zero membrane of shape `(batch_size, *feature_shape)`.

        `feature_shape` defaults to `(units,)`.
        """
        if feature_shape is None:
            if self.units is None:
                raise ValueError(
                    "Pass `feature_shape=` or construct the cell with `units=`."
                )
            feature_shape = (self.units,)
        return [ops.zeros((batch_size, *feature_shape), dtype=self.compute_dtype)]

    def charge(self, inputs, v):
        """Membrane after integrating `inputs` (the `H[t]` of design.md §2.1).

        In SpikingJelly's operation order, for every reset and decay variant
        (`LIFNode.neuronal_charge_*`), so that membranes that reach the
        threshold exactly do so here too:

            decay_input, V_reset = 0 or soft:   v + (x - v) / tau
            decay_input, V_reset != 0:          v + (x - (v - V_reset)) / tau
            no decay_input, V_reset = 0 or soft: v * (1 - 1/tau) + x
            no decay_input, V_reset != 0:       v - (v - V_reset) / tau + x
        """
        at_zero = self.v_reset is None or self.v_reset == 0.0
        if self.decay_input:
            distance = v if at_zero else v - self.v_reset
            return v + exact_divide(inputs - distance, self.tau)
        if at_zero:
            return v * (1.0 - 1.0 / self.tau) + inputs
        return v - exact_divide(v - self.v_reset, self.tau) + inputs

    def charge_at_rest(self, inputs):
        """`charge(inputs, 0)` without the zero membrane tensor: the same
        values (the terms in `v` are exact zeros)."""
        if self.decay_input:
            offset = 0.0 if self.v_reset is None else self.v_reset
            return exact_divide(inputs + offset if offset else inputs, self.tau)
        if self.v_reset is None or self.v_reset == 0.0:
            return inputs
        # v - (v - V_reset) / tau + x at v = 0, in float32 as the graph would
        return inputs + float(np.float32(self.v_reset) / np.float32(self.tau))

    def fire(self, h):
        """Spikes `{0, 1}` with a surrogate gradient."""
        return self._step(h)

    def fire_without_comparison(self, h):
        """`(spikes, fired)`: the spikes of `fire` and where the neuron
        fired (`|spikes|`), bit for bit, forward only, from
        `heaviside_without_comparison`."""
        spikes = threshold_step_without_comparison(h, self.v_threshold)
        return spikes, spikes

    def fire_and_reset_without_comparison(self, h):
        """`(spikes, V[t])` of `fire` and `reset`, bit for bit (up to the
        sign of a zero membrane), forward only: the inference graph's step."""
        spikes, fired = self.fire_without_comparison(h)
        if self.v_reset is None:
            return spikes, h - spikes * self.v_threshold
        kept = h * (1.0 - fired)  # h where silent, 0 where fired: both exact
        return spikes, kept if self.v_reset == 0.0 else kept + self.v_reset * fired

    def reset(self, h, spikes):
        """Membrane after the spikes, `V[t]`."""
        fired = ops.stop_gradient(spikes) if self.detach_reset else spikes
        if self.v_reset is None:
            return h - fired * self.v_threshold
        if self.detach_reset:  # the same values as below, in one select
            return ops.where(ops.not_equal(fired, 0), self.v_reset, h)
        return h * (1.0 - fired) + self.v_reset * fired

    @property
    def charge_gains(self):
        """`(dH[t]/dV[t-1], dH[t]/dX[t])` of `charge`, constants."""
        return 1.0 - 1.0 / self.tau, (1.0 / self.tau if self.decay_input else 1.0)

    def surrogate_slope(self, x):
        """The surrogate derivative `sigma'(x)`."""
        return surrogate_derivative(x, self.surrogate, self.alpha)

    def fire_derivative(self, h):
        """`dS[t]/dH[t]`: the surrogate slope at the threshold."""
        return self.surrogate_slope(h - self.v_threshold)

    def fired_magnitude(self, h):
        """`|S[t]|` (1 where the neuron fired) and its surrogate derivative."""
        fired = ops.cast(ops.greater_equal(h, self.v_threshold), h.dtype)
        return fired, self.fire_derivative(h)

    def reset_derivative(self, h):
        """`dV[t]/dH[t]` of `reset`: through the spikes too, unless
        `detach_reset`."""
        if self.v_reset is None:  # V = H - S V_th
            if self.detach_reset:
                return ops.ones_like(h)
            return 1.0 - self.v_threshold * self.fire_derivative(h)
        fired, fired_slope = self.fired_magnitude(h)  # V = H (1 - |S|) + V_reset |S|
        if self.detach_reset:
            return 1.0 - fired
        return 1.0 - fired + (self.v_reset - h) * fired_slope

    def call(self, inputs, states):
        v = states[0] if isinstance(states, (list, tuple)) else states
        h = self.charge(inputs, v)
        spikes = self.fire(h)
        return spikes, [self.reset(h, spikes)]

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        config.update({name: getattr(self, name) for name in NEURON_ARGUMENTS})
        return config


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class TernaryLIFCell(LIFCell):
    """Ternary leaky integrate-and-fire neuron for one time step (design.md §2.3).

    Same charge as `LIFCell`; fires `+1` where `H >= V_th`, `-1` where
    `H <= -V_th`, `0` otherwise; the hard reset zeroes (sets to `v_reset`)
    every element that fired either way, the soft reset subtracts `S V_th`.
    The surrogate gradient acts at both thresholds:
    `dS/dH = sigma'(H - V_th) + sigma'(-H - V_th)`, and the hard reset's
    `d|S|/dH = sigma'(H - V_th) - sigma'(-H - V_th)`. Arguments as `LIFCell`.

    Example:

    ```python
    cell = TernaryLIFCell()
    spikes, v = cell(-1.5 * keras.ops.ones((1, 4)), cell.get_initial_state(1, (4,)))
    ```
    """

    def fire(self, h):
        return self._step(h) - self._step(-h)

    def fire_without_comparison(self, h):
        up = threshold_step_without_comparison(h, self.v_threshold)
        down = threshold_step_without_comparison(-h, self.v_threshold)
        return up - down, up + down

    def fire_derivative(self, h):
        return self.surrogate_slope(h - self.v_threshold) + self.surrogate_slope(
            -h - self.v_threshold
        )

    def fired_magnitude(self, h):
        fired = ops.cast(ops.greater_equal(ops.abs(h), self.v_threshold), h.dtype)
        slope = self.surrogate_slope(h - self.v_threshold) - self.surrogate_slope(
            -h - self.v_threshold
        )
        return fired, slope

    def reset(self, h, spikes):
        if self.v_reset is None:
            fired = ops.stop_gradient(spikes) if self.detach_reset else spikes
            return h - fired * self.v_threshold
        if self.detach_reset:
            fired = ops.not_equal(ops.stop_gradient(spikes), 0)
            return ops.where(fired, self.v_reset, h)
        # |S| = "fired either way" = Hea(H - V_th) + Hea(-H - V_th), with a
        # surrogate at both thresholds. `abs(spikes)` would have zero
        # gradient wherever S = 0 (d|s|/ds = sign(0) = 0), unlike the
        # binary neuron's reset path.
        magnitude = self._step(h) + self._step(-h)
        return h * (1.0 - magnitude) + self.v_reset * magnitude
