"""Training the second model family, Meta-SpikeFormer (SPEC §10), with
`kst-train`'s trainer: the family-generic paths, the distillation head's
loss, the V2 recipe, and a tiny V2 preset trained end to end on digits.

The tiny preset: widths (16, 32, 32, 32), one block per stage, 2 heads,
T=2, 32x32 grey images (digits upsampled; at 16x16 the last stages are 1x1
and nothing fires), 10 classes, with the distillation head (kd=True).
"""

import dataclasses
import json
import types

import keras
import numpy as np
import pytest

import keras_spiking_tf
from keras_spiking_tf.training.datasets import load_dataset
from keras_spiking_tf.training.distillation import HardDistillationLoss
from keras_spiking_tf.training.distillation import MeanOfHeadsAccuracy
from keras_spiking_tf.training.distillation import heads_model
from keras_spiking_tf.training.optimization import make_loss
from keras_spiking_tf.training.recipes import load_recipe
from keras_spiking_tf.training.trainer import TrainConfig

V2_PRESET = "sdt_v2_8_384_imagenet"
TINY = dict(embed_dims=(16, 32, 32, 32), num_blocks=(1, 1, 1, 1, 1), num_heads=2, time_steps=2,
            image_shape=(32, 32, 1))


def tiny_v2_classifier(kd=True):
    return keras_spiking_tf.from_preset(V2_PRESET, load_weights=False, num_classes=10, kd=kd,
                                        **TINY)


@pytest.fixture(scope="module")
def tiny_v2_preset(tmp_path_factory):
    """A tiny Meta-SpikeFormer with the distillation head, saved as a preset
    directory (`kst-train --preset DIR` trains it as it is)."""
    directory = tmp_path_factory.mktemp("presets") / "tiny_v2"
    keras_spiking_tf.save_to_preset(tiny_v2_classifier(), str(directory))
    return str(directory)


# --- the hard-distillation loss -------------------------------------------


def numpy_cross_entropy(labels, logits):
    """Per-example cross-entropy of logits against (soft) labels, in NumPy."""
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -(labels * log_softmax).sum(-1)


def test_hard_distillation_loss_matches_numpy():
    # Two examples, three classes; the heads disagree on purpose.
    logits = np.array([[[2.0, -1.0, 0.5], [0.0, 1.5, -0.5]],
                       [[-0.3, 0.2, 3.0], [1.0, 1.0, -2.0]]], "float32")  # (batch, head, class)
    labels = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    smoothing = 0.1
    smoothed = labels * (1 - smoothing) + smoothing / 3
    # DeiT: (1 - alpha) CE_ls(head, y) + alpha CE(head_kd, y_teacher); no
    # teacher here, y_teacher = y (no smoothing on the distillation term).
    expected = np.mean(0.5 * numpy_cross_entropy(smoothed, logits[:, 0])
                       + 0.5 * numpy_cross_entropy(labels, logits[:, 1]))
    got = float(keras.ops.convert_to_numpy(HardDistillationLoss(smoothing)(labels, logits)))
    assert got == pytest.approx(expected, rel=1e-6)
    # By hand: equal logits give log(3) for each term, whatever the labels.
    flat = np.zeros((1, 2, 3), "float32")
    assert float(keras.ops.convert_to_numpy(
        HardDistillationLoss(smoothing)(labels[:1], flat))) == pytest.approx(np.log(3), rel=1e-6)
    # The recipe's loss for a distillation head is this one, with its smoothing.
    loss = make_loss(load_recipe("meta_spikeformer_finetune"), distillation=True)
    assert isinstance(loss, HardDistillationLoss) and loss.label_smoothing == 0.1
    assert loss.alpha == 0.5
    with pytest.raises(ValueError, match="no 'tet' form"):
        make_loss(load_recipe("digits", loss="tet"), distillation=True)


def test_accuracy_is_that_of_the_mean_of_the_heads():
    # Example 0: head says class 0 (by 1), head_kd says class 1 (by 3): the
    # mean says class 1. Example 1: both say class 2.
    logits = np.array([[[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]],
                       [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]], "float32")
    metric = MeanOfHeadsAccuracy()
    metric.update_state(np.array([[0, 1, 0], [0, 0, 1]], "float32"), logits)
    assert float(metric.result()) == 1.0
    metric = MeanOfHeadsAccuracy()
    metric.update_state(np.array([[1, 0, 0], [0, 0, 1]], "float32"), logits)
    assert float(metric.result()) == 0.5


def test_heads_model_shares_the_classifier_and_averages_to_its_output():
    classifier = tiny_v2_classifier()
    model = heads_model(classifier)
    images = classifier.preprocessor(np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)))
    stacked = keras.ops.convert_to_numpy(model(images))
    assert stacked.shape == (3, 2, 10)
    output = keras.ops.convert_to_numpy(classifier(images))
    np.testing.assert_allclose(stacked.mean(axis=1), output, rtol=1e-5, atol=1e-6)
    assert {id(v) for v in model.trainable_variables} == {
        id(v) for v in classifier.trainable_variables}


def test_training_model_picks_the_loss_by_the_heads_and_the_recipe():
    from keras_spiking_tf.training.optimization import MeanOverTimeAccuracy
    from keras_spiking_tf.training.optimization import TETLoss
    from keras_spiking_tf.training.trainer import training_model

    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 1))
    classifier = tiny_v2_classifier(kd=True)
    fitted, loss, accuracy = training_model(classifier, load_recipe("meta_spikeformer_finetune"))
    assert isinstance(loss, HardDistillationLoss) and isinstance(accuracy, MeanOfHeadsAccuracy)
    assert fitted.output.shape[1:] == (2, 10)
    with pytest.raises(ValueError, match="distillation head.*no 'tet' form"):
        training_model(classifier, load_recipe("digits", loss="tet"))
    # Without the distillation head, TET trains the per-step logits, whose
    # mean over T is the classifier's output.
    plain = tiny_v2_classifier(kd=False)
    fitted, loss, accuracy = training_model(plain, load_recipe("digits", loss="tet"))
    assert isinstance(loss, TETLoss) and isinstance(accuracy, MeanOverTimeAccuracy)
    inputs = plain.preprocessor(images)
    steps = keras.ops.convert_to_numpy(fitted(inputs))
    assert steps.shape == (2, 2, 10)
    np.testing.assert_allclose(steps.mean(axis=1), keras.ops.convert_to_numpy(plain(inputs)),
                               rtol=1e-5, atol=1e-6)


# --- the recipe --------------------------------------------------------------


def test_meta_spikeformer_finetune_recipe_has_the_spec_values():
    recipe = load_recipe("meta_spikeformer_finetune")
    # SPEC §10: T=4 fine-tuning, 50 epochs, 5 warm-up, base lr 2e-5 x batch/256,
    # weight decay 0.05, label smoothing 0.1, LAMB, no mixup/cutmix.
    assert (recipe.epochs, recipe.cooldown_epochs, recipe.warmup_epochs) == (50, 0, 5)
    assert recipe.learning_rate == pytest.approx(2e-5 * recipe.batch_size / 256)
    assert (recipe.optimizer, recipe.weight_decay, recipe.label_smoothing) == ("lamb", 0.05, 0.1)
    assert not recipe.mixes and recipe.loss == "cross_entropy"
    assert recipe.rand_augment == {"num_ops": 2, "magnitude": 9, "magnitude_std": 0.5}


# --- the family-generic trainer ------------------------------------------------


def test_a_builtin_v2_preset_is_read_without_building_it():
    from keras_spiking_tf.training.trainer import check_preset_takes_dataset
    from keras_spiking_tf.training.trainer import preset_channels
    from keras_spiking_tf.training.trainer import preset_num_classes
    from keras_spiking_tf.training.trainer import preset_time_steps
    from keras_spiking_tf.training.trainer import recipe_name

    config = TrainConfig(preset=V2_PRESET, dataset="imagenet2012", verbose=0)
    assert (preset_time_steps(config), preset_channels(config)) == (4, 3)
    assert preset_num_classes(V2_PRESET) == 1000
    assert recipe_name(config) == "imagenet"  # the data set's own, unless --recipe says
    check_preset_takes_dataset(config)
    overridden = TrainConfig(preset=V2_PRESET, time_steps=1, image_channels=1, verbose=0,
                             recipe="meta_spikeformer_finetune")
    assert (preset_time_steps(overridden), preset_channels(overridden)) == (1, 1)
    assert recipe_name(overridden) == "meta_spikeformer_finetune"


def fake_splits():
    return types.SimpleNamespace(num_train=50, num_validation=10, num_test=20, num_classes=10,
                                 notes=[])


@pytest.mark.parametrize("family", ["spiking_transformer", "meta_spikeformer"])
def test_describe_run_says_the_architecture_of_either_family(family):
    from keras_spiking_tf.training.trainer import describe_run

    if family == "spiking_transformer":
        preset = "st_2_64_digits"
        model = keras_spiking_tf.from_preset(preset, load_weights=False, num_layers=1,
                                             hidden_dim=32, time_steps=2)
        expected = ["a2os2a;", "1 encoder blocks of width 32"]
    else:
        preset = V2_PRESET
        model = tiny_v2_classifier()
        expected = [f"{model.backbone.attention};", "T=2,"]
    config = TrainConfig(preset=preset, verbose=0)
    text = describe_run(config, model, fake_splits(), load_recipe("digits"), "float32", "out")
    first, *rest = text.splitlines()
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert first.startswith(f"Training {preset} (") and f"{params:,} parameters" in first
    for part in expected:
        assert part in first
    assert "50 train / 10 validation / 20 test images, 10 classes" in first
    distillation = [line for line in rest if line.startswith("  loss:")]
    if family == "meta_spikeformer":
        (note,) = distillation
        assert "no teacher model" in note and "(head + head_kd) / 2" in note
    else:
        assert distillation == []


@pytest.mark.slow  # about 3 minutes on 2 busy cores, most of it tracing the training step
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data paths")
def test_tiny_v2_preset_with_distillation_head_trains_end_to_end(tmp_path, tiny_v2_preset):
    from keras_spiking_tf.training.trainer import train

    # The digits recipe with a 7x higher learning rate and no warm-up: at
    # initialisation the head's neurons fire rarely (the mean over tokens of
    # the last membranes seldom crosses the threshold), so the digits rate
    # moves the loss by only 0.1 % in 40 steps.
    recipe = dataclasses.asdict(load_recipe("digits"))
    recipe.update(learning_rate=2e-2, warmup_epochs=0, epochs=3)
    recipe_path = tmp_path / "fast.json"
    recipe_path.write_text(json.dumps(recipe))
    summary = train(TrainConfig(preset=tiny_v2_preset, dataset="digits", recipe=str(recipe_path),
                                output_dir=str(tmp_path / "run"), verbose=0))
    output = tmp_path / "run"
    assert json.loads((output / "summary.json").read_text())["status"] == "finished"
    rows = (output / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4  # header + 3 epochs
    # It learns: the loss falls, and the selected model is above chance on
    # the validation split (144 images, 10 classes: 22 or more right by
    # chance has a probability of 2.5 %).
    header = rows[0].split(",")
    losses = [float(row.split(",")[header.index("loss")]) for row in rows[1:]]
    assert losses[-1] < losses[0]
    assert summary["best_val_accuracy"] >= 22 / 144
    # The saved presets are the classifier (with both heads), loadable by the
    # generic loader; their accuracy is that of its output (head + head_kd) / 2,
    # computed here with predict, independently of the trainer.
    pairs = list(load_dataset("digits").test.as_numpy_iterator())
    x, y = np.stack([x for x, _ in pairs]), np.array([int(y) for _, y in pairs])
    for directory, accuracy in ((summary["preset_dir"], summary["test_accuracy"]),
                                (summary["best_preset_dir"], summary["best_test_accuracy"])):
        model = keras_spiking_tf.from_preset(directory)
        assert type(model).__name__ == "MetaSpikeFormerImageClassifier" and model.kd
        predicted = model.predict(x, verbose=0).argmax(-1)
        assert float(np.mean(predicted == y)) == pytest.approx(accuracy, abs=1e-9)
    metadata = json.loads((output / "best_preset" / "metadata.json").read_text())
    assert metadata["training"]["epochs_completed"] == summary["best_epoch"]
