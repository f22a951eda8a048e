"""The Spiking Transformer model family (A2OS2A, SDT and Spikformer attention)."""

from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    SpikingTransformerBackbone,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_classifier import (  # noqa: E501
    SpikingTransformerImageClassifier,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_classifier_preprocessor import (  # noqa: E501
    SpikingTransformerImageClassifierPreprocessor,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_converter import (  # noqa: E501
    SpikingTransformerImageConverter,
)
