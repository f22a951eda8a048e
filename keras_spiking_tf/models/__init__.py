"""Model families in KerasHub layout (Backbone, ImageClassifier, presets)."""

from keras_spiking_tf.models.spiking_transformer import SpikingTransformerBackbone
from keras_spiking_tf.models.spiking_transformer import (
    SpikingTransformerImageClassifier,
)
from keras_spiking_tf.models.spiking_transformer import (
    SpikingTransformerImageClassifierPreprocessor,
)
from keras_spiking_tf.models.spiking_transformer import (
    SpikingTransformerImageConverter,
)
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerBackbone
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier
from keras_spiking_tf.models.meta_spikeformer import (
    MetaSpikeFormerImageClassifierPreprocessor,
)
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageConverter
from keras_spiking_tf.models.streaming import AnytimePrediction
from keras_spiking_tf.models.streaming import SpikingStepModel
from keras_spiking_tf.models.streaming import predict_anytime
from keras_spiking_tf.models.streaming import running_logits
