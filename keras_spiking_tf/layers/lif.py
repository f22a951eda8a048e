"""Multi-step spiking neurons: a neuron cell unrolled over the time axis."""

import keras
from keras import ops

from keras_spiking_tf.layers.lif_cell import NEURON_ARGUMENTS
from keras_spiking_tf.layers.lif_cell import LIFCell
from keras_spiking_tf.layers.lif_cell import TernaryLIFCell


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class LIF(keras.layers.Layer):
    """Multi-step binary LIF neuron on inputs shaped `(batch, T, ...)`.

    Runs `LIFCell` over the time axis (axis 1) with the membrane starting at
    0 for every sample. The loop is unrolled over the static `T`, so the
    graph has no while-loop or scan and exports cleanly to LiteRT and ONNX.
    Any trailing dimensions are allowed (tokens x channels, H x W x C).

    Args:
        tau, v_threshold, v_reset, decay_input, detach_reset, surrogate,
        alpha: the neuron, see `LIFCell` (SPEC §2.1 defaults).
        time_steps: optional expected `T`; an input with another `T` is an
            error.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:

    ```python
    lif = LIF(tau=2.0, v_threshold=1.0)
    spikes = lif(1.5 * keras.ops.ones((1, 4, 3)))   # T=4: 0, 1, 0, 1 per unit
    ```
    """

    cell_class = LIFCell

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
        super().__init__(**kwargs)
        self.cell = self.cell_class(
            tau=tau,
            v_threshold=v_threshold,
            v_reset=v_reset,
            decay_input=decay_input,
            detach_reset=detach_reset,
            surrogate=surrogate,
            alpha=alpha,
            dtype=self.dtype_policy,
            name="cell",
        )
        self.time_steps = None if time_steps is None else int(time_steps)

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

    def call(self, inputs):
        if not keras.backend.is_float_dtype(inputs.dtype):
            raise TypeError(
                f"{self.__class__.__name__} '{self.name}' needs floating-point "
                f"inputs (membrane potentials), got dtype {inputs.dtype}. "
                "Cast first, e.g. keras.ops.cast(x, 'float32')."
            )
        steps = inputs.shape[1]
        states = [ops.zeros_like(inputs[:, 0])]
        spikes = []
        for t in range(steps):
            spike, states = self.cell.call(inputs[:, t], states)
            spikes.append(spike)
        return ops.stack(spikes, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self.cell, name) for name in NEURON_ARGUMENTS})
        config["time_steps"] = self.time_steps
        return config


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class TernaryLIF(LIF):
    """Multi-step ternary LIF neuron: outputs in {-1, 0, +1} (SPEC §2.3).

    Arguments as `LIF`.

    Example:

    ```python
    spikes = TernaryLIF()(-1.5 * keras.ops.ones((1, 4, 3)))  # 0, -1, 0, -1
    ```
    """

    cell_class = TernaryLIFCell
