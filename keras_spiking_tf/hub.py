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

import h5py
from keras_hub.src.utils.preset_utils import get_file

from keras_spiking_tf.atomic_directory import make_staging_directory
from keras_spiking_tf.atomic_directory import replace_directory
from keras_spiking_tf.atomic_directory import sweep_stale_staging
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
    if not isinstance(preset, (str, os.PathLike)):
        raise TypeError(
            f"preset must be a preset name, a directory or a hub handle (a string); got "
            f"{type(preset).__name__}."
        )
    preset = os.fspath(preset)
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
                f"training it (`kst-train --preset {preset}`) or, "
                "for the sdt_*/st_* ImageNet sizes, by converting an SDT "
                "checkpoint (`kst-convert-sdt`)."
            )
        return _build_from_registry(entry, num_classes, kwargs)
    if preset.startswith(HUB_SCHEMES):
        _check_preset_files(preset)
    elif os.path.isdir(os.path.expanduser(preset)) or _looks_like_path(preset):
        preset = os.path.expanduser(preset)
        _check_preset_directory(preset)
        _check_preset_files(preset)
    else:
        close = difflib.get_close_matches(preset, list(registry), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown preset '{preset}': it is no built-in name and no directory of that "
            f"name exists.{hint} Use a built-in name (keras_spiking_tf.list_presets()), "
            "the path of a preset directory, or a hf://, kaggle:// or gs:// handle."
        )
    metadata = read_preset_metadata(preset)
    verify_weights(preset, metadata.get("weights_sha256", {}), load_weights)
    return _load_directory(preset, num_classes, load_weights, kwargs)


def _looks_like_path(preset):
    """Whether `preset` is written as a path (a built-in name never is)."""
    return (
        os.sep in preset or "/" in preset or preset.startswith((".", "~"))
        or (os.altsep is not None and os.altsep in preset)
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
    dtype = read_preset_json(preset, "config.json").get("config", {}).get("dtype")
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
    except (TypeError, ValueError) as error:
        # Keras deserialises in safe mode: a config naming anything but a
        # registered Keras object (or a Python lambda) is refused here.
        raise type(error)(
            f"Could not build preset '{preset}' from its config files: {error}"
        ) from error
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
    return read_preset_json(preset, "task.json")["config"]["num_classes"]


def _check_preset_directory(directory):
    if not os.path.exists(directory):
        raise FileNotFoundError(
            f"Preset directory '{directory}' does not exist. Check the path, or save a "
            "preset there with keras_spiking_tf.save_to_preset(model, directory)."
        )
    if not os.path.isdir(directory):
        raise NotADirectoryError(
            f"'{directory}' is a file, not a preset directory (a directory holding "
            "config.json, model.weights.h5, ...)."
        )
    if not os.path.exists(os.path.join(directory, "config.json")):
        raise FileNotFoundError(
            f"'{directory}' is not a preset directory: it has no config.json. "
            "Save one with keras_spiking_tf.save_to_preset(model, directory)."
        )


PRESET_JSON_FILES = ("config.json", "task.json", "preprocessor.json", "metadata.json")


def _check_preset_files(preset):
    """Fetches (for hub handles) and parses every JSON file of a preset, so
    that a network failure or a malformed file is reported as such before
    KerasHub reads them."""
    read_preset_json(preset, "config.json")
    for filename in PRESET_JSON_FILES[1:]:
        read_preset_json(preset, filename, missing_ok=True)


def read_preset_json(preset, filename, missing_ok=False):
    """The parsed JSON file `filename` of a preset directory or hub handle.

    Raises:
        ValueError: the file is not valid JSON (the message names the file,
            line and column).
        FileNotFoundError: the file is absent (`{}` with `missing_ok`).
        OSError: a hub handle could not be fetched (the message says why:
            offline, a network error, no such repository).
    """
    try:
        path = get_file(preset, filename)
    except FileNotFoundError as error:
        unreachable = preset.startswith(HUB_SCHEMES) and _network_cause(error) is not None
        if missing_ok and not (unreachable and not _hf_offline()):
            return {}  # offline, an optional file absent from the cache is absent
        if unreachable:
            raise _hub_error(preset, error) from error
        raise
    except (OSError, ConnectionError) as error:
        raise _hub_error(preset, error) from error
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"'{path}' is not valid JSON: {error.msg} at line {error.lineno}, column "
            f"{error.colno}. The preset file is damaged; save or download the preset again."
        ) from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"'{path}' is not a text (UTF-8 JSON) file ({error.reason}). The preset file "
            "is damaged; save or download the preset again."
        ) from None


def read_preset_metadata(preset):
    """A preset's `metadata.json` (`{}` if it has none)."""
    return read_preset_json(preset, "metadata.json", missing_ok=True)


# Exception class names (anywhere in an error's cause chain) that mean the
# hub could not be reached, as opposed to "no such file".
_NETWORK_ERRORS = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError",
                   "ConnectionError", "ConnectTimeout", "ReadTimeout", "TimeoutException",
                   "gaierror", "TimeoutError")


def _causes(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _network_cause(error):
    """The first error in `error`'s chain that means "hub unreachable"."""
    for cause in _causes(error):
        if any(cls.__name__ in _NETWORK_ERRORS for cls in type(cause).__mro__):
            return cause
    return None


def _hf_offline():
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_error(preset, error):
    if not preset.startswith(HUB_SCHEMES):
        return error
    network = _network_cause(error)
    if preset.startswith("hf://") and _hf_offline():
        return OSError(
            f"Could not fetch preset '{preset}': the Hugging Face Hub is in offline mode "
            "(HF_HUB_OFFLINE=1) and the preset is not in the local cache. Go online once "
            "(unset HF_HUB_OFFLINE) to download it, or pass a local preset directory."
        )
    if network is not None:
        root = _causes(error)[-1]
        return OSError(
            f"Could not fetch preset '{preset}': the hub could not be reached (network "
            f"error: {type(root).__name__}: {root}). Check your connection and proxy "
            "settings, or pass a local preset directory."
        )
    return OSError(
        f"Could not fetch preset '{preset}': {error}. Check the handle; offline, "
        "download the preset directory beforehand and pass its local path."
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
        except FileNotFoundError as error:
            if preset.startswith(HUB_SCHEMES) and _network_cause(error) is not None:
                raise _hub_error(preset, error) from error
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


def save_to_preset(model, preset_dir, metadata=None):
    """Saves a classifier as a KerasHub preset directory, atomically.

    Writes `config.json`, `metadata.json` (with the SHA-256 of each weights
    file), `model.weights.h5`, `task.json`, `task.weights.h5` and
    `preprocessor.json` into a hidden staging directory beside `preset_dir`,
    then renames it into place, so an interrupted save never leaves a
    half-written preset (the next save sweeps its staging directory). An
    existing `preset_dir` is replaced. The directory gets the permissions
    the user's umask gives.

    Args:
        model: a `SpikingTransformerImageClassifier`.
        preset_dir: the directory to write.
        metadata: extra entries for `metadata.json` (e.g. how the model was
            trained).

    Example:

    ```python
    keras_spiking_tf.save_to_preset(model, "my_preset")
    model = keras_spiking_tf.from_preset("my_preset")
    ```
    """
    preset_dir = os.path.abspath(os.fspath(preset_dir))
    parent = os.path.dirname(preset_dir)
    sweep_stale_staging(parent, [".preset", ".retired"])
    staging = make_staging_directory(parent, ".preset")
    try:
        model.save_to_preset(staging)
        metadata_path = os.path.join(staging, "metadata.json")
        with open(metadata_path, encoding="utf-8") as file:
            saved = json.load(file)
        saved.update(metadata or {})
        saved["weights_sha256"] = {
            name: sha256_of(os.path.join(staging, name))
            for name in WEIGHT_FILES
            if os.path.exists(os.path.join(staging, name))
        }
        with open(metadata_path, "w", encoding="utf-8") as file:
            json.dump(saved, file, indent=4)
        replace_directory(staging, preset_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return preset_dir
