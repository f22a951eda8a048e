"""Resize and normalisation for Spiking Transformer inputs (design.md §6)."""

import keras
from keras_hub.layers import ImageConverter

from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    SpikingTransformerBackbone,
)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingTransformerImageConverter(ImageConverter):
    """KerasHub `ImageConverter` for Spiking Transformer presets.

    Resizes images to the preset's size and applies the dataset normalisation
    `(x / 255 - mean) / std` as `scale = 1 / (255 std)`, `offset = -mean / std`.
    Use `from_dataset_stats` to build one from mean and std.

    Example:

    ```python
    converter = SpikingTransformerImageConverter.from_dataset_stats(
        image_size=(32, 32), mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    )
    normalised = converter(np.zeros((1, 32, 32, 3), "uint8"))
    ```
    """

    backbone_cls = SpikingTransformerBackbone

    @classmethod
    def from_dataset_stats(cls, image_size, mean, std, **kwargs):
        """A converter normalising 0..255 pixels with per-channel mean/std."""
        scale = [1.0 / (255.0 * s) for s in std]
        offset = [-m / s for m, s in zip(mean, std)]
        return cls(image_size=tuple(image_size), scale=scale, offset=offset, **kwargs)
