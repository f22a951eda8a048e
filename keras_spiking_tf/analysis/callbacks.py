"""A Keras callback recording firing rates during training."""

import keras

from keras_spiking_tf.analysis.firing_rates import unchecked_firing_rates
from keras_spiking_tf import validation
from keras_spiking_tf.input_checks import check_call_inputs


class FiringRateMonitor(keras.callbacks.Callback):
    """Records every neuron layer's firing rate at the end of each epoch.

    Rates are measured on a fixed batch in inference mode. They are kept in
    `self.history` (a list of per-epoch `{layer: rate}` dicts, plus
    `"mean"`), added to the epoch `logs` as `firing_rate/<layer>` (so
    `keras.callbacks.TensorBoard` and `CSVLogger`, placed after this
    callback, record them), and written to TensorBoard directly when
    `log_dir` is given (TensorFlow backend).

    Args:
        images: a batch of `call` inputs (preprocessed images); checked
            when training starts (`input_checks.check_call_inputs`: an
            `InputWarning` for raw-looking pixels).
        log_dir: optional TensorBoard directory.

    Example:

    ```python
    monitor = FiringRateMonitor(model.preprocessor(x_sample))
    model.fit(x, y, callbacks=[monitor])
    monitor.history[-1]["mean"]
    ```
    """

    def __init__(self, images, log_dir=None):
        super().__init__()
        self.images = validation.check_batch("images", images)
        validation.check_path_text("log_dir", log_dir, allow_none=True)
        self.log_dir = log_dir
        self.history = []
        self._writer = None

    def set_model(self, model):
        super().set_model(model)
        check_call_inputs(model, self.images, "FiringRateMonitor()", stacklevel=4)

    def on_epoch_end(self, epoch, logs=None):
        rates = unchecked_firing_rates(self.model, self.images)
        entry = {name: value["mean"] for name, value in rates["layers"].items()}
        entry["mean"] = rates["mean"]
        self.history.append(entry)
        if logs is not None:
            logs.update({f"firing_rate/{name}": rate for name, rate in entry.items()})
        if self.log_dir is not None and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                for name, rate in entry.items():
                    tf.summary.scalar(f"firing_rate/{name}", rate, step=epoch)
            self._writer.flush()
