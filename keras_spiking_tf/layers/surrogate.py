"""Heaviside step functions with surrogate gradients (design.md §2.1, §2.4).

The forward value is exactly the Heaviside step `1 if x >= 0 else 0`, cast to
the input's dtype, in every backend. The backward pass replaces the step's
derivative (zero almost everywhere) by a smooth *surrogate* derivative. It is
implemented with `keras.ops.custom_gradient`, never as
`sg + stop_gradient(step - sg)`, which can leak rounding error into the spikes.

Surrogate derivatives, with `x = H - V_th` and sharpness `alpha`:

| name        | dS/dx                                      | default alpha |
|-------------|--------------------------------------------|---------------|
| `sigmoid`   | alpha * sigmoid(alpha x) (1 - sigmoid(alpha x)) | 4.0      |
| `atan`      | (alpha / 2) / (1 + (pi/2 * alpha * x)^2)   | 2.0           |
| `triangle`  | alpha * max(0, 1 - alpha * abs(x))         | 1.0           |
| `rectangle` | alpha * [abs(x) < 1 / (2 alpha)] (straight-through) | 1.0  |

Each derivative integrates to 1 over x, like the step it replaces.

Example:

```python
step = heaviside_with_surrogate("sigmoid", alpha=4.0)
spikes = step(keras.ops.convert_to_tensor([-0.5, 0.0, 0.5]))  # [0., 1., 1.]
```
"""

import math

from keras import ops

from keras_spiking_tf import validation

DEFAULT_ALPHA = {"sigmoid": 4.0, "atan": 2.0, "triangle": 1.0, "rectangle": 1.0}
SURROGATES = tuple(DEFAULT_ALPHA)


def _sigmoid(x, alpha):
    s = ops.sigmoid(alpha * x)
    return alpha * s * (1.0 - s)


def _atan(x, alpha):
    return (alpha / 2.0) / (1.0 + ops.square((math.pi / 2.0) * alpha * x))


def _triangle(x, alpha):
    return alpha * ops.relu(1.0 - alpha * ops.abs(x))


def _rectangle(x, alpha):
    inside = ops.less(ops.abs(x), 1.0 / (2.0 * alpha))
    return alpha * ops.cast(inside, x.dtype)


_DERIVATIVES = {
    "sigmoid": _sigmoid,
    "atan": _atan,
    "triangle": _triangle,
    "rectangle": _rectangle,
}


def validate_surrogate(surrogate, alpha):
    """Checks a surrogate name and returns `alpha` (its default if `None`).

    Raises:
        ValueError: unknown name, or `alpha <= 0` (or NaN, infinite).
        TypeError: a name that is no string, an `alpha` that is no number.
    """
    validation.check_choice("surrogate", surrogate, SURROGATES, what="surrogate")
    alpha = validation.check_number(
        "alpha", alpha, minimum=0.0, exclusive_minimum=True, allow_none=True
    )
    return DEFAULT_ALPHA[surrogate] if alpha is None else alpha


def surrogate_derivative(x, surrogate="sigmoid", alpha=None):
    """The surrogate derivative dS/dx evaluated at `x` (a tensor or array,
    not a bare Python number)."""
    validation.check_array_like("x", x)
    if not hasattr(x, "shape"):
        raise validation.invalid("x", x, "a tensor or array (e.g. np.asarray(x))", error=TypeError)
    alpha = validate_surrogate(surrogate, alpha)
    return _DERIVATIVES[surrogate](x, alpha)


def heaviside_with_surrogate(surrogate="sigmoid", alpha=None, threshold=0.0):
    """Returns `step(x)`: exact Heaviside forward, surrogate backward.

    Args:
        surrogate: one of `"sigmoid"`, `"atan"`, `"triangle"`, `"rectangle"`.
        alpha: sharpness; `None` takes the surrogate's default (table above).
        threshold: where the step is: `step(x) = 1 if x >= threshold`, with
            derivative `sigma'(x - threshold)`. Comparing `x >= threshold`
            gives the same spikes as `x - threshold >= 0` without the extra
            pass over the tensor.
    """
    alpha = validate_surrogate(surrogate, alpha)
    threshold = validation.check_number("threshold", threshold)
    derivative = _DERIVATIVES[surrogate]

    @ops.custom_gradient
    def step(x):
        spikes = ops.cast(ops.greater_equal(x, threshold), x.dtype)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            slope = derivative(x - threshold, alpha)
            return upstream * ops.cast(slope, upstream.dtype)

        return spikes, grad

    return step
