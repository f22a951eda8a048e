"""The Spiking Transformer model family (A2OS2A, SDT and Spikformer attention).

Importing it registers the family's classes with Keras and its built-in
presets with KerasHub, as KerasHub's own model families do.
"""

from keras_hub.src.utils.preset_utils import register_presets

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
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_preset_files import (
    upload_preset,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_streaming import (
    AnytimePrediction,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_streaming import (
    SpikingTransformerStepModel,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_streaming import (
    predict_anytime,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_streaming import (
    running_logits,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import (
    backbone_presets,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import (
    list_presets,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import (
    weights_available,
)

register_presets(backbone_presets, SpikingTransformerBackbone)


def from_preset(preset, load_weights=True, num_classes=None, **kwargs):
    """`SpikingTransformerImageClassifier.from_preset` (see there).

    Example:

    ```python
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    model = keras_spiking_tf.from_preset("st_8_512_imagenet", load_weights=False)
    ```
    """
    return SpikingTransformerImageClassifier.from_preset(
        preset, load_weights=load_weights, num_classes=num_classes, **kwargs
    )


def save_to_preset(model, preset_dir, metadata=None):
    """`model.save_to_preset(preset_dir, metadata=metadata)`: the same
    atomic, checksummed preset with its model card, whichever way it is
    called.

    Example:

    ```python
    keras_spiking_tf.save_to_preset(model, "my_preset")
    ```
    """
    return model.save_to_preset(preset_dir, metadata=metadata)
