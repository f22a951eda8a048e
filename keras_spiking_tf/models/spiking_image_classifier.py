"""The image classifier every model family's classifier subclasses: all of a
classifier that is not its head and architecture.

`SpikingImageClassifier` holds presets (`from_preset` over every
registered family, `save_to_preset` with its model card, task weights
without an optimizer), `decode_predictions` and `class_names`, the
per-step logits, `export` through `keras_spiking_tf.export`, and
`predict`/`fit`/`evaluate` on the user's own raw images with their checks
(`check_images`). A family's subclass builds its head in `__init__`
(after `check_init_arguments`), names `backbone_cls` and
`preprocessor_cls` as KerasHub's tasks do, and registers with
`keras_spiking_tf.models.model_family.register_family`.

`from_preset` and `save_to_preset` below are `keras_spiking_tf.from_preset`
and `keras_spiking_tf.save_to_preset`.
"""

import inspect
import os

import keras
import numpy as np
from keras import ops
from keras_hub.models import ImageClassifier
from keras_hub.models import Task

from keras_spiking_tf import input_checks
from keras_spiking_tf import validation
from keras_spiking_tf.models import model_family
from keras_spiking_tf.models import preset_files as files
from keras_spiking_tf.models.input_adaptation import adapt_channel_values
from keras_spiking_tf.models.input_adaptation import transfer_weights
from keras_spiking_tf.models.model_card import model_card

MAX_CLASSES = 1 << 20
# `metadata.json`'s `tasks`: KerasHub records the name of each task class's
# direct base, which for a family's classifier is `SpikingImageClassifier`;
# the task KerasHub knows it as is its `ImageClassifier`.
KERAS_HUB_TASKS = ["ImageClassifier"]


class SpikingImageClassifier(ImageClassifier):
    """Base of the model families' image classifiers (not built itself).

    A subclass sets `backbone_cls` and `preprocessor_cls`, takes
    `(backbone, num_classes, ..., preprocessor=None, activation=None,
    head_dtype="float32", class_names=None, **kwargs)`, calls
    `check_init_arguments` first in `__init__`, builds its head as a
    functional model whose last Dense layer is `output_dense`, and stores
    each task argument as an attribute of the same name (`get_config`
    saves them). What it then has from here: see the module docstring.

    Example:

    ```python
    class TinyImageClassifier(SpikingImageClassifier):
        backbone_cls = TinyBackbone
        preprocessor_cls = TinyImageClassifierPreprocessor
        ...
    ```
    """

    # --- arguments -----------------------------------------------------------

    @classmethod
    def task_argument_names(cls):
        """The classifier's own `__init__` arguments but `backbone`,
        `num_classes` and `**kwargs`."""
        return [
            name for name in inspect.signature(cls.__init__).parameters
            if name not in ("self", "backbone", "num_classes", "args", "kwargs")
        ]

    @classmethod
    def check_task_arguments(cls, num_classes, preprocessor=None, activation=None,
                             head_dtype="float32", class_names=None, allow_none_classes=False):
        """The classifier's own arguments (`__init__`, and `from_preset`,
        where `num_classes=None` keeps the preset's head), before anything
        is built. A family with arguments of its own overrides this and
        calls it.

        Raises:
            TypeError, ValueError: naming the argument, the value and what
                is allowed (`validation.py`).
        """
        validation.check_integer("num_classes", num_classes, minimum=1, maximum=MAX_CLASSES,
                                 allow_none=allow_none_classes)
        if preprocessor is not None and not isinstance(preprocessor, cls.preprocessor_cls):
            raise validation.invalid(
                "preprocessor", preprocessor,
                f"a {cls.preprocessor_cls.__name__} or None", error=TypeError,
            )
        validation.check_identifier(
            "activation", activation, keras.activations.get,
            "a Keras activation (e.g. 'softmax'), a callable or None",
        )
        validation.check_dtype_policy("head_dtype", head_dtype)
        if class_names is None:
            return
        if not isinstance(class_names, (list, tuple)) or not all(
            isinstance(c, (str, int)) and not isinstance(c, bool) for c in class_names
        ):
            raise validation.invalid(
                "class_names", class_names, "a list of names (strings) or None", error=TypeError
            )
        if not class_names or (num_classes is not None and len(class_names) != num_classes):
            raise validation.invalid(
                "class_names", class_names, "one name per class, or None",
                hint=f"It has {len(class_names)} names for num_classes={num_classes}.",
            )

    def check_init_arguments(self, backbone, kwargs, num_classes, **task_arguments):
        """`__init__`'s checks, before any layer is built: Keras keywords
        only in `kwargs`, a backbone of the family, the task arguments.
        Sets `class_names` (a list of strings, or `None`)."""
        validation.check_keyword_arguments(
            type(self).__name__, kwargs, ("name", "trainable", "dtype"))
        if not isinstance(backbone, self.backbone_cls):
            raise validation.invalid(
                "backbone", backbone, f"a {self.backbone_cls.__name__}", error=TypeError)
        self.check_task_arguments(num_classes, **task_arguments)

    def get_config(self):
        config = Task.get_config(self)  # ImageClassifier's adds arguments it does not take
        config["num_classes"] = self.num_classes
        config.update({
            name: getattr(self, name) for name in self.task_argument_names()
            if name != "preprocessor"
        })
        return config

    # --- presets -------------------------------------------------------------

    @classmethod
    def from_preset(cls, preset, load_weights=True, num_classes=None, **kwargs):
        """Builds a classifier from a preset, through KerasHub's loader.

        On top of KerasHub's `from_preset` this checks everything before
        building anything: a built-in preset without published weights, an
        unknown name (with close names suggested), a path that does not
        exist, a preset file that is not valid JSON and an unreachable hub
        are each a clear error; weights files are verified (SHA-256,
        readable HDF5) before they are loaded, also when KerasHub itself
        loads them (`keras_hub.models.ImageClassifier.from_preset(...)`).
        It also takes backbone overrides. Called on `SpikingImageClassifier`
        (`keras_spiking_tf.from_preset`) it builds the classifier of the
        preset's family (`model_family.family_of_preset`).

        Args:
            preset: a built-in name (`keras_spiking_tf.list_presets()`), a
                local preset directory, or a `hf://`, `kaggle://` or `gs://`
                handle.
            load_weights: load the preset's weights. Built-in presets
                without published weights need `load_weights=False` (random
                initialisation).
            num_classes: `None` keeps the preset's head (and its weights); a
                number gives a fresh head for fine-tuning, backbone weights
                still loaded.
            **kwargs: `dtype` (e.g. `"mixed_bfloat16"`), `class_names`;
                backbone arguments to override (`time_steps`, `attention`,
                `num_layers`, `neuron_config`, ...: every key of the
                family's `architecture_keys`); other task arguments
                (`activation`, the family's own such as `kd`). Any other
                keyword is a `TypeError` (with close names suggested), and
                every value is checked (as the backbone checks it) before
                anything is read or built.

        Example:

        ```python
        model = SpikingTransformerImageClassifier.from_preset("st_2_64_digits")
        model = keras_spiking_tf.from_preset("st_8_512_imagenet", load_weights=False)
        ```
        """
        if not isinstance(preset, (str, os.PathLike)):
            raise TypeError(
                "preset must be a preset name, a directory or a hub handle (a string); "
                f"got {type(preset).__name__}."
            )
        if cls is SpikingImageClassifier:
            # Which family: a built-in name says it; a directory or handle
            # says it in its config.json, read after the checks that need
            # no family.
            if model_family.builtin_entry(os.fspath(preset)) is None:
                validation.check_keyword_arguments("from_preset", kwargs, sorted({
                    "load_weights", "num_classes", "dtype", "name",
                    *(key for family in model_family.families()
                      for key in (*family.classifier_cls.task_argument_names(),
                                  *family.architecture_keys)),
                }))
                validation.check_bool("load_weights", load_weights)
                validation.check_integer("num_classes", num_classes, minimum=1,
                                         maximum=MAX_CLASSES, allow_none=True)
                validation.check_dtype_policy("dtype", kwargs.get("dtype"))
                validation.check_string("name", kwargs.get("name"), allow_none=True)
            family = model_family.family_of_preset(preset)
            return family.classifier_cls.from_preset(
                preset, load_weights=load_weights, num_classes=num_classes, **kwargs)
        family = model_family.family_of_model(cls)
        name = os.fspath(preset)
        builtin = model_family.builtin_entry(name)
        if builtin is not None and builtin[0] is not family:
            raise ValueError(
                f"Preset '{name}' is a preset of the '{builtin[0].name}' family, not of "
                f"{cls.__name__}'s ('{family.name}'); load it with "
                f"{builtin[0].classifier_cls.__name__}.from_preset or keras_spiking_tf.from_preset."
            )
        architecture_keys = family.architecture_keys
        # Every argument is checked before anything is read or built: an
        # unknown keyword (close names suggested), then each value as the
        # backbone and the classifier check it.
        task_arguments = cls.task_argument_names()
        validation.check_keyword_arguments(
            "from_preset", kwargs,
            ("load_weights", "num_classes", "dtype", "name", *task_arguments, *architecture_keys),
        )
        validation.check_bool("load_weights", load_weights)
        family.check_backbone_arguments(
            **{k: v for k, v in kwargs.items() if k in architecture_keys})
        validation.check_dtype_policy("dtype", kwargs.get("dtype"))
        validation.check_string("name", kwargs.get("name"), allow_none=True)
        cls.check_task_arguments(
            num_classes, **{k: kwargs[k] for k in task_arguments if k in kwargs},
            allow_none_classes=True,
        )
        preset = model_family.resolve_preset(name, load_weights)
        overrides = {k: kwargs.pop(k) for k in architecture_keys if k in kwargs}
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
            kwargs.setdefault("class_names", None)  # the preset's names are for its head
        if builtin is not None and not model_family.is_shipped(name):
            # A built-in preset of a family without shipped directories:
            # built from its registry entry (it has no weights to load).
            model = registry_classifier(name, dtype=kwargs.pop("dtype", None))
            if overrides:
                model = _with_backbone_overrides(preset, model, overrides, load_weights=False)
            return _rebuilt(model, {}, kwargs)
        if kwargs.get("dtype") is None:
            # KerasHub cannot resolve a saved mixed policy by itself (its
            # float check rejects "mixed_bfloat16"); pass the saved one.
            kwargs["dtype"] = _saved_dtype_policy(preset)
        try:
            model = super().from_preset(
                preset, load_weights=load_weights and not overrides, **kwargs
            )
        except (OSError, ConnectionError) as error:
            raise files.hub_error(preset, error) from error
        except files.DamagedPresetError:
            raise
        except (TypeError, ValueError) as error:
            # Keras deserialises in safe mode: a config naming anything but
            # a registered Keras object (or a Python lambda) is refused here.
            raise type(error)(
                f"Could not build preset '{preset}' from its config files: {error}"
            ) from error
        if not overrides:
            return model
        try:  # the overrides' own errors (a bad value, weights that do not fit) as they are
            return _with_backbone_overrides(preset, model, overrides, load_weights)
        except (OSError, ConnectionError) as error:
            raise files.hub_error(preset, error) from error

    def save_to_preset(self, preset_dir, max_shard_size=10, metadata=None):
        """Saves the classifier as a KerasHub preset directory, atomically.

        Writes `config.json`, `task.json`, `preprocessor.json`,
        `model.weights.h5`, `task.weights.h5` (the model only, never an
        optimizer's state), `metadata.json` (with the SHA-256 of each
        weights file and `metadata`) and a model card `README.md`, into a
        hidden staging directory beside `preset_dir`, then renames it into
        place: an interrupted save never leaves a half-written preset, and
        an existing `preset_dir` is replaced whole.
        `keras_spiking_tf.save_to_preset(model, preset_dir)` is the same.

        Args:
            preset_dir: the directory to write.
            max_shard_size: KerasHub's weight-file sharding threshold (GB).
            metadata: extra entries for `metadata.json` and the model card:
                `dataset`, `evaluation` (`test_accuracy`, `test_images`,
                `val_accuracy`, ...), `energy`, `training`.

        Example:

        ```python
        model.save_to_preset("my_preset")
        keras_hub.upload_preset("hf://me/my_preset", "my_preset")
        ```
        """
        metadata = dict(metadata or {})
        name = os.path.basename(os.path.normpath(os.fspath(preset_dir)))
        return files.write_preset(
            lambda staging: super(SpikingImageClassifier, self).save_to_preset(
                staging, max_shard_size=max_shard_size
            ),
            preset_dir,
            metadata={**metadata, "tasks": KERAS_HUB_TASKS},
            model_card=model_card(self, name, metadata),
        )

    def _layers_without_task_weights(self):
        """What task weight files leave out: the backbone (it has its own
        file) and a compiled model's optimizer (a preset holds the model
        only; training checkpoints keep the optimizer)."""
        skipped = list(self.backbone._flatten_layers())
        if getattr(self, "optimizer", None) is not None:
            skipped.append(self.optimizer)
        return skipped

    def save_task_weights(self, filepath):
        """KerasHub's `save_task_weights`, without the optimizer's state."""
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`; got {filepath!r}.")
        keras.saving.save_weights(self, filepath, objects_to_skip=self._layers_without_task_weights())

    def load_task_weights(self, filepath):
        """KerasHub's `load_task_weights`, without the optimizer's state,
        after checking the file (`verify_weights_file`)."""
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`; got {filepath!r}.")
        files.verify_weights_file(filepath)
        keras.saving.load_weights(self, filepath, objects_to_skip=self._layers_without_task_weights())

    # --- predictions ----------------------------------------------------------

    def decode_predictions(self, predictions, top=5):
        """The `top` classes of each prediction: a list per sample of
        `(class name, probability)` pairs, most likely first.

        `predictions` are this model's outputs (logits, or probabilities
        with `activation="softmax"`). ImageNet classifiers without their
        own `class_names` use KerasHub's ImageNet class names.

        Example:

        ```python
        model.decode_predictions(model.predict(images), top=2)
        # [[("7", 0.93), ("1", 0.02)], ...]
        ```
        """
        predictions = np.asarray(ops.convert_to_numpy(predictions), dtype="float64")
        if predictions.ndim != 2 or predictions.shape[1] != self.num_classes:
            raise ValueError(
                f"Expected predictions shaped (batch, {self.num_classes}), got "
                f"{predictions.shape}; pass what predict() returns."
            )
        if self.activation != "softmax":
            shifted = np.exp(predictions - predictions.max(axis=1, keepdims=True))
            predictions = shifted / shifted.sum(axis=1, keepdims=True)
        if self.class_names is None and self.num_classes == 1000:
            from keras_hub.utils import decode_imagenet_predictions

            return decode_imagenet_predictions(predictions, top=top)
        names = self.class_names or [str(index) for index in range(self.num_classes)]
        order = np.argsort(-predictions, axis=1)[:, :top]
        return [[(names[i], float(row[i])) for i in indices] for row, indices in zip(predictions, order)]

    def per_step_logits_model(self):
        """A model sharing this one's layers that returns the head's logits
        at every time step, `(batch, T, num_classes)`, before the mean over
        T (for the TET loss and for looking at how a prediction forms)."""
        return keras.Model(self.inputs, self.per_step_logits(), name=f"{self.name}_per_step")

    def per_step_logits(self):
        """The symbolic per-step logits `(batch, T, num_classes)` of the
        functional graph: the output of `output_dense` (a family whose
        output combines several heads overrides this)."""
        return self.output_dense.output

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
        """Keras' `model.export`, through `keras_spiking_tf.export`: the
        verified, optimised file, on every backend (JAX and PyTorch convert
        in a TensorFlow child process; see `edge_export/tensorflow_bridge.py`).

        Args:
            filepath: the file (`.tflite`, `.onnx`) or SavedModel directory.
            format: `"tf_saved_model"` (Keras' default; also `"saved_model"`),
                `"litert"`, `"onnx"`, or any other format of
                `keras_spiking_tf.edge_export.FORMATS`. Keras' `"openvino"`
                and `"torch"` are refused (`keras.Model.export(model, ...)`
                is Keras' own, unverified exporter).
            verbose: `None` or `True`: print one line (what was written, its
                agreement with this model); `False`: print nothing.
            input_signature: must be `None`: the file's input is the
                model's image shape with a dynamic batch axis (for raw
                images of another size: `include_preprocessing=True,
                raw_image_size=(height, width)`).
            **kwargs: `keras_spiking_tf.export`'s other arguments
                (`quantization`, `include_preprocessing`,
                `verification_images`, `min_top1_agreement`, ...).

        Returns:
            The `ExportReport` of `keras_spiking_tf.export` (Keras' own
            `export` returns `None`).

        Raises:
            ValueError: a format this library does not export, an
                `input_signature`, or any of `keras_spiking_tf.export`'s.

        Example:

        ```python
        report = model.export("digits.tflite", format="litert")
        report["top1_agreement"], report["ops"]
        ```
        """
        from keras_spiking_tf.edge_export import FORMATS
        from keras_spiking_tf.edge_export import export

        validation.check_bool("verbose", verbose, allow_none=True)
        keras_names = {"tf_saved_model": "saved_model"}  # Keras' name -> ours; others as they are
        name = keras_names.get(format, format) if isinstance(format, str) else None
        if name not in FORMATS:
            raise ValueError(
                f"model.export(format={format!r}) is not a format keras_spiking_tf exports; "
                f"use one of {sorted({*FORMATS, *keras_names})}. (Keras' own "
                f"exporter, without this library's verification: keras.Model.export(model, "
                f"path, format={format!r}).)"
            )
        if input_signature is not None:
            raise ValueError(
                "model.export(input_signature=...) is not supported: the file takes the "
                "model's image shape with a dynamic batch axis. For raw images of another "
                "size pass include_preprocessing=True, raw_image_size=(height, width)."
            )
        report = export(self, filepath, format=name, **kwargs)
        if verbose is not False:
            summary = f"Saved artifact at '{report.path}' ({name}, {report.file_bytes} bytes)"
            if report.top1_agreement is not None:
                summary += (
                    f"; top-1 agreement with this model {report.top1_agreement:.4f} on "
                    f"{report.num_samples} images"
                )
            print(summary + ".")
        return report

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`, with array inputs checked first
        (`check_images`: errors for what cannot work, an `InputWarning` for
        what is probably wrong, e.g. images in [0, 1])."""
        if isinstance(x, np.ndarray) or ops.is_tensor(x):
            self.check_images(x, receiver="predict()")
            if self.backbone.input_type == "frames" and not keras.backend.is_float_dtype(
                keras.backend.standardize_dtype(x.dtype)
            ):
                x = ops.cast(x, "float32")  # event counts
        return super().predict(x, *args, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, sample_weight=None,
            validation_data=None, validation_split=None, **kwargs):
        """`keras.Model.fit` on raw images, array inputs shuffled as Keras
        shuffles them.

        Array inputs (NumPy arrays or tensors; also `validation_data`'s
        images) are checked first (`check_images`), then, as
        `keras.Model.fit` does with arrays:
        `validation_split` holds out the last fraction of `x`/`y` (before
        any shuffling), and with `shuffle=True` (the default) the training
        examples are reshuffled before every epoch (`"batch"` shuffles
        within batches; `False` keeps their order). KerasHub's own array
        path batches arrays in order and leaves `shuffle` unused, so
        class-sorted arrays trained one class after another. The batches
        come from a `tf.data` pipeline of shuffled indices (no copy of the
        data in a shuffle buffer), on every backend; its shuffles follow
        `keras.utils.set_random_seed`.

        A `tf.data.Dataset` (or other dataset) is passed on as it is: it is
        expected to be shuffled already, and its images are not checked
        (that would run the pipeline one extra time).
        """
        if not _is_array(x):
            return super().fit(x, y, batch_size, sample_weight, validation_data,
                               validation_split, **kwargs)
        self.check_images(x, receiver="fit()")
        shuffle = kwargs.pop("shuffle", True)
        if shuffle not in (True, False, "batch"):
            raise ValueError(f"shuffle must be True, False or 'batch'; got {shuffle!r}.")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
        arrays = [None if a is None else _to_numpy(a) for a in (x, y, sample_weight)]
        if validation_split and validation_data is None:
            arrays, validation_data = _hold_out(arrays, validation_split)
        elif isinstance(validation_data, (tuple, list)) and validation_data and _is_array(
            validation_data[0]
        ):
            self.check_images(validation_data[0], receiver="fit() (validation_data)")
        return super().fit(
            _array_batches(arrays, batch_size or 32, shuffle),
            validation_data=validation_data,
            shuffle=False,  # the batches are shuffled already; Keras would warn
            **kwargs,
        )

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        """`keras.Model.evaluate` on raw images, array inputs checked first
        (`check_images`); datasets are not checked."""
        if _is_array(x) and not kwargs.get("_use_cached_eval_dataset", False):
            self.check_images(x, receiver="evaluate()")
        return super().evaluate(x, y, batch_size, sample_weight, **kwargs)

    def check_images(self, images, receiver=None):
        """Raises a clear error for images (or frame sequences) this
        classifier cannot take, with the reshaping that fixes their layout
        when there is one (`input_checks.layout_fix`: verified to give the
        expected shape); then warns (`InputWarning`, an `InputError` under
        `keras_spiking_tf.set_strict_inputs(True)`) when their values are
        probably wrong: with a preprocessor, images that do not look like
        raw 0..255 pixels (floats in [0, 1] or [-1, 1], already normalised
        images); without one, raw-looking pixels where normalised floats
        are expected. Frame sequences (event counts) get no value check.

        Args:
            images: the batch, as `predict` takes it (`x`).
            receiver: who takes it, for messages (e.g. `"fit()"`).
        """
        receiver = receiver or "this classifier (predict, fit, evaluate, predict_anytime)"
        if not hasattr(images, "shape") or not hasattr(images, "dtype"):
            raise TypeError(
                f"`x` must be an array (NumPy or a backend tensor) of a batch of images; got "
                f"{type(images).__name__}. Stack images with np.stack(...)."
            )
        shape = tuple(images.shape)
        backbone = self.backbone
        height, width, channels = backbone.image_shape
        channels_first = backbone.image_layout == "channels_first"
        frames = backbone.input_type == "frames"
        layout = "(batch, C, H, W)" if channels_first else "(batch, H, W, C)"
        if frames:
            layout = "(batch, T, C, H, W)" if channels_first else "(batch, T, H, W, C)"
        what = "frame sequences" if frames else "images"
        dtype_kind = getattr(getattr(images, "dtype", None), "kind", None)
        try:
            dtype = keras.backend.standardize_dtype(images.dtype)
        except ValueError:
            dtype = None
        if dtype_kind in ("O", "U", "S", "V") or dtype is None or dtype == "string":
            raise TypeError(
                f"Expected numeric {what} (uint8 0..255, event counts, or floats), got an "
                f"array of dtype {images.dtype}. Decode image files into pixel arrays first, "
                "e.g. np.stack([keras.utils.img_to_array(keras.utils.load_img(p)) "
                "for p in paths])."
            )
        rank = 5 if frames else 4
        per_sample = (channels, height, width) if channels_first else (height, width, channels)
        expected = (None, backbone.time_steps, *per_sample) if frames else (None, *per_sample)
        any_size = (channels, None, None) if channels_first else (None, None, channels)
        resized = not frames and self.preprocessor is not None  # any height and width
        fix = input_checks.layout_fix(
            shape, expected, fixed_axes=2 if frames else 1, channels_first=channels_first,
            loose_expected=(None, *any_size) if resized else None,
        )
        hint = f"{str(fix)[:1].upper()}{str(fix)[1:]}." if fix is not None else ""
        if len(shape) != rank:
            if fix is None and frames and len(shape) == 4:
                hint = "A single image is not a frame sequence: this preset takes event-camera frames."
            raise ValueError(
                f"Expected a batch of {what} shaped {layout} for x, got shape {shape}. {hint}".rstrip()
            )
        if shape[0] == 0:
            raise ValueError(f"Got an empty batch of {what} (shape {shape}); pass at least one.")
        if frames and shape[1] != backbone.time_steps:
            raise ValueError(
                f"Expected sequences of T={backbone.time_steps} frames (axis 1), got {shape[1]} "
                f"(shape {shape}). Integrate the events into {backbone.time_steps} frames, "
                "or load the preset with time_steps=" + str(shape[1]) + "."
            )
        per_frame = shape[1:] if not frames else shape[2:]
        spatial = per_frame[1:] if channels_first else per_frame[:2]
        got_channels = per_frame[0] if channels_first else per_frame[-1]
        if got_channels != channels:
            raise ValueError(
                f"Expected {channels}-channel {what} shaped {layout} (data_format="
                f"'{backbone.image_layout}') for x, got shape {shape}. "
                + (hint or f"Convert them to {channels} channel{'s' if channels != 1 else ''}.")
            )
        if self.preprocessor is None:
            if tuple(spatial) != (height, width):
                raise ValueError(
                    f"This classifier takes {height}x{width} {what}, got shape {shape}. "
                    "Resize them" + ("" if frames else " and normalise them, or attach the "
                                      "preset's preprocessor") + "."
                )
            if not frames and not keras.backend.is_float_dtype(dtype):
                raise TypeError(
                    f"This classifier has no preprocessor and takes normalised "
                    f"float images, got dtype {dtype}. Normalise raw pixels "
                    "with the preset's preprocessor."
                )
        if keras.backend.is_float_dtype(dtype) and not np.all(
            np.isfinite(ops.convert_to_numpy(images))
        ):
            raise ValueError(
                f"The {what} contain NaN or infinite values; clean the input "
                "(e.g. np.nan_to_num) before predicting."
            )
        if frames:
            return  # event counts: any non-negative value is legitimate
        if self.preprocessor is not None:
            input_checks.check_raw_pixels(
                images, receiver, "x", stacklevel=3,
                space=input_checks.space_of_converter(
                    self.preprocessor.image_converter, "normalised"),
            )
        else:
            input_checks.check_normalised(
                images, receiver, "x", stacklevel=3,
                fix="normalise them (e.g. with the preset's preprocessor: "
                "keras_spiking_tf.from_preset(...).preprocessor(x)), or attach that preprocessor",
            )


def _is_array(x):
    """Whether `x` is one array or tensor (of any framework), not a
    dataset, generator or structure."""
    if isinstance(x, np.ndarray) or ops.is_tensor(x):
        return True
    return hasattr(x, "shape") and hasattr(x, "__array__") and hasattr(x, "dtype")


def _to_numpy(x):
    if isinstance(x, np.ndarray):
        return x
    if ops.is_tensor(x):
        return ops.convert_to_numpy(x)
    if hasattr(x, "detach"):  # a torch tensor under another backend
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _hold_out(arrays, validation_split):
    """`keras.Model.fit`'s `validation_split` on `[x, y, sample_weight]`:
    the last fraction, taken before shuffling."""
    if isinstance(validation_split, bool) or not 0 < validation_split < 1:
        raise ValueError(
            f"validation_split must be a fraction between 0 and 1 (exclusive); "
            f"got {validation_split!r}."
        )
    count = len(arrays[0])
    split_at = int(np.floor(count * (1.0 - validation_split)))
    if split_at in (0, count):
        raise ValueError(
            f"validation_split={validation_split} of {count} examples leaves "
            f"{split_at} for training and {count - split_at} for validation; "
            "pass more examples or another fraction."
        )
    train = [None if a is None else a[:split_at] for a in arrays]
    held_out = tuple(a[split_at:] for a in arrays if a is not None)
    return train, held_out


def _array_batches(arrays, batch_size, shuffle):
    """A `tf.data.Dataset` of `(x, y, sample_weight)` batches of `arrays`,
    reshuffled on every pass when `shuffle` is `True` (as Keras' array
    adapter: indices are shuffled, then gathered), each batch shuffled in
    itself when it is `"batch"`, in order when `False`."""
    import tensorflow as tf

    x, y, sample_weight = arrays
    count = len(x)
    for name, array in (("y", y), ("sample_weight", sample_weight)):
        if array is not None and len(array) != count:
            raise ValueError(
                f"x has {count} examples but {name} has {len(array)}; pass one per image."
            )
    data = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
    indices = tf.data.Dataset.range(count)
    if shuffle is True:
        indices = indices.shuffle(count, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size)
    if shuffle == "batch":
        indices = indices.map(tf.random.shuffle)
    batches = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(data).repeat()))
    return batches.map(
        lambda index, data: tf.nest.map_structure(lambda a: tf.gather(a, index), data),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _saved_dtype_policy(preset):
    """The mixed dtype policy name a preset was saved with, else None."""
    dtype = files.read_preset_json(preset, "config.json").get("config", {}).get("dtype")
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    return name if isinstance(name, str) and name.startswith("mixed_") else None


def _with_backbone_overrides(preset, model, overrides, load_weights):
    """`model` rebuilt with backbone arguments changed (e.g. `time_steps`,
    `attention`: neither changes a weight's shape), then the preset's weights
    loaded into it.

    An `image_shape` override also resizes the preprocessor to the new size;
    one with other channels adapts the first convolution's kernel and the
    normalisation to them (`input_adaptation.py`)."""
    preset_config = model.backbone.get_config()
    config = {**preset_config, **overrides}
    preprocessor = model.preprocessor
    old_shape = tuple(preset_config["image_shape"])
    new_shape = tuple(config["image_shape"])
    if preprocessor is not None and new_shape != old_shape:
        preprocessor = _preprocessor_for(preprocessor, new_shape)
    rebuilt = _rebuilt(model, {}, {"preprocessor": preprocessor},
                       backbone=type(model).backbone_cls.from_config(config))
    if load_weights:
        from keras_hub.src.utils.preset_utils import get_file

        # The weights load into the preset's own architecture, then move
        # over: a shape that an override changed is a one-line error, and
        # other input channels are adapted.
        source = type(model).backbone_cls.from_config(preset_config)
        source.load_weights(get_file(preset, "model.weights.h5"))
        name = os.path.basename(os.path.normpath(preset))
        transfer_weights(source, rebuilt.backbone, f"preset '{name}'")
        task = files.read_preset_json(preset, "task.json")
        if model.num_classes == task["config"]["num_classes"]:
            rebuilt.load_task_weights(get_file(preset, "task.weights.h5"))
    return rebuilt


def _preprocessor_for(preprocessor, image_shape):
    """A copy of `preprocessor` that resizes to `image_shape[:2]` and
    normalises `image_shape[-1]` channels."""
    converter = preprocessor.image_converter
    config = converter.get_config()
    channels = image_shape[-1]
    config.update(
        image_size=tuple(image_shape[:2]),
        scale=adapt_channel_values(config.get("scale"), channels),
        offset=adapt_channel_values(config.get("offset"), channels),
    )
    return type(preprocessor)(image_converter=type(converter).from_config(config))


def registry_classifier(name, dtype=None):
    """The classifier that built-in preset `name`'s registry entry
    describes, with random weights (fixed layer names: Keras would number
    them per process otherwise; `data_format` unset, so that it follows
    `keras.config.image_data_format()`).

    Example:

    ```python
    registry_classifier("st_2_64_digits").count_params()
    ```
    """
    family, entry = model_family.builtin_entry(name)
    dataset = model_family.dataset_of(name)
    cls = family.classifier_cls
    preprocessor = None  # frame sequences (event counts) go in as they are
    if "mean" in dataset:
        converter = cls.preprocessor_cls.image_converter_cls.from_dataset_stats(
            image_size=dataset["image_shape"][:2], mean=dataset["mean"], std=dataset["std"],
            name=f"{family.name}_image_converter",
        )
        preprocessor = cls.preprocessor_cls(
            converter, name=f"{family.name}_image_classifier_preprocessor")
    backbone = cls.backbone_cls(
        **family.backbone_config(name), data_format=None, dtype=dtype,
        name=f"{family.name}_backbone",
    )
    own = {key: entry[key] for key in cls.task_argument_names() if key in entry}  # e.g. `kd`
    return cls(
        backbone=backbone,
        num_classes=dataset["num_classes"],
        preprocessor=preprocessor,
        class_names=dataset["class_names"],
        dtype=dtype,
        name=f"{family.name}_image_classifier",
        **own,
    )


def _rebuilt(model, overrides, task_arguments, backbone=None):
    """`model` built again (random weights) with backbone arguments
    `overrides` and task arguments `task_arguments` changed."""
    if backbone is None and overrides:
        backbone = type(model).backbone_cls.from_config(
            {**model.backbone.get_config(), **overrides})
    if backbone is None and not task_arguments:
        return model
    arguments = {name: getattr(model, name) for name in model.task_argument_names()}
    arguments["preprocessor"] = model.preprocessor
    arguments["num_classes"] = model.num_classes
    arguments.update(task_arguments)
    return type(model)(backbone=backbone or model.backbone, **arguments)


def from_preset(preset, load_weights=True, num_classes=None, **kwargs):
    """`SpikingImageClassifier.from_preset` (see there): the classifier of
    the preset's family, from any registered family's preset.

    Example:

    ```python
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    model = keras_spiking_tf.from_preset("sdt_v2_8_384_imagenet", load_weights=False)
    ```
    """
    return SpikingImageClassifier.from_preset(
        preset, load_weights=load_weights, num_classes=num_classes, **kwargs
    )


def save_to_preset(model, preset_dir, metadata=None):
    """`model.save_to_preset(preset_dir, metadata=metadata)`: the same
    atomic, checksummed preset with its model card, whichever way it is
    called.

    Example:

    ```python
    keras_spiking_tf.save_to_preset(model, "my_preset")
    ```
    """
    return model.save_to_preset(preset_dir, metadata=metadata)
