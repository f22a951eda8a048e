"""Every public argument rejects bad values at the call that gives them.

The public entry points are found by introspection, not listed: every
class and function that `keras_spiking_tf.layers` exports, the backbone,
both `from_preset`s (with every keyword they forward: the backbone's and
the classifier's arguments), the streaming step model, its
`initial_state`, `predict_anytime` and `running_logits`; and the public
callables of `keras_spiking_tf`, `keras_spiking_tf.edge_export`,
`keras_spiking_tf.conversion` and `edge_export/profile.py` (export,
loading exported files, the inference graph, profiling, conversion, preset
publishing), with the training API of `TRAINING_API`. Their arguments
are read with `inspect.signature` (a class's, along its own bases' `**kwargs`).
For each argument, bad values of several kinds are derived from its
default (or, for a required or `None`-default argument, from an example
in `EXAMPLES`): zero, negative, huge, a fraction for an integer, NaN, +-inf,
a wrong type, `None`, an unknown name, an empty value, a tuple of the wrong
length or with a bad element, an unknown or bad key of a dict; every entry
point also gets an unknown extra keyword. Each call must raise a
`ValueError` or `TypeError` (a `TypeError` for a wrong type or `None`)
whose message names the argument, before any layer is called (built),
anything computed, any weights or checkpoint loaded, any file converted or
any training run (`nothing_runs`), with nothing written into `SCRATCH`.
Callables deliberately left out are in `NOT_COVERED`, each with the reason.

Values that an argument legitimately accepts although they look odd are
facts about that argument, recorded once in `ACCEPTS` (e.g. `v_reset` may
be negative, zero or `None`). A new public argument with no check makes
`test_every_bad_kind_is_rejected` fail; one with a `None` default and no
entry in `EXAMPLES` makes `test_every_argument_has_a_kind` fail.
"""

import contextlib
import importlib
import inspect
import math
import os
import re
import string
import tempfile
from unittest import mock

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_spiking_tf
from keras_spiking_tf import layers
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerBackbone
from keras_spiking_tf.models.spiking_transformer import SpikingTransformerBackbone
from keras_spiking_tf.models.spiking_transformer import SpikingTransformerImageClassifier
from keras_spiking_tf.models.streaming import SpikingStepModel
from keras_spiking_tf.models.streaming import predict_anytime
from keras_spiking_tf.models.streaming import running_logits
from keras_spiking_tf.models.model_family import preset_directory
from keras_spiking_tf.training import datasets
from keras_spiking_tf.training import distribution
from keras_spiking_tf.training import recipes
from keras_spiking_tf.training import trainer

PRESET = "st_2_64_digits"  # a built-in preset whose files are in the package
OBJECT = object()  # EXAMPLES' marker of an argument that takes an object
ARRAY = np.zeros((2, 3), "float32")  # EXAMPLES' marker of an array argument

# Where the entry points that write are pointed (it must stay empty), and
# stand-ins for the files that the readers take (their contents are never
# read: the arguments are checked first).
SCRATCH = tempfile.mkdtemp(prefix="kst_validation_scratch_")
FILES = tempfile.mkdtemp(prefix="kst_validation_files_")
for _name in ("model.tflite", "step.tflite", "model.onnx", "sdt.pth"):
    with open(os.path.join(FILES, _name), "wb") as _file:
        _file.write(b"a stand-in; never read")

# A valid value of each argument that is required or defaults to `None`:
# the argument's kind (what bad values are) is derived from it, and a
# required argument takes it in the otherwise valid call.
EXAMPLES = {
    "units": 4,
    "filters": 4,
    "kernel_size": 3,
    "hidden_dim": 16,
    "embed_dims": (8, 16, 32, 48),
    "family": "spiking_transformer",
    "num_layers": 1,
    "num_classes": 5,
    "time_steps": 4,
    "alpha": 2.0,
    "neuron_config": {"tau": 2.0},
    "data_format": "channels_last",
    "dtype": "float32",
    "activation": "relu",
    "kernel_regularizer": "l2",
    "bias_regularizer": "l2",
    "activity_regularizer": "l2",
    "kernel_constraint": "non_neg",
    "bias_constraint": "non_neg",
    "lora_rank": 2,
    "lora_alpha": 2.0,
    "class_names": ["a", "b"],
    "preprocessor": OBJECT,
    "classifier": OBJECT,
    "backbone": OBJECT,
    "x": ARRAY,
    "batch_size": 2,
    "preset": PRESET,
    "log_dir": "logs",
    "description": "32 validation images",
    "get_attention_class.name": "sdsa",
    "register_attention.name": "my_attention",
    # Export, exported files, the inference graph, profiling.
    "model": OBJECT,
    "export.path": os.path.join(SCRATCH, "model.tflite"),
    "export_step_model.path": os.path.join(SCRATCH, "step.tflite"),
    "load_exported.path": os.path.join(FILES, "model.tflite"),
    "load_step_model.path": os.path.join(FILES, "step.tflite"),
    "litert_delegation.path": os.path.join(FILES, "model.tflite"),
    "litert_product_profile.path": os.path.join(FILES, "model.tflite"),
    "onnx_operator_profile.path": os.path.join(FILES, "model.onnx"),
    "format": "litert",
    "quantization": "float16",
    "representative_images": ARRAY,
    "verification_images": ARRAY,
    "verification_inputs": ARRAY,
    "representative_inputs": ARRAY,
    "labels": ARRAY,
    "raw_image_size": (16, 16),
    "min_top1_agreement": 0.5,
    "num_threads": 2,
    "images": ARRAY,
    # Training.
    "config": OBJECT,
    "register_dataset.dataset": OBJECT,
    "load_dataset.name": "digits",
    "make_strategy.name": "auto",
    "data_dir": os.path.join(SCRATCH, "data"),
    "recipe": "digits",
    "epochs": 2,
    "tpu": "my-tpu",
    "output_dir": os.path.join(SCRATCH, "out"),
    "TrainConfig.attention": "sdsa",
    "image_channels": 1,
    "channels": 3,
    "checkpoint_every": 10,
    "validation_fraction": 0.1,
    "name_or_path": "digits",
    # Conversion and presets.
    "checkpoint_path": os.path.join(FILES, "sdt.pth"),
    "load_sdt_state_dict.path": os.path.join(FILES, "sdt.pth"),
    "state_dict": {"head.weight": np.zeros((5, 16), "float32")},
    "init_attention": "sdsa",
    "uri": "hf://me/my_preset",
    "preset_dir": preset_directory(PRESET),
}

# Odd-looking values that an argument legitimately accepts (by bad-value
# kind), keyed by `argument` or `entry point.argument` (which wins).
ACCEPTS = {
    "v_reset": {"zero", "negative", "none"},  # any reset potential; None: soft reset
    "heaviside_with_surrogate.threshold": {"zero", "negative"},  # any step position
    "threshold": {"zero"},  # predict_anytime: 0 answers at the first step
    "momentum": {"zero"},  # BatchNorm momentum in [0, 1]
    "mlp_ratio": {"fraction"},  # hidden width int(D * mlp_ratio)
    "kernel_initializer": {"none"},  # Keras' default initializer
    "bias_initializer": {"none"},
    "head_dtype": {"none"},  # the global dtype policy
    "register_attention.name": {"unknown_choice"},  # a new name is the point
    "seed": {"zero"},
    "verbose": {"zero"},  # quiet
    "min_top1_agreement": {"zero"},  # any agreement passes
    "export.path": {"unknown_choice"},  # any new file name
    "data_dir": {"unknown_choice"},  # a new directory (event data are written there)
    "output_dir": {"unknown_choice"},  # a new directory
    "log_dir": {"unknown_choice"},  # FiringRateMonitor: a new directory
    "description": {"unknown_choice"},  # energy_summary: any words
    "litert_delegation.num_threads": {"none"},  # the runtime's default
    "TrainConfig.mixed_precision": {"none"},  # the recipe's policy
}

# Public callables of the walked namespaces that are not checked here, and why.
NOT_COVERED = {
    "InputWarning": "a warning category, not called",
    "set_strict_inputs": "input_checks.py's own tests (tests/test_input_checks.py)",
    "quiet_tensorflow_start": "the tools' start-up context manager (cli/startup.py)",
    "save_to_preset": "forwards to the classifier's save_to_preset (its own file); the "
                      "preset writer it calls checks preset_dir and metadata",
    "ExportedModel": "runtime.py's class, built by load_exported (checked)",
    "StepRunner": "built by load_step_model (checked)",
    "ExportFormat": "a record of formats.py's table, not an API",
    "ExportReport": "the record export returns",
    "AnytimePrediction": "the record predict_anytime returns",
    "EnergyReport": "the record energy_report returns",
    "SpikingTransformerImageConverter": "KerasHub's ImageConverter with its own arguments "
                                        "(resizing options); built by from_preset",
    "SpikingTransformerImageClassifierPreprocessor": "KerasHub's preprocessor, built by "
                                                     "from_preset",
    "format_of_path": "a helper of load_exported (whose path is checked first)",
    "litert_io_types": "file-inspection helpers on bytes, called on exported files",
    "litert_op_counts": "file-inspection helpers on bytes, called on exported files",
    "litert_ops": "file-inspection helpers on bytes, called on exported files",
}

# The training API (the package has no namespace exports): module -> names.
TRAINING_API = {
    trainer: ("TrainConfig", "train"),
    datasets: ("load_dataset", "register_dataset"),
    recipes: ("load_recipe",),
    distribution: ("make_strategy",),
}
# Namespaces whose public callables are walked (`profile`: those it defines).
NAMESPACES = ("keras_spiking_tf", "keras_spiking_tf.edge_export", "keras_spiking_tf.conversion",
              "keras_spiking_tf.analysis", "keras_spiking_tf.models",
              "keras_spiking_tf.edge_export.profile")

# Entry points whose otherwise valid call is not made: it needs real files
# (an exported model, a checkpoint), the network, or trains.
NO_VALID_CALL = {
    "export", "export_step_model", "load_exported", "load_step_model", "litert_delegation",
    "onnx_operator_profile", "litert_product_profile", "tensorflow_operator_profile",
    "convert_sdt_checkpoint", "load_sdt_state_dict", "convert_sdt_state_dict",
    "upload_preset", "train",
}

NOT_ENTRY_POINTS = {
    # A record that the attention layers fill in (`products()`), not an API.
    "AttentionProduct",
}

VALUE_KINDS = {  # kinds of bad value whose error is a ValueError
    "zero", "negative", "huge", "unknown_choice", "empty", "unknown_key",
    "wrong_length",
}
TYPE_KINDS = {"wrong_type", "none"}  # a TypeError
# Either error: "fraction", "nan", "inf", "bad_element", "bad_value_in_dict".


# --- the entry points, by introspection --------------------------------------

_tiny = {}


def tiny_classifier():
    """A one-block classifier on 16x16 grey images (built once)."""
    if "model" not in _tiny:
        backbone = SpikingTransformerBackbone(
            num_layers=1, hidden_dim=16, num_heads=2, time_steps=2, pooling="0011",
            image_shape=(16, 16, 1),
        )
        _tiny["model"] = SpikingTransformerImageClassifier(backbone, num_classes=3)
    return _tiny["model"]


def tiny_meta_spikeformer_backbone():
    """A Meta-SpikeFormer backbone of one block per stage on 32x32 grey
    images (built once)."""
    if "meta_backbone" not in _tiny:
        _tiny["meta_backbone"] = MetaSpikeFormerBackbone(
            embed_dims=(8, 16, 32, 48), num_blocks=(1, 1, 1, 1, 1), num_heads=2,
            time_steps=2, image_shape=(32, 32, 1),
        )
    return _tiny["meta_backbone"]


def step_model():
    if "step" not in _tiny:
        _tiny["step"] = SpikingStepModel(tiny_classifier())
    return _tiny["step"]


class Later:
    """An entry point that exists only once a model is built (a method of
    the step model): `resolve` builds it, outside `nothing_runs`."""

    def __init__(self, make):
        self.make = make


def resolve(entry):
    return entry.make() if isinstance(entry, Later) else entry


def signature_parameters(entry):
    """The named parameters of a function, or of a class's constructor
    along its own (keras_spiking_tf) bases while they pass `**kwargs` on."""
    if not inspect.isclass(entry):
        return [
            p for p in inspect.signature(entry).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
    parameters, seen = [], set()
    for klass in entry.__mro__:
        if not klass.__module__.startswith("keras_spiking_tf"):
            continue
        if "__init__" not in klass.__dict__:
            continue
        signature = inspect.signature(klass.__dict__["__init__"])
        for parameter in list(signature.parameters.values())[1:]:
            if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                continue
            if parameter.name not in seen:
                seen.add(parameter.name)
                parameters.append(parameter)
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return parameters


def from_preset_parameters():
    """`from_preset`'s own parameters and the keywords it forwards: the
    backbone's arguments (overrides) and the classifier's."""
    own = signature_parameters(SpikingTransformerImageClassifier.from_preset)
    names = {p.name for p in own}
    forwarded = [
        p for p in signature_parameters(SpikingTransformerBackbone)
        + signature_parameters(SpikingTransformerImageClassifier)
        if p.name not in names | {"backbone"}
    ]
    unique = {p.name: p for p in forwarded}
    return own + list(unique.values())


def entry_points():
    """`(label, callable, parameters, fixed arguments)` of every public
    entry point covered."""
    found = []
    for name in sorted(dir(layers)):
        entry = getattr(layers, name)
        if name.startswith("_") or name in NOT_ENTRY_POINTS:
            continue
        if not (inspect.isclass(entry) or inspect.isfunction(entry)):
            continue
        found.append((name, entry, signature_parameters(entry), {}))
    found.append(
        ("SpikingTransformerBackbone", SpikingTransformerBackbone,
         signature_parameters(SpikingTransformerBackbone), {})
    )
    for label, function in (
        ("SpikingTransformerImageClassifier.from_preset",
         SpikingTransformerImageClassifier.from_preset),
        ("keras_spiking_tf.from_preset", keras_spiking_tf.from_preset),
    ):
        found.append((label, function, from_preset_parameters(), {}))
    found.append(
        ("SpikingStepModel", SpikingStepModel,
         signature_parameters(SpikingStepModel), {})
    )
    found.append(
        ("SpikingStepModel.initial_state",
         Later(lambda: step_model().initial_state),
         signature_parameters(SpikingStepModel.initial_state)[1:], {})
    )
    for function in (predict_anytime, running_logits):
        found.append((function.__name__, function, signature_parameters(function), {}))
    covered = {label.rsplit(".", 1)[-1] for label, *_ in found}
    for label, entry in library_entry_points():
        if label not in covered:
            covered.add(label)
            found.append((label, entry, signature_parameters(entry), {}))
    return found


def library_entry_points():
    """`(name, callable)` of the walked namespaces' public classes and
    functions (exceptions, modules and `NOT_COVERED` left out) and of
    `TRAINING_API`."""
    found = []
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        defines_only = namespace.endswith(".profile")
        for name in sorted(vars(module)):
            entry = getattr(module, name)
            if name.startswith("_") or name in NOT_COVERED:
                continue
            if not (inspect.isclass(entry) or inspect.isfunction(entry)):
                continue
            if inspect.isclass(entry) and issubclass(entry, BaseException):
                continue
            if defines_only and entry.__module__ != namespace:
                continue
            found.append((name, entry))
    for module, names in TRAINING_API.items():
        found.extend((name, getattr(module, name)) for name in names)
    return found


ENTRY_POINTS = entry_points()


def lookup(table, label, argument, default=None):
    """`table`'s entry for `argument` of entry point `label`: the key
    `label.argument` (or `method.argument`) first, then `argument`."""
    short = label.rsplit(".", 1)[-1]
    for key in (f"{label}.{argument}", f"{short}.{argument}", argument):
        if key in table:
            return table[key]
    return default


def example_of(label, parameter):
    """A valid value of the argument, from its default or `EXAMPLES`."""
    if parameter.default is not inspect.Parameter.empty and parameter.default is not None:
        return parameter.default
    return lookup(EXAMPLES, label, parameter.name)


def valid_value(label, parameter):
    """The value the argument takes in the otherwise valid call."""
    if parameter.name == "classifier":
        return tiny_classifier()
    if parameter.name == "x":
        return np.zeros((2, 16, 16, 1), "float32")
    if parameter.name == "model":
        return tiny_classifier()
    if parameter.name == "backbone":
        if label.startswith("MetaSpikeFormer"):
            return tiny_meta_spikeformer_backbone()
        return tiny_classifier().backbone
    if parameter.name in ("images", "verification_images", "representative_images",
                          "verification_inputs"):
        return np.zeros((2, 16, 16, 1), "uint8")
    if label == "train" and parameter.name == "config":
        return trainer.TrainConfig(output_dir=os.path.join(SCRATCH, "run"))
    if label == "register_dataset" and parameter.name == "dataset":
        return datasets.Dataset("walker_test_dataset", "images", lambda *args: None)
    return example_of(label, parameter)


def kinds_of(example):
    """The kinds of bad value for an argument whose valid values look like
    `example`."""
    if isinstance(example, bool):
        return ["wrong_type"]
    if isinstance(example, int):
        return ["zero", "negative", "huge", "fraction", "nan", "inf", "wrong_type"]
    if isinstance(example, float):
        return ["zero", "negative", "nan", "inf", "wrong_type"]
    if isinstance(example, str):
        return ["unknown_choice", "empty", "wrong_type"]
    if isinstance(example, dict):
        return ["unknown_key", "bad_value_in_dict", "wrong_type"]
    if isinstance(example, (tuple, list)) and all(isinstance(i, str) for i in example):
        return ["empty", "bad_element", "wrong_type"]
    if isinstance(example, (tuple, list)):
        return ["wrong_length", "bad_element", "empty", "wrong_type"]
    if example is OBJECT or example is ARRAY:
        return ["wrong_type"]
    raise AssertionError(f"no kinds of bad value for an argument like {example!r}")


def cases():
    """`(label, entry, parameter, kinds)` for every argument of every entry."""
    found = []
    for label, entry, parameters, _ in ENTRY_POINTS:
        for parameter in parameters:
            example = example_of(label, parameter)
            if example is None:
                found.append((label, entry, parameter, None))
                continue
            kinds = kinds_of(example)
            if parameter.default is not None:  # `None` is valid where it is the default
                kinds.append("none")
            accepted = lookup(ACCEPTS, label, parameter.name, set())
            found.append((label, entry, parameter, [k for k in kinds if k not in accepted]))
    return found


CASES = cases()


# --- bad values ---------------------------------------------------------------

NAMES = st.text(string.ascii_lowercase + "_", min_size=1, max_size=10).map(
    lambda t: "no_such_" + t
)


def bad_values(kind, example):
    """A hypothesis strategy of bad values of `kind` for an argument whose
    valid values look like `example`."""
    if kind == "zero":
        return st.just(0 if isinstance(example, int) else 0.0)
    if kind == "negative":
        if isinstance(example, int):
            return st.integers(-(10**6), -1)
        return st.floats(-1e6, -1e-6)
    if kind == "huge":  # beyond every range, also NumPy's seeds (< 2**32)
        return st.integers(2**32, 10**15)
    if kind == "fraction":
        return st.floats(0.1, 100.0).filter(lambda v: not float(v).is_integer())
    if kind == "nan":
        return st.just(math.nan)
    if kind == "inf":
        return st.sampled_from([math.inf, -math.inf])
    if kind == "none":
        return st.just(None)
    if kind == "empty":
        return st.just("" if isinstance(example, str) else type(example)())
    if kind == "unknown_choice":
        return NAMES
    if kind == "unknown_key":
        return NAMES.map(lambda key: {key: 1})
    if kind == "bad_value_in_dict":
        key = next(iter(example))
        return st.sampled_from([math.nan, -1.0, "x", None, [1]]).map(lambda v: {key: v})
    if kind == "wrong_length":
        return st.sampled_from([tuple(example)[:-1], (*example, example[-1])])
    if kind == "bad_element":
        if all(isinstance(i, str) for i in example):
            elements = st.sampled_from([1.5, None, [1], True])
        else:
            elements = st.sampled_from([0, -1, 2.5, "x", 10**12, True])
        return elements.map(lambda e: (e, *tuple(example)[1:]))
    assert kind == "wrong_type", kind
    if isinstance(example, bool):
        return st.sampled_from(["yes", 1, 0, 1.0, [True]])
    if isinstance(example, (int, float)):
        return st.one_of(st.text(max_size=4), st.just(True), st.just({"a": 1}))
    if isinstance(example, str):
        return st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2),
                         st.just(b"bytes"))
    if isinstance(example, dict):
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=2),
                         st.text(min_size=1, max_size=4), st.integers())
    if isinstance(example, (tuple, list)):
        return st.one_of(st.text(min_size=1, max_size=4).filter(lambda t: not t.isdigit()),
                         st.just({"a": 1}))
    return st.one_of(st.text(max_size=4), st.integers(), st.just({"a": 1}))


def canonical_value(kind, example):
    """One fixed bad value of `kind` (the deterministic sweep's)."""
    fixed = {
        "zero": 0 if isinstance(example, int) else 0.0,
        "negative": -1 if isinstance(example, int) else -1.0,
        "huge": 10**12,
        "fraction": 2.5,
        "nan": math.nan,
        "inf": math.inf,
        "none": None,
        "unknown_choice": "no_such_value",
        "unknown_key": {"no_such_key": 1},
    }
    if kind in fixed:
        return fixed[kind]
    if kind == "empty":
        return "" if isinstance(example, str) else type(example)()
    if kind == "bad_value_in_dict":
        return {next(iter(example)): math.nan}
    if kind == "wrong_length":
        return tuple(example)[:-1]
    if kind == "bad_element":
        return (1.5 if isinstance(example[0], str) else 0, *tuple(example)[1:])
    assert kind == "wrong_type", kind
    if isinstance(example, bool):
        return "yes"
    if isinstance(example, (int, float)):
        return "4"
    if isinstance(example, str):
        return ["x"]
    if isinstance(example, dict):
        return 3
    return "abc" if isinstance(example, (tuple, list)) else "not an object"


# --- the check ------------------------------------------------------------------


@contextlib.contextmanager
def nothing_runs():
    """Fails the test if a layer is called (and so built), a step computed
    or weights loaded inside the block."""

    def forbidden(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} ran before the bad argument was rejected")

        return fail

    patches = [
        mock.patch.object(keras.layers.Layer, "__call__", forbidden("a layer call")),
        mock.patch.object(keras.Model, "load_weights", forbidden("load_weights")),
        mock.patch.object(SpikingTransformerBackbone, "load_weights", forbidden("load_weights")),
        mock.patch.object(
            SpikingTransformerImageClassifier, "load_task_weights", forbidden("load_task_weights")
        ),
        mock.patch.object(SpikingStepModel, "predict_on_batch", forbidden("a step")),
        mock.patch.object(keras.Variable, "assign", forbidden("a weight assigned")),
    ]
    for target, what in WORK.items():
        module_name, attribute = target.rsplit(".", 1)
        patches.append(mock.patch.object(importlib.import_module(module_name), attribute,
                                         forbidden(what)))
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield
    assert not os.listdir(SCRATCH), f"written before the bad argument was rejected: " \
                                    f"{os.listdir(SCRATCH)}"


# The library's work after the argument checks, replaced in `nothing_runs`.
WORK = {
    "keras_spiking_tf.edge_export.export_utils.reserve": "an export's file reserved",
    "keras_spiking_tf.edge_export.exporter._graph_model": "an export graph built",
    "keras_spiking_tf.edge_export.streaming.in_float32": "a step export started",
    "keras_spiking_tf.edge_export.streaming.StepRunner": "a step file loaded",
    "keras_spiking_tf.edge_export.runtime.format_module": "an exported file loaded",
    "keras_spiking_tf.edge_export.profile._litert_interpreter": "a LiteRT profile",
    "keras_spiking_tf.inference_graph.float32_copy": "the inference graph built",
    "keras_spiking_tf.conversion.sdt_checkpoint._read_checkpoint": "a checkpoint read",
    "keras_spiking_tf.training.trainer.run_training": "training",
    "keras_spiking_tf.training.image_data.load_digits_arrays": "a data set loaded",
    "keras_spiking_tf.training.image_data.load_image_folder": "a data set loaded",
    "keras_spiking_tf.training.event_data.load_event_dataset": "a data set loaded",
    "keras_spiking_tf.models.preset_files.check_preset_directory": "a preset directory read",
}


def valid_arguments(label, parameters):
    return {
        p.name: valid_value(label, p)
        for p in parameters
        if p.default is inspect.Parameter.empty
    }


def assert_rejected(label, entry, parameters, argument, value, kind):
    """Calls `entry` with otherwise valid arguments and `argument=value`,
    expects the right error naming `argument`, before anything runs."""
    arguments = valid_arguments(label, parameters)
    arguments[argument] = value
    entry = resolve(entry)
    expected = TypeError if kind in TYPE_KINDS else ValueError if kind in VALUE_KINDS else (
        TypeError, ValueError)
    shown = f"{label}({argument}={value!r}) [{kind}]"
    with nothing_runs():
        try:
            entry(**arguments)
        except expected as error:
            message = str(error)
        except (TypeError, ValueError) as error:
            raise AssertionError(f"{shown} raised {type(error).__name__}, "
                                 f"expected {expected}: {error}") from error
        else:
            raise AssertionError(f"{shown} was accepted")
    named = re.search(rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])", message)
    assert named, f"{shown}: the message does not name {argument!r}: {message}"


def case_id(case):
    return f"{case[0]}.{case[2].name}"


def test_every_argument_has_a_kind():
    missing = [case_id(c) for c in CASES if c[3] is None]
    assert not missing, (
        "arguments with no default and no example in EXAMPLES (add one, so "
        f"that their bad values can be derived): {missing}"
    )


@pytest.mark.parametrize("case", [c for c in CASES if c[3] is not None], ids=case_id)
def test_every_bad_kind_is_rejected(case):
    label, entry, parameter, kinds = case
    parameters = next(e[2] for e in ENTRY_POINTS if e[0] == label)
    example = example_of(label, parameter)
    assert kinds, f"{case_id(case)}: no bad value left to try; is ACCEPTS too wide?"
    for kind in kinds:
        assert_rejected(label, entry, parameters, parameter.name,
                        canonical_value(kind, example), kind)


CASE_KINDS = [(c, kind) for c in CASES if c[3] is not None for kind in c[3]]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_bad_values_are_rejected(data):
    case, kind = data.draw(st.sampled_from(CASE_KINDS), label="case")
    label, entry, parameter, _ = case
    parameters = next(e[2] for e in ENTRY_POINTS if e[0] == label)
    example = example_of(label, parameter)
    value = data.draw(bad_values(kind, example), label=f"{case_id(case)} [{kind}]")
    assert_rejected(label, entry, parameters, parameter.name, value, kind)


@settings(max_examples=60, deadline=None)
@given(entry=st.sampled_from(ENTRY_POINTS), name=NAMES)
def test_unknown_keyword_is_rejected(entry, name):
    label, function, parameters, _ = entry
    arguments = valid_arguments(label, parameters)
    arguments[name] = 1
    function = resolve(function)
    with nothing_runs(), pytest.raises((TypeError, ValueError), match=name):
        function(**arguments)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e[0])
def test_the_otherwise_valid_call_is_valid(entry):
    """The calls above fail because of the bad value alone."""
    label, function, parameters, _ = entry
    arguments = valid_arguments(label, parameters)
    function = resolve(function)
    if label.endswith("from_preset"):
        arguments["load_weights"] = False
    if label in ("register_attention",):
        assert callable(function(**arguments))
        return
    if label in NO_VALID_CALL:
        pytest.skip("needs real files, the network or a training run (NO_VALID_CALL)")
    if label == "register_dataset":
        try:
            function(**arguments)
        finally:
            datasets.DATASETS.pop("walker_test_dataset", None)
        return
    function(**arguments)


def test_misspelt_keywords_suggest_the_right_name():
    for typo, right in (("num_class", "num_classes"), ("time_step", "time_steps")):
        with nothing_runs(), pytest.raises(TypeError, match=rf"'{typo}'.*Did you mean '{right}'"):
            keras_spiking_tf.from_preset(PRESET, **{typo: 5})
    with pytest.raises(ValueError, match=r"'v_treshold' in `neuron_config`.*'v_threshold'"):
        layers.SDSA(neuron_config={"tau": 2, "v_treshold": 1})


def test_overrides_and_values_are_checked_as_the_backbone_checks_them():
    with nothing_runs(), pytest.raises(ValueError, match="time_steps"):
        keras_spiking_tf.from_preset(PRESET, time_steps=0)
    with pytest.raises(ValueError, match="hidden_dim.*num_heads=5"):
        SpikingTransformerBackbone(num_layers=1, hidden_dim=24, num_heads=5)


@settings(max_examples=40, deadline=None)
@given(mutation=st.sampled_from(["drop", "extra", "shape", "dtype", "not_a_list", "rank"]),
       index=st.integers(0, 10**6))
def test_step_state_is_checked_before_the_step(mutation, index):
    step = step_model()
    inputs = [np.zeros((2, *step.frame_shape), "float32"), *step.initial_state(2)]
    position = 1 + index % (len(inputs) - 1)
    if mutation == "drop":
        del inputs[position]
    elif mutation == "extra":
        inputs.append(np.zeros((2, 1), "float32"))
    elif mutation == "shape":
        inputs[position] = np.zeros((2, *inputs[position].shape[1:-1],
                                     inputs[position].shape[-1] + 1), "float32")
    elif mutation == "rank":
        inputs[position] = inputs[position][..., None]
    elif mutation == "dtype":
        inputs[position] = inputs[position].astype("int32")
    else:
        inputs = tuple(inputs)[0]
    with mock.patch.object(SpikingTransformerImageClassifier, "step_logits",
                           side_effect=AssertionError("the step ran")):
        with pytest.raises((TypeError, ValueError), match=r"state|inputs"):
            step(inputs)


def test_a_new_unchecked_argument_fails_the_check():
    """The check can fail: a layer whose argument nobody checks is caught."""

    class Unchecked(keras.layers.Layer):
        def __init__(self, gain=1.0, **kwargs):
            super().__init__(**kwargs)
            self.gain = gain

    (parameter,) = signature_parameters(Unchecked.__init__)[1:]
    with pytest.raises(AssertionError, match="was accepted"):
        assert_rejected("Unchecked", Unchecked, [parameter], "gain", math.nan, "nan")


def test_coverage(capsys):
    arguments = sum(len(e[2]) for e in ENTRY_POINTS)
    with capsys.disabled():
        print(
            f"\nargument validation: {len(ENTRY_POINTS)} entry points, {arguments} "
            f"arguments, {len(CASE_KINDS)} (argument, kind of bad value) cases"
        )
    labels = {e[0] for e in ENTRY_POINTS}
    for name in ("LIF", "LIFCell", "TernaryLIF", "TernaryLIFCell", "A2OS2A", "SDSA", "SSA",
                 "SpikingPatchSplitting", "SpikingTransformerEncoderBlock", "TokenDense",
                 "SynapticConv2D", "SpikingBatchNormalization", "heaviside_with_surrogate",
                 "SpikingTransformerBackbone", "keras_spiking_tf.from_preset",
                 "predict_anytime", "SpikingStepModel", "export",
                 "export_step_model", "load_exported", "load_step_model",
                 "optimize_for_inference", "litert_delegation", "onnx_operator_profile",
                 "litert_product_profile", "tensorflow_operator_profile", "TrainConfig",
                 "train", "load_dataset", "register_dataset", "load_recipe", "make_strategy",
                 "convert_sdt_checkpoint", "load_sdt_state_dict", "convert_sdt_state_dict",
                 "list_presets", "upload_preset"):
        assert name in labels
    assert len(ENTRY_POINTS) >= 45 and arguments >= 200
