"""The built-in preset registry: names, metadata, exact parameter counts.

Expected numbers come from design.md §4 (copied by hand, not read from
presets/presets.json) or from design.md §4's closed form, never from the code under
test.
"""


import keras
import numpy as np
import pytest

import keras_spiking_tf


# design.md §4 table: (num_layers, hidden_dim, num_classes) -> trainable params.
DESIGN_PARAMS = {
    (2, 256, 10): 2_566_954,
    (2, 256, 100): 2_590_084,
    (4, 256, 10): 4_152_106,
    (4, 256, 100): 4_175_236,
    (2, 384, 10): 5_762_746,
    (2, 384, 100): 5_797_396,
    (4, 384, 10): 9_320_122,
    (4, 384, 100): 9_354_772,
    (2, 512, 10): 10_233_418,
    (2, 512, 100): 10_279_588,
    (8, 384, 1000): 16_816_024,
    (6, 512, 1000): 23_373_352,
    (8, 512, 1000): 29_689_384,
    (10, 512, 1000): 36_005_416,
    (8, 768, 1000): 66_338_632,
}

# design.md §4 paper accuracies (top-1 %, T=4), copied by hand; None where it gives none.
PAPER_ACCURACY = {
    "st_2_256_cifar10": 94.91, "st_2_256_cifar100": 76.96,
    "st_4_256_cifar10": 94.96, "st_4_256_cifar100": 77.49,
    "st_2_384_cifar10": 95.70, "st_2_384_cifar100": 78.59,
    "st_4_384_cifar10": 96.32, "st_4_384_cifar100": 79.69,
    "st_2_512_cifar10": 96.42, "st_2_512_cifar100": 79.90,
    "st_8_384_imagenet": 74.04, "st_6_512_imagenet": 76.22,
    "st_8_512_imagenet": 76.28, "st_10_512_imagenet": 78.66,
    "sdt_2_256_cifar10": 94.39, "sdt_2_256_cifar100": 76.00,
    "sdt_2_512_cifar10": 95.51, "sdt_2_512_cifar100": 78.43,
    "sdt_8_384_imagenet": 72.28, "sdt_6_512_imagenet": 74.11,
    "sdt_8_512_imagenet": 74.57, "sdt_10_512_imagenet": 74.66,
    "sdt_8_768_imagenet": 77.07,
}

# Dataset facts: design.md §3.1 (image sizes, tokens) and the dataset class counts.
# digits: 8x8 scikit-learn digits upsampled to 16x16 grey (pattern "0011":
# two stride-2 pools, 16 -> 4, so 4 x 4 = 16 tokens).
DATASETS = {
    "cifar10": {"num_classes": 10, "image_size": (32, 32), "channels": 3, "tokens": 64},
    "cifar100": {"num_classes": 100, "image_size": (32, 32), "channels": 3, "tokens": 64},
    "imagenet": {"num_classes": 1000, "image_size": (224, 224), "channels": 3, "tokens": 196},
    "digits": {"num_classes": 10, "image_size": (16, 16), "channels": 1, "tokens": 16},
    # Event frames (design.md §9): two polarity channels. DVS128 Gesture
    # 128x128 with "0111": three pools, 128 -> 16, 256 tokens; CIFAR10-DVS
    # 64x64 with "0011": 64 -> 16, 256 tokens; the offline set 16x16, 16.
    "dvs_gesture": {"num_classes": 11, "image_size": (128, 128), "channels": 2, "tokens": 256},
    "cifar10_dvs": {"num_classes": 10, "image_size": (64, 64), "channels": 2, "tokens": 256},
    "event_digits": {"num_classes": 10, "image_size": (16, 16), "channels": 2, "tokens": 16},
}

DOCUMENTED_KEYS = {
    "description", "attention", "num_layers", "hidden_dim", "num_heads",
    "dataset", "num_classes", "image_size", "time_steps", "params",
    "paper_accuracy", "weights_available",
}

# Every design.md §4 row exists as an A2OS2A ("st") and an SDT ("sdsa") preset.
DESIGN_PRESET_NAMES = [
    f"{family}_{layers}_{dim}_{dataset}"
    for family in ("st", "sdt")
    for (layers, dim, classes) in DESIGN_PARAMS
    for dataset in {10: ("cifar10",), 100: ("cifar100",), 1000: ("imagenet",)}[classes]
]

# Building a preset is dominated by weight initialisation (about 40 s for all
# 31 presets under TF, 80 s under torch on 2 shared cores), so the default run
# builds every A2OS2A CIFAR preset, one SDT preset per CIFAR dataset, the digits
# preset and one ImageNet preset; the rest are @slow. Presets are built at
# their real image size (no shortcut), which also gives the token count.
FAST_PRESETS = {
    "st_2_256_cifar10", "st_4_256_cifar10", "st_2_384_cifar10",
    "st_4_384_cifar10", "st_2_512_cifar10", "st_2_256_cifar100",
    "st_4_256_cifar100", "st_2_384_cifar100", "st_4_384_cifar100",
    "st_2_512_cifar100", "sdt_2_256_cifar10", "sdt_2_256_cifar100",
    "st_8_512_imagenet", "st_2_64_digits", "st_2_64_event_digits",
    "st_2_256_dvs_gesture_t16", "sdt_2_256_cifar10_dvs",
}


def closed_form_params(num_layers, hidden_dim, num_classes, channels=3):
    """design.md §4 closed form; `channels` adjusts the first 3x3 conv (D/8 outputs)."""
    d = hidden_dim
    sps = 14.90625 * d * d + 9.125 * d - 9 * (3 - channels) * d / 8
    block = 12 * d * d + 24 * d
    head = d * num_classes + num_classes
    total = sps + num_layers * block + head
    assert total == int(total)
    return int(total)


def parse_name(name):
    """`(family, L, D, dataset)`; `dvs_gesture_t16` is data set `dvs_gesture`."""
    family, layers, dim, dataset = name.split("_", 3)
    if dataset.startswith("dvs_gesture_t"):
        dataset = "dvs_gesture"
    return family, int(layers), int(dim), dataset


def expected_params(name):
    _, layers, dim, dataset = parse_name(name)
    classes, channels = DATASETS[dataset]["num_classes"], DATASETS[dataset]["channels"]
    if channels == 3 and (layers, dim, classes) in DESIGN_PARAMS:
        return DESIGN_PARAMS[(layers, dim, classes)]
    # Not in design.md's table (grey digits, two-channel event frames): the
    # closed form, with C input channels (design.md §4, §9).
    return closed_form_params(layers, dim, classes, channels)


def first_family_presets():
    """The Spiking Transformer family's presets (the names parsed above)."""
    return keras_spiking_tf.list_presets(family="spiking_transformer")


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _preset_params():
    marks = {}
    for name in first_family_presets():
        slow = () if name in FAST_PRESETS else (pytest.mark.slow,)
        marks[name] = pytest.param(name, marks=slow, id=name)
    return list(marks.values())


def test_closed_form_reproduces_spec_table():
    for (layers, dim, classes), count in DESIGN_PARAMS.items():
        assert closed_form_params(layers, dim, classes) == count


def test_every_spec_variant_is_a_preset():
    presets = first_family_presets()
    missing = [name for name in DESIGN_PRESET_NAMES if name not in presets]
    assert not missing
    assert "st_2_64_digits" in presets
    # Every listed name follows family_layers_dim_dataset with a known dataset.
    for name in presets:
        family, _, _, dataset = parse_name(name)
        assert family in ("st", "sdt") and dataset in DATASETS, name


def test_list_presets_metadata():
    presets = first_family_presets()
    for name, meta in presets.items():
        family, layers, dim, dataset = parse_name(name)
        assert DOCUMENTED_KEYS <= set(meta), (name, DOCUMENTED_KEYS - set(meta))
        assert isinstance(meta["description"], str) and meta["description"]
        assert meta["attention"] == {"st": "a2os2a", "sdt": "sdsa"}[family], name
        assert (meta["num_layers"], meta["hidden_dim"]) == (layers, dim), name
        assert meta["num_heads"] == 8  # design.md §3.2
        assert meta["dataset"] == dataset
        assert meta["num_classes"] == DATASETS[dataset]["num_classes"], name
        assert tuple(meta["image_size"]) == DATASETS[dataset]["image_size"], name
        # design.md §1: T = 4 in every published image result; §9: SDT's event
        # configurations (and 6 for the offline event set).
        expected_steps = {"dvs_gesture": 10 if name.endswith("_t10") else 16,
                          "cifar10_dvs": 10, "event_digits": 6}.get(dataset, 4)
        assert meta["time_steps"] == expected_steps, name
        assert meta["params"] == expected_params(name), name
        assert meta["paper_accuracy"] == PAPER_ACCURACY.get(name), name
        assert isinstance(meta["weights_available"], bool)


def test_sdt_and_st_counts_match():
    presets = first_family_presets()
    for name, meta in presets.items():
        if name.startswith("sdt_"):
            assert meta["params"] == presets["st_" + name[4:]]["params"], name


@pytest.mark.parametrize("name", _preset_params())
def test_built_preset_params_and_tokens(name):
    """Exact trainable parameter count (design.md §4) and token count (design.md §3.1)."""
    keras.backend.clear_session()
    model = keras_spiking_tf.from_preset(name, load_weights=False)
    count = trainable_count(model)
    assert count == expected_params(name)
    assert keras_spiking_tf.list_presets()[name]["params"] == count
    _, layers, dim, dataset = parse_name(name)
    steps = keras_spiking_tf.list_presets()[name]["time_steps"]
    assert tuple(model.backbone.output.shape) == (None, steps, DATASETS[dataset]["tokens"], dim)
    assert tuple(model.output.shape) == (None, DATASETS[dataset]["num_classes"])
    assert model.backbone.num_tokens == DATASETS[dataset]["tokens"]
    del model
    keras.backend.clear_session()


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown preset 'st_2_256_cifar'.*st_2_256_cifar10"):
        keras_spiking_tf.from_preset("st_2_256_cifar")
    with pytest.raises(ValueError, match=r"Did you mean .*'st_8_512_imagenet'"):
        keras_spiking_tf.from_preset("st_8_512_imagnet", load_weights=False)


def test_unknown_name_without_close_match_has_no_suggestion():
    with pytest.raises(ValueError, match="Unknown preset") as info:
        keras_spiking_tf.from_preset("zzzz_nothing_like_it")
    assert "Did you mean" not in str(info.value)
    assert "list_presets" in str(info.value)


def test_builtin_without_weights_explains_how_to_get_them():
    presets = keras_spiking_tf.list_presets()
    names = [n for n, meta in presets.items() if not meta["weights_available"]]
    if not names:
        pytest.skip("every preset ships weights")
    name = "st_2_256_cifar10" if "st_2_256_cifar10" in names else names[0]
    with pytest.raises(ValueError, match=r"no published weights.*load_weights=False") as info:
        keras_spiking_tf.from_preset(name)  # load_weights=True is the default
    assert name in str(info.value)
    assert "train" in str(info.value)


def _shipped_presets():
    names = [n for n, m in keras_spiking_tf.list_presets().items() if m["weights_available"]]
    return names or [pytest.param(None, marks=pytest.mark.skip(reason="no shipped weights"))]


@pytest.mark.parametrize("name", _shipped_presets())
def test_shipped_preset_loads_with_weights(name):
    model = keras_spiking_tf.from_preset(name)  # verifies the SHA-256s
    assert trainable_count(model) == expected_params(name)
    _, _, dim, dataset = parse_name(name)
    steps = keras_spiking_tf.list_presets()[name]["time_steps"]
    assert tuple(model.backbone.output.shape) == (None, steps, DATASETS[dataset]["tokens"], dim)


def test_shipped_digits_preset_classifies_digits():
    """The shipped st_2_64_digits weights are trained: a sanity bound on
    scikit-learn's digits (all 1797 images; chance is 10%)."""
    if not keras_spiking_tf.list_presets()["st_2_64_digits"]["weights_available"]:
        pytest.skip("st_2_64_digits ships no weights")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[..., None].astype("float32") * (255.0 / 16.0)  # 0..16 -> 0..255
    images = keras.ops.convert_to_numpy(keras.ops.image.resize(images, (16, 16)))
    images = np.clip(np.round(images), 0, 255).astype("uint8")
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    logits = model.predict(images, batch_size=300, verbose=0)
    assert logits.shape == (len(images), 10)
    accuracy = np.mean(np.argmax(logits, axis=1) == digits.target)
    assert accuracy >= 0.95, accuracy


# --- the Meta-SpikeFormer family (SPEC §10) -------------------------------------------

# SPEC §10, copied by hand: (widths, trainable params with KD, without KD).
V2_SIZES = {
    "8_384": ((96, 192, 384, 480), 31_814_864, 31_333_864),
    "8_512": ((128, 256, 512, 640), 55_991_248, 55_350_248),
    "8_768": ((192, 384, 768, 960), 124_702_160, 123_741_160),
}


def test_list_presets_lists_both_families():
    presets = keras_spiking_tf.list_presets()
    assert {meta["family"] for meta in presets.values()} == {
        "spiking_transformer", "meta_spikeformer"}
    assert len(first_family_presets()) == 38
    v2 = keras_spiking_tf.list_presets(family="meta_spikeformer")
    assert set(v2) == {f"{prefix}_{size}_imagenet" for prefix in ("sdt_v2", "st_v2")
                       for size in V2_SIZES}
    assert set(presets) == set(first_family_presets()) | set(v2)
    for name, meta in v2.items():
        widths, params, params_without_kd = V2_SIZES[name.split("_", 2)[2][:5]]
        assert meta["attention"] == ("ssa" if name.startswith("sdt_v2") else "a2os2a"), name
        assert tuple(meta["embed_dims"]) == widths and tuple(meta["num_blocks"]) == (1, 1, 2, 6, 2)
        assert (meta["params"], meta["params_without_kd"]) == (params, params_without_kd), name
        assert (meta["num_heads"], meta["time_steps"], meta["kd"]) == (8, 4, True), name
        assert (meta["num_classes"], meta["image_size"]) == (1000, (224, 224)), name
        assert meta["paper_accuracy"] == (80.0 if name == "sdt_v2_8_512_imagenet" else None)
        assert meta["weights_available"] is False
        assert meta["path"] is not None  # shipped: KerasHub finds it by name
    with pytest.raises(ValueError, match="family"):
        keras_spiking_tf.list_presets(family="meta_spikeformr")


def test_v2_preset_builds_by_name_with_its_parameter_count():
    keras.backend.clear_session()
    model = keras_spiking_tf.from_preset("sdt_v2_8_384_imagenet", load_weights=False)
    assert type(model).__name__ == "MetaSpikeFormerImageClassifier" and model.kd
    assert trainable_count(model) == V2_SIZES["8_384"][1]
    with pytest.raises(ValueError, match=r"no published weights.*load_weights=False"):
        keras_spiking_tf.from_preset("st_v2_8_384_imagenet")
    with pytest.raises(ValueError, match=r"Did you mean .*'sdt_v2_8_384_imagenet'"):
        keras_spiking_tf.from_preset("sdt_v2_8_384_imagnet", load_weights=False)
    del model
    keras.backend.clear_session()

