"""Inputs standardised by the training split: the statistics, their source, where they go."""

import io
import json

import numpy as np
import pytest
from conftest import SMOKE

from mnist_jax import api, data
from mnist_jax.checks import reference
from mnist_jax.config import config_from_json, load_config
from mnist_jax.data import Split, Splits, mnist, standardize
from mnist_jax.records import checkpoint
from mnist_jax.training import step, trainer


def test_stats_are_the_mean_and_std_of_every_pixel():
    images = np.random.default_rng(0).integers(0, 256, (50, 7, 9), dtype=np.uint8)
    mean, std = standardize.pixel_stats(images)
    assert mean == pytest.approx(images.astype(np.float64).mean(), rel=1e-12)
    assert std == pytest.approx(images.astype(np.float64).std(), rel=1e-12)


@pytest.mark.parametrize("level", [0, 97, 255])
def test_constant_pixels_are_divided_by_the_floor_not_by_zero(level):
    images = np.full((20, 4, 4), level, np.uint8)
    assert standardize.pixel_stats(images) == (level, standardize.STD_FLOOR)
    config = standardize.fit(load_config(SMOKE), images)
    x = np.asarray(step.scale_inputs(np.full((3, 16), 255, np.uint8), config))
    np.testing.assert_allclose(x, (255 - level) / standardize.STD_FLOOR * config.input_spread)


def test_stats_come_from_the_training_split_only():
    rng = np.random.default_rng(1)
    train = Split(rng.integers(0, 100, (64, 28, 28), dtype=np.uint8), np.arange(64) % 10)
    bright = Split(np.full((32, 28, 28), 255, np.uint8), np.arange(32) % 10)
    splits = Splits("bright-held-out", train, bright, bright)
    config = trainer.build(load_config(SMOKE, {"batch_size": 32}), splits).config
    assert (config.input_mean, config.input_std) == standardize.pixel_stats(train.x)
    # The network's inputs over the training split have mean 0 and the recipe's spread.
    x = np.asarray(step.scale_inputs(train.x.reshape(64, -1), config), np.float64)
    assert abs(x.mean()) < 1e-5 and x.std() == pytest.approx(config.input_spread, rel=1e-5)


def test_stated_statistics_and_the_scale_recipe_are_kept():
    images = np.zeros((4, 2, 2), np.uint8)
    stated = load_config(SMOKE, {"input_mean": 10.0, "input_std": 20.0})
    assert standardize.fit(stated, images) == stated
    scaled = load_config(SMOKE, {"input_norm": "scale"})
    assert standardize.fit(scaled, images) == scaled
    assert scaled.input_mean is None and standardize.affine(scaled) == (0.0, 1 / 255)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The smoke recipe (standardised inputs) trained into a run folder."""
    out = tmp_path_factory.mktemp("std") / "run"
    return api.train(load_config(SMOKE), out, log=lambda _: None), out


def test_the_checkpoint_carries_the_training_splits_statistics(trained):
    result, out = trained
    config = checkpoint.load(out).config
    train_x = data.load(config, log=lambda _: None).train.x
    assert config.input_norm == "standardize"
    assert (config.input_mean, config.input_std) == standardize.pixel_stats(train_x)
    assert config == result.config
    # Prediction from the file applies them: the NumPy forward pass on standardised pixels.
    images = mnist.load_sample().test_images[:32]
    logits, _ = reference.forward(
        result.params, standardize.inputs(images.reshape(32, -1), config, np.float64)
    )
    np.testing.assert_allclose(
        api.predict(out, images), np.exp(reference.log_softmax(logits)), rtol=1e-4, atol=1e-6
    )


def write_old_checkpoint(source, target):
    """Rewrite `source` as a checkpoint written before standardisation: no input_norm or stats."""
    with np.load(checkpoint.resolve(source), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    for key in ("input_norm", "input_mean", "input_std"):
        del meta["config"][key]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    target.write_bytes(buffer.getvalue())
    return target


def test_a_checkpoint_from_before_standardisation_predicts_as_it_did(trained, tmp_path):
    result, out = trained
    old = write_old_checkpoint(out, tmp_path / "old.npz")
    config = checkpoint.load(old).config
    assert (config.input_norm, config.input_mean, config.input_std) == ("scale", None, None)
    images = mnist.load_sample().test_images[:32]
    flat = images.reshape(32, -1)
    scaled, _ = reference.forward(result.params, flat.astype(np.float64) / 255)
    standardised, _ = reference.forward(
        result.params, standardize.inputs(flat, result.config, np.float64)
    )
    probabilities = api.predict(old, images)
    np.testing.assert_allclose(
        probabilities, np.exp(reference.log_softmax(scaled)), rtol=1e-4, atol=1e-6
    )
    assert not np.allclose(probabilities, np.exp(reference.log_softmax(standardised)), atol=1e-3)


def test_a_saved_config_without_input_norm_reads_as_scaled():
    saved = load_config(SMOKE).to_dict()
    for key in ("input_norm", "input_mean", "input_std"):
        del saved[key]
    assert config_from_json(json.dumps(saved)).input_norm == "scale"
    assert config_from_json(json.dumps(load_config(SMOKE).to_dict())).input_norm == "standardize"


def test_fold_gives_the_same_first_layer_outputs():
    rng = np.random.default_rng(2)
    config = load_config(SMOKE, {"input_mean": 33.0, "input_std": 78.0})
    params = [{"w": rng.normal(size=(12, 5)), "b": rng.normal(size=5)}]
    x = rng.integers(0, 256, (6, 12), dtype=np.uint8)
    folded = standardize.fold(params, config)
    np.testing.assert_allclose(
        (x * config.input_scale) @ folded[0]["w"] + folded[0]["b"],
        standardize.inputs(x, config, np.float64) @ params[0]["w"] + params[0]["b"],
        rtol=1e-12,
    )
