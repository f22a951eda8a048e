"""Loading and saving presets: built-in names, local directories, hub handles.

`from_preset` accepts a built-in name (see `list_presets()`), a local
KerasHub preset directory, or a KerasHub handle (`hf://org/name`,
`kaggle://org/model/keras/variant`, `gs://bucket/dir`). Weight files are
verified before loading: against the SHA-256 the registry (or the preset's
`metadata.json`, as written by `save_to_preset`) records, and for being a
readable HDF5 file. A broken file is an error naming it, never a silently
random model.
"""

import difflib
import hashlib
import json
import os
import shutil
import tempfile

import h5py
import keras
from keras_hub.src.utils.preset_utils import get_file

from keras_spiking_tf.atomic_directory import replace_directory
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
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import (
    backbone_config,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import (
    load_registry,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import (
    preset_root,
)

WEIGHT_FILES = ("model.weights.h5", "task.weights.h5")
HUB_SCHEMES = ("hf://", "kaggle://", "gs://")
BACKBONE_ARGUMENTS = (
    "num_layers",
    "hidden_dim",
    "num_heads",
    "mlp_ratio",
    "time_steps",
    "attention",
    "attn_v_threshold",
    "neuron_config",
    "association",
    "dtype",
)


def list_presets():
    """Built-in presets: name -> metadata dict.

    Each value has `description`, `attention`, `num_layers`, `hidden_dim`,
    `num_heads`, `dataset`, `num_classes`, `image_size`, `time_steps`,
    `params` (trainable parameters), `paper_accuracy` (top-1 %, or `None`)
    and `weights_available`.

    Example:

    ```python
    keras_spiking_tf.list_presets()["st_8_512_imagenet"]["params"]  # 29689384
    ```
    """
    registry = load_registry()
    presets = {}
    for name, entry in registry["presets"].items():
        dataset = registry["datasets"][entry["dataset"]]
        presets[name] = {
            "description": entry["description"],
            "attention": entry["attention"],
            "num_layers": entry["num_layers"],
            "hidden_dim": entry["hidden_dim"],
            "num_heads": entry["num_heads"],
            "dataset": entry["dataset"],
            "num_classes": dataset["num_classes"],
            "image_size": tuple(dataset["image_shape"][:2]),
            "time_steps": entry["time_steps"],
            "params": entry["params"],
            "paper_accuracy": entry["paper_accuracy"],
            "weights_available": entry["weights"] is not None,
        }
    return presets


def weights_available(preset):
    """Whether `from_preset(preset)` can load weights: `False` only for a
    built-in preset without published weights (directories and hub handles
    carry their own)."""
    entry = load_registry()["presets"].get(preset)
    return entry is None or entry["weights"] is not None


def make_preprocessor(dataset_name):
    """The preprocessor (resize + normalisation) of a registry dataset."""
    dataset = load_registry()["datasets"][dataset_name]
    converter = SpikingTransformerImageConverter.from_dataset_stats(
        image_size=dataset["image_shape"][:2],
        mean=dataset["mean"],
        std=dataset["std"],
    )
    return SpikingTransformerImageClassifierPreprocessor(converter)


def from_preset(preset, num_classes=None, load_weights=True, **kwargs):
    """Builds a `SpikingTransformerImageClassifier` from a preset.

    Args:
        preset: a built-in name (`list_presets()`), a local preset directory,
            or a `hf://`, `kaggle://` or `gs://` handle.
        num_classes: `None` keeps the preset's head (and its weights); a
            number gives a fresh head for fine-tuning, backbone weights
            still loaded.
        load_weights: load the preset's weights. Built-in presets without
            published weights need `load_weights=False` (random init).
        **kwargs: `dtype` (e.g. `"mixed_bfloat16"`); for built-in presets
            also backbone arguments to override (`time_steps`, `attention`,
            `neuron_config`, ...); other task arguments (`activation`).

    Example:

    ```python
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    model = keras_spiking_tf.from_preset("st_8_512_imagenet", load_weights=False)
    ```
    """
    registry = load_registry()["presets"]
    if preset in registry:
        entry = registry[preset]
        if entry["weights"] is not None:
            directory = str(preset_root() / entry["weights"]["directory"])
            verify_weights(directory, entry["weights"]["sha256"], load_weights)
            return _load_directory(directory, num_classes, load_weights, kwargs)
        if load_weights:
            raise ValueError(
                f"Preset '{preset}' has no published weights. Build it with "
                "random weights using `load_weights=False`; get weights by "
                f"training it (`python tools/train.py --preset {preset}`) or, "
                "for the sdt_*/st_* ImageNet sizes, by converting an SDT "
                "checkpoint (`python tools/convert_sdt_checkpoint.py`)."
            )
        return _build_from_registry(entry, num_classes, kwargs)
    if preset.startswith(HUB_SCHEMES) or os.path.isdir(preset):
        if preset.startswith(HUB_SCHEMES):
            _fetch_hub_config(preset)
        else:
            _check_preset_directory(preset)
        metadata = _read_metadata(preset)
        verify_weights(preset, metadata.get("weights_sha256", {}), load_weights)
        return _load_directory(preset, num_classes, load_weights, kwargs)
    close = difflib.get_close_matches(preset, list(registry), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown preset '{preset}'.{hint} Use a built-in name "
        "(keras_spiking_tf.list_presets()), a local preset directory, or a "
        "hf://, kaggle:// or gs:// handle."
    )


def _build_from_registry(entry, num_classes, kwargs):
    config = backbone_config(entry)
    overrides = {k: kwargs.pop(k) for k in BACKBONE_ARGUMENTS if k in kwargs}
    backbone = SpikingTransformerBackbone(**{**config, **overrides})
    dataset = load_registry()["datasets"][entry["dataset"]]
    return SpikingTransformerImageClassifier(
        backbone=backbone,
        num_classes=num_classes or dataset["num_classes"],
        preprocessor=make_preprocessor(entry["dataset"]),
        **kwargs,
    )


def _saved_dtype_policy(preset):
    """The mixed dtype policy name a preset (directory or hub handle) was
    saved with, else None."""
    with open(get_file(preset, "config.json"), encoding="utf-8") as file:
        dtype = json.load(file).get("config", {}).get("dtype")
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    return name if isinstance(name, str) and name.startswith("mixed_") else None


def _load_directory(preset, num_classes, load_weights, kwargs):
    overrides = {k: kwargs.pop(k) for k in BACKBONE_ARGUMENTS if k in kwargs and k != "dtype"}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if kwargs.get("dtype") is None:
        # KerasHub cannot resolve a saved mixed policy by itself (its float
        # check rejects "mixed_bfloat16"); pass the saved one explicitly.
        kwargs["dtype"] = _saved_dtype_policy(preset)
    try:
        model = SpikingTransformerImageClassifier.from_preset(
            preset, load_weights=load_weights and not overrides, **kwargs
        )
        if overrides:
            model = _rebuild_with_backbone_overrides(preset, model, overrides, load_weights)
    except (OSError, ConnectionError) as error:
        raise _hub_error(preset, error) from error
    return model


def _rebuild_with_backbone_overrides(preset, model, overrides, load_weights):
    """`model` rebuilt with backbone arguments changed (e.g. `time_steps`,
    `attention`: neither changes a weight's shape), then the preset's weights
    loaded into it."""
    config = {**model.backbone.get_config(), **overrides}
    rebuilt = SpikingTransformerImageClassifier(
        backbone=SpikingTransformerBackbone.from_config(config),
        num_classes=model.num_classes,
        preprocessor=model.preprocessor,
        activation=model.activation,
        head_dtype=model.head_dtype,
    )
    if load_weights:
        rebuilt.backbone.load_weights(get_file(preset, "model.weights.h5"))
        fresh_head = model.num_classes != _preset_num_classes(preset)
        if not fresh_head:
            rebuilt.load_task_weights(get_file(preset, "task.weights.h5"))
    return rebuilt


def _preset_num_classes(preset):
    with open(get_file(preset, "task.json"), encoding="utf-8") as file:
        return json.load(file)["config"]["num_classes"]


def _check_preset_directory(directory):
    if not os.path.exists(os.path.join(directory, "config.json")):
        raise FileNotFoundError(
            f"'{directory}' is not a preset directory: it has no config.json. "
            "Save one with keras_spiking_tf.save_to_preset(model, directory)."
        )


def _fetch_hub_config(handle):
    # KerasHub reports a handle it cannot fetch (absent from an offline
    # cache, unknown repository) as a ValueError "has no config.json";
    # fetch config.json here so that it is an OSError naming the handle.
    try:
        get_file(handle, "config.json")
    except (OSError, ConnectionError) as error:
        raise _hub_error(handle, error) from error


def _read_metadata(preset):
    try:
        path = get_file(preset, "metadata.json")
    except FileNotFoundError:
        return {}
    except (OSError, ConnectionError) as error:
        raise _hub_error(preset, error) from error
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _hub_error(preset, error):
    if not preset.startswith(HUB_SCHEMES):
        return error
    return OSError(
        f"Could not fetch preset '{preset}': {error}. Check the handle and "
        "your network; offline, download the preset directory beforehand and "
        "pass its local path (for hf://, a populated Hugging Face cache with "
        "HF_HUB_OFFLINE=1 also works)."
    )


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(preset, checksums, load_weights):
    """Checks a preset's weight files before they are loaded.

    Each file with a recorded checksum must match it; each weight file
    present must be a readable HDF5 file.

    Raises:
        ValueError: a checksum mismatch or an unreadable (e.g. truncated)
            weights file, naming the file.
    """
    if not load_weights:
        return
    for filename in WEIGHT_FILES:
        try:
            path = get_file(preset, filename)
        except FileNotFoundError:
            if filename in checksums:
                raise
            continue
        except (OSError, ConnectionError) as error:
            raise _hub_error(preset, error) from error
        expected = checksums.get(filename)
        if expected is not None and sha256_of(path) != expected:
            raise ValueError(
                f"Weights file '{path}' does not match its recorded SHA-256 "
                f"({expected}): it is corrupt or was modified. Reinstall the "
                "package or download the preset again."
            )
        try:
            with h5py.File(path, "r"):
                pass
        except OSError as error:
            raise ValueError(
                f"Weights file '{path}' is not a readable HDF5 file ({error}); "
                "it is probably truncated or corrupt. Save or download the "
                "preset again."
            ) from error


def save_to_preset(model, preset_dir):
    """Saves a classifier as a KerasHub preset directory, atomically.

    Writes `config.json`, `metadata.json` (with the SHA-256 of each weights
    file), `model.weights.h5`, `task.json`, `task.weights.h5` and
    `preprocessor.json` into a temporary directory beside `preset_dir`, then
    renames it into place, so an interrupted save never leaves a half-written
    preset. An existing `preset_dir` is replaced.

    Example:

    ```python
    keras_spiking_tf.save_to_preset(model, "my_preset")
    model = keras_spiking_tf.from_preset("my_preset")
    ```
    """
    preset_dir = os.path.abspath(preset_dir)
    parent = os.path.dirname(preset_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".preset-", dir=parent)
    try:
        model.save_to_preset(staging)
        if getattr(model, "optimizer", None) is not None:
            # KerasHub's task weights include a compiled model's optimizer
            # state; a preset ships the model only (training checkpoints
            # keep the optimizer).
            keras.saving.save_weights(
                model,
                os.path.join(staging, "task.weights.h5"),
                objects_to_skip=list(model.backbone._flatten_layers()) + [model.optimizer],
            )
        metadata_path = os.path.join(staging, "metadata.json")
        with open(metadata_path, encoding="utf-8") as file:
            metadata = json.load(file)
        metadata["weights_sha256"] = {
            name: sha256_of(os.path.join(staging, name))
            for name in WEIGHT_FILES
            if os.path.exists(os.path.join(staging, name))
        }
        with open(metadata_path, "w", encoding="utf-8") as file:
            json.dump(metadata, file, indent=4)
        replace_directory(staging, preset_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return preset_dir
