"""Exporting from JAX or PyTorch: the conversion runs in a TensorFlow child process.

Every file `export` writes is converted from a TensorFlow graph (LiteRT's
converter and tf2onnx take nothing else), and Keras fixes its backend once
per process. So under `KERAS_BACKEND=jax` or `torch`, `export`,
`export_step_model` and `kst-export` hand the conversion to a child Python
process on the TensorFlow backend (`run`):

1. the parent has checked every argument (as on TensorFlow, before any work)
   and reserved the staging entry beside the destination (`reserved`);
2. it saves the model safely into a private temporary directory (its config,
   `keras.saving.serialize_keras_object`, as JSON, and its weights as
   `.weights.h5`: no pickles, no code) and the NumPy arguments (images,
   labels) as an `.npz`;
3. the child (`python -c ...` -> `_child_main`) imports this package on the
   TensorFlow backend, rebuilds the model from the config in safe mode,
   loads the weights and runs the same export function (the job) with the
   same arguments, writing the file into the staging entry and verifying it
   against its TensorFlow rebuild of the model, as a TensorFlow export does;
4. it answers with the report (JSON) and the arrays the parent needs (the
   verification inputs), or with its exception: type, message and
   traceback (`_rebuild_error` raises it in the parent as the same type
   with the same message, the child's traceback as a note);
5. the parent runs the written file in its runtime (LiteRT and ONNX Runtime
   need no TensorFlow backend) on the same inputs and compares it with the
   user's own JAX/PyTorch model, so the report's agreement is with the
   model the user has; then it moves the file into place.

Why not Keras' own exporters on those backends: on JAX, `model.export`
goes through `jax2tf`, whose graph is one `XlaCallModule` operator that
LiteRT's converter takes only as a Flex (non-builtin) operator; on PyTorch,
LiteRT export goes through `litert_torch` with static shapes only and ONNX
through `torch.onnx`, other graphs with other operators than the ones this
library verifies. The child rebuilds the very TensorFlow graph a
TensorFlow-backend export converts, so the file has the same operators.

The child's console output (TensorFlow's start-up and converter lines,
LiteRT's delegate line) is captured, not shown; it is attached to an error
(as a note, which a tool's failure log keeps). `KST_TF_LOGS=1` (or a tool's
`--tf_logs`) shows it as it comes. The child sees no GPU
(`CUDA_VISIBLE_DEVICES=-1`): converting needs none, and the parent's JAX or
PyTorch may hold the GPU's memory.

Cost: the child imports TensorFlow and rebuilds the model, about 10-20 s
on a laptop CPU on top of the export itself.
"""

import builtins
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np

from keras_spiking_tf.edge_export.export_utils import ExportError
from keras_spiking_tf.edge_export.export_utils import remove
from keras_spiking_tf.edge_export.export_utils import reserve

# What a child can be asked to do: job name -> "module:function", each
# `function(model, arrays, options) -> (JSON-able result, dict of arrays)`.
JOBS = {
    "export": "keras_spiking_tf.edge_export.exporter:export_in_child",
    "export_step_model": "keras_spiking_tf.edge_export.streaming:export_step_model_in_child",
    "default_batch_size": f"{__name__}:default_batch_size_in_child",
}
CHILD_PROGRAM = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from keras_spiking_tf.edge_export.tensorflow_bridge import _child_main; "
    "sys.exit(_child_main(sys.argv[2]))"
)
MAX_OUTPUT_CHARS = 4000  # of the child's console output kept in an error's note


def on_tensorflow():
    import keras

    return keras.backend.backend() == "tensorflow"


@contextlib.contextmanager
def reserved(path, format):
    """`(path, staging)`: the absolute destination and a staging entry
    reserved beside it (`export_utils.reserve`). If the block raises, the
    staging entry and every directory `reserve` created for it are removed:
    a failed export leaves nothing behind."""
    path = os.path.abspath(os.fspath(path))
    created = []
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    path, staging = reserve(path, format)
    try:
        yield path, staging
    except BaseException:
        remove(staging)
        for directory in created:  # innermost first
            try:
                os.rmdir(directory)
            except OSError:
                break
        raise


def run(job, model, arrays=None, options=None):
    """Runs `job` (a name in `JOBS`) on `model` in a TensorFlow child process.

    Args:
        job: what to run (`JOBS`).
        model: the Keras model (any backend); saved as config + weights.
        arrays: name -> array-like (images, labels); `None` values are left out.
        options: JSON-able keyword arguments of the job.

    Returns:
        `(result, arrays)`: the job's JSON result and its arrays.

    Raises:
        The child's exception as the same type with the same message (for
        this package's and Python's built-in exception types; others as an
        `ExportError` naming the type), or `ExportError` if the child died.
    """
    import keras

    with tempfile.TemporaryDirectory(prefix="keras_spiking_tf_bridge_") as work:
        config = keras.saving.serialize_keras_object(model)
        config.pop("compile_config", None)  # an export needs no optimizer or loss
        _write_json(os.path.join(work, "model.json"), config)
        model.save_weights(os.path.join(work, "model.weights.h5"))
        np.savez(
            os.path.join(work, "arrays.npz"),
            **{name: keras.ops.convert_to_numpy(value) if keras.ops.is_tensor(value)
               else np.asarray(value)
               for name, value in (arrays or {}).items() if value is not None},
        )
        _write_json(os.path.join(work, "job.json"), {"job": job, "options": options or {}})
        output_path = os.path.join(work, "output.txt")
        show = _showing_output()
        with open(output_path, "wb") as output:
            completed = subprocess.run(
                [sys.executable, "-c", CHILD_PROGRAM, _package_parent(), work],
                env=_child_environment(), stdin=subprocess.DEVNULL,
                stdout=None if show else output, stderr=None if show else subprocess.STDOUT,
                check=False,
            )
        with open(output_path, "rb") as output:
            console = output.read().decode(errors="replace")
        error_path = os.path.join(work, "error.json")
        if os.path.exists(error_path):
            with open(error_path, encoding="utf-8") as file:
                raise _rebuild_error(json.load(file), console)
        if completed.returncode != 0:
            how = (
                f"was killed by signal {-completed.returncode}"
                if completed.returncode < 0
                else f"exited with status {completed.returncode}"
            )
            error = ExportError(
                f"The TensorFlow process that converts the model {how} before it "
                f"finished {job}() (out of memory? the output it printed is in this "
                "error's notes)."
            )
            _add_output_note(error, console)
            raise error
        with open(os.path.join(work, "result.json"), encoding="utf-8") as file:
            result = json.load(file)
        with np.load(os.path.join(work, "returned.npz"), allow_pickle=False) as returned:
            returned = {name: returned[name] for name in returned.files}
    return result, returned


def default_batch_size(model):
    """`export_utils.default_batch_size(model)` on any backend: it traces the
    model with TensorFlow, in a child process off the TensorFlow backend."""
    from keras_spiking_tf.edge_export import export_utils

    if on_tensorflow():
        return export_utils.default_batch_size(model)
    result, _ = run("default_batch_size", model)
    return int(result)


def default_batch_size_in_child(model, arrays, options):
    from keras_spiking_tf.edge_export import export_utils

    return export_utils.default_batch_size(model), {}


# --- the parent's side ---------------------------------------------------------


def _package_parent():
    """The directory this package was imported from, first on the child's
    path: the child runs the same code as the parent."""
    import keras_spiking_tf

    return os.path.dirname(os.path.dirname(os.path.abspath(keras_spiking_tf.__file__)))


def _showing_output():
    from keras_spiking_tf.cli.startup import showing_tensorflow_logs

    return showing_tensorflow_logs()


def _child_environment():
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "tensorflow"
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _exception_class(module, qualname):
    """The exception class the child raised, if the parent may raise it too:
    Python's built-in ones and this package's."""
    if module == "builtins":
        found = getattr(builtins, qualname, None)
    elif module == "keras_spiking_tf" or module.startswith("keras_spiking_tf."):
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            found = None
    else:
        found = None
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None


def _rebuild_error(info, console):
    """The child's exception, as the same type with the same message."""
    message = info["message"]
    error = None
    cls = _exception_class(info["module"], info["qualname"])
    if cls is not None:
        attempts = []
        if issubclass(cls, OSError) and info.get("errno") is not None:
            attempts.append((info["errno"], info["strerror"], *(
                [info["filename"]] if info.get("filename") is not None else [])))
        if info.get("args") is not None:
            attempts.append(tuple(info["args"]))
        attempts.append((message,))
        for args in attempts:
            try:
                candidate = cls(*args)
            except Exception:
                continue
            if str(candidate) == message:
                error = candidate
                break
    if error is None:
        error = ExportError(f"{info['module']}.{info['qualname']}: {message}")
    error.add_note(
        "Raised in the TensorFlow process that converted the model "
        "(keras_spiking_tf.edge_export.tensorflow_bridge):\n" + info["traceback"].rstrip()
    )
    _add_output_note(error, console)
    return error


def _add_output_note(error, console):
    if console.strip():
        tail = console[-MAX_OUTPUT_CHARS:]
        error.add_note(f"What the TensorFlow process printed (its end):\n{tail.rstrip()}")


# --- the child's side ----------------------------------------------------------


def _error_info(error):
    info = {
        "module": type(error).__module__,
        "qualname": type(error).__qualname__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
        "args": None,
    }
    try:
        json.dumps(list(error.args))
        info["args"] = list(error.args)
    except (TypeError, ValueError):
        pass
    if isinstance(error, OSError):
        info.update(errno=error.errno, strerror=error.strerror,
                    filename=error.filename if isinstance(error.filename, str) else None)
    return info


def _child_main(work):
    """Runs the job described in the directory `work`; 0 on success, 1 when
    the job raised (its exception is in `error.json`)."""
    try:
        with open(os.path.join(work, "job.json"), encoding="utf-8") as file:
            job = json.load(file)
        import keras

        import keras_spiking_tf  # noqa: F401  (registers the serializable classes)

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"The export process runs on backend {keras.backend.backend()!r}, not "
                "TensorFlow (KERAS_BACKEND is set to tensorflow for it; is Keras' "
                "backend fixed in keras.json or by the program?)."
            )
        with open(os.path.join(work, "model.json"), encoding="utf-8") as file:
            config = json.load(file)
        try:
            model = keras.saving.deserialize_keras_object(config, safe_mode=True)
            model.load_weights(os.path.join(work, "model.weights.h5"))
        except Exception as error:
            raise ExportError(
                "Could not rebuild the model on the TensorFlow backend (exporting from "
                "JAX or PyTorch rebuilds it from its config and weights in a TensorFlow "
                "process; its classes must be this library's or Keras' own, or "
                f"registered with keras.saving.register_keras_serializable): {error}"
            ) from error
        with np.load(os.path.join(work, "arrays.npz"), allow_pickle=False) as loaded:
            arrays = {name: loaded[name] for name in loaded.files}
        module_name, function_name = JOBS[job["job"]].split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        result, returned = function(model, arrays, job["options"])
        np.savez(os.path.join(work, "returned.npz"),
                 **{name: np.asarray(value) for name, value in returned.items()})
        _write_json(os.path.join(work, "result.json"), result)
        return 0
    except BaseException as error:  # noqa: B036  (reported to the parent, whatever it is)
        _write_json(os.path.join(work, "error.json"), _error_info(error))
        return 1
