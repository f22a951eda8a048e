"""The inference forms of the synaptic layers (`keras.layers.Dense` and
`keras.layers.Conv2D`), which `optimize_for_inference` gives the layers of
its copy: a per-token product with static shapes, and BatchNorm folding.

They add behaviour and no state (the folded bias is a constant), so a
layer of the copy, loaded with its weights as a stock Keras layer, takes
its inference form in place. Trained and saved models keep the stock
classes, whose weight-file layout (keyed by class name) the presets use.
"""

import keras
import numpy as np
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif_cell import MAX_UNITS


def _check_keras_objects(arguments):
    """Checks the arguments that `keras.layers.Dense` and `Conv2D` share:
    `activation`, `use_bias` and the initializers, regularizers and
    constraints (names, config dicts or instances that Keras resolves)."""
    resolvers = {
        "initializer": keras.initializers.get,
        "regularizer": keras.regularizers.get,
        "constraint": keras.constraints.get,
    }
    validation.check_identifier(
        "activation",
        arguments["activation"],
        keras.activations.get,
        "a Keras activation (e.g. 'relu'), a callable or None",
    )
    validation.check_bool("use_bias", arguments["use_bias"])
    for name, value in arguments.items():
        kind = name.rsplit("_", 1)[-1]
        if kind in resolvers:
            validation.check_identifier(
                name, value, resolvers[kind],
                f"a Keras {kind} (a name, config dict or instance) or None",
            )


def _check_pair(name, value, minimum=1):
    """A Conv2D size argument: an integer or a tuple of 2 integers >= minimum."""
    if isinstance(value, (list, tuple)):
        return validation.check_int_tuple(name, value, 2, minimum=minimum, maximum=MAX_UNITS)
    return validation.check_integer(name, value, minimum=minimum, maximum=MAX_UNITS)


class FoldsBatchNorm:
    """Mixin of a synaptic layer `y = x W (+ b)` that can absorb the BatchNorm
    `z = gamma (y - mean) / sqrt(var + eps) + beta` that follows it.

    With `scale = gamma / sqrt(var + eps)`, `z = x (W scale) + (b scale +
    beta - mean scale)`: `fold_batch_norm` computes the new kernel and bias
    in float64 from the float32 weights, rounds them once to float32, and
    makes the BatchNorm an identity. The folded network computes the same
    function; only the float32 rounding differs (the products are scaled
    before the sum instead of after it).

    BatchNorms applied one after the other (Meta-SpikeFormer's RepConv and
    the BatchNorm that follows it) are first composed into one affine map,
    `z = (y s1 + t1) s2 + t2 = y (s1 s2) + (t1 s2 + t2)`, in float64, and
    folded with a single rounding.
    """

    folded_bias = None  # the bias of a folded layer built without one
    folded = False

    def fold_batch_norm(self, *batch_norms):
        """Merges `batch_norms` (the first applied directly to this layer's
        output, each next one to the previous one's) into this layer's
        kernel and bias, and makes each an identity.

        Args:
            *batch_norms: the `SpikingBatchNormalization`s that follow, in
                the order they are applied (at least one).

        Raises:
            ValueError: no BatchNorm, or this layer or one of them is folded
                already (declared twice).
        """
        if not batch_norms:
            raise ValueError(f"No BatchNorm given to fold into '{self.name}'.")
        for layer in (self, *batch_norms):
            if layer.folded:
                raise ValueError(
                    f"'{layer.name}' is folded already: each synapse and each BatchNorm "
                    "may appear in one declared fold only (`batch_norm_folds`)."
                )
        scale, shift = 1.0, 0.0
        for batch_norm in batch_norms:
            bn_scale, bn_shift = batch_norm.inference_affine()
            scale, shift = scale * bn_scale, shift * bn_scale + bn_shift
        kernel = np.asarray(ops.convert_to_numpy(self.kernel), "float64")
        bias = shift
        if self.use_bias:
            bias = bias + np.asarray(ops.convert_to_numpy(self.bias), "float64") * scale
        self.kernel.assign((kernel * scale).astype("float32"))  # scale: output axis
        if self.use_bias:
            self.bias.assign(bias.astype("float32"))
        else:
            self.folded_bias = bias.astype("float32")
        self.folded = True
        for batch_norm in batch_norms:
            batch_norm.folded = True

    def add_folded_bias(self, outputs):
        if self.folded_bias is None:
            return outputs
        return outputs + ops.convert_to_tensor(self.folded_bias, outputs.dtype)


class TokenDense(FoldsBatchNorm, keras.layers.Dense):
    """`keras.layers.Dense` on every token of `(batch, ..., features)`.

    The leading axes are flattened into one (`(-1, features)`, a reshape with
    static sizes but the first) around a 2-D matrix product, where Keras'
    `Dense` on TensorFlow uses `tensordot`, whose shape arithmetic runs at
    run time and splits an exported graph into pieces that the LiteRT CPU
    delegate (XNNPACK) cannot take. The same values. Arguments as
    `keras.layers.Dense` (`quantization_config` and other Keras layer
    arguments through `**kwargs`), each checked before the layer is made.

    Example:

    ```python
    dense = TokenDense(64)
    y = dense(keras.random.normal((2, 4, 16, 32)))   # (2, 4, 16, 64)
    ```
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        arguments = dict(locals())
        del arguments["self"], arguments["kwargs"], arguments["__class__"]
        validation.check_integer("units", units, minimum=1, maximum=MAX_UNITS)
        _check_keras_objects(arguments)
        validation.check_integer("lora_rank", lora_rank, minimum=1, maximum=MAX_UNITS,
                                 allow_none=True)
        validation.check_number("lora_alpha", lora_alpha, minimum=0.0,
                                exclusive_minimum=True, allow_none=True)
        super().__init__(**arguments, **kwargs)

    def call(self, inputs, training=None):
        if len(inputs.shape) <= 2:
            return self.add_folded_bias(super().call(inputs, training=training))
        leading = inputs.shape[1:-1]
        flat = ops.reshape(inputs, (-1, inputs.shape[-1]))
        outputs = self.add_folded_bias(super().call(flat, training=training))
        return ops.reshape(outputs, (-1, *leading, self.units))


class SynapticConv2D(FoldsBatchNorm, keras.layers.Conv2D):
    """`keras.layers.Conv2D` that can absorb the BatchNorm after it
    (`fold_batch_norm`). Arguments as `keras.layers.Conv2D`.

    Example:

    ```python
    conv = SynapticConv2D(32, 3, padding="same", use_bias=False)
    y = conv(keras.random.normal((2, 16, 16, 8)))
    ```
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        arguments = dict(locals())
        del arguments["self"], arguments["kwargs"], arguments["__class__"]
        validation.check_integer("filters", filters, minimum=1, maximum=MAX_UNITS)
        for name in ("kernel_size", "strides", "dilation_rate"):
            _check_pair(name, arguments[name])
        validation.check_choice("padding", padding, ("valid", "same"))
        validation.check_choice(
            "data_format", data_format, ("channels_last", "channels_first"), allow_none=True
        )
        validation.check_integer("groups", groups, minimum=1, maximum=MAX_UNITS)
        _check_keras_objects(arguments)
        super().__init__(**arguments, **kwargs)

    def call(self, inputs):
        return self.add_folded_bias(super().call(inputs))


INFERENCE_FORMS = {keras.layers.Dense: TokenDense, keras.layers.Conv2D: SynapticConv2D}
