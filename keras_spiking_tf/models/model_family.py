"""Model families: what one provides, the registry of them, and the preset
functions over every registered family.

A model family is a backbone, its image classifier (a
`SpikingImageClassifier` subclass naming `backbone_cls` and
`preprocessor_cls`, as KerasHub's tasks do) and its built-in presets. Its
package's `__init__.py` makes one `register_family(ModelFamily(...))` call;
from then on the generic paths know it without a special case:
`keras_spiking_tf.from_preset` and `list_presets`, KerasHub's own
`from_preset` by name (shipped preset directories), `save_to_preset` with
its model card, and `family_of_preset` / `family_of_model` for the tools
that need to know which family they hold (design.md, "How a model family
plugs in").

The data sets (image size, normalisation, class names) are shared by every
family: `keras_spiking_tf/presets/presets.json`'s `datasets`. Shipped
preset directories lie beside it, one per built-in preset name, written by
`tools/write_presets.py`.

Example:

```python
from keras_spiking_tf.models.model_family import family_of_preset

family_of_preset("sdt_v2_8_512_imagenet").name   # "meta_spikeformer"
list_presets(family="spiking_transformer")["st_8_512_imagenet"]["params"]   # 29689384
```
"""

import dataclasses
import difflib
import functools
import json
import os
from importlib import resources
from typing import Callable
from typing import Mapping

from keras_spiking_tf import validation
from keras_spiking_tf.models import preset_files as files
from keras_spiking_tf.models.checkpoint_format import CheckpointFormat

# What every built-in preset entry holds, whatever its family.
PRESET_KEYS = ("description", "attention", "dataset", "time_steps", "params",
               "paper_accuracy", "weights")
# What every data set entry holds.
DATASET_KEYS = ("num_classes", "image_shape", "class_names")


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """What a model family provides to the generic paths.

    Args:
        name: the family's name (`"spiking_transformer"`); also KerasHub's
            `path` metadata of its presets.
        classifier_cls: its `SpikingImageClassifier` subclass, whose
            `backbone_cls` and `preprocessor_cls` (KerasHub attributes) are
            the family's backbone and preprocessor.
        presets: built-in preset name -> entry dict; every entry has at
            least `PRESET_KEYS` and the `listed_keys`, and its `dataset`
            names a data set of `presets/presets.json`.
        backbone_config: built-in preset name -> the backbone's constructor
            arguments.
        architecture_keys: the backbone arguments `from_preset` may override
            (`time_steps`, `attention`, ...).
        check_backbone_arguments: checks backbone arguments (keywords, any
            of `architecture_keys`) before anything is built; raises
            `TypeError`/`ValueError` naming the argument.
        listed_keys: the entry keys `list_presets()` shows as the
            architecture (`num_layers`, `hidden_dim`, ... or `embed_dims`,
            `num_blocks`, ...).
        official_name: KerasHub's `official_name` metadata
            (`"SpikingTransformer"`).
        paper: the link KerasHub shows as the presets' model card.
        model_card_rows: backbone -> the model card's rows that describe
            the architecture: a list of `(key, value)` pairs (at least
            `"architecture"` and `"attention"`).
        model_card_notes: built-in preset name -> Markdown appended to its
            shipped model card (what the registry knows beyond the config:
            how to get weights, conversion, ...); `None` for none.
        checkpoint: the PyTorch checkpoints `kst-convert-sdt` converts into
            its presets (a `CheckpointFormat`: key map, target building);
            `None`: none, and converting into its presets is refused.

    Example:

    ```python
    register_family(ModelFamily(
        name="tiny", classifier_cls=TinyImageClassifier, presets=PRESETS,
        backbone_config=backbone_config, architecture_keys=ARCHITECTURE_KEYS,
        check_backbone_arguments=check_backbone_arguments,
        listed_keys=("width",), official_name="Tiny", paper="https://...",
        model_card_rows=lambda backbone: [("architecture", "tiny"), ("attention", "none")]))
    ```
    """

    name: str
    classifier_cls: type
    presets: Mapping
    backbone_config: Callable
    architecture_keys: tuple
    check_backbone_arguments: Callable
    listed_keys: tuple
    official_name: str
    paper: str
    model_card_rows: Callable
    model_card_notes: Callable = None
    checkpoint: CheckpointFormat | None = None

    @property
    def backbone_cls(self):
        return self.classifier_cls.backbone_cls

    @property
    def preprocessor_cls(self):
        return self.classifier_cls.preprocessor_cls


_FAMILIES = {}


# --- the shared registry file ----------------------------------------------------


def preset_root():
    """The directory holding `presets.json` and the shipped preset directories."""
    return resources.files("keras_spiking_tf") / "presets"


def preset_directory(name):
    """The shipped preset directory of built-in preset `name`."""
    return str(preset_root() / name)


def is_shipped(name):
    """Whether built-in preset `name` has its preset directory in the package."""
    return os.path.isfile(os.path.join(preset_directory(name), "config.json"))


@functools.lru_cache(maxsize=None)
def load_registry():
    """`{"datasets": {...}, "presets": {...}}` from `presets.json` (the
    data sets of every family; the first family's presets)."""
    with (preset_root() / "presets.json").open(encoding="utf-8") as file:
        return json.load(file)


def builtin_entry(name):
    """`(family, entry)` of built-in preset `name`, or `None`."""
    for family in _FAMILIES.values():
        if name in family.presets:
            return family, family.presets[name]
    return None


def builtin_presets():
    """Every registered family's built-in preset names -> entries."""
    return {name: entry for family in _FAMILIES.values() for name, entry in family.presets.items()}


def dataset_of(name):
    """The registry's data set entry of built-in preset `name`."""
    _, entry = _builtin(name)
    return load_registry()["datasets"][entry["dataset"]]


def _builtin(name):
    found = builtin_entry(name)
    if found is None:
        raise ValueError(f"'{name}' is no built-in preset." + validation.suggestion(
            name, builtin_presets()))
    return found


# --- registering -----------------------------------------------------------------


def register_family(family):
    """Registers a model family, and its shipped presets with KerasHub.

    Args:
        family: a `ModelFamily`.

    Returns:
        `family`.

    Raises:
        TypeError: `family` is no `ModelFamily`, or its classifier is no
            `SpikingImageClassifier` subclass.
        ValueError: a family of that name is registered already, a preset
            name another family claims, a preset entry without the keys
            every entry has, or naming an unknown data set.

    Example:

    ```python
    register_family(ModelFamily(name="tiny", ...))
    ```
    """
    from keras_hub.src.utils.preset_utils import register_presets

    from keras_spiking_tf.models.spiking_image_classifier import SpikingImageClassifier

    if not isinstance(family, ModelFamily):
        raise validation.invalid("family", family, "a ModelFamily", error=TypeError)
    if not (isinstance(family.classifier_cls, type)
            and issubclass(family.classifier_cls, SpikingImageClassifier)):
        raise validation.invalid("classifier_cls", family.classifier_cls,
                                 "a SpikingImageClassifier subclass", error=TypeError)
    if family.name in _FAMILIES:
        raise ValueError(
            f"A model family named '{family.name}' is registered already "
            f"({_FAMILIES[family.name].classifier_cls.__name__}); give the new family "
            "another name."
        )
    datasets = load_registry()["datasets"]
    for name, entry in family.presets.items():
        claimed = builtin_entry(name)
        if claimed is not None:
            raise ValueError(
                f"Preset '{name}' of family '{family.name}' is a preset of family "
                f"'{claimed[0].name}' already; a preset name belongs to one family."
            )
        missing = [key for key in (*PRESET_KEYS, *family.listed_keys) if key not in entry]
        if missing:
            raise ValueError(f"Preset '{name}' of family '{family.name}' lacks {missing}; "
                             f"every entry has {list(PRESET_KEYS)} and the family's listed_keys.")
        if entry["weights"] and not is_shipped(name):
            raise ValueError(
                f"Preset '{name}' of family '{family.name}' says it has published weights, "
                f"but has no preset directory in {preset_root()}; write it "
                "(tools/write_presets.py) or set its `weights` to False."
            )
        if entry["dataset"] not in datasets:
            raise ValueError(
                f"Preset '{name}' of family '{family.name}' names data set "
                f"'{entry['dataset']}', which presets/presets.json does not define; add it "
                f"there (with {list(DATASET_KEYS)}) or use one of {sorted(datasets)}."
                + validation.suggestion(entry["dataset"], datasets)
            )
    _FAMILIES[family.name] = family
    register_presets(keras_hub_presets(family), family.backbone_cls)
    return family


def unregister_family(name):
    """Removes family `name` and its KerasHub presets (for tests and
    interactive sessions; the library's own families stay registered).

    Example:

    ```python
    unregister_family("tiny")
    ```
    """
    from keras_hub.src.utils import preset_utils

    family = _FAMILIES.pop(name)
    for preset in family.presets:
        preset_utils.BUILTIN_PRESETS.pop(preset, None)
    preset_utils.BUILTIN_PRESETS_FOR_BACKBONE.pop(family.backbone_cls, None)


def families():
    """The registered model families, in registration order."""
    return tuple(_FAMILIES.values())


def family_of_preset(preset):
    """The family of a preset: a built-in name, or a preset directory or hub
    handle (by the backbone class its `config.json` names).

    Raises:
        ValueError: an unknown name (close names suggested), or a preset
            whose backbone no registered family provides; and
            `resolve_preset`'s errors for a path or handle that is no preset.

    Example:

    ```python
    family_of_preset("st_2_64_digits").name   # "spiking_transformer"
    ```
    """
    import keras

    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    preset = validation.check_string("preset", preset)
    found = builtin_entry(preset)
    if found is not None:
        return found[0]
    registered = files.read_preset_json(resolve_preset(preset), "config.json").get(
        "registered_name")
    for family in _FAMILIES.values():
        if keras.saving.get_registered_name(family.backbone_cls) == registered:
            return family
    raise ValueError(
        f"Preset '{preset}' holds a {registered!r} backbone (its config.json), which no "
        f"registered model family provides (families: {sorted(_FAMILIES)}). Import the "
        "package that registers its family first."
    )


def family_of_model(model):
    """The family of a classifier or backbone (an instance or a class).

    Raises:
        TypeError: `model` belongs to no registered family.

    Example:

    ```python
    family_of_model(keras_spiking_tf.from_preset("st_2_64_digits")).name
    ```
    """
    cls = model if isinstance(model, type) else type(model)
    for family in _FAMILIES.values():
        if issubclass(cls, (family.classifier_cls, family.backbone_cls)):
            return family
    raise validation.invalid(
        "model", model,
        f"a classifier or backbone of a registered model family ({sorted(_FAMILIES)})",
        error=TypeError,
    )


# --- the generic preset functions -------------------------------------------------


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
    found = builtin_entry(preset)
    if found is not None:
        if load_weights and not found[1]["weights"]:
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
    close = difflib.get_close_matches(preset, list(builtin_presets()), n=3, cutoff=0.6)
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
    if builtin_entry(preset) is not None or preset.startswith(files.HUB_SCHEMES):
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
        + validation.suggestion(preset, builtin_presets())
    )


def preset_architecture(preset):
    """The backbone arguments of any preset: a built-in name (from its
    family's registry), a directory or a hub handle (its `config.json`)."""
    found = builtin_entry(preset)
    if found is not None:
        return found[0].backbone_config(preset)
    return files.read_preset_json(resolve_preset(preset), "config.json")["config"]


def list_presets(family=None):
    """Built-in presets of every registered family: name -> metadata dict.

    Each value has `family`, `description`, `attention`, the family's
    architecture keys (`num_layers`, `hidden_dim`, `num_heads` for
    `spiking_transformer`; `embed_dims`, `num_blocks`, `num_heads`, `kd`,
    `params_without_kd` for `meta_spikeformer`), `dataset`, `num_classes`,
    `class_names`, `image_size`, `time_steps`, `params` (trainable
    parameters), `paper_accuracy` (top-1 %, or `None`), `weights_available`
    and `path` (the shipped preset directory, `None` for a preset built
    from its family's registry alone).

    Args:
        family: `None` (every family) or a family's name.

    Example:

    ```python
    keras_spiking_tf.list_presets()["st_8_512_imagenet"]["params"]  # 29689384
    keras_spiking_tf.list_presets(family="meta_spikeformer")
    ```
    """
    if family is not None:
        validation.check_choice("family", family, sorted(_FAMILIES))
    presets = {}
    for registered in _FAMILIES.values():
        if family is not None and registered.name != family:
            continue
        for name, entry in registered.presets.items():
            dataset = load_registry()["datasets"][entry["dataset"]]
            presets[name] = {
                "family": registered.name,
                "description": entry["description"],
                "attention": entry["attention"],
                **{key: entry[key] for key in registered.listed_keys},
                "dataset": entry["dataset"],
                "num_classes": dataset["num_classes"],
                "class_names": dataset["class_names"],
                "image_size": tuple(dataset["image_shape"][:2]),
                "time_steps": entry["time_steps"],
                "params": entry["params"],
                "paper_accuracy": entry["paper_accuracy"],
                "weights_available": entry["weights"],
                "path": preset_directory(name) if is_shipped(name) else None,
            }
    return presets


def weights_available(preset):
    """Whether `from_preset(preset)` can load weights: `False` only for a
    built-in preset without published weights (directories and hub handles
    carry their own)."""
    found = builtin_entry(preset)
    return found is None or found[1]["weights"]


def keras_hub_presets(family):
    """`family`'s shipped presets in KerasHub's registry format."""
    return {
        name: {
            "metadata": {
                "description": entry["description"],
                "params": entry["params"],
                "path": family.name,
                "official_name": family.official_name,
                "model_card": family.paper,
            },
            # KerasHub resolves a built-in name to this handle; a local
            # directory is a handle like any other.
            "kaggle_handle": preset_directory(name),
        }
        for name, entry in family.presets.items()
        if is_shipped(name)
    }
