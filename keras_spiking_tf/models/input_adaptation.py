"""Pretrained weights into a model that takes another number of channels.

A preset trained on grayscale images (`st_2_64_digits`) can start an RGB
model, and an RGB preset (a converted ImageNet SDT checkpoint) a grayscale
one. Only the first convolution's kernel depends on the input's channels;
it is adapted as timm's `adapt_input_conv` does, so that an image whose
channels are all equal (a gray image) gives the same response before and
after:

- more channels (1 -> 3, 3 -> 4, ...): the kernel's input channels are
  repeated cyclically and rescaled by `old / new` (1 -> 3: repeat, divide by 3);
- fewer channels (3 -> 1, ...): input channels `i` and `i + new`, `i + 2 new`,
  ... are summed (3 -> 1: the sum over R, G and B).

The preprocessor's per-channel normalisation is adapted alike: repeated
cyclically, or averaged over the channels that are summed.

The Spiking Transformer has no weight bound to the image size (its position
information comes from a convolution), so other image sizes need no
adaptation; `transfer_weights` refuses any other shape difference.

Example:

```python
kernel = np.ones((3, 3, 1, 8))                   # (kh, kw, in, out)
adapt_input_kernel(kernel, 3)[..., 0, 0]         # each of the 3 channels: 1/3
```
"""

import sys

import numpy as np


def adapt_input_kernel(kernel, channels, channel_axis=-2):
    """`kernel` with its input-channel axis adapted to `channels` (see the
    module docstring).

    Args:
        kernel: array-like, e.g. a Keras `Conv2D` kernel `(kh, kw, in, out)`.
        channels: the new input channel count (>= 1).
        channel_axis: the kernel's input-channel axis (-2 in Keras).

    Returns:
        A NumPy array of the kernel's dtype.
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}.")
    kernel = np.asarray(kernel)
    moved = np.moveaxis(kernel, channel_axis, 0).astype(np.float64)
    have = moved.shape[0]
    if channels >= have:
        adapted = moved[np.arange(channels) % have] * (have / channels)
    else:
        adapted = np.zeros((channels, *moved.shape[1:]))
        for index in range(have):
            adapted[index % channels] += moved[index]
    return np.moveaxis(adapted, 0, channel_axis).astype(kernel.dtype)


def adapt_channel_values(values, channels):
    """Per-channel values (a normalisation's scale or offset) for `channels`
    channels: repeated cyclically, or averaged over the folded channels.
    A scalar (one value for every channel) is returned as it is."""
    if values is None or np.ndim(values) == 0:
        return values
    values = [float(v) for v in values]
    have = len(values)
    if channels >= have:
        return [values[index % have] for index in range(channels)]
    return [float(np.mean(values[index::channels])) for index in range(channels)]


def transfer_weights(source, target, description):
    """Copies `source`'s weights into `target` (the same architecture, or one
    that differs in its input channels or in arguments that no weight's
    shape depends on), adapting the kernels whose input channels differ.

    Args:
        source: a built layer or model holding the pretrained weights.
        target: the same architecture for other input channels.
        description: what is adapted, for the notice (e.g. the preset).

    Raises:
        ValueError: the two differ in anything but input channels.
    """
    source_weights, target_weights = source.weights, target.weights
    if len(source_weights) != len(target_weights):
        raise ValueError(
            f"Cannot load the weights of {description}: it has {len(source_weights)} weights "
            f"and this model {len(target_weights)}. Keep the preset's architecture (e.g. its "
            "num_layers), or pass load_weights=False to start from random weights."
        )
    adapted = []
    for old, new in zip(source_weights, target_weights):
        value = np.asarray(old.numpy() if hasattr(old, "numpy") else old)
        if tuple(old.shape) != tuple(new.shape):
            old_shape, new_shape = tuple(old.shape), tuple(new.shape)
            if (len(old_shape) < 2 or old_shape[:-2] != new_shape[:-2]
                    or old_shape[-1] != new_shape[-1]):
                raise ValueError(
                    f"Cannot load the weights of {description}: '{old.path}' has shape "
                    f"{old_shape} in the preset and {new_shape} in this model, which is not "
                    "a change of input channels. Keep the preset's architecture (e.g. its "
                    "hidden_dim), or pass load_weights=False to start from random weights."
                )
            value = adapt_input_kernel(value, new_shape[-2])
            adapted.append((old.path, old_shape[-2], new_shape[-2]))
        new.assign(value)
    for path, have, channels in adapted:
        how = ("repeated, rescaled by " + f"{have}/{channels}" if channels > have
               else "summed over the folded channels")
        print(
            f"Note: adapted '{path}' of {description} from {have}-channel to "
            f"{channels}-channel input ({how}).",
            file=sys.stderr,
        )
    return adapted
