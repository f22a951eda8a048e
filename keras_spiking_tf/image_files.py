"""Image files as users have them: finding, decoding and checking them.

One place decides how an image file becomes pixels, for training on an image
folder (`kst-train --dataset imagefolder:PATH`) and for `kst-predict`:

- *Which files.* Files whose extension is in `IMAGE_EXTENSIONS` (the formats
  TensorFlow decodes: PNG, JPEG, GIF, BMP), case-insensitive; other files
  (a `.DS_Store`, a `notes.txt`) are not images and are left alone.
- *Which channels.* Every file is decoded to the channel count the model
  takes: a grayscale file for a 1-channel model as it is, an RGB file for a
  1-channel model through `tf.image.rgb_to_grayscale` (ITU-R 601 luma), a
  grayscale file for a 3-channel model repeated into R, G and B, and an
  alpha channel dropped. `ImageScan.conversions` counts what was converted,
  so the caller can say so.
- *Bad files.* `scan_image_files` decodes every file once, before any work,
  and collects those that cannot be read or decoded (`BadImageFile`): a
  caller refuses them (`BadImagesError` names a few and the count) or, when
  the user asks, skips them and records which.

Example:

```python
scan = scan_image_files(list_image_files(["photos/"]), channels=3)
pixels = decode_image_file(scan.files[0], channels=3)     # uint8 (H, W, 3)
```
"""

import dataclasses
import glob
import os
import re

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
NAMED_BAD_FILES = 5  # how many bad files an error names; the rest are counted
CHANNEL_NAMES = {1: "grayscale", 3: "RGB", 4: "RGBA"}


def is_image_file(path):
    """Whether `path` has an image extension (`IMAGE_EXTENSIONS`)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(paths):
    """The image files that `paths` name, sorted within each path.

    Args:
        paths: image files, directories (searched recursively) or glob
            patterns (`"scans/*.png"`), in any mix.

    Returns:
        A list of file paths, in the order of `paths`, each listed once.

    Raises:
        FileNotFoundError: a path that does not exist, a glob or directory
            that holds no image, or a file that is not an image.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for path in map(os.fspath, paths):
        if glob.has_magic(path):
            matches = sorted(glob.glob(path, recursive=True))
            images = [m for m in matches if os.path.isfile(m) and is_image_file(m)]
            if not images:
                raise FileNotFoundError(
                    f"The pattern '{path}' matches no image file ({', '.join(IMAGE_EXTENSIONS)})."
                )
        elif os.path.isdir(path):
            images = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if is_image_file(name)
            )
            if not images:
                raise FileNotFoundError(
                    f"The directory '{path}' holds no image file ({', '.join(IMAGE_EXTENSIONS)})."
                )
        elif os.path.isfile(path):
            if not is_image_file(path):
                raise FileNotFoundError(
                    f"'{path}' is not an image file: give files ending in "
                    f"{', '.join(IMAGE_EXTENSIONS)}, a directory or a glob."
                )
            images = [path]
        else:
            raise FileNotFoundError(f"No such file or directory: '{path}'.")
        found.extend(image for image in images if image not in found)
    return found


def can_convert(have, channels):
    """Whether `convert_channels` turns `have`-channel pixels into `channels`."""
    return have == channels or (channels in (1, 3) and have in (1, 2, 3, 4))


def convert_channels(pixels, channels):
    """`pixels` (`(..., H, W, C)`, uint8 or float) with `channels` channels.

    1 -> 3 repeats the gray value; 3 or 4 -> 1 takes the luma of R, G, B
    (`tf.image.rgb_to_grayscale`, rounded for uint8); 4 -> 3 drops alpha;
    2 (gray + alpha) -> 1 or 3 drops alpha first.

    Raises:
        ValueError: a conversion that has no meaning (e.g. to 2 channels).
    """
    import tensorflow as tf

    have = int(pixels.shape[-1])
    if have == channels:
        return pixels
    if not can_convert(have, channels):
        raise ValueError(
            f"Cannot convert {have}-channel images to {channels} channels: only "
            "grayscale (1) and RGB (3) models take images converted from other files."
        )
    if have in (2, 4):  # drop alpha
        pixels = pixels[..., : have - 1]
        have -= 1
    if have == channels:
        return pixels
    if channels == 3:
        return tf.image.grayscale_to_rgb(pixels)
    gray = tf.image.rgb_to_grayscale(tf.cast(pixels, tf.float32))
    if pixels.dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(gray), 0, 255), tf.uint8)
    return tf.cast(gray, pixels.dtype)


def read_image(path):
    """The pixels of an image file in its own channel count (uint8); raises
    TensorFlow's error for a file it cannot read or decode."""
    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), expand_animations=False)


def decode_image_file(path, channels):
    """The pixels of one image file as a uint8 array `(H, W, channels)`.

    Raises:
        BadImagesError: the file cannot be read or decoded.
    """
    scan = scan_image_files([path], channels, keep_pixels=True)
    scan.raise_if_bad()
    return scan.pixels[0]


@dataclasses.dataclass(frozen=True)
class BadImageFile:
    """A file that could not be read or decoded, and why."""

    path: str
    reason: str


@dataclasses.dataclass
class ImageScan:
    """What a pass over image files found.

    Attributes:
        files: the files that decoded.
        bad: `BadImageFile`s, in file order.
        conversions: `{(file channels, model channels): count}` of the files
            that were converted (e.g. `{(3, 1): 48}`: 48 RGB files to
            grayscale).
        channels: the channel count the files were decoded to.
        pixels: with `keep_pixels`, one uint8 array `(H, W, channels)` per
            file of `files`; else `None`.
    """

    files: list
    bad: list
    conversions: dict
    channels: int
    pixels: list | None = None

    def raise_if_bad(self, fix="remove or replace them"):
        """Raises `BadImagesError` if any file was bad."""
        if self.bad:
            raise BadImagesError(self.bad, fix)

    def describe_conversions(self):
        """A phrase such as "48 RGB files converted to grayscale", or ``""``."""
        target = CHANNEL_NAMES.get(self.channels, f"{self.channels}-channel")
        return ", ".join(
            f"{count} {CHANNEL_NAMES.get(have, f'{have}-channel')} "
            f"file{'s' if count != 1 else ''} converted to {target}"
            for (have, _), count in sorted(self.conversions.items())
        )


class BadImagesError(ValueError):
    """Image files that cannot be read or decoded, named (up to
    `NAMED_BAD_FILES`) and counted."""

    def __init__(self, bad, fix):
        self.bad = list(bad)
        named = "; ".join(f"'{b.path}' ({b.reason})" for b in self.bad[:NAMED_BAD_FILES])
        more = len(self.bad) - NAMED_BAD_FILES
        super().__init__(
            f"{len(self.bad)} image file{'s' if len(self.bad) != 1 else ''} cannot be read "
            f"or decoded: {named}" + (f"; and {more} more" if more > 0 else "")
            + f". {fix[0].upper()}{fix[1:]}."
        )


def _short_reason(error):
    """The first line of a decode error, without TensorFlow's op suffix."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)  # TF's "{{function_node ...}}"
    return message.strip().splitlines()[0].split(" [Op:")[0][:160]


def scan_image_files(paths, channels, progress=None, keep_pixels=False):
    """Decodes every file once and sorts them into good and bad.

    Args:
        paths: image file paths (see `list_image_files`).
        channels: the channel count to decode to (1 or 3, or the count the
            files already have).
        progress: `None`, or a callable `progress(done, total)` called
            after each file.
        keep_pixels: also keep each good file's pixels, converted to
            `channels` (`ImageScan.pixels`), for callers that use them all
            at once (`kst-predict`); a training folder is read again,
            batch by batch, instead.

    Returns:
        An `ImageScan`.
    """
    import tensorflow as tf

    files, bad, conversions, kept = [], [], {}, []
    for done, path in enumerate(paths, 1):
        try:
            pixels = read_image(path)
        except (tf.errors.OpError, OSError) as error:
            bad.append(BadImageFile(path, _short_reason(error)))
        else:
            native = int(pixels.shape[-1])
            if not can_convert(native, channels):
                bad.append(BadImageFile(
                    path, f"{native} channels, which a {channels}-channel model cannot take"))
            else:
                files.append(path)
                if keep_pixels:
                    kept.append(np.asarray(convert_channels(pixels, channels)))
                if native != channels:
                    conversions[(native, channels)] = conversions.get((native, channels), 0) + 1
        if progress is not None:
            progress(done, len(paths))
    return ImageScan(files=files, bad=bad, conversions=conversions, channels=channels,
                     pixels=kept if keep_pixels else None)


def image_file_dataset(paths, labels, channels):
    """A `tf.data.Dataset` of `(uint8 image (H, W, channels), int64 label)`
    read from `paths` (files already checked by `scan_image_files`)."""
    import tensorflow as tf

    def load(path, label):
        pixels = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        pixels = tf.ensure_shape(pixels, (None, None, None))
        # One branch per channel count a file can have; the scan has
        # refused files whose count cannot be converted.
        have_counts = [have for have in (1, 2, 3, 4) if can_convert(have, channels)]
        branches = [
            lambda have=have: convert_channels(tf.ensure_shape(pixels, (None, None, have)), channels)
            for have in have_counts
        ]
        index = tf.argmax(tf.equal(tf.constant(have_counts), tf.shape(pixels)[-1]))
        converted = tf.switch_case(tf.cast(index, tf.int32), branches)
        return tf.ensure_shape(converted, (None, None, channels)), label

    data = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(paths), tf.string), tf.constant(np.asarray(labels, np.int64)))
    )
    return data.map(load, num_parallel_calls=tf.data.AUTOTUNE)
