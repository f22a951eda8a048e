"""The Spiking Transformer model family (A2OS2A, SDT and Spikformer attention).

Importing it registers the family's classes with Keras and the family, with
its built-in presets and SDT's checkpoint format it converts from
(`spiking_transformer_checkpoint.py`), in the model-family registry and with
KerasHub (`model_family.register_family`), as KerasHub's own model families do.
"""

from keras_spiking_tf.models.model_family import ModelFamily
from keras_spiking_tf.models.model_family import register_family
from keras_spiking_tf.models.spiking_transformer import (
    spiking_transformer_checkpoint as checkpoint,
)
from keras_spiking_tf.models.spiking_transformer import spiking_transformer_model_card as card
from keras_spiking_tf.models.spiking_transformer import spiking_transformer_presets as presets
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    ARCHITECTURE_KEYS,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    SpikingTransformerBackbone,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    check_backbone_arguments,
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

FAMILY = register_family(ModelFamily(
    name="spiking_transformer",
    classifier_cls=SpikingTransformerImageClassifier,
    presets=presets.PRESETS,
    backbone_config=presets.backbone_config,
    architecture_keys=ARCHITECTURE_KEYS,
    check_backbone_arguments=check_backbone_arguments,
    listed_keys=presets.LISTED_KEYS,
    official_name="SpikingTransformer",
    paper="https://arxiv.org/abs/2503.00226",
    model_card_rows=card.model_card_rows,
    model_card_notes=card.model_card_notes,
    checkpoint=checkpoint.CHECKPOINT_FORMAT,
))
