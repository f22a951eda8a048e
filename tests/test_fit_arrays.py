"""`fit` on arrays shuffles them every epoch, as `keras.Model.fit` does.

KerasHub's array path batches arrays in order and leaves `shuffle` unused
(with a warning that it is ignored), so class-sorted arrays trained one
class after another. Here the batches a model sees are recorded (a loss
that keeps its `y_true`, run eagerly) and compared with the input order,
and training on class-sorted arrays is compared with training on the same
arrays shuffled beforehand.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_spiking_tf
from keras_spiking_tf.training.datasets import load_digits_arrays


@pytest.fixture(scope="module")
def sorted_digits():
    """200 training digits sorted by label (20 of each class), and the test split."""
    x_train, y_train, x_test, y_test = load_digits_arrays()
    rng = np.random.default_rng(0)
    chosen = np.concatenate([rng.choice(np.flatnonzero(y_train == c), 20, replace=False)
                             for c in range(10)])
    return x_train[chosen], y_train[chosen], x_test, y_test


class Recorder(keras.callbacks.Callback):
    """The labels of every training batch, per epoch, and of validation."""

    def __init__(self):
        super().__init__()
        self.epochs, self.validation, self.phase = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])
        self.phase = "train"

    def on_test_begin(self, logs=None):
        self.phase = "validation"

    def on_test_end(self, logs=None):
        self.phase = "train"

    def loss(self, y_true, y_pred):
        try:
            labels = np.asarray(keras.ops.convert_to_numpy(y_true)).astype(int).ravel()
        except TypeError:  # JAX traces the loss once, abstractly, to build it
            labels = None
        # (Torch builds it on a batch of ones before training starts.)
        if labels is not None and self.phase is not None:
            (self.epochs[-1] if self.phase == "train" else self.validation).append(labels)
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


def seen_batches(x, y, epochs=2, **fit_kwargs):
    """The label batches `fit` trains on, per epoch, and validation's;
    and every warning `fit` gave."""
    keras.utils.set_random_seed(0)
    model = keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=16, time_steps=2
    )
    recorder = Recorder()
    model.compile(optimizer="sgd", loss=recorder.loss, run_eagerly=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[recorder], **fit_kwargs)
    return recorder, [str(w.message) for w in caught]


def test_each_epoch_is_a_new_shuffle_of_the_arrays(sorted_digits):
    x, y = sorted_digits[0][::5], sorted_digits[1][::5]  # 40 images, 4 of each class, sorted
    recorder, caught = seen_batches(x, y)
    assert not [m for m in caught if "shuffle" in m], caught  # nothing ignored, nothing said
    assert len(recorder.epochs) == 2
    first, second = (np.concatenate(epoch) for epoch in recorder.epochs)
    for order in (first, second):
        np.testing.assert_array_equal(np.sort(order), y)  # every example once per epoch
        assert not np.array_equal(order, y)               # not in the input order
    assert len(set(recorder.epochs[0][0])) > 1            # the first batch is not all class 0
    assert not np.array_equal(first, second)              # reshuffled for the second epoch


def test_shuffle_false_keeps_the_order_and_batch_shuffles_within_batches(sorted_digits):
    x, y = sorted_digits[0][::5], sorted_digits[1][::5]
    recorder, _ = seen_batches(x, y, shuffle=False)
    for epoch in recorder.epochs:
        np.testing.assert_array_equal(np.concatenate(epoch), y)
    recorder, _ = seen_batches(x, y, epochs=1, shuffle="batch")
    for start, batch in zip(range(0, len(y), 8), recorder.epochs[0]):
        np.testing.assert_array_equal(np.sort(batch), y[start : start + 8])


def test_validation_split_holds_out_the_last_examples_before_shuffling(sorted_digits):
    x, y = sorted_digits[0][::5], sorted_digits[1][::5]
    recorder, _ = seen_batches(x, y, epochs=1, validation_split=0.25)
    trained = np.concatenate(recorder.epochs[0])
    np.testing.assert_array_equal(np.sort(trained), y[:30])
    assert not np.array_equal(trained, y[:30])
    np.testing.assert_array_equal(np.concatenate(recorder.validation), y[30:])
    with pytest.raises(ValueError, match="validation_split must be a fraction between 0 and 1"):
        seen_batches(x, y, epochs=1, validation_split=1.5)


def test_shuffle_must_be_true_false_or_batch(sorted_digits):
    x, y = sorted_digits[0][:8], sorted_digits[1][:8]
    with pytest.raises(ValueError, match="shuffle must be True, False or 'batch'; got 'yes'"):
        seen_batches(x, y, epochs=1, shuffle="yes")


def accuracy_after_training(x, y, x_test, y_test, **fit_kwargs):
    """Test accuracy after fine-tuning the digits preset (fresh head, T=2)
    for three epochs, from the same start."""
    keras.utils.set_random_seed(1)
    model = keras_spiking_tf.from_preset("st_2_64_digits", num_classes=10, time_steps=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=20, verbose=0, **fit_kwargs)
    predicted = np.argmax(keras.ops.convert_to_numpy(model.predict(x_test, verbose=0)), -1)
    return float(np.mean(predicted == y_test))


def test_class_sorted_arrays_train_as_well_as_shuffled_ones(sorted_digits):
    """Every batch of class-sorted arrays trained in order holds one class
    (20 of each, batches of 20): with shuffle=False that reached 0.86 test
    accuracy, against 0.96 for the same arrays shuffled beforehand and 0.96
    for the sorted ones shuffled by fit (TensorFlow, this seed; on JAX the
    last two gave 0.98 and 0.95)."""
    x, y, x_test, y_test = sorted_digits
    permutation = np.random.default_rng(2).permutation(len(y))
    from_sorted = accuracy_after_training(x, y, x_test, y_test)
    from_shuffled = accuracy_after_training(x[permutation], y[permutation], x_test, y_test)
    assert from_shuffled > 0.85  # chance: 0.1
    assert from_sorted >= from_shuffled - 0.05
