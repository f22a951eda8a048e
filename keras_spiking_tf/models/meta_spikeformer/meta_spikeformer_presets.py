"""The built-in Meta-SpikeFormer presets (SPEC §10).

The official ImageNet sizes at `T = 4` with the knowledge-distillation
head, as the released checkpoint: `sdt_v2_*` with the official attention
(`"ssa"`, see `MSBlock`) and `st_v2_*` with A2OS2A in its place (same
parameters). `params` are the official factories' trainable-parameter
counts, with the KD head and without it (`params_without_kd`). None has
published Keras weights (the official 8-512 checkpoint converts, issue 22
item 4). The data set (image size, normalisation) is the registry's
`imagenet` entry, shared with the first family (`presets/presets.json`).
Their shipped preset directories (configs and model card, no weights) are
written by `tools/write_presets.py`.

Example:

```python
PRESETS["sdt_v2_8_512_imagenet"]["params"]   # 55991248
```
"""

from keras_spiking_tf.models.model_family import dataset_of

_SIZES = {
    "8_384": ((96, 192, 384, 480), 31_814_864, 31_333_864, None),
    # The released 55M checkpoint `55M_kd.pth`: 80.0 % top-1 at T = 4.
    "8_512": ((128, 256, 512, 640), 55_991_248, 55_350_248, 80.0),
    "8_768": ((192, 384, 768, 960), 124_702_160, 123_741_160, None),
}
_ATTENTIONS = {
    "sdt_v2": ("ssa", "Meta-SpikeFormer (Spike-Driven Transformer V2, Yao et al., ICLR 2024)"),
    "st_v2": ("a2os2a", "Meta-SpikeFormer with A2OS2A attention (Guo et al., 2025)"),
}

PRESETS = {
    f"{prefix}_{size}_imagenet": {
        "description": f"{about}, 8 blocks, widths {list(dims)}, T=4, KD head, for imagenet.",
        "attention": attention,
        "embed_dims": dims,
        "num_blocks": (1, 1, 2, 6, 2),
        "num_heads": 8,
        "mlp_ratio": 4,
        "time_steps": 4,
        "kd": True,
        "dataset": "imagenet",
        "params": params,
        "params_without_kd": params_without_kd,
        "paper_accuracy": accuracy if prefix == "sdt_v2" else None,
        "weights": False,
    }
    for prefix, (attention, about) in _ATTENTIONS.items()
    for size, (dims, params, params_without_kd, accuracy) in _SIZES.items()
}

BACKBONE_PRESET_KEYS = (
    "embed_dims", "num_blocks", "num_heads", "mlp_ratio", "time_steps", "attention",
)
# What `list_presets()` shows of the architecture (`embed_dims` and
# `num_blocks` where the first family has `num_layers` and `hidden_dim`).
LISTED_KEYS = ("embed_dims", "num_blocks", "num_heads", "kd", "params_without_kd")


def backbone_config(name):
    """`MetaSpikeFormerBackbone` arguments of built-in preset `name`."""
    entry = PRESETS[name]
    config = {key: entry[key] for key in BACKBONE_PRESET_KEYS}
    config["image_shape"] = tuple(dataset_of(name)["image_shape"])
    return config
