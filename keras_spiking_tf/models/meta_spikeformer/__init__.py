"""The Meta-SpikeFormer model family (Spike-Driven Transformer V2, SPEC §10):
its official attention, or A2OS2A in its place.

Importing it registers the family's classes with Keras and the family, with
its built-in presets and the official checkpoint format it converts from
(`meta_spikeformer_checkpoint.py`), in the model-family registry and with
KerasHub (`model_family.register_family`).

Example:

```python
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier

model = keras_spiking_tf.from_preset("sdt_v2_8_384_imagenet", load_weights=False)
```
"""

from keras_spiking_tf.models.meta_spikeformer import meta_spikeformer_checkpoint as checkpoint
from keras_spiking_tf.models.meta_spikeformer import meta_spikeformer_model_card as card
from keras_spiking_tf.models.meta_spikeformer import meta_spikeformer_presets as presets
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    ARCHITECTURE_KEYS,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    check_backbone_arguments,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_block import MSBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_block import (
    rep_conv_attention_class,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSConvBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSDownsampling
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import SepConv
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_classifier import (
    MetaSpikeFormerImageClassifier,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_classifier_preprocessor import (  # noqa: E501
    MetaSpikeFormerImageClassifierPreprocessor,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_converter import (
    MetaSpikeFormerImageConverter,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_presets import PRESETS
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_rep_conv import BatchNormAndPad
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_rep_conv import RepConv
from keras_spiking_tf.models.model_family import ModelFamily
from keras_spiking_tf.models.model_family import register_family

FAMILY = register_family(ModelFamily(
    name="meta_spikeformer",
    classifier_cls=MetaSpikeFormerImageClassifier,
    presets=PRESETS,
    backbone_config=presets.backbone_config,
    architecture_keys=ARCHITECTURE_KEYS,
    check_backbone_arguments=check_backbone_arguments,
    listed_keys=presets.LISTED_KEYS,
    official_name="MetaSpikeFormer",
    paper="https://arxiv.org/abs/2404.03663",
    model_card_rows=card.model_card_rows,
    model_card_notes=card.model_card_notes,
    checkpoint=checkpoint.CHECKPOINT_FORMAT,
))
