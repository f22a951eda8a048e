"""Resize and normalisation for Meta-SpikeFormer inputs (ImageNet mean/std)."""

import keras

from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_converter import (  # noqa: E501
    SpikingTransformerImageConverter,
)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MetaSpikeFormerImageConverter(SpikingTransformerImageConverter):
    """KerasHub `ImageConverter` for Meta-SpikeFormer presets: resize, then
    `(x / 255 - mean) / std` per channel (`from_dataset_stats`), as the
    first family's converter.

    Example:

    ```python
    converter = MetaSpikeFormerImageConverter.from_dataset_stats(
        image_size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )
    normalised = converter(np.zeros((1, 256, 256, 3), "uint8"))   # (1, 224, 224, 3)
    ```
    """

    backbone_cls = MetaSpikeFormerBackbone
