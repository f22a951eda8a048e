"""The built-in Spiking Transformer presets, in KerasHub's registry.

`keras_spiking_tf/presets/presets.json` is the registry: every preset's
architecture, data set (image size, normalisation, class names),
trainable-parameter count and published accuracy. Beside it lies one
KerasHub preset directory per preset (`<name>/`: `config.json`,
`task.json`, `preprocessor.json`, `metadata.json`, a `README.md` model card,
and, for presets with published weights, `model.weights.h5` and
`task.weights.h5`), written from the registry by `tools/write_presets.py`.

`backbone_presets` lists them in KerasHub's format; `__init__.py` registers
them with `keras_hub`, so KerasHub's own loading finds them by name:
`keras_hub.models.ImageClassifier.from_preset("st_2_64_digits")`,
`keras_hub.models.Backbone.from_preset(...)`, and
`SpikingTransformerImageClassifier.presets` lists them.

Example:

```python
list_presets()["st_8_512_imagenet"]["params"]   # 29689384
```
"""

import difflib
import functools
import json
import os
from importlib import resources

from keras_spiking_tf import validation
from keras_spiking_tf.models.spiking_transformer import spiking_transformer_preset_files as files


def preset_root():
    """The directory holding `presets.json` and the preset directories."""
    return resources.files("keras_spiking_tf") / "presets"


def preset_directory(name):
    """The shipped preset directory of built-in preset `name`."""
    return str(preset_root() / name)


@functools.lru_cache(maxsize=None)
def load_registry():
    """`{"datasets": {...}, "presets": {...}}` from `presets.json`."""
    with (preset_root() / "presets.json").open(encoding="utf-8") as file:
        return json.load(file)


def dataset_of(name):
    """The registry's data set entry of built-in preset `name`."""
    registry = load_registry()
    return registry["datasets"][registry["presets"][name]["dataset"]]


def backbone_config(name):
    """`SpikingTransformerBackbone` arguments of built-in preset `name`."""
    entry = load_registry()["presets"][name]
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


def resolve_preset(preset, load_weights=False):
    """The preset directory or hub handle that `preset` names, after
    checking that it can be loaded (nothing is built or fetched in vain).

    Raises:
        ValueError: a built-in preset without published weights (with
            `load_weights`), an unknown name (close names suggested), a
            damaged preset file.
        FileNotFoundError, NotADirectoryError: a path that is no preset
            directory.
        OSError: a hub handle that cannot be fetched (says why).
    """
    registry = load_registry()["presets"]
    if preset in registry:
        if load_weights and not registry[preset]["weights"]:
            raise ValueError(
                f"Preset '{preset}' has no published weights. Build it with random "
                "weights using `load_weights=False`; get weights by training it "
                f"(`kst-train --preset {preset}`) or, for the sdt_*/st_* ImageNet sizes, "
                "by converting an SDT checkpoint (`kst-convert-sdt`)."
            )
        return preset_directory(preset)
    if preset.startswith(files.HUB_SCHEMES):
        files.check_preset_files(preset)
        return preset
    directory = os.path.expanduser(preset)
    if os.path.isdir(directory) or files.looks_like_path(preset):
        files.check_preset_directory(directory)
        files.check_preset_files(directory)
        return directory
    close = difflib.get_close_matches(preset, list(registry), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown preset '{preset}': it is no built-in name and no directory of that "
        f"name exists.{hint} Use a built-in name (keras_spiking_tf.list_presets()), "
        "the path of a preset directory, or a hf://, kaggle:// or gs:// handle."
    )


PRESET_ALLOWED = (
    "a built-in preset name (keras_spiking_tf.list_presets()), a preset directory or a "
    "hf://, kaggle:// or gs:// handle"
)


def check_preset(name, preset, allow_none=False):
    """`preset` (argument or flag `name`), which must be a built-in preset
    name, an existing directory or a hub handle; checked without reading
    a file or the network.

    Example:

    ```python
    check_preset("--preset", "st_2_64_digits")
    ```
    """
    if preset is None and allow_none:
        return None
    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    preset = validation.check_string(name, preset, allow_none=allow_none)
    if preset in load_registry()["presets"] or preset.startswith(files.HUB_SCHEMES):
        return preset
    directory = os.path.expanduser(preset)
    if os.path.isdir(directory):
        return preset
    if files.looks_like_path(preset):
        if os.path.exists(directory):
            raise validation.invalid(name, preset, PRESET_ALLOWED,
                                     hint="(it is a file, not a preset directory)")
        raise validation.NoSuchPathError(
            f"Preset directory '{directory}' does not exist: `{name}` must be "
            f"{PRESET_ALLOWED}."
        )
    raise ValueError(
        f"Unknown preset {validation.describe(preset)}: `{name}` must be {PRESET_ALLOWED}."
        + validation.suggestion(preset, load_registry()["presets"])
    )


def preset_architecture(preset):
    """The backbone arguments of any preset: a built-in name (from the
    registry), a directory or a hub handle (its `config.json`)."""
    if preset in load_registry()["presets"]:
        return backbone_config(preset)
    return files.read_preset_json(resolve_preset(preset), "config.json")["config"]


def list_presets():
    """Built-in presets: name -> metadata dict.

    Each value has `description`, `attention`, `num_layers`, `hidden_dim`,
    `num_heads`, `dataset`, `num_classes`, `class_names`, `image_size`,
    `time_steps`, `params` (trainable parameters), `paper_accuracy` (top-1
    %, or `None`), `weights_available` and `path` (the preset directory).

    Example:

    ```python
    keras_spiking_tf.list_presets()["st_8_512_imagenet"]["params"]  # 29689384
    ```
    """
    presets = {}
    for name, entry in load_registry()["presets"].items():
        dataset = dataset_of(name)
        presets[name] = {
            "description": entry["description"],
            "attention": entry["attention"],
            "num_layers": entry["num_layers"],
            "hidden_dim": entry["hidden_dim"],
            "num_heads": entry["num_heads"],
            "dataset": entry["dataset"],
            "num_classes": dataset["num_classes"],
            "class_names": dataset["class_names"],
            "image_size": tuple(dataset["image_shape"][:2]),
            "time_steps": entry["time_steps"],
            "params": entry["params"],
            "paper_accuracy": entry["paper_accuracy"],
            "weights_available": entry["weights"],
            "path": preset_directory(name),
        }
    return presets


def weights_available(preset):
    """Whether `from_preset(preset)` can load weights: `False` only for a
    built-in preset without published weights (directories and hub handles
    carry their own)."""
    entry = load_registry()["presets"].get(preset)
    return entry is None or entry["weights"]


def keras_hub_presets():
    """The built-in presets in KerasHub's registry format."""
    return {
        name: {
            "metadata": {
                "description": meta["description"],
                "params": meta["params"],
                "path": "spiking_transformer",
                "official_name": "SpikingTransformer",
                "model_card": "https://arxiv.org/abs/2503.00226",
            },
            # KerasHub resolves a built-in name to this handle; a local
            # directory is a handle like any other.
            "kaggle_handle": meta["path"],
        }
        for name, meta in list_presets().items()
    }


backbone_presets = keras_hub_presets()
