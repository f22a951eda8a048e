"""A classifier one time step at a time, and "anytime" predictions.

Every stateful element of the network is a neuron, and every other layer
acts on one time step at a time (design.md §9). So the network can run a
frame at a time with its membranes as explicit state, the way an event
camera delivers frames: `SpikingTransformerStepModel` is that step, built
from the classifier's own layers and weights. After `T` steps from
`initial_state` its running prediction is the multi-step classifier's
output, every spike equal.

The running mean of the head's per-step logits is a valid prediction after
any number of steps ("anytime" inference): `predict_anytime` stops each
sample as soon as its top softmax probability reaches a threshold and
reports how many steps it used.

Example:

```python
step = SpikingTransformerStepModel(classifier)
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


def check_classifier(name, classifier):
    """`classifier`, which must be a `SpikingTransformerImageClassifier`."""
    from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_classifier import (  # noqa: E501
        SpikingTransformerImageClassifier,
    )

    if not isinstance(classifier, SpikingTransformerImageClassifier):
        raise validation.invalid(
            name, classifier, "a SpikingTransformerImageClassifier", error=TypeError
        )
    return classifier


def check_batch_size(batch_size):
    """`batch_size`, an integer in [1, 2**20]."""
    return validation.check_integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH_SIZE)


class SpikingTransformerStepModel(keras.Model):
    """One time step of a `SpikingTransformerImageClassifier`, its membranes
    as explicit state.

    `call([frame, *state])` returns `[logits, step_logits, *next_state]`:

    - `frame`: one preprocessed input step, `(batch, H, W, C)` (or
      `(batch, C, H, W)` for a channels-first classifier): frame `t` of a
      frame sequence, or the image itself for image classifiers.
    - `state`: one membrane per neuron of the network (`neurons`, shapes
      `state_shapes()`), then the sum of the step logits so far
      `(batch, classes)` and the number of steps taken `(batch, 1)`.
    - `logits`: the running prediction, the mean of the step logits so far
      (through the classifier's activation, if it has one);
      `step_logits`: this step's head output.

    The layers (and so the weights) are the classifier's; there are no
    variables of its own and no loop, so the step exports as one graph with
    the state as explicit inputs and outputs.

    Args:
        classifier: the `SpikingTransformerImageClassifier` to step.
        **kwargs: standard model arguments.
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
            step_logits = self._step(frame)
        logit_sum = logit_sum + step_logits
        count = count + 1.0
        logits = self.classifier.output_activation(logit_sum / count)
        next_membranes = [ops.cast(final[n], "float32") for n in self.neurons]
        return [logits, step_logits, *next_membranes, logit_sum, count]

    def _step(self, frame):
        """The classifier's forward pass for one step (`T = 1`)."""
        classifier = self.classifier
        backbone = classifier.backbone
        x = ops.expand_dims(frame, 1)
        if backbone.image_layout == "channels_first":
            x = ops.transpose(x, (0, 1, 3, 4, 2))
        membrane = backbone.patch_embed(x, training=False)
        for block in backbone.blocks:
            membrane = block(membrane, training=False)
        token_mean = ops.mean(ops.cast(membrane, classifier.head_lif.compute_dtype), axis=2)
        step_logits = classifier.output_dense(classifier.head_lif(token_mean))
        return ops.cast(step_logits[:, 0], "float32")


@dataclasses.dataclass
class AnytimePrediction:
    """What `predict_anytime` returns, per sample.

    Attributes:
        labels: the predicted class.
        probabilities: the softmax of the running logits when it stopped.
        steps: the time steps it used (1..T).
        logits_per_step: the running logits after each step,
            `(batch, T, classes)` (all steps are computed for the batch).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    steps: np.ndarray
    logits_per_step: np.ndarray


def running_logits(classifier, x, batch_size=64):
    """The running-mean logits after each step, `(batch, T, classes)`.

    `x` is what `predict` takes: raw images (the preprocessor is applied)
    or frame sequences `(batch, T, ...)`.
    """
    check_classifier("classifier", classifier)
    validation.check_array_like("x", x)
    batch_size = check_batch_size(batch_size)
    classifier.check_images(x)
    step = SpikingTransformerStepModel(classifier)
    frames = classifier.backbone.input_type == "frames"
    steps = classifier.backbone.time_steps
    chunks = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if not frames and classifier.preprocessor is not None:
            batch = classifier.preprocessor(ops.cast(batch, "float32"))
        batch = ops.convert_to_numpy(ops.cast(batch, "float32"))
        state = step.initial_state(len(batch))
        history = []
        for t in range(steps):
            logits, _, *state = step.predict_on_batch([batch[:, t] if frames else batch, *state])
            history.append(np.asarray(logits))
        chunks.append(np.stack(history, axis=1))
    return np.concatenate(chunks)


def predict_anytime(classifier, x, threshold=0.9, batch_size=64):
    """Predicts with an exit rule: a sample stops at the first step whose
    running prediction has a top softmax probability of at least
    `threshold` (else at the last step, `T`).

    Args:
        classifier: a `SpikingTransformerImageClassifier` (logits out).
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
    check_classifier("classifier", classifier)
    validation.check_array_like("x", x)
    threshold = validation.check_number("threshold", threshold, minimum=0.0)
    batch_size = check_batch_size(batch_size)
    per_step = running_logits(classifier, x, batch_size)
    if classifier.activation == "softmax":
        probabilities = per_step
    else:
        shifted = np.exp(per_step - per_step.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    confident = probabilities.max(axis=-1) >= threshold
    confident[:, -1] = True  # the last step always answers
    stop = np.argmax(confident, axis=1)
    rows = np.arange(len(per_step))
    chosen = probabilities[rows, stop]
    return AnytimePrediction(
        labels=chosen.argmax(-1), probabilities=chosen, steps=stop + 1,
        logits_per_step=per_step,
    )
