"""What every export format shares: the errors, quiet conversion, the
float32 copy of a mixed-precision model, and the atomic write (a staging
entry beside the destination, from `atomic_directory`, renamed into place)."""

import errno
import logging
import os
import shutil
import warnings

import keras
import numpy as np

from keras_spiking_tf.atomic_directory import replace_directory
from keras_spiking_tf.atomic_directory import staging_name
from keras_spiking_tf.atomic_directory import sweep_stale_staging
from keras_spiking_tf import validation
from keras_spiking_tf.edge_export.formats import FORMATS
from keras_spiking_tf.inference_graph import float32_copy


class ExportError(RuntimeError):
    """Conversion failed, or the exported file does not run."""


class ExportVerificationError(ExportError):
    """The exported model disagrees with Keras more than allowed."""


def computes_in_float32(model):
    return all(
        keras.dtype_policies.get(layer.dtype_policy).compute_dtype == "float32"
        for layer in model._flatten_layers()
    )


def in_float32(model):
    """`model`, or a float32 copy with its weights if it computes in another
    dtype (a model trained under `mixed_bfloat16`): the exported graphs are
    float32 (quantization is the export's own option), and LiteRT has no
    bfloat16 kernels."""
    if computes_in_float32(model):
        return model
    return float32_copy(model)


def reserve(path, format):
    """Absolute destination and a staging path beside it (created empty)."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    if not FORMATS[format].is_directory and os.path.isdir(path):
        raise IsADirectoryError(
            f"Cannot write the {format} export to '{path}': it is a directory."
        )
    if FORMATS[format].is_directory and os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(
            f"Cannot write the SavedModel to '{path}': a file of that name exists."
        )
    blocker = parent
    while blocker and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if blocker and not os.path.isdir(blocker):
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"Cannot write the {format} export to '{path}': '{blocker}' is a "
            "file, not a directory",
            path,
        )
    try:
        os.makedirs(parent, exist_ok=True)
        sweep_stale_staging(parent, [".partial"])  # left by an interrupted export
        while True:
            staging = os.path.join(parent, f"{staging_name('.partial')}.{name}{FORMATS[format].suffix}")
            try:
                # Default permissions (0o666/0o777 less the umask), unlike
                # tempfile's private 0o600/0o700: the staging entry becomes
                # the export itself.
                if FORMATS[format].is_directory:
                    os.mkdir(staging)
                else:
                    open(staging, "xb").close()
                return path, staging
            except FileExistsError:
                continue
    except OSError as error:
        raise type(error)(
            error.errno,
            f"Cannot write the {format} export to '{path}': {error.strerror or error}",
            path,
        ) from error


def move_into_place(staging, path, format):
    if FORMATS[format].is_directory:
        replace_directory(staging, path)
    else:
        os.replace(staging, path)


def remove(staging):
    if os.path.isdir(staging):
        shutil.rmtree(staging, ignore_errors=True)
    elif os.path.exists(staging):
        os.remove(staging)


def size(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(path)
            for f in files
        )
    return os.path.getsize(path)


def quiet(fn, *args, **kwargs):
    """Calls `fn` with TensorFlow/tf2onnx/absl chatter turned down."""
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow", "absl")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def cast_images(images, dtype):
    """Raw images to an integer input dtype (rounded, clipped) or a float."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(images), info.min, info.max).astype(dtype)
    return images.astype(dtype, copy=False)


# The default batch size keeps one batch's largest activation within this
# many bytes (see `default_batch_size`).
ACTIVATION_BUDGET_BYTES = 256 * 2**20
MAX_DEFAULT_BATCH_SIZE = 64
# Graph nodes that hold weights or the input, not activations.
_NOT_ACTIVATIONS = {"Const", "Placeholder", "ReadVariableOp", "VarHandleOp", "Identity"}


MAX_BATCH_SIZE = 2**20


def check_batch_size(batch_size, name="batch_size"):
    """`batch_size`: `None` (chosen from the model's largest activation) or
    an integer in [1, MAX_BATCH_SIZE]."""
    return validation.check_integer(name, batch_size, minimum=1, maximum=MAX_BATCH_SIZE,
                                    allow_none=True)


MAX_THREADS = 1024


def check_num_threads(name, num_threads):
    """`num_threads`: `None` (the runtime's default) or an integer in [1, MAX_THREADS]."""
    return validation.check_integer(name, num_threads, minimum=1, maximum=MAX_THREADS,
                                    allow_none=True)


def largest_activation_bytes(model, input_spec=None):
    """Bytes of the largest tensor that one sample produces in
    `model(x, training=False)`: the model traced by TensorFlow at batch 1,
    the largest output of any graph operation other than weights and the
    input. For a Spiking Transformer that is an SPS convolution's output at
    full resolution, `T x H x W x (hidden_dim / 8)` float32 values (e.g.
    st_8_512_imagenet: 4 x 226 x 226 x 64 x 4 bytes = 52 MB with padding)."""
    import tensorflow as tf

    if input_spec is None:
        (keras_input,) = model.inputs
        input_spec = tf.TensorSpec((None, *keras_input.shape[1:]), keras_input.dtype)
    spec = tf.TensorSpec((1, *input_spec.shape[1:]), input_spec.dtype)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    largest = 0
    for operation in graph.get_operations():
        if operation.type in _NOT_ACTIVATIONS:
            continue
        for output in operation.outputs:
            if output.shape.is_fully_defined() and output.dtype.is_numeric:
                largest = max(largest, output.shape.num_elements() * output.dtype.size)
    return max(largest, 1)


def default_batch_size(model, input_spec=None, budget_bytes=ACTIVATION_BUDGET_BYTES):
    """The batch size verification and calibration run with when none is
    given: the most samples whose largest activation
    (`largest_activation_bytes`) fits in `budget_bytes` (256 MiB), at least
    1 and at most 64. st_2_64_digits: 64; st_2_256_cifar10 (32 x 32, T=4): 64;
    st_8_512_imagenet (224 x 224, T=4): 5."""
    per_sample = largest_activation_bytes(model, input_spec)
    return int(max(1, min(MAX_DEFAULT_BATCH_SIZE, budget_bytes // per_sample)))


def in_batches(function, array, batch_size):
    """`function` applied to consecutive `batch_size` slices of `array`,
    the results concatenated (in order) along the first axis."""
    if len(array) <= batch_size:
        return function(array)
    return np.concatenate(
        [function(array[start : start + batch_size]) for start in range(0, len(array), batch_size)]
    )
