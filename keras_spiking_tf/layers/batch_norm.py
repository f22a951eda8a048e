"""BatchNorm for spiking tensors: statistics shared over batch and time."""

import keras


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingBatchNormalization(keras.layers.BatchNormalization):
    """BatchNorm over the channel (last) axis of `(batch, T, ...)` tensors.

    Every axis but the last is reduced, so the statistics are shared across
    time steps, batch and space: the "T·B folded" BatchNorm of SPEC §1 (plain
    BN, not tdBN). Defaults follow SDT (SPEC §3.4): PyTorch momentum 0.1,
    i.e. Keras `momentum=0.9`, and `epsilon=1e-5`.

    Args:
        momentum: moving-average momentum, Keras convention.
        epsilon: added to the variance.
        **kwargs: other `keras.layers.BatchNormalization` arguments.

    Example:

    ```python
    bn = SpikingBatchNormalization()
    y = bn(keras.random.normal((2, 4, 64, 32)), training=True)  # (B, T, N, D)
    ```
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)
