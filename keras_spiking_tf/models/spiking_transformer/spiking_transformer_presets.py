"""The built-in preset registry, read from `presets/presets.json`.

`presets/presets.json` (installed with the package as
`keras_spiking_tf/presets/`) holds every preset's architecture, dataset,
parameter count and paper accuracy, and, for presets that ship weights, the
preset directory beside it with SHA-256 checksums of its weight files.
"""

import functools
import json
from importlib import resources


def preset_root():
    """The directory holding `presets.json` and shipped preset directories."""
    return resources.files("keras_spiking_tf") / "presets"


@functools.lru_cache(maxsize=None)
def load_registry():
    """`{"datasets": {...}, "presets": {...}}` from `presets.json`."""
    with (preset_root() / "presets.json").open(encoding="utf-8") as file:
        return json.load(file)


def backbone_config(entry):
    """`SpikingTransformerBackbone` arguments of a registry entry."""
    dataset = load_registry()["datasets"][entry["dataset"]]
    return {
        "num_layers": entry["num_layers"],
        "hidden_dim": entry["hidden_dim"],
        "num_heads": entry["num_heads"],
        "mlp_ratio": entry["mlp_ratio"],
        "time_steps": entry["time_steps"],
        "pooling": dataset["pooling"],
        "image_shape": tuple(dataset["image_shape"]),
        "attention": entry["attention"],
    }
