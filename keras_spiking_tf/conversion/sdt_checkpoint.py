"""Convert Spike-driven Transformer (SDT v1 and V2) PyTorch checkpoints to Keras presets.

SDT (Yao et al., NeurIPS 2023) publishes ImageNet checkpoints (T=4) for the
sizes 8-384, 6-512, 8-512, 10-512 and 8-768. Their weights map one to one
onto the `sdt_{L}_{D}_imagenet` presets (SDSA attention), and, since A2OS2A
adds no parameters, onto the `st_{L}_{D}_imagenet` presets as a starting
point for fine-tuning (design.md §5).

Layout of the mapping (design.md §5):

    patch_embed.proj_conv{,1,2,3}.weight  [O, I, 3, 3] -> Conv2D kernel HWIO
    patch_embed.rpe_conv.weight           [D, D, 3, 3] -> Conv2D kernel HWIO
    block.{i}.attn.{q,k,v}_conv.weight    [D, D, 1, 1] -> Dense kernel (D, D)
    block.{i}.attn.proj_conv.{weight,bias}             -> Dense kernel, bias
    block.{i}.mlp.fc{1,2}_conv.{weight,bias}           -> Dense kernel, bias
    *_bn.{weight,bias,running_mean,running_var}
        -> BatchNormalization gamma, beta, moving_mean, moving_variance
    head.weight [K, D], head.bias [K]                  -> Dense "head"

Skipped on purpose: every BN's `num_batches_tracked` (a training counter;
Keras BN has no equivalent and inference does not use it) and SDT's unused
`block.{i}.attn.talking_heads.weight`. Any other key the model does not
have, any key it needs that is missing, and any shape mismatch is an error:
the conversion never produces a partly random model.

SDT V2 (Meta-SpikeFormer, SPEC §10): the official checkpoint
`{"model": state_dict, "optimizer", "epoch", "scaler", "args"}` converts
into the `sdt_v2_{L}_{D}_imagenet` presets (and, for fine-tuning, the
`st_v2_*` ones); the preset names the family, and the key map is the
family's own (`models/meta_spikeformer/meta_spikeformer_checkpoint.py`).

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

import keras
import numpy as np

from keras_spiking_tf import validation
from keras_spiking_tf.layers.spiking_self_attention import check_attention_name
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerBackbone
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier
from keras_spiking_tf.models.meta_spikeformer import meta_spikeformer_checkpoint as v2_keys
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_presets import (
    PRESETS as V2_PRESETS,
)
from keras_spiking_tf.models.spiking_image_classifier import from_preset
from keras_spiking_tf.optional_dependencies import require
from keras_spiking_tf.models import preset_files as files
from keras_spiking_tf.models.model_family import check_preset
from keras_spiking_tf.models.model_family import load_registry
from keras_spiking_tf.models.spiking_image_classifier import save_to_preset

STATE_DICT_KEYS = ("state_dict", "model")
SPS_SUFFIXES = ("", "1", "2", "3")
# PyTorch BatchNorm tensor -> Keras weight, the same for both families.
BN_TENSORS = v2_keys.BN_TENSORS
# Layout kind -> (PyTorch layout, Keras layout), named in error messages.
LAYOUTS = {
    "conv3x3": ("OIHW", "HWIO"),
    "conv1x1": ("OIHW [O, I, 1, 1]", "Dense (I, O)"),
    "linear": ("Linear (O, I)", "Dense (I, O)"),
    "vector": ("1-D", "1-D"),
}
# SDT V2's layouts (`meta_spikeformer_checkpoint.LAYOUTS`), prefixed here.
V2_LAYOUTS = {f"v2_{name}": name for name in v2_keys.LAYOUTS if name != "vector"}
LAYOUTS.update({kind: v2_keys.LAYOUTS[name] for kind, name in V2_LAYOUTS.items()})
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


def _expected_tensors(classifier):
    """SDT key -> (Keras variable, layout kind), in SDT's module order."""
    backbone = classifier.backbone
    expected = {}

    def add_conv(prefix, layer, kind):
        expected[f"{prefix}.weight"] = (layer.kernel, kind)
        if layer.use_bias:
            expected[f"{prefix}.bias"] = (layer.bias, "vector")

    def add_bn(prefix, layer):
        for torch_name, keras_name in BN_TENSORS:
            expected[f"{prefix}.{torch_name}"] = (getattr(layer, keras_name), "vector")

    patch_embed = backbone.patch_embed
    for suffix, conv, bn in zip(
        SPS_SUFFIXES, patch_embed.stage_convs, patch_embed.stage_bns
    ):
        add_conv(f"patch_embed.proj_conv{suffix}", conv, "conv3x3")
        add_bn(f"patch_embed.proj_bn{suffix}", bn)
    add_conv("patch_embed.rpe_conv", patch_embed.rpe_conv, "conv3x3")
    add_bn("patch_embed.rpe_bn", patch_embed.rpe_bn)
    for index, block in enumerate(backbone.blocks):
        sublayers = (("attn", ("q", "k", "v", "proj")), ("mlp", ("fc1", "fc2")))
        for module, names in sublayers:
            layer = getattr(block, module)
            for name in names:
                prefix = f"block.{index}.{module}.{name}"
                add_conv(f"{prefix}_conv", getattr(layer, f"{name}_conv"), "conv1x1")
                add_bn(f"{prefix}_bn", getattr(layer, f"{name}_bn"))
    add_conv("head", classifier.output_dense, "linear")
    return expected


def _is_v2(classifier):
    return isinstance(classifier, MetaSpikeFormerImageClassifier)


def _skipped_keys(expected, num_layers):
    """Keys accepted but not loaded, with the reason (`num_layers`: SDT v1's
    blocks, whose unused talking-heads convs are skipped; 0 for V2)."""
    skipped = {}
    for key in expected:
        if key.endswith(".running_mean"):
            prefix = key[: -len(".running_mean")]
            skipped[f"{prefix}.num_batches_tracked"] = (
                "BatchNorm step counter; Keras BatchNormalization has none and "
                "inference does not use it"
            )
    for index in range(num_layers):
        skipped[f"block.{index}.attn.talking_heads.weight"] = (
            "SDT's talking_heads conv is never used in its forward pass"
        )
    return skipped


def _torch_shape(kind, keras_shape):
    """The PyTorch shape that converts to `keras_shape`."""
    if kind in V2_LAYOUTS:
        return v2_keys.torch_shape(V2_LAYOUTS[kind], keras_shape)
    if kind == "conv3x3":
        height, width, channels_in, channels_out = keras_shape
        return (channels_out, channels_in, height, width)
    if kind == "conv1x1":
        channels_in, channels_out = keras_shape
        return (channels_out, channels_in, 1, 1)
    if kind == "linear":
        features_in, features_out = keras_shape
        return (features_out, features_in)
    return tuple(keras_shape)


def _to_keras_layout(kind, array):
    if kind in V2_LAYOUTS:
        return v2_keys.to_keras_layout(V2_LAYOUTS[kind], array)
    if kind == "conv3x3":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "conv1x1":
        return np.transpose(array[:, :, 0, 0])
    if kind == "linear":
        return np.transpose(array)
    return array


def _describe_checkpoint(state_dict):
    """`"L=…, D=…, K=…"` guessed from the keys, for error messages."""
    if any(key.startswith(("downsample", "block3.", "ConvBlock")) for key in state_dict):
        return _describe_v2_checkpoint(state_dict)
    blocks = {
        int(match.group(1))
        for key in state_dict
        if (match := re.match(r"block\.(\d+)\.", key))
    }
    parts = [f"L={len(blocks)}"]
    if "patch_embed.proj_conv3.weight" in state_dict:
        parts.append(f"D={tuple(state_dict['patch_embed.proj_conv3.weight'].shape)[0]}")
    if "head.weight" in state_dict:
        parts.append(f"K={tuple(state_dict['head.weight'].shape)[0]}")
    return ", ".join(parts)


def _describe_v2_checkpoint(state_dict):
    """SDT V2: the widths and transformer blocks the keys imply."""
    widths = []
    for stage in ("downsample1_2", "downsample2", "downsample3", "downsample4"):
        key = f"{stage}.encode_conv.weight"
        widths.append(tuple(state_dict[key].shape)[0] if key in state_dict else "?")
    parts = [f"widths {widths}"]
    for stage in ("block3", "block4"):
        indices = {match.group(1) for key in state_dict
                   if (match := re.match(rf"{stage}\.(\d+)\.", key))}
        parts.append(f"{len(indices)} {stage} blocks")
    if "head.weight" in state_dict:
        parts.append(f"K={tuple(state_dict['head.weight'].shape)[0]}")
    parts.append("KD head" if "head_kd.weight" in state_dict else "no KD head")
    return ", ".join(parts)


def _describe_model(classifier):
    backbone = classifier.backbone
    if _is_v2(classifier):
        return (
            f"widths {list(backbone.embed_dims)}, {backbone.num_blocks[3]} block3 blocks, "
            f"{backbone.num_blocks[4]} block4 blocks, K={classifier.num_classes}, "
            + ("KD head" if classifier.kd else "no KD head")
        )
    return (
        f"L={backbone.num_layers}, D={backbone.hidden_dim}, "
        f"K={classifier.num_classes}"
    )


def _listed(keys):
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    if len(keys) > MAX_LISTED_KEYS:
        shown += f", ... and {len(keys) - MAX_LISTED_KEYS} more"
    return shown


def convert_sdt_state_dict(state_dict, classifier):
    """Loads an SDT state_dict into a `SpikingTransformerImageClassifier`,
    or an SDT V2 (Meta-SpikeFormer) state_dict into a
    `MetaSpikeFormerImageClassifier`.

    SDT V2's keys and layouts are `meta_spikeformer_checkpoint`'s (SPEC §10).
    For SDT v1, every key of design.md §5 is converted (OIHW conv kernels to HWIO, 1x1 convs
    and the Linear head to Dense kernels, BN weight/bias/running stats to
    gamma/beta/moving_mean/moving_variance) and assigned. Nothing is
    assigned unless the whole state_dict fits: keys are checked for
    completeness and shapes before the first assignment.

    Args:
        state_dict: `name -> tensor` (torch tensors or NumPy arrays) with
            SDT's key names, e.g. from `load_sdt_state_dict`.
        classifier: the target `SpikingTransformerImageClassifier` (SDSA or
            A2OS2A attention; the keys are the same) or
            `MetaSpikeFormerImageClassifier` (either attention).

    Returns:
        A report dict: `mapped` (list of `(sdt_key, keras_variable_path)`),
        `skipped` (dict `sdt_key -> reason`), `num_tensors` and
        `num_values` (elements assigned).

    Raises:
        ValueError: unknown keys or missing keys (each listed), or a shape
            mismatch (naming the first mismatching key with both shapes in
            PyTorch layout, and the Keras shape).
    """
    if not isinstance(state_dict, dict):
        raise validation.invalid("state_dict", state_dict, "a dict name -> tensor",
                                 error=TypeError)
    if not all(isinstance(key, str) for key in state_dict):
        raise validation.invalid("state_dict", state_dict, "a dict with string keys (SDT's names)",
                                 error=TypeError)
    if not (isinstance(classifier, keras.Model) and hasattr(classifier, "backbone")):
        raise validation.invalid(
            "classifier", classifier,
            "a SpikingTransformerImageClassifier or MetaSpikeFormerImageClassifier",
            error=TypeError)
    if not state_dict:
        raise validation.invalid("state_dict", state_dict, "a non-empty dict name -> tensor")
    state_dict = {
        (key[len("module."):] if key.startswith("module.") else key): value
        for key, value in state_dict.items()
    }
    if _is_v2(classifier):
        expected = {key: (variable, f"v2_{layout}" if layout != "vector" else layout)
                    for key, (variable, layout) in v2_keys.checkpoint_tensors(classifier).items()}
        skippable = _skipped_keys(expected, 0)
        size_hint = "sdt_v2_8_{C2}_imagenet, and kd=False for a checkpoint without head_kd"
    else:
        expected = _expected_tensors(classifier)
        skippable = _skipped_keys(expected, classifier.backbone.num_layers)
        size_hint = "sdt_{L}_{D}_imagenet"
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
            f"(checkpoint {_describe_checkpoint(state_dict)}; model "
            f"{_describe_model(classifier)}). " + "; ".join(problems) + ". "
            f"Pick the preset of the checkpoint's family and size ({size_hint}) "
            "and make sure it is an SDT checkpoint with LIF neurons."
        )

    converted = {}
    for key, (variable, kind) in expected.items():
        array = _to_numpy(state_dict[key])
        wanted = _torch_shape(kind, tuple(variable.shape))
        if tuple(array.shape) != wanted:
            torch_layout, keras_layout = LAYOUTS[kind]
            raise ValueError(
                f"Shape mismatch at '{key}': the checkpoint has "
                f"{list(array.shape)} and the model expects {list(wanted)} "
                f"(both PyTorch {torch_layout}; Keras {keras_layout} "
                f"{tuple(variable.shape)} at '{variable.path}'). Checkpoint "
                f"{_describe_checkpoint(state_dict)}; model "
                f"{_describe_model(classifier)}. Pick the preset of the "
                "checkpoint's size."
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"'{key}' has dtype {array.dtype}; expected floating-point weights."
            )
        converted[key] = _to_keras_layout(kind, array)

    for key, (variable, _) in expected.items():
        variable.assign(converted[key].astype(variable.dtype))
    return {
        "mapped": [(key, variable.path) for key, (variable, _) in expected.items()],
        "skipped": {k: skippable[k] for k in state_dict if k in skippable},
        "num_tensors": len(expected),
        "num_values": int(sum(a.size for a in converted.values())),
    }


def _preset_family(preset):
    """`"v2"` for a Meta-SpikeFormer preset (a built-in `sdt_v2_*`/`st_v2_*`
    name or a saved directory of that family), else `"v1"`."""
    if preset in V2_PRESETS:
        return "v2"
    task_file = os.path.join(os.path.expanduser(preset), "task.json")
    if os.path.isfile(task_file):
        with open(task_file, encoding="utf-8") as file:
            if "MetaSpikeFormerImageClassifier" in file.read():
                return "v2"
    return "v1"


def _build_v2_target(preset, init_attention, num_classes, kd):
    """The Meta-SpikeFormer classifier a V2 checkpoint is loaded into: the
    preset's architecture with the checkpoint's class count and KD head;
    `init_attention="a2os2a"` picks the `st_v2_*` sibling of `sdt_v2_*`."""
    if preset in V2_PRESETS:
        overrides = {"kd": kd}
        if init_attention and V2_PRESETS[preset]["attention"] != init_attention:
            siblings = {"a2os2a": ("sdt_v2_", "st_v2_"), "ssa": ("st_v2_", "sdt_v2_")}
            old, new = siblings.get(init_attention, ("", ""))
            sibling = new + preset[len(old):] if old and preset.startswith(old) else None
            if sibling in V2_PRESETS and V2_PRESETS[sibling]["attention"] == init_attention:
                preset = sibling
            else:
                overrides["attention"] = init_attention
        return preset, MetaSpikeFormerImageClassifier.from_preset(
            preset, load_weights=False, num_classes=num_classes, **overrides)
    model = MetaSpikeFormerImageClassifier.from_preset(preset, load_weights=False)
    attention = init_attention or model.backbone.attention
    num_classes = model.num_classes if num_classes is None else num_classes
    if (attention, num_classes, kd) != (model.backbone.attention, model.num_classes, model.kd):
        backbone = MetaSpikeFormerBackbone.from_config(
            {**model.backbone.get_config(), "attention": attention})
        model = MetaSpikeFormerImageClassifier(
            backbone, num_classes, kd=kd, preprocessor=model.preprocessor,
            activation=model.activation, head_dtype=model.head_dtype)
    return preset, model


def _build_target(preset, init_attention, num_classes):
    """The (random-initialised) classifier the checkpoint is loaded into."""
    registry = load_registry()["presets"]
    if preset in registry:
        overrides = {}
        if init_attention and registry[preset]["attention"] != init_attention:
            sibling = None
            if init_attention == "a2os2a" and preset.startswith("sdt_"):
                sibling = "st_" + preset[len("sdt_"):]
            elif init_attention == "sdsa" and preset.startswith("st_"):
                sibling = "sdt_" + preset[len("st_"):]
            if sibling in registry and registry[sibling]["attention"] == init_attention:
                preset = sibling
            else:
                overrides["attention"] = init_attention
        dataset = load_registry()["datasets"][registry[preset]["dataset"]]
        default_classes = dataset["num_classes"]
        if num_classes is not None and num_classes != default_classes:
            overrides["num_classes"] = num_classes
        return preset, from_preset(preset, load_weights=False, **overrides)

    model = from_preset(preset, load_weights=False)
    overrides = {}
    if num_classes is not None and num_classes != model.num_classes:
        overrides["num_classes"] = num_classes
    if init_attention and model.backbone.attention != init_attention:
        overrides["attention"] = init_attention  # a backbone argument
    if overrides:
        model = from_preset(preset, load_weights=False, **overrides)
    return preset, model


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
    if not (isinstance(preset, str) and preset in V2_PRESETS):
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

    Builds the architecture of `preset` with random weights, loads the
    checkpoint into it with `convert_sdt_state_dict`, and writes a preset
    directory (atomic: an interrupted run leaves no half-written preset).
    The preset names the family: `sdt_v2_*` / `st_v2_*` (or a saved
    Meta-SpikeFormer preset directory) read the official SDT V2 checkpoint
    (`{"model": state_dict, "optimizer", "epoch", "scaler", "args"}`), and
    the result loads with `MetaSpikeFormerImageClassifier.from_preset`.

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
        built), `family` (`"sdt"` or `"sdt_v2"`), `attention`, the size
        (`num_layers`, `hidden_dim` for SDT; `embed_dims`, `num_blocks`,
        `kd` for V2), `num_classes`, `output_dir`, `checkpoint` and the
        checkpoint's `epoch`/`arch` when recorded.

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
    state_dict, metadata = _read_checkpoint(checkpoint_path)
    num_classes = None
    if "head.weight" in state_dict:
        num_classes = int(tuple(state_dict["head.weight"].shape)[0])
    if _preset_family(preset) == "v2":
        built_preset, classifier = _build_v2_target(
            preset, init_attention, num_classes, kd="head_kd.weight" in state_dict)
        report = convert_sdt_state_dict(state_dict, classifier)
        files.write_preset(classifier.save_to_preset, output_dir)
        backbone = classifier.backbone
        size = {"embed_dims": list(backbone.embed_dims),
                "num_blocks": list(backbone.num_blocks), "kd": classifier.kd}
    else:
        built_preset, classifier = _build_target(preset, init_attention, num_classes)
        report = convert_sdt_state_dict(state_dict, classifier)
        save_to_preset(classifier, output_dir)
        backbone = classifier.backbone
        size = {"num_layers": backbone.num_layers, "hidden_dim": backbone.hidden_dim}
    report.update(
        {
            "checkpoint": os.path.abspath(os.fspath(checkpoint_path)),
            "preset": built_preset,
            "family": "sdt_v2" if _is_v2(classifier) else "sdt",
            "attention": backbone.attention,
            **size,
            "num_classes": classifier.num_classes,
            "output_dir": output_dir,
            **metadata,
        }
    )
    return report
