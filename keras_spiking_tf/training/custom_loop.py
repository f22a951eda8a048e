"""The custom training loop for MultiWorkerMirroredStrategy.

Keras 3's `fit` fails under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585), so multi-worker runs use this loop: the same
model, optimizer, loss, data streams and callbacks (checkpoints, CSV and
TensorBoard logs) as `fit`, driven with `strategy.run`.
"""

import keras
import tensorflow as tf

from keras_spiking_tf.training.optimization import make_loss


def _classifier_output(logits):
    """The classifier's prediction from what the trained model returns: its
    logits, or per-step logits `(batch, T, classes)` (TET) averaged over T,
    or the stacked heads' logits `(batch, 2, classes)` (a distillation head,
    `distillation.py`) averaged over the heads."""
    return tf.reduce_mean(logits, axis=1) if len(logits.shape) == 3 else logits


class CustomLoop:
    """Trains `model` (compiled) under `strategy` with `strategy.run`.

    Args:
        strategy: a `tf.distribute.Strategy`.
        model: a compiled classifier with a preprocessor.
        recipe: the `Recipe` (for the loss).
        global_batch_size: examples per step over all replicas.
        callbacks: Keras callbacks, called as `fit` would.
        verbose: show a progress bar.
        distillation: `model` returns the stacked heads of a classifier
            with a distillation head (`make_loss`).
    """

    def __init__(self, strategy, model, recipe, global_batch_size, callbacks, verbose=1,
                 distillation=False):
        self.strategy = strategy
        self.model = model
        self.global_batch_size = global_batch_size
        self.loss = make_loss(recipe, reduction=None, distillation=distillation)
        self.callbacks = keras.callbacks.CallbackList(callbacks, model=model)
        self.verbose = verbose
        with strategy.scope():
            self.train_accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
        self._train_step = tf.function(self._distributed_step)

    def _replica_step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            per_example = self.loss(labels, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.model.optimizer.apply_gradients(zip(gradients, variables))
        self.train_accuracy.update_state(labels, _classifier_output(logits))
        return loss

    def _distributed_step(self, iterator):
        losses = self.strategy.run(self._replica_step, args=next(iterator))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def distribute(self, dataset):
        preprocess = getattr(self.model, "preprocessor", None)
        if preprocess is not None:
            dataset = dataset.map(lambda x, y: (preprocess(x), y))
        return self.strategy.experimental_distribute_dataset(dataset)

    def fit(self, stream, initial_epoch, epochs, steps_per_epoch, validation_data):
        """Runs epochs `[initial_epoch, epochs)` of `steps_per_epoch` steps."""
        iterator = iter(self.distribute(stream))
        self.callbacks.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            self.callbacks.on_epoch_begin(epoch)
            self.train_accuracy.reset_state()
            progress = keras.utils.Progbar(steps_per_epoch, verbose=self.verbose)
            total = 0.0
            for step in range(steps_per_epoch):
                loss = float(self._train_step(iterator))
                total += loss
                logs = {"loss": total / (step + 1), "accuracy": float(self.train_accuracy.result())}
                self.callbacks.on_train_batch_end(step, logs)
                progress.update(step + 1, list(logs.items()))
            logs.update(self.evaluate(validation_data))
            self.callbacks.on_epoch_end(epoch, logs)
        self.callbacks.on_train_end(logs)

    def evaluate(self, dataset):
        """`{"val_loss", "val_accuracy"}` on `dataset`, computed locally on
        every worker (no collective ops, so all workers agree)."""
        loss_sum, correct, count = 0.0, 0.0, 0
        preprocess = getattr(self.model, "preprocessor", None)
        for images, labels in dataset:
            logits = self._predict(preprocess(images) if preprocess is not None else images)
            loss_sum += float(tf.reduce_sum(self.loss(labels, logits)))
            hits = tf.equal(tf.argmax(_classifier_output(logits), -1), tf.argmax(labels, -1))
            correct += float(tf.reduce_sum(tf.cast(hits, tf.float32)))
            count += int(labels.shape[0])
        return {"val_loss": loss_sum / count, "val_accuracy": correct / count}

    @tf.function
    def _predict(self, images):
        return self.model(images, training=False)
