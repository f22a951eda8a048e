"""The backbone every model family's backbone subclasses: the input side
and the preset side that do not depend on the architecture.

`SpikingBackbone` gives the functional model's input (images or frame
sequences, either data format, turned channels-last), `num_tokens`,
`channel_axis`, a `load_weights` that verifies the file first (SHA-256,
readable HDF5: also when KerasHub's loader reads a preset), and a
`get_config` of the subclass's `architecture_keys`.
"""

import keras
from keras import ops
from keras_hub.models import Backbone

from keras_spiking_tf.models.preset_files import verify_weights_file


class SpikingBackbone(Backbone):
    """Base of the model families' backbones (not built itself).

    A subclass sets `architecture_keys` (its constructor arguments, each
    stored as an attribute of the same name), builds its functional model
    from `image_input(...)`, and sets `input_type` and `image_layout`.

    Example:

    ```python
    image_input, images = SpikingBackbone.image_input(
        (32, 32, 3), "image", "channels_first", time_steps=4, dtype=None)
    ```
    """

    architecture_keys = ()

    @staticmethod
    def image_input(image_shape, input_type, layout, time_steps, dtype):
        """The functional model's input, and it as channels-last tensors.

        Args:
            image_shape: `(height, width, channels)`.
            input_type: `"image"` (one image, `(batch, H, W, C)`) or
                `"frames"` (`(batch, T, H, W, C)`).
            layout: `"channels_last"` or `"channels_first"` (then the input
                is `(batch, [T,] C, H, W)` and a `Permute` turns it).
            time_steps: `T` (the frame sequences' length).
            dtype: the permutation's dtype policy.

        Returns:
            `(input, channels_last)`.
        """
        height, width, channels = tuple(image_shape)
        frame_shape = ((channels, height, width) if layout == "channels_first"
                       else (height, width, channels))
        if input_type == "frames":
            image_input = keras.Input(shape=(time_steps, *frame_shape), name="frames")
            to_last = (1, 3, 4, 2)
        else:
            image_input = keras.Input(shape=frame_shape, name="images")
            to_last = (2, 3, 1)
        images = image_input
        if layout == "channels_first":
            images = keras.layers.Permute(to_last, dtype=dtype, name="to_channels_last")(images)
        return image_input, images

    @property
    def num_tokens(self):
        return self.output.shape[2]

    @property
    def channel_axis(self):
        """The channel axis of the backbone's input images."""
        return 1 if self.image_layout == "channels_first" else -1

    def one_step_input(self, frame):
        """One input step, `(batch, H, W, C)` (or `(batch, C, H, W)` under
        `channels_first`), as the backbone's layers take a sequence of
        `T = 1`: `(batch, 1, H, W, C)`, channels last. Each classifier's
        `step_logits` starts from it.

        Example:

        ```python
        x = backbone.one_step_input(frames[:, t])   # (batch, 1, H, W, C)
        ```
        """
        x = ops.expand_dims(frame, 1)
        if self.image_layout == "channels_first":
            x = ops.transpose(x, (0, 1, 3, 4, 2))
        return x

    def load_weights(self, filepath, *args, **kwargs):
        """`keras.Model.load_weights`, after checking the file (SHA-256 from
        the `metadata.json` beside it, readable HDF5; see
        `preset_files.verify_weights_file`)."""
        verify_weights_file(filepath)
        return super().load_weights(filepath, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self.architecture_keys})
        return config
