"""Preprocessor of the Spiking Transformer image classifier."""

import keras
from keras_hub.models import ImageClassifierPreprocessor

from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    SpikingTransformerBackbone,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_converter import (  # noqa: E501
    SpikingTransformerImageConverter,
)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingTransformerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """Turns raw images (0..255) into the classifier's normalised input.

    Example:

    ```python
    preprocessor = SpikingTransformerImageClassifierPreprocessor(
        SpikingTransformerImageConverter.from_dataset_stats((32, 32), mean, std)
    )
    x = preprocessor(np.zeros((1, 40, 40, 3), "uint8"))   # (1, 32, 32, 3)
    ```
    """

    backbone_cls = SpikingTransformerBackbone
    image_converter_cls = SpikingTransformerImageConverter
