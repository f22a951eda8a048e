"""An example image folder to try the image-folder path without images of
your own: a data set a person tells apart at a glance (horizontal vs
vertical stripes, with noise), as PNG files in the
`PATH/{train,test}/<label>/<image>` layout that `imagefolder:PATH` reads,
grayscale or RGB (`python tools/make_example_folder.py`; the tests use it too).

Example:

```python
write_stripes_folder("stripes", channels=3)   # stripes/{train,test}/{horizontal,vertical}/*.png
```
"""

import os

import numpy as np
import tensorflow as tf


def stripes(orientation, size, rng, channels):
    """One uint8 image of stripes (`"horizontal"` or `"vertical"`) with a
    random period, phase, contrast and Gaussian noise."""
    period = rng.integers(3, 6)
    phase = rng.integers(0, period)
    line = ((np.arange(size) + phase) % period) < period / 2
    pattern = np.repeat(line[:, None], size, 1) if orientation == "horizontal" else np.repeat(
        line[None, :], size, 0)
    low, high = rng.uniform(20, 90), rng.uniform(160, 240)
    image = np.where(pattern, high, low)[..., None] + rng.normal(0, 20, (size, size, 1))
    if channels == 3:  # a random tint per image
        image = image * rng.uniform(0.6, 1.0, 3)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_png(path, image):
    """Writes a uint8 image `(H, W, C)` as a PNG file, creating its directory."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(image))


def write_stripes_folder(root, train_per_class=30, test_per_class=10, size=16, channels=1, seed=0):
    """Writes the folder and returns `root` (as a string).

    Args:
        root: the folder to write (`root/{train,test}/{horizontal,vertical}/`).
        train_per_class, test_per_class: images per label and split.
        size: image height and width in pixels.
        channels: 1 (grayscale) or 3 (RGB, each image tinted at random).
        seed: the random seed.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label in ("horizontal", "vertical"):
            for index in range(count):
                write_png(os.path.join(root, split, label, f"{index:03d}.png"),
                          stripes(label, size, rng, channels))
    return str(root)
