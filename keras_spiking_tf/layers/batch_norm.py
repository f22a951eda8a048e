"""BatchNorm for spiking tensors: statistics shared over batch and time."""

import keras
import numpy as np
from keras import ops

from keras_spiking_tf import validation


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingBatchNormalization(keras.layers.BatchNormalization):
    """BatchNorm over the channel (last) axis of `(batch, T, ...)` tensors.

    Every axis but the last is reduced, so the statistics are shared across
    time steps, batch and space: the "T·B folded" BatchNorm of design.md §1 (plain
    BN, not tdBN). Defaults follow SDT (design.md §3.4): PyTorch momentum 0.1,
    i.e. Keras `momentum=0.9`, and `epsilon=1e-5`.

    Training on the TensorFlow backend uses TensorFlow's fused batch-norm
    kernel (one op forward, one backward, statistics in float32 also for
    bfloat16 inputs) instead of Keras' composite of reductions and
    elementwise ops; the moving statistics are updated exactly as Keras does
    (biased batch variance), so both paths train the same model.

    Args:
        momentum: moving-average momentum, Keras convention, in [0, 1].
        epsilon: added to the variance, > 0.
        **kwargs: other `keras.layers.BatchNormalization` arguments.

    Example:

    ```python
    bn = SpikingBatchNormalization()
    y = bn(keras.random.normal((2, 4, 64, 32)), training=True)  # (B, T, N, D)
    ```
    """

    folded = False  # set by `FoldsBatchNorm.fold_batch_norm`: now an identity

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        momentum = validation.check_number("momentum", momentum, minimum=0.0, maximum=1.0)
        epsilon = validation.check_number("epsilon", epsilon, minimum=0.0, exclusive_minimum=True)
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)

    def inference_affine(self):
        """`(scale, shift)` in float64 with `BN(x) = x * scale + shift` at
        inference (moving statistics)."""

        def value(variable, default):
            if variable is None:
                return default
            return np.asarray(ops.convert_to_numpy(variable), "float64")

        mean = value(self.moving_mean, 0.0)
        variance = value(self.moving_variance, 1.0)
        scale = value(self.gamma, 1.0) / np.sqrt(variance + self.epsilon)
        return scale, value(self.beta, 0.0) - mean * scale

    def call(self, inputs, training=None, mask=None):
        if self.folded:
            if training:
                raise ValueError(
                    f"BatchNorm '{self.name}' is folded into the layer before it "
                    "(an inference graph, `optimize_for_inference`); train the "
                    "original model instead."
                )
            return inputs
        fused = (
            training
            and self.trainable
            and mask is None
            and keras.backend.backend() == "tensorflow"
            and self.axis in (-1, len(inputs.shape) - 1)
            and not (self.renorm or self.synchronized)
        )
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        return self._fused_training_call(inputs)

    def _fused_training_call(self, inputs):
        import tensorflow as tf

        channels = inputs.shape[-1]
        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, (-1, 1, 1, channels))
        one = tf.ones((channels,), "float32")
        outputs, mean, corrected_variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            scale=ops.cast(self.gamma, "float32") if self.scale else one,
            offset=ops.cast(self.beta, "float32") if self.center else 0.0 * one,
            epsilon=self.epsilon,
            is_training=True,
        )
        # The kernel returns the unbiased (n / (n - 1)) variance; Keras keeps
        # the biased one in its moving average.
        count = tf.cast(tf.size(x) // channels, "float32")
        variance = corrected_variance * (count - 1.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum + variance * (1.0 - momentum)
        )
        outputs = tf.reshape(outputs, tf.shape(inputs))
        return ops.cast(outputs, self.compute_dtype)
