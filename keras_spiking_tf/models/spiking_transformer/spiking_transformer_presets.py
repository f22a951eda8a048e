"""The built-in Spiking Transformer presets.

`keras_spiking_tf/presets/presets.json` is their registry: every preset's
architecture, data set (image size, normalisation, class names),
trainable-parameter count and published accuracy. Beside it lies one
KerasHub preset directory per preset (`<name>/`: `config.json`,
`task.json`, `preprocessor.json`, `metadata.json`, a `README.md` model card,
and, for presets with published weights, `model.weights.h5` and
`task.weights.h5`), written from the registry by `tools/write_presets.py`.
The family registers them (`__init__.py`); the preset functions over every
family are `keras_spiking_tf.models.model_family`'s.

Example:

```python
PRESETS["st_8_512_imagenet"]["params"]   # 29689384
```
"""

from keras_spiking_tf.models.model_family import dataset_of
from keras_spiking_tf.models.model_family import load_registry

PRESETS = load_registry()["presets"]

# What `list_presets()` shows of the architecture.
LISTED_KEYS = ("num_layers", "hidden_dim", "num_heads")


def backbone_config(name):
    """`SpikingTransformerBackbone` arguments of built-in preset `name`."""
    entry = PRESETS[name]
    dataset = dataset_of(name)
    return {
        "num_layers": entry["num_layers"],
        "hidden_dim": entry["hidden_dim"],
        "num_heads": entry["num_heads"],
        "mlp_ratio": entry["mlp_ratio"],
        "time_steps": entry["time_steps"],
        "pooling": dataset["pooling"],
        "image_shape": tuple(dataset["image_shape"]),
        "attention": entry["attention"],
        "input_type": dataset.get("input_type", "image"),
        "erode": dataset.get("erode", False),
    }
