"""The MLP sub-block of a spiking transformer encoder block (design.md §3.3)."""

import keras

from keras_spiking_tf import validation
from keras_spiking_tf.layers.spiking_block import SpikingBlock

MAX_MLP_RATIO = 1024


def check_mlp_ratio(mlp_ratio):
    """`mlp_ratio` as given (an int stays an int, for the config), after
    checking that it is a finite number in (0, 1024]; a fraction is allowed:
    the hidden width is `int(D * mlp_ratio)`."""
    validation.check_number(
        "mlp_ratio", mlp_ratio, minimum=0.0, exclusive_minimum=True, maximum=MAX_MLP_RATIO
    )
    return mlp_ratio


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingMLP(SpikingBlock):
    """Two spiking 1x1 convolutions with a membrane shortcut.

        out = U + BN(LIF(BN(LIF(U) W1 + b1)) W2 + b2)

    on a membrane tensor `U` of shape `(batch, T, N, D)`; the hidden width is
    `mlp_ratio * D`. Layer names mirror the SDT checkpoint (`fc1_conv`, ...).

    Args:
        mlp_ratio: hidden width as a multiple of `D` (> 0, at most 1024).
        neuron_config: dict of `LIF` arguments; design.md §2.1 defaults when `None`.
        **kwargs: standard layer arguments.

    Example:

    ```python
    mlp = SpikingMLP(mlp_ratio=4)
    membrane = mlp(keras.random.normal((2, 4, 64, 256)))
    ```
    """

    def __init__(self, mlp_ratio=4, neuron_config=None, **kwargs):
        mlp_ratio = check_mlp_ratio(mlp_ratio)
        super().__init__(neuron_config=neuron_config, **kwargs)
        self.mlp_ratio = mlp_ratio

    def build(self, input_shape):
        dim = input_shape[-1]
        hidden_dim = int(dim * self.mlp_ratio)
        self.fc1_lif = self.neuron("fc1_lif")
        self.fc1_conv = self.dense(hidden_dim, "fc1_conv")
        self.fc1_bn = self.batch_norm("fc1_bn")
        self.fc2_lif = self.neuron("fc2_lif")
        self.fc2_conv = self.dense(dim, "fc2_conv")
        self.fc2_bn = self.batch_norm("fc2_bn")
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
        config["mlp_ratio"] = self.mlp_ratio
        return config
