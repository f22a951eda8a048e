"""The MLP sub-block of a spiking transformer encoder block (SPEC §3.3)."""

import keras

from keras_spiking_tf.layers.batch_norm import SpikingBatchNormalization
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.layers.spiking_self_attention import conv_kernel_initializer


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingMLP(keras.layers.Layer):
    """Two spiking 1x1 convolutions with a membrane shortcut.

        out = U + BN(LIF(BN(LIF(U) W1 + b1)) W2 + b2)

    on a membrane tensor `U` of shape `(batch, T, N, D)`; the hidden width is
    `mlp_ratio * D`. Layer names mirror the SDT checkpoint (`fc1_conv`, ...).

    Args:
        mlp_ratio: hidden width as a multiple of `D`.
        neuron_config: dict of `LIF` arguments; SPEC §2.1 defaults when `None`.
        **kwargs: standard layer arguments.

    Example:

    ```python
    mlp = SpikingMLP(mlp_ratio=4)
    membrane = mlp(keras.random.normal((2, 4, 64, 256)))
    ```
    """

    def __init__(self, mlp_ratio=4, neuron_config=None, **kwargs):
        super().__init__(**kwargs)
        self.mlp_ratio = mlp_ratio
        self.neuron_config = dict(neuron_config or {})

    def build(self, input_shape):
        dim = input_shape[-1]
        hidden_dim = int(dim * self.mlp_ratio)
        layer_args = {"dtype": self.dtype_policy}
        dense_args = {"kernel_initializer": conv_kernel_initializer(), **layer_args}
        self.fc1_lif = LIF(**self.neuron_config, name="fc1_lif", **layer_args)
        self.fc1_conv = keras.layers.Dense(hidden_dim, name="fc1_conv", **dense_args)
        self.fc1_bn = SpikingBatchNormalization(name="fc1_bn", **layer_args)
        self.fc2_lif = LIF(**self.neuron_config, name="fc2_lif", **layer_args)
        self.fc2_conv = keras.layers.Dense(dim, name="fc2_conv", **dense_args)
        self.fc2_bn = SpikingBatchNormalization(name="fc2_bn", **layer_args)
        hidden_shape = (*input_shape[:-1], hidden_dim)
        self.fc1_lif.build(input_shape)
        self.fc1_conv.build(input_shape)
        self.fc1_bn.build(hidden_shape)
        self.fc2_lif.build(hidden_shape)
        self.fc2_conv.build(hidden_shape)
        self.fc2_bn.build(input_shape)

    def call(self, inputs, training=None):
        hidden = self.fc1_bn(self.fc1_conv(self.fc1_lif(inputs)), training=training)
        output = self.fc2_bn(self.fc2_conv(self.fc2_lif(hidden)), training=training)
        return inputs + output

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"mlp_ratio": self.mlp_ratio, "neuron_config": self.neuron_config}
        )
        return config
