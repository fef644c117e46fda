"""Distortions: exact when off, keyed, of the size asked for, and seen by training only.

Sizes are checked against the definitions (Simard's blurred uniform field, the affine map's
ranges), not against numbers the code produced; resampling against JAX's own
`map_coordinates`; training runs on the bundled sample with a narrow net.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.ndimage import map_coordinates

import mnist_jax
from mnist_jax import data, keys
from mnist_jax.config import load_config
from mnist_jax.errors import ConfigError, Interrupted
from mnist_jax.records import checkpoint
from mnist_jax.training import distort, trainer
from tests.conftest import SMOKE, run_cli
from tests.test_reliability import assert_same_run

SHAPE = (28, 28)
ZERO = dict(affine_rotate=0, affine_scale=0, affine_shear=0, affine_shift=0, elastic_alpha=0)


def field(distortion, seed=0, batch=2000, shape=SHAPE):
    return np.asarray(jax.jit(lambda k: distortion.field(k, batch, shape))(jax.random.key(seed)))


@pytest.fixture(scope="module")
def digits():
    """Sixteen sample training digits, (16, 28, 28) uint8."""
    return data.load(load_config(SMOKE), log=lambda _: None).train.x[:16]


def leaves_equal(a, b) -> bool:
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in pairs)


@pytest.mark.long
def test_zero_strength_trains_bit_for_bit_as_no_distortion():
    plain = load_config(SMOKE, {"epochs": 1, "hidden": [16], "train_size": 3000})
    off = mnist_jax.train(plain, log=lambda _: None)
    zero = mnist_jax.train(plain.replace(augment="both", **ZERO), log=lambda _: None)
    assert leaves_equal(off.params, zero.params)
    assert off.metrics == zero.metrics
    # ... while the default strengths change what is learnt
    on = mnist_jax.train(plain.replace(augment="both"), log=lambda _: None)
    assert not leaves_equal(off.params, on.params)


@pytest.mark.long
def test_a_zero_field_returns_the_images_exactly(digits):
    for kind in (distort.affine(0, 0, 0, 0), distort.elastic(0.0, 4.0)):
        out = distort.apply(kind, jax.random.key(3), jnp.asarray(digits))
        assert out.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(out), digits.astype(np.float32))


def test_the_same_key_gives_the_same_images_and_another_key_others(digits):
    both = distort.from_config(load_config(SMOKE, {"augment": "both"}))
    run = jax.jit(lambda k, x: distort.apply(both, k, x))
    images = jnp.asarray(digits)
    first, again = run(jax.random.key(1), images), run(jax.random.key(1), images)
    other = run(jax.random.key(2), images)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    changed = np.abs(np.asarray(first) - np.asarray(other)).max(axis=(1, 2))
    assert (changed > 50).all()  # every image differs, by far more than rounding


@pytest.mark.long
def test_elastic_offsets_have_the_spread_of_simards_blurred_uniform_field():
    for alpha, sigma in [(34.0, 4.0), (8.0, 6.0)]:
        offsets = field(distort.elastic(alpha, sigma))  # (2000, 2, 28, 28)
        expected = distort.elastic_std(alpha, sigma, SHAPE)
        # Simard's definition, computed here from uniform noise and a Gaussian blur
        blur = np.exp(-0.5 * ((np.arange(28)[:, None] - np.arange(28)) / sigma) ** 2)
        blur /= blur.sum(axis=1, keepdims=True)
        noise = np.random.default_rng(0).uniform(-1, 1, (2000, 28, 28))
        simard = alpha * np.einsum("ij,bjk,lk->bil", blur, noise, blur)
        for axis in (0, 1):
            measured = offsets[:, axis].std(axis=0)
            assert np.abs(measured / expected - 1).mean() < 0.02
            assert np.abs(measured / expected - 1).max() < 0.12
        assert np.abs(simard.std(axis=0) / expected - 1).mean() < 0.02
        assert abs(offsets.mean()) < 0.05 * expected.mean()


def test_elastic_offsets_are_smooth_and_scale_with_alpha():
    small, large = field(distort.elastic(10.0, 4.0), 5), field(distort.elastic(30.0, 4.0), 5)
    np.testing.assert_allclose(large, 3 * small, rtol=1e-5, atol=1e-5)
    step = np.abs(np.diff(large, axis=-1)).mean()
    assert step < 0.2 * np.abs(large).mean()  # neighbours move together: a smooth field


def test_affine_shift_moves_whole_images_by_at_most_the_range():
    offsets = field(distort.affine(rotate=0, scale=0, shear=0, shift=2.0))
    per_image = offsets.reshape(len(offsets), 2, -1)
    spread = per_image.max(axis=2) - per_image.min(axis=2)
    assert spread.max() < 1e-4  # one offset per image and axis
    shifts = per_image[:, :, 0]
    assert np.abs(shifts).max() <= 2.0 + 1e-5
    assert np.abs(shifts).max() > 1.95  # the whole range is drawn
    assert abs(shifts.mean()) < 0.1


def test_affine_rotation_turns_about_the_centre_by_at_most_the_range():
    offsets = field(distort.affine(rotate=15.0, scale=0, shear=0, shift=0))
    y, x = distort.centred_grid(SHAPE)
    radius = np.hypot(y, x)
    source_radius = np.hypot(y + offsets[:, 0], x + offsets[:, 1])
    np.testing.assert_allclose(source_radius, np.broadcast_to(radius, source_radius.shape),
                               atol=1e-3)  # fmt: skip
    corner = np.hypot(offsets[:, 0, 0, 0], offsets[:, 1, 0, 0])  # how far the corner moves
    bound = 2 * radius[0, 0] * np.sin(np.radians(15) / 2)
    assert corner.max() <= bound + 1e-3
    assert corner.max() > 0.97 * bound


def test_affine_scale_stretches_each_axis_within_the_range():
    offsets = field(distort.affine(rotate=0, scale=0.15, shear=0, shift=0))
    y, x = distort.centred_grid(SHAPE)
    ratio_y = (y[-1, 0] + offsets[:, 0, -1, 0]) / y[-1, 0]  # source / output position
    assert (ratio_y >= 1 / 1.15 - 1e-4).all() and (ratio_y <= 1 / 0.85 + 1e-4).all()
    assert ratio_y.min() < 1 / 1.14 and ratio_y.max() > 1 / 0.86


def test_bilinear_reads_as_jax_map_coordinates_does(digits):
    offsets = 3.0 * field(distort.elastic(1.0, 3.0), batch=16)  # some reads fall outside
    images = jnp.asarray(digits, jnp.float32)
    rows, cols = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    y, x = rows + offsets[:, 0], cols + offsets[:, 1]
    ours = distort.bilinear(images, jnp.asarray(y), jnp.asarray(x))
    theirs = jax.vmap(
        lambda im, a, b: map_coordinates(im, [a, b], order=1, mode="constant", cval=0.0)
    )(images, y, x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=2e-3)


def test_the_distortion_key_depends_on_the_epoch_and_the_batch_only():
    epoch = keys.epoch_key(keys.root_keys(0), 3)
    same = keys.distortion_key(epoch, jnp.int32(7)), keys.distortion_key(epoch, jnp.int32(7))
    assert jax.random.key_data(same[0]).tolist() == jax.random.key_data(same[1]).tolist()
    other = keys.distortion_key(epoch, jnp.int32(8))
    assert jax.random.key_data(other).tolist() != jax.random.key_data(same[0]).tolist()


@pytest.mark.long
def test_a_resumed_distorted_run_equals_an_uninterrupted_one(tmp_path):
    config = load_config(
        SMOKE, {"augment": "both", "epochs": 2, "hidden": [16], "train_size": 3000}
    )
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    mnist_jax.train(config, whole, log=lambda _: None)
    with pytest.raises(Interrupted):
        mnist_jax.train(config, cut, log=lambda _: None, should_stop=lambda: True)
    assert checkpoint.load(cut).epoch == 1
    resumed = run_cli(["train", "--resume", str(cut), "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert_same_run(cut, whole)


def test_two_epochs_show_a_training_image_two_different_distortions(digits):
    """Each epoch distorts every image afresh: a training set of one digit, repeated, is shown
    in none of the same distortions twice, whatever the shuffle did to the order."""
    config = load_config(SMOKE, {"augment": "both", "batch_size": 8})
    one_digit = jnp.asarray(np.repeat(digits[:1].reshape(1, -1), 8, axis=0))  # (8, 784)

    def keep_batch(params, opt_state, x, y):  # a step whose params become the batch it saw
        return x, opt_state, jnp.zeros(())

    epoch = trainer.make_epoch(config, keep_batch, jax.devices()[0], SHAPE)
    run_keys = keys.root_keys(config.seed)

    def trained_on(e: int) -> np.ndarray:  # (8, 784) float32: the batch epoch e's step saw
        data = (one_digit, jnp.zeros(8, jnp.int32), keys.epoch_key(run_keys, e), jnp.int32(0))
        return np.asarray(epoch(jnp.zeros((8, 784)), (), *data, num_steps=1)[0])

    seen = [trained_on(0), trained_on(1)]
    assert np.abs(seen[0] - one_digit).max() > 50  # the digit was distorted ...
    # ... and no copy the second epoch trained on is one the first epoch trained on
    apart = np.abs(seen[0][:, None] - seen[1][None, :]).max(axis=2)  # (8, 8) image pairs
    assert apart.min() > 50, f"epoch 2 repeats epoch 1's distortions: {apart.min(axis=0)}"


@pytest.fixture(scope="module")
def distorting_run(tmp_path_factory):
    """One distorting epoch of a narrow net on 3,000 sample images: (its Result, the same
    Result with augment = "none", its run folder)."""
    config = load_config(
        SMOKE, {"augment": "both", "epochs": 1, "hidden": [16], "train_size": 3000}
    )
    folder = tmp_path_factory.mktemp("distorting") / "run"
    result = mnist_jax.train(config, folder, log=lambda _: None)
    plain = dataclasses.replace(result, config=result.config.replace(augment="none"))
    return result, plain, folder


@pytest.mark.long
def test_validation_accuracy_of_a_distorting_run_is_evals_on_the_undistorted_images(
    distorting_run,
):
    result, plain, _ = distorting_run
    undistorted = mnist_jax.evaluate(plain, "validation", log=lambda _: None)
    expected = (undistorted.accuracy, undistorted.loss)
    [epoch] = result.history
    reported = (epoch["val_accuracy"], epoch["val_loss"])
    assert reported == expected, "the epoch's validation figures are not on the stored images"
    final = (result.metrics["validation_accuracy"], result.metrics["validation_loss"])
    assert final == expected, "the final validation figures are not on the stored images"


@pytest.mark.long
def test_evaluation_and_prediction_ignore_the_training_distortions(distorting_run):
    result, plain, folder = distorting_run
    for split in ("test", "validation", "train"):
        a, b = mnist_jax.evaluate(result, split), mnist_jax.evaluate(plain, split)
        assert (a.accuracy, a.loss) == (b.accuracy, b.loss)
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
    images = mnist_jax.load_data(result.config).test.x[:8]
    np.testing.assert_array_equal(
        mnist_jax.predict(result, images), mnist_jax.predict(plain, images)
    )
    saved = mnist_jax.evaluate(folder, "test")  # the checkpoint says augment = both
    assert saved.accuracy == result.metrics["test_accuracy"]


@pytest.mark.option("train", "--augment")
@pytest.mark.long
def test_train_augment_flag_distorts_and_is_saved(tmp_path):
    common = ["train", "--config", str(SMOKE), "--epochs", "1", "--hidden", "16", "--json"]
    runs = {}
    for kind in ("none", "elastic"):
        out = run_cli([*common, "--augment", kind, "--out", str(tmp_path / kind)])
        assert out.exit_code == 0, out.output
        runs[kind] = json.loads(out.stdout)
        assert checkpoint.load(tmp_path / kind).config.augment == kind
    assert runs["none"]["train_loss"] != runs["elastic"]["train_loss"]
    bad = run_cli([*common, "--augment", "wobbly"])
    assert bad.exit_code == 2 and "wobbly" in bad.output


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"augment": "both", "affine_rotate": -1.0}, "affine_rotate must be zero or a positive"),
        ({"augment": "affine", "affine_scale": 1.0}, "affine_scale must be below 1"),
        ({"augment": "elastic", "elastic_sigma": 0.0}, "elastic_sigma must be a positive"),
        ({"augment": "elastic", "batch_size": "full"}, 'it needs a numeric batch_size, not "full"'),
        ({"augment": "sheared"}, "unknown augment 'sheared'"),
    ],
)
def test_impossible_distortions_are_refused_by_name(changes, words):
    with pytest.raises(ConfigError, match=words):
        load_config(SMOKE, changes)


def test_distorting_data_that_is_not_made_of_images_is_one_line():
    with pytest.raises(ConfigError, match="distorts 2-D images"):
        distort.batch_distorter(load_config(SMOKE, {"augment": "elastic"}), (784,))


@pytest.mark.long  # compiles a 12M-weight network twice: `make test-long`, after the main suite
def test_the_largest_config_trains_on_the_sample_and_its_dry_run_says_what_a_run_needs():
    config = load_config("ciresan-2010", {"dataset": "sample", "train_size": 256, "epochs": 2})
    result = mnist_jax.train(config, log=lambda _: None)
    widths = [784, 2500, 2000, 1500, 1000, 500, 10]
    assert [layer["w"].shape for layer in result.params] == list(zip(widths, widths[1:]))
    losses = [r["train_loss"] for r in result.history]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]

    plan = run_cli(["train", "--config", "ciresan-2010", "--dataset", "sample", "--dry-run"])
    assert plan.exit_code == 0, plan.output
    lines = {line[:10].strip(): line[10:].strip() for line in plan.output.splitlines()}
    assert lines["distort"].startswith("affine (rotation up to 15 degrees")
    assert "elastic (alpha 34, sigma 4)" in lines["distort"]
    products = [a * b for a, b in zip(widths, widths[1:])]
    train_images = int(lines["data"].split(": ")[1].split(" train")[0].replace(",", ""))
    steps = train_images // 128  # whole batches
    per_epoch = 2 * (3 * sum(products) - products[0]) * 128 * steps
    assert lines["compute"].startswith(f"{per_epoch / 1e12:.3g} TFLOP an epoch")
