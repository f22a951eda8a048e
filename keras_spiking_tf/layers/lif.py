"""Multi-step spiking neurons: a neuron cell unrolled over the time axis.

Normally every sample's membranes start at 0 and only spikes leave the
layer. Inside `explicit_membranes(initial)` (what streaming, one frame at a
time, uses) each `LIF` layer instead starts from `initial[layer]` and
records its last membrane in the returned `final[layer]`, so a network can be
run step by step with its state passed in and out explicitly.
"""

import contextlib
import contextvars
import functools

import keras
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif_cell import NEURON_ARGUMENTS
from keras_spiking_tf.layers.lif_cell import LIFCell
from keras_spiking_tf.layers.lif_cell import check_neuron_arguments
from keras_spiking_tf.layers.lif_cell import TernaryLIFCell


def integrate_and_fire(cell, inputs, backward):
    """Runs `cell` over axis 1 of `inputs`; spikes with a BPTT gradient.

    Forward, per step: `H[t] = charge(X[t], V[t-1])`, `S[t] = fire(H[t])`,
    `V[t] = reset(H[t], S[t])`, from `V[-1] = 0`. The backward pass is
    `backward(charged, upstream)`, normally `backpropagate_through_time`:
    only the `H[t]` are kept for it, where automatic differentiation of the
    loop would keep every intermediate of every step and run several more
    elementwise passes over them.
    """

    @ops.custom_gradient
    def run(inputs):
        membrane = ops.zeros_like(inputs[:, 0])
        charged, spikes = [], []
        for x in ops.unstack(inputs, axis=1):
            h = cell.charge(x, membrane)
            s = cell.fire(h)
            membrane = cell.reset(h, s)
            charged.append(h)
            spikes.append(s)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return backward(charged, upstream)

        return ops.stack(spikes, axis=1), grad

    return run(inputs)


# The most time steps a check lets through: the loop over time is unrolled
# into the graph, one copy of the neuron per step.
MAX_TIME_STEPS = 4096

_MEMBRANES = contextvars.ContextVar("explicit_membranes", default=None)


@contextlib.contextmanager
def explicit_membranes(initial):
    """Runs the block with every `LIF` layer's membrane made explicit.

    Args:
        initial: dict `LIF layer -> membrane (batch, *features)` to start
            from; a layer not in it starts from zeros.

    Yields:
        A dict `LIF layer -> last membrane`, filled as the layers run.

    Example:

    ```python
    with explicit_membranes({}) as final:
        spikes = lif(x)           # (batch, T, ...)
    state = final[lif]            # membrane after the last step
    ```
    """
    final = {}
    token = _MEMBRANES.set((dict(initial), final))
    try:
        yield final
    finally:
        _MEMBRANES.reset(token)


def integrate_from(cell, inputs, membrane):
    """Forward-only run of `cell` over axis 1 from `membrane`: `(spikes,
    last membrane)`, with exactly the arithmetic of `integrate_and_fire`."""
    spikes = []
    for x in ops.unstack(inputs, axis=1):
        h = cell.charge(x, membrane)
        s = cell.fire(h)
        membrane = cell.reset(h, s)
        spikes.append(s)
    return ops.stack(spikes, axis=1), membrane


def integrate_for_inference(cell, inputs):
    """Forward-only run of `cell` over axis 1 from rest: the spikes of
    `integrate_and_fire` bit for bit, in the operators a deployment runtime
    runs fastest. The time steps are split and concatenated (a slice and a
    concatenation, not unstack/stack), the first step is charged from rest
    without a zero tensor (`charge_at_rest`), each step fires and resets
    without comparisons (`fire_and_reset_without_comparison`), and the last
    step does not reset."""
    steps = ops.split(inputs, inputs.shape[1], axis=1)
    membrane = None
    spikes = []
    for x in steps[:-1]:
        h = cell.charge_at_rest(x) if membrane is None else cell.charge(x, membrane)
        s, membrane = cell.fire_and_reset_without_comparison(h)
        spikes.append(s)
    # The last step's reset would only feed a step that does not exist.
    h = cell.charge_at_rest(steps[-1]) if membrane is None else cell.charge(steps[-1], membrane)
    spikes.append(cell.fire_without_comparison(h)[0])
    return spikes[0] if len(spikes) == 1 else ops.concatenate(spikes, axis=1)


def backpropagate_through_time(cell, charged, upstream):
    """`dL/dX` from the stored `H[t]` and `upstream = dL/dS`.

    From the last step to the first, with `dL/dV[T-1] = 0`:

        dL/dH[t]   = dL/dS[t] dS/dH[t] + dL/dV[t] dV/dH[t]
        dL/dX[t]   = dL/dH[t] dH/dX
        dL/dV[t-1] = dL/dH[t] dH/dV

    with the cell's local derivatives (`fire_derivative`, `reset_derivative`,
    `charge_gains`). Computed in float32 also under mixed precision.
    """
    leak, input_gain = cell.charge_gains
    grad_membrane = None
    grads = []
    for h, grad_spikes in zip(reversed(charged), reversed(ops.unstack(upstream, axis=1))):
        h = ops.cast(h, "float32")
        grad_h = ops.cast(grad_spikes, "float32") * cell.fire_derivative(h)
        if grad_membrane is not None:
            grad_h = grad_h + grad_membrane * cell.reset_derivative(h)
        grads.append(ops.cast(grad_h * input_gain, upstream.dtype))
        grad_membrane = grad_h * leak
    return ops.stack(grads[::-1], axis=1)


def fuse_elementwise(function):
    """`function`, compiled so that its elementwise ops fuse into one loop.

    On TensorFlow this is an XLA cluster (`tf.function(jit_compile=True)`)
    inside the otherwise oneDNN-run graph: the ~10 elementwise ops per time
    step of `backpropagate_through_time` become one pass over memory. JAX
    already compiles whole train steps with XLA, and PyTorch runs it as is.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True, reduce_retracing=True)
    return function


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class LIF(keras.layers.Layer):
    """Multi-step binary LIF neuron on inputs shaped `(batch, T, ...)`.

    Runs `LIFCell` over the time axis (axis 1) with the membrane starting at
    0 for every sample. The loop is unrolled over the static `T`, so the
    graph has no while-loop or scan and exports cleanly to LiteRT and ONNX.
    Any trailing dimensions are allowed (tokens x channels, H x W x C).
    The backward pass is backpropagation through time written out with the
    cell's local derivatives (`backpropagate_through_time`): the same
    gradient as differentiating the loop, from one stored tensor per step,
    fused into one loop by XLA on TensorFlow (`fuse_elementwise`).

    Args:
        tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha:
            the neuron, see `LIFCell` (design.md §2.1 defaults).
        time_steps: optional expected `T` (1 to 4096); an input with
            another `T` is an error.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:

    ```python
    lif = LIF(tau=2.0, v_threshold=1.0)
    spikes = lif(1.5 * keras.ops.ones((1, 4, 3)))   # T=4: 0, 1, 0, 1 per unit
    ```
    """

    cell_class = LIFCell
    inference_graph = False  # True in `optimize_for_inference`'s copy

    def __init__(
        self,
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        decay_input=True,
        detach_reset=True,
        surrogate="sigmoid",
        alpha=None,
        time_steps=None,
        **kwargs,
    ):
        neuron = check_neuron_arguments(
            tau=tau,
            v_threshold=v_threshold,
            v_reset=v_reset,
            decay_input=decay_input,
            detach_reset=detach_reset,
            surrogate=surrogate,
            alpha=alpha,
        )
        time_steps = validation.check_integer(
            "time_steps", time_steps, minimum=1, maximum=MAX_TIME_STEPS, allow_none=True
        )
        super().__init__(**kwargs)
        self.cell = self.cell_class(**neuron, dtype=self.dtype_policy, name="cell")
        self.time_steps = time_steps
        self._backward = fuse_elementwise(
            functools.partial(backpropagate_through_time, self.cell)
        )

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' expects inputs "
                "shaped (batch, T, ...features) with a time axis at axis 1, "
                f"got shape {tuple(input_shape)}. Add the time axis, e.g. "
                "repeat a static input T times: "
                "keras.ops.repeat(x[:, None], T, axis=1)."
            )
        steps = input_shape[1]
        if steps is None:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' needs a static "
                f"number of time steps (axis 1), got shape {tuple(input_shape)}."
            )
        if self.time_steps is not None and steps != self.time_steps:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' was configured for "
                f"time_steps={self.time_steps} but received T={steps} "
                f"(input shape {tuple(input_shape)})."
            )

        self.feature_shape = tuple(input_shape[2:])

    def call(self, inputs):
        if not keras.backend.is_float_dtype(inputs.dtype):
            raise TypeError(
                f"{self.__class__.__name__} '{self.name}' needs floating-point "
                f"inputs (membrane potentials), got dtype {inputs.dtype}. "
                "Cast first, e.g. keras.ops.cast(x, 'float32')."
            )
        membranes = _MEMBRANES.get()
        if membranes is None and self.inference_graph:
            return integrate_for_inference(self.cell, inputs)
        if membranes is None:
            return integrate_and_fire(self.cell, inputs, self._backward)
        initial, final = membranes
        start = initial.get(self)
        start = ops.zeros_like(inputs[:, 0]) if start is None else ops.cast(start, inputs.dtype)
        spikes, final[self] = integrate_from(self.cell, inputs, start)
        return spikes

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self.cell, name) for name in NEURON_ARGUMENTS})
        config["time_steps"] = self.time_steps
        return config


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class TernaryLIF(LIF):
    """Multi-step ternary LIF neuron: outputs in {-1, 0, +1} (design.md §2.3).

    Arguments as `LIF`.

    Example:

    ```python
    spikes = TernaryLIF()(-1.5 * keras.ops.ones((1, 4, 3)))  # 0, -1, 0, -1
    ```
    """

    cell_class = TernaryLIFCell
