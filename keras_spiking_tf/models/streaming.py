"""A classifier one time step at a time, and "anytime" predictions, for
every model family.

Every stateful element of the network is a neuron, and every other layer
acts on one time step at a time (design.md §9). So the network can run a
frame at a time with its membranes as explicit state, the way an event
camera delivers frames: `SpikingStepModel` is that step, built from the
classifier's own layers and weights. Each family's classifier gives its
forward pass for one step as `step_logits(frame)`; the rest is the same
for all. After `T` steps from `initial_state` the running prediction is the
multi-step classifier's output, every spike equal.

The running mean of the head's per-step logits is a valid prediction after
any number of steps ("anytime" inference): `predict_anytime` stops each
sample as soon as its top softmax probability reaches a threshold, drops it
from the batch it is stepping (so the exit saves the remaining steps' work)
and reports how many steps it used.

Example:

```python
step = SpikingStepModel(classifier)
state = step.initial_state(batch_size=8)
for frame in frames:                      # (batch, H, W, C) each
    logits, step_logits, *state = step([frame, *state])
result = predict_anytime(classifier, images, threshold=0.9)
result.labels, result.steps
```
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.layers.lif import explicit_membranes

MAX_BATCH_SIZE = 1 << 20


# What `SpikingStepModel` needs of a classifier's class, besides a
# `backbone`: its forward pass for one time step. `running_logits` and
# `predict_anytime` also check their inputs with it (`check_images`).
STEP_METHODS = ("step_logits",)
PREDICT_METHODS = ("step_logits", "check_images")


def check_classifier(name, classifier, methods=STEP_METHODS):
    """`classifier`, which must be a Keras model with a `backbone` whose
    class defines `methods` (`step_logits`: its forward pass for one time
    step; every image classifier of this library has them)."""
    missing = [m for m in methods if not callable(getattr(type(classifier), m, None))]
    if not isinstance(classifier, keras.Model) or not hasattr(classifier, "backbone") or missing:
        needs = ", ".join(f"`{m}`" for m in methods)
        raise TypeError(
            f"`{name}` must be a spiking image classifier: a Keras model with a `backbone` "
            f"whose class defines {needs} (`step_logits(frame)`: the head's logits of one "
            "time step), e.g. a SpikingTransformerImageClassifier or a "
            f"MetaSpikeFormerImageClassifier; got a {type(classifier).__name__}"
            + (f", which lacks {', '.join(f'`{m}`' for m in missing)}" if missing else "")
            + "."
        )
    return classifier


def check_batch_size(batch_size):
    """`batch_size`, an integer in [1, 2**20]."""
    return validation.check_integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH_SIZE)


class SpikingStepModel(keras.Model):
    """One time step of a spiking image classifier (either family: a
    `SpikingTransformerImageClassifier` or a
    `MetaSpikeFormerImageClassifier`), its membranes as explicit state.

    `call([frame, *state])` returns `[logits, step_logits, *next_state]`:

    - `frame`: one preprocessed input step, `(batch, H, W, C)` (or
      `(batch, C, H, W)` for a channels-first classifier): frame `t` of a
      frame sequence, or the image itself for image classifiers.
    - `state`: one membrane per neuron of the network (`neurons`, shapes
      `state_shapes()`), then the sum of the step logits so far
      `(batch, classes)` and the number of steps taken `(batch, 1)`.
    - `logits`: the running prediction, the mean of the step logits so far
      (through the classifier's activation, if it has one);
      `step_logits`: this step's head output (the classifier's
      `step_logits(frame)`).

    The layers (and so the weights) are the classifier's; there are no
    variables of its own and no loop, so the step exports as one graph with
    the state as explicit inputs and outputs.

    Args:
        classifier: the classifier to step: a Keras model with a `backbone`
            whose class defines `step_logits(frame)`.
        **kwargs: standard model arguments.

    Example:

    ```python
    step = SpikingStepModel(classifier)
    state = step.initial_state(batch_size=1)
    for frame in frames:                      # (1, H, W, C) each
        logits, step_logits, *state = step([frame, *state])
    ```
    """

    def __init__(self, classifier, **kwargs):
        check_classifier("classifier", classifier)
        super().__init__(**kwargs)
        self.classifier = classifier
        self.neurons = [
            layer for layer in classifier._flatten_layers(include_self=False)
            if isinstance(layer, LIF)
        ]
        self.built = True  # no weights of its own: the classifier's are built

    @property
    def frame_shape(self):
        """The shape of one input step, without the batch axis."""
        backbone = self.classifier.backbone
        height, width, channels = backbone.image_shape
        if backbone.image_layout == "channels_first":
            return (channels, height, width)
        return (height, width, channels)

    def state_shapes(self):
        """The shape of each state tensor, without the batch axis."""
        classes = self.classifier.num_classes
        return [tuple(n.feature_shape) for n in self.neurons] + [(classes,), (1,)]

    def initial_state(self, batch_size):
        """The state before the first step: zeros."""
        batch_size = check_batch_size(batch_size)
        return [np.zeros((batch_size, *shape), "float32") for shape in self.state_shapes()]

    def check_inputs(self, inputs):
        """Checks `[frame, *state]` before a step: a list of `1 +
        len(state_shapes())` tensors, each state of a floating-point dtype
        and of its shape (`state_shapes()`, after the batch axis), the frame
        of `frame_shape`. Messages name the state by its index and, for a
        membrane, its neuron's path.

        Raises:
            TypeError: not a list, a state of another dtype.
            ValueError: a missing or extra state, a shape that differs.
        """
        shapes = self.state_shapes()
        if not isinstance(inputs, (list, tuple)):
            raise validation.invalid(
                "inputs", inputs, f"a list [frame, *state] of {1 + len(shapes)} tensors",
                error=TypeError,
            )
        if len(inputs) != 1 + len(shapes):
            raise ValueError(
                f"`inputs` must be [frame, *state] with {len(shapes)} state tensors "
                f"(one membrane per neuron, then the logit sum and the step count: "
                f"`initial_state(batch_size)`); got {len(inputs) - 1} state tensors."
            )
        names = [f"membrane of {n.path}" for n in self.neurons] + ["logit sum", "step count"]
        expected = [self.frame_shape, *shapes]
        labels = ["frame"] + [f"state[{i}] ({names[i]})" for i in range(len(shapes))]
        for label, tensor, shape in zip(labels, inputs, expected):
            if not hasattr(tensor, "shape") or not hasattr(tensor, "dtype"):
                raise validation.invalid(label, tensor, "a tensor or array", error=TypeError)
            dtype = keras.backend.standardize_dtype(tensor.dtype)
            if label != "frame" and not dtype.startswith(("float", "bfloat")):
                raise TypeError(
                    f"`{label}` must be a floating-point tensor; got dtype {dtype}."
                )
            given = tuple(tensor.shape)
            if len(given) != len(shape) + 1 or any(
                g is not None and g != e for g, e in zip(given[1:], shape)
            ):
                raise ValueError(
                    f"`{label}` must have shape (batch, {', '.join(map(str, shape))}"
                    f"{',' if len(shape) == 1 else ''}); got {given}."
                )

    def call(self, inputs):
        self.check_inputs(inputs)
        frame, *state = inputs
        membranes, logit_sum, count = state[:-2], state[-2], state[-1]
        with explicit_membranes(dict(zip(self.neurons, membranes))) as final:
            step_logits = self.classifier.step_logits(frame)
        logit_sum = logit_sum + step_logits
        count = count + 1.0
        logits = self.classifier.output_activation(logit_sum / count)
        next_membranes = [ops.cast(final[n], "float32") for n in self.neurons]
        return [logits, step_logits, *next_membranes, logit_sum, count]


@dataclasses.dataclass
class AnytimePrediction:
    """What `predict_anytime` returns, per sample.

    Attributes:
        labels: the predicted class.
        probabilities: the softmax of the running logits when it stopped.
        steps: the time steps it used (1..T).
        logits_per_step: the running logits after each step,
            `(batch, T, classes)`, for the steps each sample used: `NaN`
            after its exit step (`steps`), since those steps are not
            computed. `running_logits` computes every step.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    steps: np.ndarray
    logits_per_step: np.ndarray


class _StepModelCache:
    """Holds a classifier's step model (not a Keras object, so saving the
    classifier, which walks its attributes, passes it by)."""

    def __init__(self, step):
        self.step = step


def _step_model_of(classifier):
    """The classifier's `SpikingStepModel`, made on first use and
    kept with the classifier, so that repeated `running_logits` and
    `predict_anytime` calls reuse its traced or compiled step instead of
    tracing it again (about a second on TensorFlow, several on JAX)."""
    cache = classifier.__dict__.get("_kst_step_model_cache")
    if cache is None:
        cache = _StepModelCache(SpikingStepModel(classifier))
        object.__setattr__(classifier, "_kst_step_model_cache", cache)  # untracked
    return cache.step


def _compiles_per_batch_shape(step):
    """Whether each new batch shape compiles the step anew: XLA (JAX, and
    TensorFlow with XLA, which Keras enables on accelerators). TensorFlow
    without XLA retraces at most twice (its second shape relaxes the batch
    axis) and PyTorch runs eagerly, so there a shrinking batch costs
    nothing."""
    return bool(step.jit_compile) and not step.run_eagerly


def _batches(classifier, x, batch_size):
    """`x` in float32 NumPy chunks of `batch_size`, preprocessed."""
    frames = classifier.backbone.input_type == "frames"
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if not frames and classifier.preprocessor is not None:
            batch = classifier.preprocessor(ops.cast(batch, "float32"))
        yield ops.convert_to_numpy(ops.cast(batch, "float32"))


def running_logits(classifier, x, batch_size=64):
    """The running-mean logits after each step, `(batch, T, classes)`:
    every step of every sample (`predict_anytime` stops each sample at its
    exit).

    `x` is what `predict` takes: raw images (the preprocessor is applied)
    or frame sequences `(batch, T, ...)`.
    """
    check_classifier("classifier", classifier, PREDICT_METHODS)
    validation.check_array_like("x", x)
    batch_size = check_batch_size(batch_size)
    classifier.check_images(x)
    step = _step_model_of(classifier)
    frames = classifier.backbone.input_type == "frames"
    steps = classifier.backbone.time_steps
    chunks = []
    for batch in _batches(classifier, x, batch_size):
        state = step.initial_state(len(batch))
        history = []
        for t in range(steps):
            logits, _, *state = step.predict_on_batch([batch[:, t] if frames else batch, *state])
            history.append(np.asarray(logits))
        chunks.append(np.stack(history, axis=1))
    return np.concatenate(chunks)


def _probabilities(classifier, logits):
    """The softmax of running logits (as they are after a softmax head)."""
    if classifier.activation == "softmax":
        return logits
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _computed_rows(live, computed, padded):
    """How many rows the next step computes: the live ones, or with
    `padded`, the power of two at or above them (at most `computed`)."""
    if not padded:
        return live
    return min(computed, 1 << (live - 1).bit_length())


def predict_anytime(classifier, x, threshold=0.9, batch_size=64):
    """Predicts with an exit rule: a sample stops at the first step whose
    running prediction has a top softmax probability of at least
    `threshold` (else at the last step, `T`).

    The exit saves work: each batch of `batch_size` samples is stepped one
    step at a time, and a sample that exits is dropped from the batch (its
    rows of the state with it), so later steps compute only the samples
    still running, and a batch ends when all of its samples have exited.
    Dropping rows leaves the others as they were: every layer acts on each
    sample alone (BatchNormalization at inference uses its moving
    statistics), so the results are those of computing all `T` steps and
    choosing afterwards (`running_logits`), up to float rounding. Where a
    new batch shape means a new compilation (XLA: JAX, or TensorFlow on an
    accelerator), the shrinking batch is padded up to the next power of two
    with rows that have already exited, so only powers of two (besides the
    batch sizes themselves) are ever compiled; on TensorFlow without XLA
    and on PyTorch the batch shrinks exactly (a new shape costs nothing
    there). The step model is made once per classifier and reused by later
    calls.

    Args:
        classifier: an image classifier of either family (a
            `SpikingTransformerImageClassifier` or a
            `MetaSpikeFormerImageClassifier`), as `SpikingStepModel` takes.
        x: raw images or frame sequences, as `predict` takes them.
        threshold: the exit probability, a finite number >= 0; `1.0` (or
            more) never exits early.
        batch_size: samples per step call (>= 1).

    Returns:
        An `AnytimePrediction`.

    Raises:
        TypeError, ValueError: an argument of a wrong type or value (checked
            before anything is computed).

    Example:

    ```python
    result = predict_anytime(model, raw_images, threshold=0.95)
    np.mean(result.steps), np.mean(result.labels == labels)
    ```
    """
    check_classifier("classifier", classifier, PREDICT_METHODS)
    validation.check_array_like("x", x)
    threshold = validation.check_number("threshold", threshold, minimum=0.0)
    batch_size = check_batch_size(batch_size)
    classifier.check_images(x)
    step = _step_model_of(classifier)
    padded = _compiles_per_batch_shape(step)
    frames = classifier.backbone.input_type == "frames"
    time_steps = classifier.backbone.time_steps
    classes = classifier.num_classes
    probabilities, steps, per_step = [], [], []
    for batch in _batches(classifier, x, batch_size):
        size = len(batch)
        chosen = np.zeros((size, classes), "float32")
        used = np.full(size, time_steps)
        history = np.full((size, time_steps, classes), np.nan, "float32")
        rows = np.arange(size)  # the sample of each computed row
        live = np.ones(size, bool)  # whether that row has yet to exit
        state = step.initial_state(size)
        inputs = batch
        for t in range(time_steps):
            frame = batch[rows, t] if frames else inputs
            logits, _, *state = step.predict_on_batch([frame, *state])
            logits = np.asarray(ops.convert_to_numpy(logits))
            history[rows[live], t] = logits[live]
            probability = _probabilities(classifier, logits)
            exits = live & ((probability.max(axis=-1) >= threshold) | (t == time_steps - 1))
            chosen[rows[exits]] = probability[exits]
            used[rows[exits]] = t + 1
            live &= ~exits
            if not live.any():
                break  # the whole batch has exited
            keep = _computed_rows(int(live.sum()), len(rows), padded)
            if keep < len(rows):  # live rows first, then exited ones as padding
                order = np.concatenate([np.flatnonzero(live), np.flatnonzero(~live)])[:keep]
                rows, live = rows[order], live[order]
                state = [ops.convert_to_numpy(s)[order] for s in state]
                inputs = batch[rows]
        probabilities.append(chosen)
        steps.append(used)
        per_step.append(history)
    probabilities = np.concatenate(probabilities)
    return AnytimePrediction(
        labels=probabilities.argmax(-1), probabilities=probabilities,
        steps=np.concatenate(steps), logits_per_step=np.concatenate(per_step),
    )
