"""Preprocessor of the Meta-SpikeFormer image classifier."""

import keras
from keras_hub.models import ImageClassifierPreprocessor

from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_converter import (
    MetaSpikeFormerImageConverter,
)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MetaSpikeFormerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """Turns raw images (0..255) into the classifier's normalised input.

    Example:

    ```python
    preprocessor = MetaSpikeFormerImageClassifierPreprocessor(
        MetaSpikeFormerImageConverter.from_dataset_stats((224, 224), mean, std)
    )
    x = preprocessor(np.zeros((1, 256, 256, 3), "uint8"))   # (1, 224, 224, 3)
    ```
    """

    backbone_cls = MetaSpikeFormerBackbone
    image_converter_cls = MetaSpikeFormerImageConverter
