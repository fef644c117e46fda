import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax import api
from mnist_jax.checks import evaluation
from mnist_jax.config import load_config
from mnist_jax.records import checkpoint
from mnist_jax.training import loop
from tests.conftest import SMOKE, built


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    result = api.train(load_config(SMOKE), out, log=lambda _: None)
    return out, result.to_dict()


def test_smoke_run_learns_and_writes_its_files(smoke_run):
    out, summary = smoke_run
    config = load_config(SMOKE)
    assert summary["dataset"] == "mnist-sample"
    assert summary["epochs"] == config.epochs
    # Seeds 0-4 reach test accuracy 0.917-0.922 (sd 0.002) and train loss 0.221-0.234 (sd 0.005)
    # (plain SGD, cosine from 0.5, standardised inputs); the floors sit at least five
    # seed-to-seed standard deviations beyond the worst.
    assert summary["test_accuracy"] >= 0.90
    assert summary["train_loss"] < 0.26
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, config.epochs + 1))
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    saved = json.loads((out / "summary.json").read_text())
    for field in ("test_accuracy", "test_loss", "epochs", "train_seconds", "dataset", "config"):
        assert field in saved
    assert saved["config"]["name"] == "smoke"


def test_eval_from_checkpoint_reproduces_the_reported_numbers(smoke_run):
    out, summary = smoke_run
    for split in ("test", "validation", "train"):
        result, _ = evaluation.evaluate_checkpoint(out, split, log=lambda _: None)
        assert result.accuracy == summary[f"{split}_accuracy"]
        assert result.loss == pytest.approx(summary[f"{split}_loss"], rel=1e-6)


def test_same_seed_gives_identical_parameters(tmp_path, smoke_run):
    out, summary = smoke_run
    again = api.train(load_config(SMOKE), tmp_path, log=lambda _: None)
    assert again.metrics["test_loss"] == summary["test_loss"]
    first, second = checkpoint.load(out), checkpoint.load(tmp_path)
    leaves, tree = jax.tree_util.tree_flatten(first.params)  # weights and biases alike
    assert jax.tree_util.tree_structure(second.params) == tree
    for a, b in zip(leaves, jax.tree_util.tree_leaves(second.params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first.opt_leaves, second.opt_leaves, strict=True):
        np.testing.assert_array_equal(a, b)


def test_one_sgd_step_lowers_the_loss_on_a_fixed_batch():
    config = load_config(SMOKE, {"optimizer": "sgd"})
    trainer, state = built(config)
    loss_fn = trainer.loss_fn
    step = jax.jit(trainer.step)
    x, y = trainer.data.train.x[:256], trainer.data.train.y[:256]
    before = loss_fn(state.params, x, y)
    params, _, value = step(state.params, state.opt_state, x, y)
    assert float(value) == pytest.approx(float(before), rel=1e-6)
    assert float(loss_fn(params, x, y)) < float(before)


def test_epoch_compiles_once_and_makes_no_implicit_transfer():
    config = load_config(SMOKE, {"epochs": 3})
    trainer, state = built(config)
    run, epoch = trainer.data, trainer.train_epoch
    steps = trainer.steps_per_epoch
    first = trainer.put(np.int32(0))
    params, opt_state = state.params, state.opt_state
    for e in range(3):
        epoch_key = trainer.epoch_key(e)
        with jax.transfer_guard("disallow"):
            params, opt_state, loss = epoch(
                params, opt_state, run.train.x, run.train.y, epoch_key, first, num_steps=steps
            )
        jax.block_until_ready(loss)
    assert epoch._cache_size() == 1
    # The guard is live: handing the epoch a host array is refused.
    with jax.transfer_guard("disallow"), pytest.raises(Exception, match="[Dd]isallowed"):
        epoch(
            params,
            opt_state,
            np.asarray(run.train.x),
            run.train.y,
            epoch_key,
            first,
            num_steps=steps,
        )


def test_progress_segments_cover_the_epoch_with_at_most_two_lengths():
    for total, parts in [(429, 10), (7, 10), (1, 10), (100, 1), (101, 4)]:
        pieces = loop.segments(total, parts)
        assert pieces[0][0] == 0
        assert sum(length for _, length in pieces) == total
        assert all(a + la == b for (a, la), (b, _) in zip(pieces, pieces[1:]))
        assert len({length for _, length in pieces}) <= 2


def test_segmented_epoch_equals_one_call_epoch():
    config = load_config(SMOKE, {"epochs": 1})
    trainer, state = built(config)
    run, epoch = trainer.data, trainer.train_epoch
    steps = trainer.steps_per_epoch
    epoch_key = trainer.epoch_key(0)
    copy = jax.tree_util.tree_map(jnp.copy, (state.params, state.opt_state))
    whole, _, _ = epoch(*copy, run.train.x, run.train.y, epoch_key, jnp.int32(0), num_steps=steps)
    params, opt_state = state.params, state.opt_state
    for first, length in loop.segments(steps, 4):
        params, opt_state, _ = epoch(
            params,
            opt_state,
            run.train.x,
            run.train.y,
            epoch_key,
            jnp.int32(first),
            num_steps=length,
        )
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.long  # full MNIST: `make test-long`, after the main suite
def test_full_mnist_short_run_reaches_97_percent(full_mnist, tmp_path):
    config = load_config(None, {"data_dir": str(full_mnist), "epochs": 3, "name": "e2e"})
    result = api.train(config, tmp_path, log=lambda _: None)
    assert result.dataset == "mnist"
    assert result.metrics["test_accuracy"] >= 0.97
