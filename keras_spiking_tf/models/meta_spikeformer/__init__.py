"""The Meta-SpikeFormer model family (Spike-Driven Transformer V2, SPEC §10):
its official attention, or A2OS2A in its place.

Importing it registers the family's classes with Keras.

Example:

```python
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier

model = MetaSpikeFormerImageClassifier.from_preset("sdt_v2_8_384_imagenet", load_weights=False)
```
"""

from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
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
