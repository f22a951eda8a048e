"""Checks of the arguments a public constructor or function is given.

Every layer, the backbone, `from_preset` and the streaming step check their
arguments with these functions at the top of `__init__` (or the function),
before any layer is built, any file read or anything computed, so a bad
value is one clear error at the call that gave it, not a failure deep inside
TensorFlow later. Each message names the argument (as the Python keyword,
which is also the command-line flag's name where there is one), the value
given and what is allowed:

    `time_steps` must be an integer >= 1 and <= 4096; got 0.
    Unknown key 'v_treshold' in `neuron_config`: its keys must be among [...]. Did you mean 'v_threshold'?
    from_preset() got an unexpected keyword argument 'num_class'. Did you mean 'num_classes'? ...

A wrong type raises `TypeError`, a wrong value of the right type
`ValueError` (as Python's own functions do). Values are shown with `repr`,
cut short; arrays and tensors by their type and shape only, never their
contents.

The command-line tools check their flags with the same functions, passing
the flag as the name (`check_integer("--epochs", ...)`, or
`flag_name("epochs", as_flag=True)`), so that a message speaks of what the
caller typed. Paths have their own checks: `check_path` (must exist; a
missing one raises `NoSuchPathError`, both a `FileNotFoundError` and a
`ValueError`), `check_output_path` (can be written, nothing created) and
`check_path_text` (a non-empty path, nothing looked up).

Each check returns the value in its normal form (`check_number` a float,
`check_integer` an int, ...), so a check and the assignment are one line:

```python
from keras_spiking_tf import validation

self.time_steps = validation.check_integer("time_steps", time_steps, minimum=1)
self.tau = validation.check_number("tau", tau, minimum=1.0)
```
"""

import difflib
import math
import numbers

import numpy as np

_REPR_LIMIT = 80


def describe(value):
    """A short description of `value` for an error message: its `repr`
    (cut to 80 characters), or for an array or tensor its type and shape.

    Example:

    ```python
    describe(np.zeros((2, 3)))   # 'a ndarray of shape (2, 3)'
    describe("relu")             # "'relu'"
    ```
    """
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text


def invalid(name, value, allowed, hint="", error=ValueError):
    """The error (to raise) for argument `name` given `value`, where
    `allowed` says what is allowed: "`name` must be ALLOWED; got VALUE."

    Example:

    ```python
    if hidden_dim % 8:
        raise validation.invalid("hidden_dim", hidden_dim, "divisible by 8")
    ```
    """
    message = f"`{name}` must be {allowed}; got {describe(value)}."
    return error(f"{message} {hint}" if hint else message)


def suggestion(value, choices):
    """`" Did you mean 'x'?"` for the choices close to `value`, else `""`."""
    if not isinstance(value, str):
        return ""
    by_lower = {str(choice).lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=3, cutoff=0.7)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(by_lower[c]) for c in close) + "?"


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def check_bool(name, value, allow_none=False):
    """`value` as a `bool`; only `True`/`False` (not `1`, `"yes"`).

    Example:

    ```python
    erode = check_bool("erode", erode)
    ```
    """
    if value is None and allow_none:
        return None
    if not _is_bool(value):
        raise invalid(name, value, "True or False" + (" or None" if allow_none else ""),
                      error=TypeError)
    return bool(value)


def _range_text(minimum, maximum, exclusive_minimum=False):
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if exclusive_minimum else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    return " and ".join(parts)


def check_integer(name, value, minimum=None, maximum=None, allow_none=False):
    """`value` as an `int` in `[minimum, maximum]`; not a bool or a float.

    Example:

    ```python
    num_layers = check_integer("num_layers", num_layers, minimum=1, maximum=1024)
    ```
    """
    if value is None and allow_none:
        return None
    allowed = "an integer" + (" " + _range_text(minimum, maximum) if (
        minimum is not None or maximum is not None) else "")
    if allow_none:
        allowed += " or None"
    if _is_bool(value) or not isinstance(value, (numbers.Integral, np.integer)):
        raise invalid(name, value, allowed, error=TypeError)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise invalid(name, value, allowed)
    return value


def check_number(
    name,
    value,
    minimum=None,
    maximum=None,
    exclusive_minimum=False,
    allow_none=False,
):
    """`value` as a finite `float` in the range; not a bool, NaN or +-inf.

    Example:

    ```python
    v_threshold = check_number("v_threshold", v_threshold, minimum=0.0,
                               exclusive_minimum=True)
    ```
    """
    if value is None and allow_none:
        return None
    bounds = _range_text(minimum, maximum, exclusive_minimum)
    allowed = "a finite number" + (f" {bounds}" if bounds else "")
    if allow_none:
        allowed += " or None"
    if _is_bool(value) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise invalid(name, value, allowed, error=TypeError)
    number = float(value)
    if not math.isfinite(number):
        raise invalid(name, value, allowed)
    too_low = minimum is not None and (
        number <= minimum if exclusive_minimum else number < minimum
    )
    if too_low or (maximum is not None and number > maximum):
        raise invalid(name, value, allowed)
    return number


def check_string(name, value, allow_none=False, allow_empty=False):
    """`value` as a `str` (non-empty unless `allow_empty`).

    Example:

    ```python
    name = check_string("name", name)
    ```
    """
    if value is None and allow_none:
        return None
    allowed = "a non-empty string" if not allow_empty else "a string"
    if allow_none:
        allowed += " or None"
    if not isinstance(value, str):
        raise invalid(name, value, allowed, error=TypeError)
    if not value and not allow_empty:
        raise invalid(name, value, allowed)
    return value


def check_choice(name, value, choices, allow_none=False, what=None):
    """`value`, which must be one of `choices` (close names are suggested).

    `what` names the kind of thing in the message ("Unknown surrogate
    'relu'"); it defaults to the argument's name.

    Example:

    ```python
    association = check_choice("association", association, ("auto", "kv_first"))
    ```
    """
    if value is None and allow_none:
        return None
    choices = list(choices)
    allowed = f"one of {choices}" + (" or None" if allow_none else "")
    if not isinstance(value, str) and all(isinstance(c, str) for c in choices):
        raise invalid(name, value, allowed, error=TypeError)
    if value not in choices:
        raise ValueError(
            f"Unknown {what or name} {describe(value)}: `{name}` must be {allowed}."
            + suggestion(value, choices)
        )
    return value


def check_array_like(name, value):
    """`value`, which must be a tensor, an array, a number or a (nested)
    list of numbers: not `None`, a string, a bool or a dict.

    Example:

    ```python
    x = check_array_like("x", x)
    ```
    """
    if (
        value is None
        or _is_bool(value)
        or isinstance(value, (str, bytes, dict, set))
        or not (hasattr(value, "shape") or isinstance(value, (numbers.Number, list, tuple)))
    ):
        raise invalid(name, value, "a tensor or array of numbers", error=TypeError)
    return value


def check_identifier(name, value, resolve, allowed, allow_none=True):
    """`value`, a name, config dict or callable that `resolve` (e.g.
    `keras.initializers.get`) must accept; `allowed` says what is allowed.

    Example:

    ```python
    check_identifier("kernel_initializer", "zeros", keras.initializers.get,
                     "a Keras initializer (name, config dict or instance)")
    ```
    """
    if value is None and allow_none:
        return None
    if _is_bool(value) or not (isinstance(value, (str, dict)) or callable(value)):
        raise invalid(name, value, allowed, error=TypeError)
    if isinstance(value, str) and not value:
        raise invalid(name, value, allowed)
    try:
        resolve(value)
    except (ValueError, TypeError) as error:
        raise invalid(name, value, allowed, hint=f"({error})") from None
    return value


def check_dtype_policy(name, value, allow_none=True):
    """`value`, which must name a Keras dtype policy (`"float32"`,
    `"mixed_bfloat16"`, ...), be one (or its config dict), or be `None`.

    Example:

    ```python
    check_dtype_policy("dtype", "mixed_bfloat16")
    ```
    """
    import keras

    if value is None and allow_none:
        return None
    allowed = "a Keras dtype policy (e.g. 'float32', 'mixed_bfloat16')" + (
        " or None" if allow_none else ""
    )
    if not isinstance(value, (str, dict, keras.DTypePolicy)):
        raise invalid(name, value, allowed, error=TypeError)
    try:
        keras.dtype_policies.get(value)
    except (ValueError, TypeError):
        raise invalid(name, value, allowed) from None
    return value


def check_int_tuple(name, value, length, minimum=1, maximum=None):
    """`value` (a list or tuple of `length` integers, each in
    `[minimum, maximum]`) as a tuple.

    Example:

    ```python
    image_shape = check_int_tuple("image_shape", image_shape, 3, minimum=1)
    ```
    """
    allowed = f"a tuple of {length} integers " + _range_text(minimum, maximum)
    if not isinstance(value, (list, tuple)):
        raise invalid(name, value, allowed, error=TypeError)
    if len(value) != length:
        raise invalid(name, value, allowed)
    for item in value:
        if _is_bool(item) or not isinstance(item, (numbers.Integral, np.integer)):
            raise invalid(name, value, allowed, error=TypeError)
        if (minimum is not None and item < minimum) or (maximum is not None and item > maximum):
            raise invalid(name, value, allowed)
    return tuple(int(item) for item in value)


check_shape = check_int_tuple


def check_keys(name, mapping, allowed, allow_none=False):
    """`mapping` as a `dict` whose keys are all in `allowed` (an unknown key
    is named, with close names suggested).

    Example:

    ```python
    config = check_keys("neuron_config", {"tau": 2}, ("tau", "v_threshold"))
    ```
    """
    if mapping is None and allow_none:
        return {}
    allowed = list(allowed)
    if not isinstance(mapping, dict):
        raise invalid(name, mapping, f"a dict with keys among {allowed}"
                      + (" or None" if allow_none else ""), error=TypeError)
    for key in mapping:
        if key not in allowed:
            raise ValueError(
                f"Unknown key {describe(key)} in `{name}`: its keys must be among "
                f"{allowed}." + suggestion(key, allowed)
            )
    return dict(mapping)


def check_keyword_arguments(function_name, kwargs, allowed):
    """Raises `TypeError` for a keyword argument of `kwargs` that is not in
    `allowed`, as Python does for a misspelt keyword, with close names
    suggested.

    Example:

    ```python
    check_keyword_arguments("from_preset", {"num_class": 5}, ("num_classes",))
    # TypeError: from_preset() got an unexpected keyword argument 'num_class'.
    # Did you mean 'num_classes'? ...
    ```
    """
    allowed = sorted(allowed)
    for key in kwargs:
        if key not in allowed:
            raise TypeError(
                f"{function_name}() got an unexpected keyword argument {key!r}."
                + suggestion(key, allowed)
                + f" Accepted keyword arguments: {', '.join(allowed)}."
            )


# --- paths ---------------------------------------------------------------------


class NoSuchPathError(FileNotFoundError, ValueError):
    """A path argument that names nothing: a `FileNotFoundError` (what file
    functions raise) that is also a `ValueError` (a bad argument value)."""


def check_path_text(name, value, allow_none=False):
    """`value` as a path `str`: a non-empty string or `os.PathLike`; whether
    anything is there is not checked (see `check_path`, `check_output_path`).

    Example:

    ```python
    path = check_path_text("path", pathlib.Path("model.tflite"))
    ```
    """
    import os

    if value is None and allow_none:
        return None
    allowed = "a path (a non-empty string or os.PathLike)" + (" or None" if allow_none else "")
    if _is_bool(value) or not isinstance(value, (str, os.PathLike)):
        raise invalid(name, value, allowed, error=TypeError)
    path = os.fspath(value)
    if not isinstance(path, str):
        raise invalid(name, value, allowed, error=TypeError)
    if not path:
        raise invalid(name, value, allowed)
    return path


def check_path(name, value, kind=None, allow_none=False):
    """`value`, the path of something that must exist (`kind`: `"file"`,
    `"directory"` or `None` for either), as a `str`.

    A missing path raises `NoSuchPathError` (a `FileNotFoundError` and a
    `ValueError`); a directory where a file is needed (or the reverse) a
    `ValueError`.

    Example:

    ```python
    checkpoint = check_path("checkpoint", "sdt.pth", kind="file")
    ```
    """
    import os

    path = check_path_text(name, value, allow_none)
    if path is None:
        return None
    what = {"file": "an existing file", "directory": "an existing directory"}.get(
        kind, "an existing file or directory")
    if not os.path.exists(path):
        raise NoSuchPathError(
            f"`{name}` must be {what}; got {describe(path)}, which does not exist."
        )
    if kind == "file" and os.path.isdir(path):
        raise invalid(name, path, what, hint="(it is a directory)")
    if kind == "directory" and not os.path.isdir(path):
        raise invalid(name, path, what, hint="(it is a file)")
    return path


def check_output_path(name, value, kind="file", allow_none=False):
    """`value`, a path that a file (`kind="file"`) or directory
    (`kind="directory"`) will be written to, as a `str`: not an existing
    thing of the other kind, and not below a file. Nothing is created.

    Example:

    ```python
    output_dir = check_output_path("output_dir", "runs/a", kind="directory")
    ```
    """
    import os

    path = check_path_text(name, value, allow_none)
    if path is None:
        return None
    what = f"a path where a {kind} can be written"
    if kind == "file" and os.path.isdir(path):
        raise invalid(name, path, what, hint="(it is an existing directory)")
    if kind == "directory" and os.path.exists(path) and not os.path.isdir(path):
        raise invalid(name, path, what, hint="(it is an existing file)")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise invalid(name, path, what, hint=f"('{parent}' is a file, not a directory)")
    return path


def flag_name(name, as_flag):
    """`--name` for a command-line tool's message, else `name` (the Python
    argument): the checks of an argument that is also a flag take the name
    their caller speaks of."""
    return f"--{name}" if as_flag else name


def check_bool_or_choice(name, value, choices):
    """`value`: `True`, `False` or one of the strings `choices` (e.g.
    `jit_compile`: `"auto"`, `True` or `False`).

    Example:

    ```python
    jit_compile = check_bool_or_choice("jit_compile", "auto", ("auto",))
    ```
    """
    if _is_bool(value):
        return bool(value)
    choices = list(choices)
    allowed = f"True, False or one of {choices}"
    if not isinstance(value, str):
        raise invalid(name, value, allowed, error=TypeError)
    if value not in choices:
        raise invalid(name, value, allowed, hint=suggestion(value, choices).strip())
    return value


def check_batch(name, value, allow_none=False):
    """`value`, a batch: a tensor or array (or nested list) with a leading
    batch axis, so not a single number; see `check_array_like`.

    Example:

    ```python
    images = check_batch("images", np.zeros((8, 16, 16, 1)))
    ```
    """
    if value is None and allow_none:
        return None
    allowed = "a batch: a tensor or array with a leading batch axis" + (
        " or None" if allow_none else "")
    check_array_like(name, value)
    if isinstance(value, numbers.Number) or (hasattr(value, "shape") and len(value.shape) == 0):
        raise invalid(name, value, allowed, error=TypeError)
    return value
