"""tf.data pipelines: resize/crop, augmentation, mixing, batching (design.md §6).

Images are `(H, W, C)` uint8 pixels; frame sequences (event data, design.md
§9) are `(T, H, W, C)` event counts, resized frame by frame, flipped as a
whole (every frame the same way), never clipped to 0..255 and never mixed
or RandAugmented (no event recipe asks for it).

Training streams are deterministic per epoch: epoch `e` is shuffled with a
seed derived from `(seed, e)` (Python integers, one shuffled copy of the
data per epoch, concatenated), so a run resumed at epoch `e`, step `k` sees exactly the
batches the uninterrupted run would have (random augmentations aside, which
draw fresh randomness after a restart).
"""

import math

import keras
import tensorflow as tf


def is_frames(split):
    """Whether a split holds frame sequences `(T, H, W, C)` rather than images."""
    return len(split.element_spec[0].shape) == 4


def eval_resize(image, image_size, crop_pct):
    """Resize so the crop is `crop_pct` of the short side, then center crop
    (of every frame, for a frame sequence)."""
    height, width = image_size
    if crop_pct >= 1.0:
        return tf.image.resize(image, (height, width))
    scaled = (int(math.floor(height / crop_pct)), int(math.floor(width / crop_pct)))
    image = tf.image.resize(image, scaled)
    top, left = (scaled[0] - height) // 2, (scaled[1] - width) // 2
    return image[..., top : top + height, left : left + width, :]


def flip_frames(frames):
    """Flips a whole frame sequence left-right, with probability 0.5."""
    return tf.cond(tf.random.uniform(()) < 0.5, lambda: tf.reverse(frames, axis=[-2]),
                   lambda: frames)


def random_resized_crop(image, image_size, scale, ratio=(3 / 4, 4 / 3)):
    """Inception-style crop of a random area fraction in `scale`, resized."""
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros((1, 0, 4)),
        area_range=tuple(scale),
        aspect_ratio_range=ratio,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, size)
    return tf.image.resize(crop, image_size)


def rand_augment_layer(settings):
    """keras' RandAugment from timm-style `{num_ops, magnitude, magnitude_std}`.

    timm draws each op's magnitude from N(m, std) on a 0..10 scale; Keras
    draws its `factor` uniformly from a range, so the range is centred on
    `m / 10` with the same standard deviation (half-width `sqrt(3) std`).
    """
    centre = settings["magnitude"] / 10.0
    half_width = math.sqrt(3.0) * settings.get("magnitude_std", 0.0) / 10.0
    factor = (max(centre - half_width, 0.0), min(centre + half_width, 1.0))
    return keras.layers.RandAugment(
        value_range=(0, 255), num_ops=settings["num_ops"], factor=factor
    )


def _clip_pixels(image):
    return tf.clip_by_value(image, 0.0, 255.0)


def make_train_stream(
    splits, recipe, image_size, batch_size, num_classes, start_epoch, end_epoch, seed,
    mix=True,
):
    """Batches of `(float32 0..255 images, one-hot labels)` for epochs `[start, end)`.

    Args:
        splits: a `DataSplits`.
        recipe: a `Recipe` (augmentation settings).
        image_size: `(H, W)` of the model input.
        batch_size: global batch size (tf.distribute splits batches over
            replicas and, under multi-worker, shards them over workers).
        num_classes: for the one-hot labels.
        start_epoch, end_epoch: the epochs to stream.
        seed: base shuffle seed.
        mix: apply the recipe's mixup/cutmix (the caller switches it off
            from `recipe.mix_off_epoch`).
    """
    augment = rand_augment_layer(recipe.rand_augment) if recipe.rand_augment else None
    train = splits.train
    frames = is_frames(train)

    def prepare_frames(sequence, label):
        sequence = tf.image.resize(tf.cast(sequence, tf.float32), image_size)
        if recipe.horizontal_flip:
            sequence = flip_frames(sequence)
        return sequence, tf.one_hot(label, num_classes)

    def prepare(image, label):
        image = tf.cast(image, tf.float32)
        if recipe.random_resized_crop_scale:
            image = random_resized_crop(image, image_size, recipe.random_resized_crop_scale)
        else:
            image = tf.image.resize(image, image_size)
        if recipe.horizontal_flip:
            image = tf.image.random_flip_left_right(image)
        if augment is not None:
            image = augment(image)
        return _clip_pixels(image), tf.one_hot(label, num_classes)

    examples_per_epoch = (splits.num_train // batch_size) * batch_size
    shuffle_buffer = min(splits.num_train, 50_000)
    epochs = [
        train.shuffle(shuffle_buffer, seed=seed * 100_003 + epoch).take(examples_per_epoch)
        for epoch in range(start_epoch, end_epoch)
    ]
    stream = epochs[0]
    for epoch_data in epochs[1:]:
        stream = stream.concatenate(epoch_data)
    stream = stream.map(prepare_frames if frames else prepare, num_parallel_calls=tf.data.AUTOTUNE)
    stream = stream.batch(batch_size, drop_remainder=True)
    if mix and recipe.mixes and not frames:
        stream = stream.map(batch_mixer(recipe), num_parallel_calls=tf.data.AUTOTUNE)
    return stream.prefetch(tf.data.AUTOTUNE)


def batch_mixer(recipe):
    """A batch map applying mixup or cutmix (chosen 50/50 when both are on)."""
    mixers = []
    if recipe.mixup_alpha > 0:
        mixers.append(keras.layers.MixUp(alpha=recipe.mixup_alpha))
    if recipe.cutmix_alpha > 0:
        mixers.append(keras.layers.CutMix(factor=recipe.cutmix_alpha))

    def apply(mixer, images, labels):
        mixed = mixer({"images": tf.cast(images, tf.float32), "labels": labels})
        return _clip_pixels(mixed["images"]), tf.cast(mixed["labels"], tf.float32)

    def mix(images, labels):
        def mixed():
            choice = tf.random.uniform((), 0, len(mixers), dtype=tf.int32)
            branches = [lambda m=m: apply(m, images, labels) for m in mixers]
            return tf.switch_case(choice, branches)

        def unmixed():
            return images, labels

        return tf.cond(tf.random.uniform(()) < recipe.mix_probability, mixed, unmixed)

    return mix


def make_eval_dataset(split, recipe, image_size, batch_size, num_classes):
    """Batches of `(float32 0..255 images, one-hot labels)` of an evaluation
    split (validation or test), resized and cropped as the recipe says."""

    frames = is_frames(split)

    def prepare(image, label):
        image = eval_resize(tf.cast(image, tf.float32), image_size, recipe.crop_pct)
        return (image if frames else _clip_pixels(image)), tf.one_hot(label, num_classes)

    data = split.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(num_examples, batch_size):
    """Full batches per epoch (the remainder is dropped)."""
    steps = num_examples // batch_size
    if steps == 0:
        raise ValueError(
            f"Batch size {batch_size} exceeds the {num_examples} training "
            "examples; lower --batch_size."
        )
    return steps
