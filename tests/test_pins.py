"""The trainer pinned against independent NumPy: shuffling, masked evaluation, the optimiser.

Each test runs the real trainer (or one of its public builders) and checks the result against
a computation that shares none of its code: the textbook SGD and backpropagation of
`mnist_jax.checks.reference`, the cosine schedule and the (Nesterov) momentum update written out
below, and a NumPy count of correct predictions. The runs read a tiny dataset written by the
test itself (one-hot CSV files), so the test knows exactly which images train and test.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax import api
from mnist_jax.checks import reference
from mnist_jax.config import load_config
from mnist_jax.data import formats, mnist, standardize
from mnist_jax.records import checkpoint
from mnist_jax.training import optim, trainer
from mnist_jax.training.step import make_evaluate

SAMPLE = mnist.load_sample()


def tiny_dataset(folder: Path, num_train: int, num_test: int) -> dict[str, np.ndarray]:
    """Write the first images of the bundled sample as one-hot CSV files into `folder`.

    Returns:
        {"train_x": (num_train, 784) uint8, "train_y": (num_train,), "test_x", "test_y"}.
    """
    arrays = {
        "train_x": SAMPLE.train_images[:num_train],
        "train_y": SAMPLE.train_labels[:num_train],
        "test_x": SAMPLE.test_images[:num_test],
        "test_y": SAMPLE.test_labels[:num_test],
    }
    folder.mkdir(parents=True, exist_ok=True)
    formats.write_onehot_csv(
        folder, mnist.Dataset("tiny", str(folder), *(arrays[k] for k in arrays))
    )
    return {k: v.reshape(len(v), -1) if k.endswith("_x") else v for k, v in arrays.items()}


def tiny_config(folder: Path, **values):
    """A config reading `folder` (see `tiny_dataset`) with a small net; `values` win."""
    base = {
        "name": "tiny", "dataset": "onehot-csv", "data_path": str(folder), "hidden": [4],
        "validation_size": 0, "eval_batch_size": 16, "seed": 3,
    }  # fmt: skip
    return load_config(None, {**base, **values})


def trained_params(config, out: Path) -> list[dict[str, np.ndarray]]:
    """Train `config` into `out` with the real trainer; return the checkpoint's params."""
    api.train(config, out, log=lambda _: None)
    return checkpoint.load(out).params


def scaled(x: np.ndarray, config) -> np.ndarray:
    """Pixels as the trainer feeds them, in float64, by a fitted config (a checkpoint's)."""
    return standardize.inputs(x, config, np.float64)


def assert_same_pytree(a, b, **tolerance) -> None:
    """Every leaf of two parameter pytrees (weights and biases alike) is close."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerance)


def pytree_distance(a, b) -> float:
    """The largest absolute difference over all leaves of two same-shaped pytrees."""
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


# ----------------------------------------------------------------------------- shuffling


def epoch_order(before, after, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[int, ...]:
    """The one order of (x, y) whose plain SGD epoch (batch 1, NumPy) turns `before` into `after`.

    Tries every permutation, so keep x to a handful of rows.
    """
    distance = {
        order: pytree_distance(
            reference.sgd_epoch(before, x[list(order)], y[list(order)], lr=lr, batch_size=1)[0],
            after,
        )
        for order in itertools.permutations(range(len(x)))
    }
    best, second = sorted(distance, key=distance.get)[:2]
    assert distance[best] < 1e-10, f"no order of the examples explains the epoch: {distance[best]}"
    assert distance[second] > 1e-6, "two orders explain the epoch equally well"
    return best


@pytest.mark.long
def test_each_epoch_is_plain_sgd_over_a_fresh_order_of_the_training_set(tmp_path):
    tiny = tiny_dataset(tmp_path / "data", num_train=5, num_test=3)
    x, y = tiny["train_x"], tiny["train_y"]
    lr = 0.05  # small enough that no example is fitted outright: each still moves the params
    runs = {
        epochs: tiny_config(
            tmp_path / "data",
            hidden=[8],
            batch_size=1,
            lr=lr,
            optimizer="sgd",
            schedule="constant",
            dtype="float64",
            epochs=epochs,
            input_norm="scale",  # pixels / 255: inputs small enough for lr to leave all in play
        )
        for epochs in (1, 2, 3)
    }
    # A constant rate makes the first epochs of a longer run those of a shorter one.
    params = {k: trained_params(config, tmp_path / f"run{k}") for k, config in runs.items()}
    x = scaled(x, checkpoint.load(tmp_path / "run1").config)
    second = epoch_order(params[1], params[2], x, y, lr)
    third = epoch_order(params[2], params[3], x, y, lr)
    assert second != third, f"epochs 2 and 3 both visited the examples in the order {second}"


# ----------------------------------------------------------------------------- evaluation


def numpy_totals(params, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """(sum of the cross-entropy losses, number of correct predictions) over every row."""
    params = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params]
    logits, _ = reference.forward(params, x)
    losses = -reference.log_softmax(logits)[np.arange(len(y)), y]
    return float(losses.sum()), int(np.sum(np.argmax(logits, axis=1) == y))


def random_params(rng: np.random.Generator, hidden: int) -> list[dict[str, np.ndarray]]:
    """Random float32 params whose answer for a blank image is class 0.

    Padding rows are blank; when a blank image scores as a 0 (the padding's label), a padded
    row counted by mistake also changes the number of correct predictions, not just the loss.
    """
    return [
        {
            "w": rng.normal(0.0, 0.1, (784, hidden)).astype(np.float32),
            "b": -rng.uniform(0.01, 0.1, hidden).astype(np.float32),  # blank: hidden all 0
        },
        {
            "w": rng.normal(0.0, 0.5, (hidden, 10)).astype(np.float32),
            "b": np.r_[0.3, rng.uniform(-0.2, 0.2, 9)].astype(np.float32),
        },
    ]


@pytest.mark.parametrize("batch_size", [1, 16, 36, 37, 500])
def test_evaluation_of_an_odd_sized_split_counts_only_its_real_rows(batch_size):
    stats = {"input_mean": 33.0, "input_std": 78.0}
    config = load_config(None, {"hidden": [12], "eval_batch_size": batch_size, **stats})
    params = random_params(np.random.default_rng(batch_size), hidden=12)
    x, y = SAMPLE.test_images[:37].reshape(37, -1), SAMPLE.test_labels[:37]
    batches = trainer.eval_batches(x, y, batch_size, jax.devices()[0])
    loss_sum, correct, count = jax.device_get(
        make_evaluate(config)(jax.device_put(params), batches)
    )
    expected_loss, expected_correct = numpy_totals(params, scaled(x, config), y)
    assert int(count) == 37
    assert int(correct) == expected_correct
    assert float(loss_sum) == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.long
def test_reported_metrics_equal_a_numpy_count_over_odd_sized_splits(tmp_path):
    tiny = tiny_dataset(tmp_path / "data", num_train=61, num_test=37)
    config = tiny_config(tmp_path / "data", validation_size=13, batch_size=8, epochs=1)
    summary = api.train(config, tmp_path / "run", log=lambda _: None).to_dict()
    saved = checkpoint.load(tmp_path / "run")
    params, config = saved.params, saved.config  # the config with the 48 images' statistics
    test_loss, test_correct = numpy_totals(params, scaled(tiny["test_x"], config), tiny["test_y"])
    assert summary["test_accuracy"] == test_correct / 37
    assert summary["test_loss"] == pytest.approx(test_loss / 37, rel=1e-5)
    # Training and validation images together are the 61 written; which 13 the seed held
    # out does not matter to the totals.
    all_loss, all_correct = numpy_totals(params, scaled(tiny["train_x"], config), tiny["train_y"])
    assert round(summary["train_accuracy"] * 48 + summary["validation_accuracy"] * 13) == (
        all_correct
    )
    assert summary["train_loss"] * 48 + summary["validation_loss"] * 13 == pytest.approx(
        all_loss, rel=1e-5
    )


# ----------------------------------------------------------------------------- the optimiser


def cosine_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up from 0 over `warmup` steps, then half a cosine down to 0 at `total`."""
    if step < warmup:
        return peak * step / warmup
    progress = min(step - warmup, total - warmup) / (total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def momentum_step(params, velocity, grad, lr: float, momentum: float, nesterov: bool):
    """One SGD step with momentum in NumPy: v <- m v + g; p <- p - lr (g + m v), or p - lr v.

    Returns:
        (params, velocity) after the step; both shaped like `params`.
    """
    tree_map = jax.tree_util.tree_map
    velocity = tree_map(lambda v, g: momentum * v + g, velocity, grad)
    direction = tree_map(lambda v, g: g + momentum * v, velocity, grad) if nesterov else velocity
    return tree_map(lambda p, d: p - lr * d, params, direction), velocity


OPTIMISERS = {
    "nesterov, cosine with warm-up": {
        "optimizer": "nesterov",
        "momentum": 0.9,
        "warmup_epochs": 1.0,
    },
    "heavy ball, cosine": {"optimizer": "momentum", "momentum": 0.8, "warmup_epochs": 0.0},
    "plain, constant": {"optimizer": "sgd", "schedule": "constant"},
}


@pytest.mark.parametrize("case", list(OPTIMISERS))
def test_optimizer_follows_the_textbook_schedule_and_momentum(case):
    values = {"lr": 0.3, "schedule": "cosine", **OPTIMISERS[case]}
    config = load_config(None, {**values, "epochs": 3, "batch_size": 10})
    per_epoch, total = 5, 15  # 50 training images in batches of 10, for 3 epochs
    warmup = int(config.warmup_epochs * per_epoch)
    rng = np.random.default_rng(0)
    params = [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}]
    grads = [
        [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}] for _ in range(total + 3)
    ]  # three steps past the end of the schedule, where the rate stays at its end value
    if config.schedule == "cosine":
        lrs = [cosine_lr(t, config.lr, warmup, total) for t in range(len(grads))]
    else:
        lrs = [config.lr] * len(grads)
    expected, velocity = params, jax.tree_util.tree_map(np.zeros_like, params)

    with jax.enable_x64(True):
        optimizer = optim.make_optimizer(config, 50)  # 50 training images
        actual = jax.tree_util.tree_map(jnp.asarray, params)
        state = optimizer.init(actual)
        for step, grad in enumerate(grads):
            updates, state = optimizer.update(jax.tree_util.tree_map(jnp.asarray, grad), state)
            actual = jax.tree_util.tree_map(jnp.add, actual, updates)
            momentum = 0.0 if config.optimizer == "sgd" else config.momentum
            expected, velocity = momentum_step(
                expected, velocity, grad, lrs[step], momentum, config.optimizer == "nesterov"
            )
            # 1e-6: optax works the schedule out in float32
            assert pytree_distance(actual, expected) < 1e-6, f"step {step} (rate {lrs[step]:.4f})"


@pytest.mark.long
def test_full_batch_nesterov_cosine_run_equals_numpy_gradient_descent(tmp_path):
    tiny = tiny_dataset(tmp_path / "data", num_train=40, num_test=3)
    common = {"batch_size": "full", "dtype": "float64"}
    # The trainer's own initial draw: a rate of 1e-300 moves no weight and leaves the zero
    # biases within 1e-300 of zero.
    still = tiny_config(
        tmp_path / "data", **common, lr=1e-300, optimizer="sgd", schedule="constant", epochs=1
    )
    start = trained_params(still, tmp_path / "start")
    config = tiny_config(
        tmp_path / "data", **common, lr=0.5, optimizer="nesterov", momentum=0.9, schedule="cosine",
        warmup_epochs=2.0, epochs=8,
    )  # fmt: skip
    final = trained_params(config, tmp_path / "run")

    x, y = scaled(tiny["train_x"], checkpoint.load(tmp_path / "run").config), tiny["train_y"]
    params, velocity = start, jax.tree_util.tree_map(np.zeros_like, start)
    for step in range(config.epochs):  # one full-batch step per epoch
        _, grad = reference.gradients(params, x, y)
        lr = cosine_lr(step, 0.5, warmup=2, total=config.epochs)
        params, velocity = momentum_step(params, velocity, grad, lr, 0.9, nesterov=True)
    assert pytree_distance(params, start) > 0.1  # the run really moved the parameters
    # Not float64's 1e-15: optax works the schedule's rates out in float32.
    assert_same_pytree(final, params, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- transfers


@pytest.mark.long
def test_training_makes_no_implicit_transfer_once_the_first_batches_have_run(tmp_path):
    """Set-up may copy host values (the seed, the data); the epochs and evaluation may not."""
    tiny_dataset(tmp_path / "data", num_train=61, num_test=37)
    config = tiny_config(tmp_path / "data", validation_size=13, batch_size=4, epochs=3, hidden=[8])
    calls = []
    with contextlib.ExitStack() as guard:

        def progress(done: int, total: int) -> None:
            # From the end of the first jitted call on, an implicit transfer is an error.
            if not calls:
                guard.enter_context(jax.transfer_guard("disallow"))
            calls.append((done, total))

        summary = api.train(config, None, log=lambda _: None, progress=progress).to_dict()
        # The guard was live to the end: an implicit host-to-device copy is refused.
        with pytest.raises(Exception, match="[Dd]isallowed"):
            jnp.add(np.ones(3, np.float32), 1.0)
    assert summary["epochs"] == 3
    assert sum(done == total for done, total in calls) == 3
    assert len(calls) > 3  # each epoch ran as several jitted calls, each one guarded
