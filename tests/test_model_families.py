"""Adding a model family is its folder and one registration (issue 22).

A toy third family, defined entirely here (its backbone, a classifier on
the shared `SpikingImageClassifier`, its preprocessor, one preset and one
`register_family` call), then works through the generic paths without a
line of library code knowing it: `keras_spiking_tf.from_preset` by name,
`list_presets`, `save_to_preset` and reloading, KerasHub's own
`ImageClassifier.from_preset` on the saved directory, `predict` on raw
images, and, once it declares a checkpoint format, `convert_sdt_checkpoint`.
Then the registry's refusals, and the converter's of a family without a
checkpoint format.
"""

import dataclasses
import json
import os

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops
from keras_hub.models import ImageClassifierPreprocessor
from keras_hub.models import Task

import keras_spiking_tf
from keras_spiking_tf import validation
from keras_spiking_tf.conversion import convert_sdt_checkpoint
from keras_spiking_tf.conversion import convert_sdt_state_dict
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.models import MetaSpikeFormerBackbone
from keras_spiking_tf.models import MetaSpikeFormerImageClassifier
from keras_spiking_tf.models import MetaSpikeFormerImageClassifierPreprocessor
from keras_spiking_tf.models import MetaSpikeFormerImageConverter
from keras_spiking_tf.models import model_family
from keras_spiking_tf.models.checkpoint_format import CheckpointFormat
from keras_spiking_tf.models.model_family import ModelFamily
from keras_spiking_tf.models.model_family import family_of_model
from keras_spiking_tf.models.model_family import family_of_preset
from keras_spiking_tf.models.model_family import register_family
from keras_spiking_tf.models.spiking_backbone import SpikingBackbone
from keras_spiking_tf.models.spiking_image_classifier import SpikingImageClassifier
from keras_spiking_tf.models.spiking_transformer import SpikingTransformerImageConverter

PACKAGE = "kst_test_toy_family"
PRESET = "toy_8_digits"
TOY_KEYS = ("width", "time_steps", "image_shape", "neuron_config", "data_format")


@keras.saving.register_keras_serializable(package=PACKAGE)
class ToyBackbone(SpikingBackbone):
    """16 tokens: a 4x4 stride-4 convolution of the image, the same at
    every one of `time_steps` steps: `(batch, T, 16, width)`."""

    architecture_keys = TOY_KEYS

    def __init__(self, width=8, time_steps=2, image_shape=(16, 16, 1), neuron_config=None,
                 data_format=None, dtype=None, **kwargs):
        self.patch = keras.layers.Conv2D(width, 4, strides=4, dtype=dtype, name="patch")
        images, channels_last = self.image_input(
            image_shape, "image", "channels_last", time_steps, dtype)
        tokens = keras.layers.Reshape((-1, width), name="tokens")(self.patch(channels_last))
        membrane = ops.repeat(ops.expand_dims(tokens, 1), time_steps, axis=1)
        super().__init__(inputs=images, outputs=membrane, dtype=dtype, **kwargs)
        self.width = width
        self.time_steps = time_steps
        self.image_shape = tuple(image_shape)
        self.neuron_config = neuron_config or {}
        self.data_format = data_format
        self.input_type = "image"
        self.image_layout = "channels_last"
        self.attention = "none"  # as its preset entry says


@keras.saving.register_keras_serializable(package=PACKAGE)
class ToyImageConverter(SpikingTransformerImageConverter):
    backbone_cls = ToyBackbone


@keras.saving.register_keras_serializable(package=PACKAGE)
class ToyImageClassifierPreprocessor(ImageClassifierPreprocessor):
    backbone_cls = ToyBackbone
    image_converter_cls = ToyImageConverter


@keras.saving.register_keras_serializable(package=PACKAGE)
class ToyImageClassifier(SpikingImageClassifier):
    """LIF of the token mean, a Dense head, mean over T."""

    backbone_cls = ToyBackbone
    preprocessor_cls = ToyImageClassifierPreprocessor

    def __init__(self, backbone, num_classes, preprocessor=None, activation=None,
                 head_dtype="float32", class_names=None, **kwargs):
        self.check_init_arguments(backbone, kwargs, num_classes, preprocessor=preprocessor,
                                  activation=activation, head_dtype=head_dtype,
                                  class_names=class_names)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head_lif = LIF(**backbone.neuron_config, dtype=head_dtype, name="head_lif")
        self.output_dense = keras.layers.Dense(num_classes, dtype=head_dtype, name="head")
        self.output_activation = keras.layers.Activation(activation, dtype=head_dtype,
                                                         name="predictions")
        inputs = backbone.input
        spikes = self.head_lif(ops.mean(backbone(inputs), axis=2))
        outputs = self.output_activation(ops.mean(self.output_dense(spikes), axis=1))
        Task.__init__(self, inputs=inputs, outputs=outputs, **kwargs)
        self.num_classes = num_classes
        self.activation = activation
        self.head_dtype = head_dtype
        self.class_names = None if class_names is None else [str(c) for c in class_names]


def check_toy_arguments(**arguments):
    validation.check_keyword_arguments("ToyBackbone", arguments, (*TOY_KEYS, "dtype"))
    for key in ("width", "time_steps"):
        if key in arguments:
            validation.check_integer(key, arguments[key], minimum=1)


# Trainable parameters by hand: the 4x4 convolution, 1 -> 8 channels with
# bias (4*4*1*8 + 8 = 136), and the head, 8 -> 10 with bias (8*10 + 10 = 90).
TOY_PARAMS = 4 * 4 * 1 * 8 + 8 + 8 * 10 + 10

TOY_PRESETS = {
    PRESET: {
        "description": "A toy family's preset (tests/test_model_families.py).",
        "attention": "none", "width": 8, "dataset": "digits", "time_steps": 2,
        "params": TOY_PARAMS, "paper_accuracy": None, "weights": False,
    },
}


def toy_family(**changes):
    family = ModelFamily(
        name="toy",
        classifier_cls=ToyImageClassifier,
        presets=TOY_PRESETS,
        backbone_config=lambda name: {
            "width": TOY_PRESETS[name]["width"], "time_steps": TOY_PRESETS[name]["time_steps"],
            "image_shape": (16, 16, 1)},
        architecture_keys=TOY_KEYS,
        check_backbone_arguments=check_toy_arguments,
        listed_keys=("width",),
        official_name="Toy",
        paper="https://example.org/toy",
        model_card_rows=lambda backbone: [
            ("architecture", f"toy: one 4x4 convolution to width {backbone.width}"),
            ("attention", "none")],
    )
    return dataclasses.replace(family, **changes)


def toy_checkpoint_tensors(classifier):
    """The toy's PyTorch key map: a Conv2d `patch` and a Linear `head`."""
    patch, head = classifier.backbone.patch, classifier.output_dense
    return {"patch.weight": (patch.kernel, "conv"), "patch.bias": (patch.bias, "vector"),
            "head.weight": (head.kernel, "linear"), "head.bias": (head.bias, "vector")}


TOY_CHECKPOINT = CheckpointFormat(
    name="toy_torch",
    key_prefixes=("patch.",),
    expected_tensors=toy_checkpoint_tensors,
    skipped_keys=lambda classifier, expected: {},
    build_target=lambda preset, init_attention, num_classes, kd: (
        preset, keras_spiking_tf.from_preset(preset, load_weights=False, num_classes=num_classes)),
    size_hint="toy_{width}_digits",
    describe_checkpoint=lambda state_dict: f"{len(state_dict)} tensors",
    describe_model=lambda classifier: f"width {classifier.backbone.width}",
    report_size=lambda classifier: {"width": classifier.backbone.width},
)


@pytest.fixture
def toy():
    family = register_family(toy_family())
    yield family
    model_family.unregister_family("toy")


@pytest.fixture
def toy_with_checkpoint():
    family = register_family(toy_family(checkpoint=TOY_CHECKPOINT))
    yield family
    model_family.unregister_family("toy")


def raw_digits(count=4):
    return np.random.default_rng(0).integers(0, 256, (count, 16, 16, 1)).astype("uint8")


def weights_of(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_toy_family_works_through_the_generic_paths(toy, tmp_path):
    assert toy in model_family.families()
    listed = keras_spiking_tf.list_presets()[PRESET]
    assert (listed["family"], listed["width"], listed["num_classes"], listed["path"]) == (
        "toy", 8, 10, None)
    assert family_of_preset(PRESET) is toy

    model = keras_spiking_tf.from_preset(PRESET, load_weights=False)
    assert type(model) is ToyImageClassifier and family_of_model(model) is toy
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == TOY_PARAMS
    assert model.class_names == [str(d) for d in range(10)]  # the digits data set's
    images = raw_digits()
    logits = model.predict(images, verbose=0)  # raw 0..255 pixels, through the preprocessor
    assert logits.shape == (4, 10) and np.all(np.isfinite(logits))
    with pytest.raises(ValueError, match="1-channel"):
        model.predict(np.zeros((1, 16, 16, 3), "uint8"))  # the shared checks apply
    wider = keras_spiking_tf.from_preset(PRESET, load_weights=False, width=4, num_classes=3)
    assert (wider.backbone.width, wider.num_classes, wider.class_names) == (4, 3, None)

    directory = keras_spiking_tf.save_to_preset(model, str(tmp_path / "toy_saved"))
    card = open(os.path.join(directory, "README.md"), encoding="utf-8").read()
    assert "# toy_saved" in card and "one 4x4 convolution to width 8" in card
    assert f"{TOY_PARAMS:,}" in card
    assert family_of_preset(directory) is toy
    reloaded = keras_spiking_tf.from_preset(directory)
    assert type(reloaded) is ToyImageClassifier
    for a, b in zip(weights_of(model), weights_of(reloaded)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), logits, rtol=1e-6, atol=1e-6)
    by_keras_hub = keras_hub.models.ImageClassifier.from_preset(directory)
    assert type(by_keras_hub) is ToyImageClassifier
    np.testing.assert_allclose(by_keras_hub.predict(images, verbose=0), logits,
                               rtol=1e-6, atol=1e-6)


def test_registry_refuses_a_second_family_of_a_name(toy):
    with pytest.raises(ValueError, match="named 'toy' is registered already"):
        register_family(toy_family(presets={}))


def test_registry_refuses_a_preset_name_two_families_claim():
    claimed = {"st_2_64_digits": TOY_PRESETS[PRESET]}
    with pytest.raises(ValueError, match="'st_2_64_digits'.*family 'spiking_transformer'"):
        register_family(toy_family(name="toy_claims", presets=claimed))
    assert "toy_claims" not in [f.name for f in model_family.families()]


def test_registry_refuses_incomplete_entries_and_unknown_data_sets():
    entry = dict(TOY_PRESETS[PRESET])
    del entry["params"]
    with pytest.raises(ValueError, match=r"lacks \['params'\]"):
        register_family(toy_family(name="toy_bad", presets={"toy_bad_1": entry}))
    entry = {**TOY_PRESETS[PRESET], "dataset": "digit"}
    with pytest.raises(ValueError, match=r"data set 'digit'.*Did you mean 'digits'"):
        register_family(toy_family(name="toy_bad", presets={"toy_bad_1": entry}))
    with pytest.raises(TypeError, match="SpikingImageClassifier subclass"):
        register_family(toy_family(name="toy_bad", classifier_cls=keras_hub.models.ImageClassifier))


def test_unknown_preset_suggests_close_names_of_every_family(toy):
    with pytest.raises(ValueError, match=r"Unknown preset 'toy_8_digit'.*'toy_8_digits'"):
        keras_spiking_tf.from_preset("toy_8_digit", load_weights=False)
    with pytest.raises(ValueError, match=r"Did you mean .*'sdt_v2_8_512_imagenet'"):
        family_of_preset("sdt_v2_8_512_imagenet_")
    with pytest.raises(ValueError, match="'toy' family, not of SpikingTransformerImageClassifier"):
        keras_spiking_tf.models.SpikingTransformerImageClassifier.from_preset(
            PRESET, load_weights=False)


def test_a_preset_of_no_registered_family_is_refused(tmp_path):
    directory = tmp_path / "alien"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(
        {"module": "alien", "class_name": "AlienBackbone", "config": {},
         "registered_name": "alien>AlienBackbone"}))
    with pytest.raises(ValueError, match="'alien>AlienBackbone' backbone.*no registered"):
        keras_spiking_tf.from_preset(str(directory))
    with pytest.raises(TypeError, match="registered model family"):
        family_of_model(keras.Sequential())


def test_a_checkpoint_format_is_all_the_converter_needs(toy_with_checkpoint, tmp_path):
    """The toy family declares a checkpoint format in its registration;
    `convert_sdt_checkpoint` then converts a PyTorch file into its preset
    (the head resized to the checkpoint's 5 classes), each tensor in the
    Keras layout (checked against NumPy transposes, element by element)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    state_dict = {"patch.weight": rng.normal(size=(8, 1, 4, 4)), "patch.bias": rng.normal(size=8),
                  "head.weight": rng.normal(size=(5, 8)), "head.bias": rng.normal(size=5)}
    state_dict = {key: value.astype("float32") for key, value in state_dict.items()}
    path = tmp_path / "toy.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state_dict.items()},
                "epoch": 7}, path)
    report = convert_sdt_checkpoint(path, PRESET, tmp_path / "converted")
    assert (report["family"], report["preset"], report["width"], report["num_classes"],
            report["epoch"], report["num_tensors"]) == ("toy_torch", PRESET, 8, 5, 7, 4)
    model = keras_spiking_tf.from_preset(report["output_dir"])
    assert type(model) is ToyImageClassifier
    kernel = ops.convert_to_numpy(model.backbone.patch.kernel)  # (kh, kw, I, O) from OIHW
    assert kernel[1, 2, 0, 5] == state_dict["patch.weight"][5, 0, 1, 2]
    np.testing.assert_array_equal(kernel, np.transpose(state_dict["patch.weight"], (2, 3, 1, 0)))
    np.testing.assert_array_equal(ops.convert_to_numpy(model.output_dense.kernel),
                                  state_dict["head.weight"].T)
    np.testing.assert_array_equal(ops.convert_to_numpy(model.output_dense.bias),
                                  state_dict["head.bias"])
    with pytest.raises(ValueError, match=r"'patch.weight'.*\[8, 1, 4, 4\].*\[4, 1, 4, 4\]"
                                         r".*Checkpoint 4 tensors; model width 4"):
        convert_sdt_state_dict(state_dict, keras_spiking_tf.from_preset(
            PRESET, load_weights=False, width=4, num_classes=5))


def test_conversion_refuses_a_family_without_a_checkpoint_format(toy, tmp_path):
    """A family whose registration declares no checkpoint format is refused
    by name, before the checkpoint is read or anything is written."""
    checkpoint = tmp_path / "any.pth"
    checkpoint.write_bytes(b"never read: the family is refused first")
    with pytest.raises(ValueError, match=r"Preset 'toy_8_digits' is of model family 'toy', "
                                         r"which has no checkpoint format to convert from.*"
                                         r"spiking_transformer, meta_spikeformer"):
        convert_sdt_checkpoint(checkpoint, PRESET, tmp_path / "converted")
    assert os.listdir(tmp_path) == ["any.pth"]
    model = keras_spiking_tf.from_preset(PRESET, load_weights=False)
    with pytest.raises(ValueError, match="ToyImageClassifier is of model family 'toy', which has "
                                         "no checkpoint format"):
        convert_sdt_state_dict({"patch.weight": np.zeros((8, 1, 4, 4), "float32")}, model)
    with pytest.raises(TypeError, match="SpikingTransformerImageClassifier or "
                                        "MetaSpikeFormerImageClassifier"):
        convert_sdt_state_dict({"patch.weight": np.zeros((8, 1, 4, 4), "float32")},
                               model.backbone)


def test_the_v2_classifier_has_every_family_path(tmp_path):
    """Meta-SpikeFormer, once registered, has the shared classifier's paths:
    class names, raw-image `predict` with its checks, `decode_predictions`,
    the per-step logits (with `kd`: their mean over T is the output),
    `save_to_preset` with its card, and reloading through the generic
    `from_preset`. (A small model built directly: a built-in V2 preset
    with overrides first builds the full 224x224 model.)"""
    keras.backend.clear_session()
    backbone = MetaSpikeFormerBackbone(
        embed_dims=(8, 16, 32, 48), num_blocks=(1, 1, 1, 1, 1), time_steps=2,
        image_shape=(32, 32, 3), attention="a2os2a")
    preprocessor = MetaSpikeFormerImageClassifierPreprocessor(
        MetaSpikeFormerImageConverter.from_dataset_stats(
            (32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    model = MetaSpikeFormerImageClassifier(backbone, 3, kd=True, preprocessor=preprocessor,
                                           class_names=["cat", "dog", "owl"])
    assert type(model).__name__ == "MetaSpikeFormerImageClassifier" and model.kd
    assert family_of_model(model).name == "meta_spikeformer"
    raw = np.random.default_rng(1).integers(0, 256, (2, 40, 40, 3)).astype("uint8")
    logits = model.predict(raw, verbose=0)  # resized and normalised by the preprocessor
    assert logits.shape == (2, 3)
    with pytest.warns(keras_spiking_tf.InputWarning):
        model.predict(raw.astype("float32") / 255.0, verbose=0)
    decoded = model.decode_predictions(logits, top=1)
    assert [d[0][0] for d in decoded] == [["cat", "dog", "owl"][i] for i in logits.argmax(1)]
    x = model.preprocessor(raw)
    per_step = keras.ops.convert_to_numpy(model.per_step_logits_model()(x))
    assert per_step.shape == (2, 2, 3)
    np.testing.assert_allclose(per_step.mean(axis=1), keras.ops.convert_to_numpy(model(x)),
                               rtol=1e-5, atol=1e-6)

    directory = model.save_to_preset(str(tmp_path / "v2_small"))
    card = open(os.path.join(directory, "README.md"), encoding="utf-8").read()
    assert "Meta-SpikeFormer (Spike-Driven Transformer V2), stage widths [8, 16, 32, 48]" in card
    assert "A2OS2A" in card and "cat, dog, owl" in card
    reloaded = keras_spiking_tf.from_preset(directory)
    assert (type(reloaded), reloaded.class_names, reloaded.kd) == (type(model), model.class_names,
                                                                   True)
    np.testing.assert_allclose(reloaded.predict(raw, verbose=0), logits, rtol=1e-5, atol=1e-6)
    keras.backend.clear_session()
