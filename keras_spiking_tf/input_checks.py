"""Checks of an input batch against what its receiver expects.

Ordinary mistakes otherwise give confident nonsense: float images in
[0, 1] into `predict` (which takes raw 0..255 pixels and normalises them
itself), raw uint8 images into an exported file or an analysis function
that takes normalised floats, an NCHW batch into an NHWC model. Each check
here looks at one batch and, when it is probably wrong, issues an
`InputWarning` that names the argument, what was given, the likely mistake
and the fix. Under `set_strict_inputs(True)` (or the environment variable
`KST_STRICT_INPUTS=1`) the same message is raised as an `InputError`
(a `ValueError`).

Two input spaces (`InputSpace`):

- *raw pixels*: 0..255 images, any numeric dtype (`predict`, `fit`,
  `evaluate`, `predict_anytime` of a classifier with a preprocessor; an
  exported file with the preprocessor baked in).
- *normalised*: `x * scale + offset` of raw pixels, the image converter's
  `(x / 255 - mean) / std` (a classifier's or backbone's `call`, the
  analysis functions, an exported file without the preprocessor). From
  the converter's `scale` and `offset` the exact range normalised pixels
  can reach is known: `[min(offset, 255 scale + offset), max(...)]` over
  the channels (digits: [-0.81, 1.85]).

The heuristics (`check_raw_pixels`, `check_normalised`; the first rule
that applies gives the message):

| takes      | given                                                      | message says                          |
|------------|------------------------------------------------------------|---------------------------------------|
| raw pixels | floats in [0, 1]                                           | multiply by 255                       |
| raw pixels | negative values, all inside the receiver's normalised range | already normalised: pass the raw images, or undo it (`x / scale - offset / scale`) |
| raw pixels | floats in [-1, 1]                                          | `(x + 1) * 127.5`                     |
| raw pixels | more than 1 % of the values negative                       | not raw pixels                        |
| raw pixels | values above 510 (twice 8-bit's 255)                       | not 8-bit: rescale to 0..255          |
| normalised | an integer dtype (unless the normalised range reaches 255) | raw pixels: normalise them            |
| normalised | floats above `max(10, 2 x the reachable maximum)`          | raw pixels: normalise them            |

`check_call_inputs(model, images, ...)` applies the normalised rules to a
model's `call` inputs (the analysis functions); the classifier's
`check_images` applies the raw rules (or, without a preprocessor, the
normalised ones); `ExportedModel` reads its input space off its input
dtype (see `edge_export/runtime.py`).

The margins leave room for other normalisations, augmentation and random
test inputs (a standard normal batch stays below 10) while raw pixels,
which reach about 100 and more in any real image, are caught. Nothing is
checked for event-frame inputs (counts are legitimate values there), for
empty batches, and for constant batches (all values equal: an all-black
image is a valid raw image and a valid normalised one). Non-finite values
are left out of the statistics (the receivers reject them separately).

`layout_fix` finds the reshaping (a transpose, a missing batch or channel
axis, grey to RGB) that turns a batch's shape into the one expected,
trying each candidate on a zero-size stand-in and suggesting only one that
gives the expected shape.

Example:

```python
import keras_spiking_tf
keras_spiking_tf.set_strict_inputs(True)     # warnings become InputError
model.predict(images / 255.0)                # InputError: ... multiply by 255
```
"""

import dataclasses
import itertools
import os
import warnings

import numpy as np


class InputWarning(UserWarning):
    """An input that is probably wrong (e.g. images in [0, 1] where raw 0..255
    pixels are expected); the message names the mistake and the fix."""


class InputError(ValueError):
    """An `InputWarning` raised as an error under `set_strict_inputs(True)`."""


_strict = None  # None: follow the environment variable KST_STRICT_INPUTS
_ENV = "KST_STRICT_INPUTS"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")

# Thresholds of the heuristics (see the module docstring).
RAW_MAX_8BIT = 255.0
RAW_TOO_LARGE = 2 * RAW_MAX_8BIT
NEGATIVE_FRACTION = 0.01
NORMALISED_FLOOR = 10.0


def set_strict_inputs(flag=True):
    """Makes input warnings errors (`True`), warnings again (`False`), or
    follows the environment variable `KST_STRICT_INPUTS` (`None`, the
    default state).

    Example:

    ```python
    keras_spiking_tf.set_strict_inputs(True)
    ```
    """
    global _strict
    if flag is not None and not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"set_strict_inputs takes True, False or None; got {flag!r}.")
    _strict = None if flag is None else bool(flag)


def strict_inputs():
    """Whether input warnings are raised as `InputError`: the value given to
    `set_strict_inputs`, else the environment variable `KST_STRICT_INPUTS`
    (`1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`/unset)."""
    if _strict is not None:
        return _strict
    value = os.environ.get(_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{_ENV}={os.environ[_ENV]!r} is neither on ({'/'.join(_TRUE)}) nor off "
        f"({'/'.join(v for v in _FALSE if v)} or unset); set it to 1 or 0."
    )


def warn_input(message, stacklevel=2):
    """Issues `message` as an `InputWarning`, or raises it as an `InputError`
    under strict inputs. `stacklevel` as in `warnings.warn`, counted from
    the caller of `warn_input`."""
    if strict_inputs():
        raise InputError(message)
    warnings.warn(message, InputWarning, stacklevel=stacklevel + 1)


# --- input spaces -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputSpace:
    """What a receiver takes.

    Attributes:
        kind: `"raw"` (0..255 pixels) or `"normalised"`.
        scale, offset: per-channel normalisation `x * scale + offset` of raw
            pixels, when known (from an image converter); else `None`.
    """

    kind: str
    scale: tuple | None = None
    offset: tuple | None = None

    @property
    def normalised_range(self):
        """`(low, high)` that normalised pixels can reach, or `None` when
        the normalisation is unknown."""
        if self.scale is None:
            return None
        scale = np.asarray(self.scale, "float64")
        offset = np.asarray(self.offset, "float64")
        ends = np.stack(np.broadcast_arrays(offset, RAW_MAX_8BIT * scale + offset))
        return float(ends.min()), float(ends.max())

    def normalise_formula(self):
        """How to normalise raw pixels `x` into this space, as code."""
        if self.scale is None:
            return "the model's preprocessor"
        return _affine(self.scale, self.offset)

    def undo_formula(self):
        """How to turn normalised pixels `x` back into raw ones, as code:
        `x / scale - offset / scale`."""
        scale = np.asarray(self.scale, "float64")
        offset = np.asarray(self.offset, "float64")
        return _affine(1.0 / scale, -offset / scale)


def space_of_converter(converter, kind):
    """The `InputSpace` of `kind` for a KerasHub `ImageConverter` (its
    `scale` and `offset`; `None` of either means 1 or 0)."""
    if converter is None:
        return InputSpace(kind)
    scale = getattr(converter, "scale", None)
    offset = getattr(converter, "offset", None)
    scale = np.atleast_1d(np.asarray(1.0 if scale is None else scale, "float64"))
    offset = np.atleast_1d(np.asarray(0.0 if offset is None else offset, "float64"))
    scale, offset = np.broadcast_arrays(scale, offset)
    return InputSpace(kind, tuple(float(s) for s in scale), tuple(float(o) for o in offset))


def model_input_space(model):
    """What `model(...)` (`call`) takes: for a classifier with a
    preprocessor, normalised pixels of its converter; for a backbone or a
    classifier without one, normalised pixels of unknown normalisation; for
    event-frame models and models not built on a Spiking Transformer
    backbone, `None` (nothing to check)."""
    backbone = getattr(model, "backbone", model)
    if getattr(backbone, "input_type", None) != "image":
        return None
    preprocessor = getattr(model, "preprocessor", None)
    return space_of_converter(getattr(preprocessor, "image_converter", None), "normalised")


# --- value checks -------------------------------------------------------------


def _affine(scale, offset):
    """`x * scale + offset` as code, with a minus for a negative offset."""
    offset = np.atleast_1d(np.asarray(offset, "float64"))
    if np.all(offset < 0):
        return f"x * {_numbers(scale)} - {_numbers(-offset)}"
    return f"x * {_numbers(scale)} + {_numbers(offset)}"


def _numbers(values):
    values = [float(v) for v in np.atleast_1d(values)]
    text = [f"{v:.4g}" for v in values]
    return text[0] if len(set(text)) == 1 else "np.array([" + ", ".join(text) + "])"


@dataclasses.dataclass(frozen=True)
class _Statistics:
    dtype: np.dtype
    low: float
    high: float
    negative_fraction: float


def _statistics(images):
    """Dtype, range and fraction of negative values of the finite values
    of `images`, or `None` when there is nothing to judge: empty,
    non-numeric, or constant."""
    array = np.asarray(images)
    if array.dtype.kind not in "biuf" or array.size == 0:
        return None
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            array = array[finite]
            if array.size == 0:
                return None
    low, high = float(array.min()), float(array.max())
    if low == high:
        return None
    negative = np.count_nonzero(array < 0) / array.size if low < 0 else 0.0
    return _Statistics(np.asarray(images).dtype, low, high, negative)


def _to_numpy(images):
    if isinstance(images, np.ndarray):
        return images
    try:
        import keras

        return keras.ops.convert_to_numpy(images)
    except Exception:  # a tensor of another framework than the backend's
        return np.asarray(images)


def _given(argument, stats):
    return (
        f"{argument} (dtype {np.dtype(stats.dtype).name}, values in "
        f"[{stats.low:.4g}, {stats.high:.4g}])"
    )


def check_raw_pixels(images, receiver, argument="x", space=None, stacklevel=2):
    """Warns when `images` do not look like the raw 0..255 pixels
    `receiver` takes (see the module docstring for the rules).

    Args:
        images: the batch (NumPy array or tensor).
        receiver: who takes it, for the message, e.g. `"predict()"`.
        argument: the argument's name, for the message.
        space: the `InputSpace` the receiver normalises into (its
            converter's), to recognise and undo an already normalised batch.
        stacklevel: as in `warnings.warn`, 1 being the line that calls
            this function (2, the default: the line that calls its caller).

    Returns:
        The message issued, or `None`.
    """
    stats = _statistics(_to_numpy(images))
    if stats is None:
        return None
    dtype, low, high = stats.dtype, stats.low, stats.high
    given = _given(argument, stats)
    takes = f"{receiver} takes raw 0..255 pixels and normalises them itself"
    message = None
    normalised = space.normalised_range if space is not None else None
    if dtype.kind == "f" and low >= 0 and high <= 1:
        message = (
            f"{given}: these float images lie in [0, 1], but {takes}; "
            f"multiply them by 255 ({argument} * 255)."
        )
    elif low < 0 and normalised is not None and _inside(low, high, normalised):
        message = (
            f"{given}: these look like already normalised images (they fit this model's "
            f"normalised range [{normalised[0]:.3g}, {normalised[1]:.3g}]), but {takes}; "
            f"pass the images from before normalisation, or undo it: "
            f"{space.undo_formula().replace('x', argument, 1)}."
        )
    elif dtype.kind == "f" and low >= -1 and high <= 1:
        message = (
            f"{given}: these float images lie in [-1, 1], but {takes}; "
            f"map them to 0..255 with ({argument} + 1) * 127.5."
        )
    elif stats.negative_fraction > NEGATIVE_FRACTION:
        message = (
            f"{given}: {stats.negative_fraction:.0%} of the values are negative, as in "
            f"normalised images, but {takes}; pass the images from before normalisation "
            "(0..255)."
        )
    elif high > RAW_TOO_LARGE:
        message = (
            f"{given}: values up to {high:.6g} are not 8-bit pixels, but {takes}; "
            f"rescale them to 0..255 (16-bit images: {argument} / 257)."
        )
    if message is not None:
        warn_input(message, stacklevel + 1)
    return message


def _inside(low, high, bounds, tolerance=1e-3):
    margin = tolerance * max(1.0, bounds[1] - bounds[0])
    return low >= bounds[0] - margin and high <= bounds[1] + margin


def normalised_limit(space):
    """The largest value `check_normalised` lets through for `space`:
    `max(10, 2 x the normalised range's maximum)`."""
    bounds = space.normalised_range if space is not None else None
    return NORMALISED_FLOOR if bounds is None else max(NORMALISED_FLOOR, 2 * bounds[1])


def check_normalised(images, receiver, argument="images", space=None, fix=None, stacklevel=2):
    """Warns when `images` look like raw pixels where `receiver` takes
    normalised floats (see the module docstring for the rules).

    Args:
        images: the batch (NumPy array or tensor).
        receiver: who takes it, for the message, e.g. `"energy_report()"`.
        argument: the argument's name, for the message.
        space: the receiver's `InputSpace` (its normalisation, if known).
        fix: what to do instead, for the message; default: normalise with
            the space's formula.
        stacklevel: as in `check_raw_pixels`.

    Returns:
        The message issued, or `None`.
    """
    stats = _statistics(_to_numpy(images))
    if stats is None:
        return None
    dtype = stats.dtype
    bounds = space.normalised_range if space is not None else None
    expected = (
        f"normalised floats (in [{bounds[0]:.3g}, {bounds[1]:.3g}] for this model)"
        if bounds is not None else "normalised floats"
    )
    fix = fix or f"normalise them first: {(space or InputSpace('normalised')).normalise_formula()}"
    given = _given(argument, stats)
    message = None
    if dtype.kind in "biu" and (bounds is None or bounds[1] < RAW_MAX_8BIT):
        message = (
            f"{given}: integer images look like raw pixels, but {receiver} takes "
            f"{expected}; {fix}."
        )
    elif dtype.kind == "f" and stats.high > normalised_limit(space):
        message = (
            f"{given}: values up to {stats.high:.4g} look like raw 0..255 pixels, but "
            f"{receiver} takes {expected}; {fix}."
        )
    if message is not None:
        warn_input(message, stacklevel + 1)
    return message


# --- layouts --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayoutFix:
    """A reshaping that gives an input the expected shape.

    Attributes:
        code: the expression, in terms of `x` (e.g. `"x[..., None]"`).
        meaning: what it does, in words.
        shape: the shape it gives.
    """

    code: str
    meaning: str
    shape: tuple

    def __str__(self):
        return f"this looks like {self.meaning}: `{self.code}` gives shape {self.shape}"


def _expansions(shape, target_rank, fixed, channels_first):
    """`(code, meaning, function)` candidates giving `shape` the rank
    `target_rank`: added batch/channel axes, or a dropped length-1 axis."""
    missing = target_rank - len(shape)
    channel_axis = ("x[:, None]" if fixed == 1 else "x[:, :, None]") if channels_first else "x[..., None]"
    indexing = {
        "x[:, None]": lambda a: a[:, None],
        "x[:, :, None]": lambda a: a[:, :, None],
        "x[..., None]": lambda a: a[..., None],
        "x[None]": lambda a: a[None],
        "x[None, None]": lambda a: a[None, None],
        "x[None, ..., None]": lambda a: a[None, ..., None],
    }
    single = "a single frame sequence" if fixed == 2 else "a single image"
    if missing == 0:
        return [("x", "", lambda a: a)]
    if missing == 1:
        return [
            (channel_axis, "images without their channel axis", indexing[channel_axis]),
            ("x[None]", f"{single} without a batch axis", indexing["x[None]"]),
        ]
    if missing == 2 and fixed == 1:
        both = "x[None, None]" if channels_first else "x[None, ..., None]"
        return [(both, f"{single} without batch and channel axes", indexing[both])]
    if missing == -1:
        return [
            (f"np.squeeze(x, axis={axis})", f"an extra axis {axis} of length 1",
             lambda a, _axis=axis: np.squeeze(a, axis=_axis))
            for axis in range(1, len(shape)) if shape[axis] == 1
        ]
    return []


def _permutations(rank, fixed, channels_first):
    """`(perm, meaning)` of the axes after the `fixed` leading ones, the
    standard layout conversions first, the identity left out."""
    tail = list(range(fixed, rank))
    head = tuple(range(fixed))
    standard = []
    if len(tail) == 3:
        a, b, c = tail
        to_last = ((*head, b, c, a), "channels-first data for a channels-last model")
        to_first = ((*head, c, a, b), "channels-last data for a channels-first model")
        standard = [to_first, to_last] if channels_first else [to_last, to_first]
    result, seen = [], {tuple(range(rank))}
    for perm, meaning in standard + [
        ((*head, *p), "axes in another order") for p in itertools.permutations(tail)
    ]:
        if perm not in seen:
            seen.add(perm)
            result.append((perm, meaning))
    return result


def _repeat_channel(channel_axis):
    def repeat(a):
        if a.shape[channel_axis] != 1:
            raise ValueError("not one channel")
        # Repeated on a one-element slice of the other axes (no copy of the
        # batch), then broadcast back to their sizes.
        small = a[tuple(slice(0, 1) if i % a.ndim != channel_axis % a.ndim else slice(None)
                        for i in range(a.ndim))]
        grown = np.repeat(small, 3, axis=channel_axis)
        shape = list(a.shape)
        shape[channel_axis] = grown.shape[channel_axis]
        return np.broadcast_to(grown, shape)

    return repeat


def _matches(shape, expected):
    return len(shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, shape)
    )


def layout_fix(shape, expected, fixed_axes=1, channels_first=None, loose_expected=None):
    """The reshaping that turns a batch of `shape` into `expected`, or `None`.

    Candidates (adding a missing batch and/or channel axis, dropping an
    extra length-1 axis, transposing the axes after the `fixed_axes`
    leading ones, both, repeating one channel to three) are each applied
    to a stand-in of `shape` that holds no data (a broadcast view), and
    the first whose result matches is returned: a suggestion always gives
    the expected shape, and none is made when nothing does.

    Args:
        shape: the shape given.
        expected: the shape expected, `None` for any size (the batch axis).
        fixed_axes: leading axes that stay in place (1: batch; 2: batch and
            time steps of frame sequences).
        channels_first: the receiver's layout (`None`: unknown), to order
            the candidates.
        loose_expected: a looser `expected` (e.g. any height and width for
            a model that resizes) tried when nothing matches `expected`.

    Returns:
        A `LayoutFix`, or `None`.

    Example:

    ```python
    layout_fix((2, 1, 16, 16), (None, 16, 16, 1))
    # LayoutFix(code='np.transpose(x, (0, 2, 3, 1))', ..., shape=(2, 16, 16, 1))
    ```
    """
    shape = tuple(int(s) for s in shape)
    stand_in = np.broadcast_to(np.zeros((), "uint8"), shape)
    target_rank = len(expected)
    candidates = []
    for code, meaning, expand in _expansions(shape, target_rank, fixed_axes, channels_first):
        if code != "x":
            candidates.append((code, meaning, expand))
        for perm, perm_meaning in _permutations(target_rank, fixed_axes, channels_first):
            candidates.append((
                f"np.transpose({code}, {perm})",
                f"{meaning}, and {perm_meaning}" if meaning else perm_meaning,
                lambda a, _expand=expand, _perm=perm: np.transpose(_expand(a), _perm),
            ))
    channel_axis = fixed_axes if channels_first else -1
    for code, meaning, expand in _expansions(shape, target_rank, fixed_axes, channels_first):
        if "channel" in meaning or code == "x":
            candidates.append((
                f"np.repeat({code}, 3, axis={channel_axis})",
                "grey images for an RGB model" + (f" ({meaning})" if meaning else ""),
                lambda a, _expand=expand: _repeat_channel(channel_axis)(_expand(a)),
            ))
    for wanted in (expected, loose_expected):
        if wanted is None:
            continue
        for code, meaning, apply in candidates:
            try:
                result = apply(stand_in).shape
            except (IndexError, ValueError):
                continue
            if _matches(result, wanted):
                return LayoutFix(code, meaning, tuple(int(s) for s in result))
    return None


def check_call_inputs(model, images, receiver, argument="images", stacklevel=2):
    """Warns when `images` look like raw pixels where `model(...)` takes
    normalised floats (`check_normalised` in `model_input_space(model)`).

    For what the analysis functions take: a classifier's or backbone's
    `call` inputs. Models that take event frames or are not built on a
    Spiking Transformer backbone are not checked (nothing is known of their
    inputs).

    Returns:
        The message issued, or `None`.
    """
    space = model_input_space(model)
    if space is None:
        return None
    if getattr(model, "preprocessor", None) is not None:
        fix = f"pass model.preprocessor({argument}) instead (the raw images preprocessed)"
    elif space.scale is None:
        fix = (
            f"normalise them first, e.g. with the preset's preprocessor: "
            f"keras_spiking_tf.from_preset(preset).preprocessor({argument})"
        )
    else:
        fix = f"normalise them first: {space.normalise_formula()}"
    return check_normalised(images, receiver, argument, space, fix, stacklevel + 1)
