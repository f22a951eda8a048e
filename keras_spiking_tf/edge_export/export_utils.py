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
