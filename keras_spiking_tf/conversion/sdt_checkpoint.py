"""Convert PyTorch checkpoints (SDT v1 and V2) into Keras presets of any
model family that declares a checkpoint format.

The preset names the family (`model_family.family_of_preset`), and the
family's `ModelFamily.checkpoint` (a `CheckpointFormat`) says everything
family-specific: the key map (checkpoint key -> Keras variable and layout
kind), the keys skipped on purpose, the target classifier to build (the
preset's architecture with the checkpoint's head, or its sibling of another
attention), and how to describe sizes in errors. SDT v1's is
`models/spiking_transformer/spiking_transformer_checkpoint.py` (design.md
§5: `sdt_{L}_{D}_imagenet`, and `st_*` for fine-tuning A2OS2A), SDT V2's
(Meta-SpikeFormer, SPEC §10) `models/meta_spikeformer/meta_spikeformer_checkpoint.py`.
A family without a format is refused before the checkpoint is read.

This module does the rest, the same for every family: it reads the file
safely (tensors and SDT's `argparse.Namespace` only), checks the
state_dict against the key map (any key the model does not have, any key it
needs that is missing, and any shape mismatch is an error: the conversion
never produces a partly random model), converts each tensor by its layout
kind (`LAYOUTS`, the one table of PyTorch -> Keras layouts) and writes the
preset atomically.

Example:

```python
from keras_spiking_tf.conversion import convert_sdt_checkpoint
convert_sdt_checkpoint(
    "8_512.pth.tar", preset="sdt_8_512_imagenet", output_dir="sdt_8_512_preset"
)
model = keras_spiking_tf.from_preset("sdt_8_512_preset")
```
"""

import argparse
import os
import pickle
import re

import numpy as np

from keras_spiking_tf import validation
from keras_spiking_tf.layers.spiking_self_attention import check_attention_name
from keras_spiking_tf.models.checkpoint_format import CheckpointFormat
from keras_spiking_tf.models.model_family import check_preset
from keras_spiking_tf.models.model_family import families
from keras_spiking_tf.models.model_family import family_of_model
from keras_spiking_tf.models.model_family import family_of_preset
from keras_spiking_tf.models.spiking_image_classifier import SpikingImageClassifier
from keras_spiking_tf.models.spiking_image_classifier import save_to_preset
from keras_spiking_tf.optional_dependencies import require

STATE_DICT_KEYS = ("state_dict", "model")
# Layout kind -> (PyTorch layout, Keras layout), named in error messages; the
# kinds a family's key map (`CheckpointFormat.expected_tensors`) may name.
LAYOUTS = {
    "conv": ("Conv2d OIHW (O, I, kh, kw)", "Conv2D HWIO (kh, kw, I, O)"),
    "depthwise": ("depthwise Conv2d (C, 1, k, k)", "DepthwiseConv2D (k, k, C, 1)"),
    "conv1x1": ("Conv2d OIHW [O, I, 1, 1]", "Dense (I, O)"),
    "conv1d": ("Conv1d (O, I, 1)", "Dense (I, O)"),
    "linear": ("Linear (O, I)", "Dense (I, O)"),
    "vector": ("1-D", "1-D"),
}
MAX_LISTED_KEYS = 50


def _import_torch():
    """PyTorch, which reads the checkpoints (the `backends` extra; the CPU
    wheel `torch==2.13.0` is enough)."""
    return require("torch", "Reading SDT PyTorch checkpoints")


# The only non-tensor class that SDT's checkpoints pickle: the training
# script's `args`. Anything else a file asks to unpickle is refused.
SAFE_CHECKPOINT_GLOBALS = (argparse.Namespace,)


def _unpickle_safely(torch, path):
    """`torch.load(path, weights_only=True)` with only the classes of
    `SAFE_CHECKPOINT_GLOBALS` allowed: a file that needs any other global
    (code a crafted file would run) is refused before anything of it runs."""
    try:
        with torch.serialization.safe_globals(list(SAFE_CHECKPOINT_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        wanted = re.findall(r"GLOBAL ([\w.]+)", reason)
        if not wanted:
            raise ValueError(
                f"'{path}' is not a readable PyTorch checkpoint (its pickle data is "
                f"malformed: {reason}). Pass the .pth / .pth.tar file that torch.save "
                "wrote; it may be truncated, or another kind of file."
            ) from None
        raise ValueError(
            f"Refusing to load '{path}': besides tensors and training arguments it asks "
            f"to load {', '.join(sorted(set(wanted)))}, which could run code, so nothing "
            "of it was loaded. Convert only SDT checkpoints, saved with torch.save("
            "{'state_dict': model.state_dict(), ...})."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError,
            IndexError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"'{path}' is not a readable PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no details'}). "
            "Pass the .pth / .pth.tar file that torch.save wrote; it may be truncated, "
            "or another kind of file."
        ) from None


def _unpickler_reason(error):
    """The line of torch's "weights only load failed" message that says what
    was refused (the rest tells the user to drop the safety check)."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))
    if match is None:
        return str(error).strip().splitlines()[0] if str(error).strip() else "no details"
    return match.group(1).split(". Please use")[0].strip()


def _read_checkpoint(path):
    """`(state_dict, metadata)` of a `.pth` / `.pth.tar` file."""
    torch = _import_torch()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SDT checkpoint '{path}' does not exist.")
    if os.path.getsize(path) == 0:
        raise ValueError(f"'{path}' is empty (0 bytes), not a PyTorch checkpoint.")
    checkpoint = _unpickle_safely(torch, path)
    metadata = {}
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"'{path}' holds a {type(checkpoint).__name__}, not a checkpoint "
            "dict or state_dict. Save the weights with "
            "torch.save({'state_dict': model.state_dict()}, path)."
        )
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), dict):
            metadata = {
                k: checkpoint[k] for k in ("epoch", "arch") if k in checkpoint
            }
            checkpoint = checkpoint[key]
            break
    else:
        non_tensors = [k for k, v in checkpoint.items() if not hasattr(v, "shape")]
        if non_tensors:
            raise ValueError(
                f"'{path}' is neither an SDT checkpoint (a dict with a "
                "'state_dict' or 'model' entry) nor a bare state_dict; its "
                f"top-level keys are {sorted(map(str, checkpoint))[:20]}."
            )
    state_dict = {}
    for key, value in checkpoint.items():
        if key.startswith("module."):  # saved from DataParallel / DDP
            key = key[len("module."):]
        state_dict[key] = value
    return state_dict, metadata


def load_sdt_state_dict(path):
    """Reads the state_dict of an SDT checkpoint (`.pth` / `.pth.tar`).

    Accepts SDT's checkpoint dict (weights under `"state_dict"`; `"model"` is
    also accepted) or a bare state_dict, and strips the `"module."` prefix of
    models saved from `DataParallel`. Unpickles with `weights_only=True`:
    tensors, plain containers and SDT's `argparse.Namespace` arguments only;
    a file that asks for any other class or function is refused unread.

    Args:
        path: the checkpoint file.

    Returns:
        A dict `name -> torch.Tensor` with SDT's key names (design.md §5).

    Raises:
        ImportError: PyTorch is not installed (the message says how to
            install the CPU wheel).
        FileNotFoundError, ValueError: not a readable checkpoint, or one
            that needs more than tensors and SDT's arguments to unpickle
            (the message names the file and what it asked for).
    """
    validation.check_path("path", path, kind="file")
    return _read_checkpoint(path)[0]


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch.Tensor; torch need not be imported
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def torch_shape(kind, keras_shape):
    """The PyTorch shape of layout `kind` that converts to `keras_shape`.

    Args:
        kind: a layout kind, a key of `LAYOUTS`.
        keras_shape: the Keras variable's shape.

    Example:

    ```python
    torch_shape("conv", (3, 3, 16, 32))   # (32, 16, 3, 3)
    ```
    """
    if kind == "conv":
        height, width, channels_in, channels_out = keras_shape
        return (channels_out, channels_in, height, width)
    if kind == "depthwise":
        height, width, channels, multiplier = keras_shape
        return (channels * multiplier, 1, height, width)
    if kind == "conv1x1":
        channels_in, channels_out = keras_shape
        return (channels_out, channels_in, 1, 1)
    if kind == "conv1d":
        channels_in, channels_out = keras_shape
        return (channels_out, channels_in, 1)
    if kind == "linear":
        features_in, features_out = keras_shape
        return (features_out, features_in)
    return tuple(keras_shape)


def to_keras_layout(kind, array):
    """A NumPy array in PyTorch layout `kind` -> the Keras weight's layout.

    Args:
        kind: a layout kind, a key of `LAYOUTS`.
        array: the checkpoint's tensor as a NumPy array.

    Example:

    ```python
    to_keras_layout("linear", np.zeros((10, 64))).shape   # (64, 10)
    ```
    """
    if kind == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "depthwise":
        return np.transpose(array, (2, 3, 0, 1))
    if kind == "conv1x1":
        return np.transpose(array[:, :, 0, 0])
    if kind == "conv1d":
        return np.transpose(array[:, :, 0])
    if kind == "linear":
        return np.transpose(array)
    return array


def _describe_checkpoint(state_dict, checkpoint):
    """The checkpoint's size, as the format whose key prefixes most of its
    keys have describes it (`checkpoint`, the target's, on a tie): a V2
    checkpoint given an SDT v1 preset is described as V2."""
    formats = [checkpoint, *(family.checkpoint for family in families()
                             if family.checkpoint not in (None, checkpoint))]
    looks_like = max(formats, key=lambda candidate: sum(
        key.startswith(candidate.key_prefixes) for key in state_dict))
    return looks_like.describe_checkpoint(state_dict)


def _convertible_families():
    return [family for family in families() if family.checkpoint is not None]


def _checkpoint_format(family, what):
    """`family`'s checkpoint format; `what` (the preset or the classifier)
    names it in the error for a family without one."""
    if family.checkpoint is None:
        raise ValueError(
            f"{what} is of model family '{family.name}', which has no checkpoint format to "
            "convert from (its ModelFamily has no `checkpoint`). Convert into a preset of a "
            "family that has one ("
            + ", ".join(f.name for f in _convertible_families()) + "), or give "
            f"'{family.name}' a CheckpointFormat in its register_family call."
        )
    if not isinstance(family.checkpoint, CheckpointFormat):
        raise validation.invalid("checkpoint", family.checkpoint, "a CheckpointFormat or None",
                                 hint=f"(of model family '{family.name}')", error=TypeError)
    return family.checkpoint


def _listed(keys):
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    if len(keys) > MAX_LISTED_KEYS:
        shown += f", ... and {len(keys) - MAX_LISTED_KEYS} more"
    return shown


def convert_sdt_state_dict(state_dict, classifier):
    """Loads a PyTorch state_dict into a classifier of a family with a
    checkpoint format: an SDT state_dict into a
    `SpikingTransformerImageClassifier`, an SDT V2 (Meta-SpikeFormer) one
    into a `MetaSpikeFormerImageClassifier`.

    The keys and layout kinds are the family's key map
    (`ModelFamily.checkpoint.expected_tensors`; SDT v1: design.md §5, V2:
    SPEC §10); every tensor is converted to its Keras layout (`LAYOUTS`:
    conv kernels OIHW to HWIO, 1x1 convs and Linear heads to Dense kernels,
    BN weight/bias/running stats to gamma/beta/moving_mean/moving_variance)
    and assigned. Nothing is assigned unless the whole state_dict fits: keys
    are checked for completeness and shapes before the first assignment.

    Args:
        state_dict: `name -> tensor` (torch tensors or NumPy arrays) with
            the checkpoint's key names, e.g. from `load_sdt_state_dict`.
        classifier: the target, e.g. a `SpikingTransformerImageClassifier`
            (SDSA or A2OS2A attention; the keys are the same) or a
            `MetaSpikeFormerImageClassifier` (either attention).

    Returns:
        A report dict: `mapped` (list of `(sdt_key, keras_variable_path)`),
        `skipped` (dict `sdt_key -> reason`), `num_tensors` and
        `num_values` (elements assigned).

    Raises:
        TypeError: `classifier` is no classifier of a registered family.
        ValueError: its family has no checkpoint format; unknown keys or
            missing keys (each listed), or a shape mismatch (naming the
            first mismatching key with both shapes in PyTorch layout, and
            the Keras shape).

    Example:

    ```python
    report = convert_sdt_state_dict(load_sdt_state_dict("8_512.pth.tar"), model)
    report["num_tensors"]
    ```
    """
    if not isinstance(state_dict, dict):
        raise validation.invalid("state_dict", state_dict, "a dict name -> tensor",
                                 error=TypeError)
    if not all(isinstance(key, str) for key in state_dict):
        raise validation.invalid("state_dict", state_dict, "a dict with string keys (SDT's names)",
                                 error=TypeError)
    if not isinstance(classifier, SpikingImageClassifier):
        raise validation.invalid(
            "classifier", classifier,
            "a " + " or ".join(f.classifier_cls.__name__ for f in _convertible_families()),
            error=TypeError)
    checkpoint = _checkpoint_format(family_of_model(classifier), type(classifier).__name__)
    if not state_dict:
        raise validation.invalid("state_dict", state_dict, "a non-empty dict name -> tensor")
    state_dict = {
        (key[len("module."):] if key.startswith("module.") else key): value
        for key, value in state_dict.items()
    }
    expected = checkpoint.expected_tensors(classifier)
    unknown_kinds = sorted({kind for _, kind in expected.values() if kind not in LAYOUTS})
    if unknown_kinds:
        raise ValueError(
            f"Checkpoint format '{checkpoint.name}' maps keys to layout kinds {unknown_kinds}, "
            f"which the converter does not know; use those of LAYOUTS: {list(LAYOUTS)}."
        )
    skippable = checkpoint.skipped_keys(classifier, expected)
    unknown = [k for k in state_dict if k not in expected and k not in skippable]
    missing = [k for k in expected if k not in state_dict]
    for key, value in state_dict.items():  # the values the model has a place for
        if key not in unknown and not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise validation.invalid(f"state_dict[{key!r}]", value,
                                     "a tensor or array (torch or NumPy)", error=TypeError)
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(
                f"{len(unknown)} key(s) the model has no place for: {_listed(unknown)}"
            )
        if missing:
            problems.append(
                f"{len(missing)} key(s) the model needs are missing: {_listed(missing)}"
            )
        raise ValueError(
            "The state_dict does not match the model "
            f"(checkpoint {_describe_checkpoint(state_dict, checkpoint)}; model "
            f"{checkpoint.describe_model(classifier)}). " + "; ".join(problems) + ". "
            "Pick the preset of the checkpoint's family and size "
            f"({checkpoint.size_hint}) and make sure it is an SDT checkpoint with LIF neurons."
        )

    converted = {}
    for key, (variable, kind) in expected.items():
        array = _to_numpy(state_dict[key])
        wanted = torch_shape(kind, tuple(variable.shape))
        if tuple(array.shape) != wanted:
            torch_layout, keras_layout = LAYOUTS[kind]
            raise ValueError(
                f"Shape mismatch at '{key}': the checkpoint has "
                f"{list(array.shape)} and the model expects {list(wanted)} "
                f"(both PyTorch {torch_layout}; Keras {keras_layout} "
                f"{tuple(variable.shape)} at '{variable.path}'). Checkpoint "
                f"{_describe_checkpoint(state_dict, checkpoint)}; model "
                f"{checkpoint.describe_model(classifier)}. Pick the preset of the "
                "checkpoint's size."
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"'{key}' has dtype {array.dtype}; expected floating-point weights."
            )
        converted[key] = to_keras_layout(kind, array)

    for key, (variable, _) in expected.items():
        variable.assign(converted[key].astype(variable.dtype))
    return {
        "mapped": [(key, variable.path) for key, (variable, _) in expected.items()],
        "skipped": {k: skippable[k] for k in state_dict if k in skippable},
        "num_tensors": len(expected),
        "num_values": int(sum(a.size for a in converted.values())),
    }


# `convert_sdt_checkpoint`'s arguments that `kst-convert-sdt` names otherwise.
FLAG_NAMES = {"checkpoint_path": "checkpoint"}


def check_conversion_arguments(checkpoint_path, preset, output_dir, init_attention=None,
                               overwrite=False, as_flags=False):
    """`convert_sdt_checkpoint`'s arguments, without reading or writing
    anything; the messages name them as arguments or, with `as_flags`, as
    `kst-convert-sdt`'s flags.

    Raises:
        TypeError, ValueError: a bad value (a missing checkpoint file is a
            `FileNotFoundError` that is also a `ValueError`).
        FileExistsError: `output_dir` exists and `overwrite` is off.
    """
    def name(argument):
        return validation.flag_name(FLAG_NAMES.get(argument, argument) if as_flags else argument,
                                    as_flags)

    validation.check_path(name("checkpoint_path"), checkpoint_path, kind="file")
    check_preset(name("preset"), preset)
    output_dir = validation.check_output_path(name("output_dir"), output_dir, kind="directory")
    if init_attention is not None:
        check_attention_name(name("init_attention"), init_attention)
    validation.check_bool(name("overwrite"), overwrite)
    if os.path.exists(output_dir) and not overwrite:
        raise FileExistsError(
            f"Output directory '{os.path.abspath(output_dir)}' already exists; choose another "
            f"or pass {'--overwrite' if as_flags else 'overwrite=True'}."
        )


def convert_sdt_checkpoint(
    checkpoint_path, preset, output_dir, init_attention=None, overwrite=False
):
    """Converts an SDT checkpoint file into a Keras preset directory.

    The preset names the model family and so the checkpoint format
    (`ModelFamily.checkpoint`): `sdt_*` / `st_*` (or a saved Spiking
    Transformer preset directory) read SDT v1's checkpoints, `sdt_v2_*` /
    `st_v2_*` (or a saved Meta-SpikeFormer directory) the official SDT V2
    checkpoint (`{"model": state_dict, "optimizer", "epoch", "scaler",
    "args"}`); a family without a format is refused before the file is
    read. Builds the architecture of `preset` with random weights (sized to
    the checkpoint's head), loads the checkpoint into it with
    `convert_sdt_state_dict`, and writes a preset directory (atomic: an
    interrupted run leaves no half-written preset) that
    `keras_spiking_tf.from_preset` loads.

    Args:
        checkpoint_path: the SDT `.pth` / `.pth.tar` file (V2: `55M_kd.pth`).
        preset: the target architecture: a built-in name (e.g.
            `"sdt_8_512_imagenet"`, `"sdt_v2_8_512_imagenet"`) or a preset
            directory. If the checkpoint's head has another number of
            classes than the preset, the head is sized from the checkpoint;
            a V2 model gets the KD head exactly when the checkpoint has
            `head_kd`.
        output_dir: the preset directory to write.
        init_attention: `None` keeps the preset's attention. `"a2os2a"`
            loads the SDT weights into the A2OS2A model of the same size
            (`sdt_8_512_imagenet` -> `st_8_512_imagenet`,
            `sdt_v2_8_512_imagenet` -> `st_v2_8_512_imagenet`) as the
            starting point for fine-tuning; its accuracy before fine-tuning
            is not SDT's.
        overwrite: replace an existing `output_dir`.

    Returns:
        The report of `convert_sdt_state_dict`, plus `preset` (the preset
        built), `family` (the checkpoint format's name: `"sdt"` or
        `"sdt_v2"`), `attention`, `architecture` (the model card's line),
        the size (`num_layers`, `hidden_dim` for
        SDT; `embed_dims`, `num_blocks`, `kd` for V2), `num_classes`,
        `output_dir`, `checkpoint` and the checkpoint's `epoch`/`arch` when
        recorded.

    Raises:
        ValueError: the preset's family has no checkpoint format; the
            errors of `load_sdt_state_dict` and `convert_sdt_state_dict`.

    Example:

    ```python
    convert_sdt_checkpoint("8_512.pth.tar", "sdt_8_512_imagenet", "sdt_8_512")
    convert_sdt_checkpoint("8_512.pth.tar", "sdt_8_512_imagenet", "st_8_512_init",
                           init_attention="a2os2a")
    convert_sdt_checkpoint("55M_kd.pth", "sdt_v2_8_512_imagenet", "sdt_v2_8_512")
    ```
    """
    check_conversion_arguments(checkpoint_path, preset, output_dir, init_attention, overwrite)
    output_dir = os.path.abspath(os.fspath(output_dir))
    checkpoint = _checkpoint_format(family_of_preset(preset), f"Preset '{os.fspath(preset)}'")
    state_dict, metadata = _read_checkpoint(checkpoint_path)
    num_classes = None
    if "head.weight" in state_dict:
        num_classes = int(tuple(state_dict["head.weight"].shape)[0])
    built_preset, classifier = checkpoint.build_target(
        preset, init_attention, num_classes, kd="head_kd.weight" in state_dict)
    report = convert_sdt_state_dict(state_dict, classifier)
    save_to_preset(classifier, output_dir)
    report.update(
        {
            "checkpoint": os.path.abspath(os.fspath(checkpoint_path)),
            "preset": built_preset,
            "family": checkpoint.name,
            "attention": classifier.backbone.attention,
            "architecture": dict(
                family_of_model(classifier).model_card_rows(classifier.backbone))["architecture"],
            **checkpoint.report_size(classifier),
            "num_classes": classifier.num_classes,
            "output_dir": output_dir,
            **metadata,
        }
    )
    return report
