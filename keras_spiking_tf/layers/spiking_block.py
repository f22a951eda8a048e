"""The base of every block made of neurons: one way to build its sub-layers."""

import keras

from keras_spiking_tf.layers.batch_norm import SpikingBatchNormalization
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.layers.lif_cell import check_neuron_config


def conv_kernel_initializer():
    """SDT's initialisation of convolution and linear weights (design.md §3.4)."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


class SpikingBlock(keras.layers.Layer):
    """A layer built from neurons, synaptic layers and BatchNorm.

    Subclasses create their sub-layers with `neuron`, `dense`, `conv3x3` and
    `batch_norm`, which give each the block's dtype policy, every neuron the
    block's `neuron_config`, and every weight SDT's initialisation
    (design.md §3.4). The sub-layers' names are the SDT checkpoint's
    (design.md §5).

    Args:
        neuron_config: dict of `LIF` arguments shared by every neuron of the
            block (`tau`, `v_threshold`, `surrogate`, ...: the keys of
            `NEURON_ARGUMENTS`, each checked as `LIF` checks it); design.md
            §2.1's defaults when `None`.
        **kwargs: standard layer arguments.

    Example:

    ```python
    class Gate(SpikingBlock):
        def build(self, input_shape):
            self.lif = self.neuron("lif")
            self.fc = self.dense(input_shape[-1], "fc")

        def call(self, inputs):
            return inputs + self.fc(self.lif(inputs))
    ```
    """

    def __init__(self, neuron_config=None, **kwargs):
        neuron_config = check_neuron_config(neuron_config)
        super().__init__(**kwargs)
        self.neuron_config = neuron_config

    def neuron(self, name, neuron_class=LIF, **overrides):
        """A neuron with the block's settings, `overrides` replacing some."""
        config = {**self.neuron_config, **overrides}
        return neuron_class(**config, dtype=self.dtype_policy, name=name)

    def dense(self, units, name, use_bias=True):
        """A per-token linear layer (SDT's 1x1 convolution)."""
        return keras.layers.Dense(
            units,
            use_bias=use_bias,
            kernel_initializer=conv_kernel_initializer(),
            dtype=self.dtype_policy,
            name=name,
        )

    def conv3x3(self, filters, name):
        """A 3x3 convolution, stride 1, padding 1, no bias (SDT's SPS), on
        channels-last tensors whatever `keras.config.image_data_format()`
        says (a channels-first backbone transposes its input once)."""
        return keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            data_format="channels_last",
            kernel_initializer=conv_kernel_initializer(),
            dtype=self.dtype_policy,
            name=name,
        )

    def batch_norm(self, name):
        return SpikingBatchNormalization(dtype=self.dtype_policy, name=name)

    def batch_norm_folds(self):
        """What `optimize_for_inference` folds in this block: a list of
        `(synapse, batch_norms)`, `batch_norms` a tuple of the BatchNorms
        applied one after the other to the synapse's output (usually one;
        `FoldsBatchNorm.fold_batch_norm` composes several). The synapse is a
        `Dense`/`Conv2D` of this block or of a sub-layer that is not a
        `SpikingBlock` (Meta-SpikeFormer's `RepConv`); a `SpikingBlock`
        sub-layer declares its own. `optimize_for_inference` asks every
        block and refuses a model with a BatchNorm that none declares.

        The default is one fold per pair of `synapse_batch_norm_pairs`; a
        block with another structure overrides either method.

        Example:

        ```python
        for synapse, batch_norms in block.batch_norm_folds():
            synapse.fold_batch_norm(*batch_norms)
        ```
        """
        return [(synapse, (batch_norm,)) for synapse, batch_norm in self.synapse_batch_norm_pairs()]

    def synapse_batch_norm_pairs(self):
        """`(synapse, BatchNorm)` pairs in which the BatchNorm is applied
        directly to the synapse's output: by SDT's naming (design.md §5),
        `X_bn` follows `X_conv` (`q_conv` -> `q_bn`, `proj_conv1` -> `proj_bn1`,
        Meta-SpikeFormer's `encode_conv` -> `encode_bn`, `conv1` -> `bn1`)."""
        layers = {
            layer.name: layer
            for layer in self._flatten_layers(include_self=False, recursive=False)
        }
        pairs = []
        for name, layer in layers.items():
            if isinstance(layer, SpikingBatchNormalization):
                synapse = layers.get(name.replace("bn", "conv", 1))
                if synapse is None:
                    raise ValueError(
                        f"BatchNorm '{name}' of {self.name} has no synapse "
                        f"'{name.replace('bn', 'conv', 1)}' to fold into."
                    )
                pairs.append((synapse, layer))
        return pairs

    def get_config(self):
        config = super().get_config()
        config["neuron_config"] = self.neuron_config
        return config
