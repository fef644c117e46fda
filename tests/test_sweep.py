import numpy as np
import pytest

from mnist_jax.config import load_config
from mnist_jax.errors import ConfigError
from mnist_jax.keys import root_keys
from mnist_jax.tools import sweep
from tests.conftest import SMOKE, built

SEEDS, LRS = (0, 3), (0.05, 0.2)


def one_by_one(config, seed, lr):
    """Train one model of the sweep with the trainer's own pieces, as a single run would."""
    config = config.replace(lr=lr)
    trainer, state = built(config, init_key=root_keys(seed).init)
    run, params, opt_state = trainer.data, state.params, state.opt_state
    for e in range(config.epochs):
        params, opt_state, _ = trainer.train_epoch(
            params, opt_state, run.train.x, run.train.y, trainer.epoch_key(e),
            trainer.put(np.int32(0)), num_steps=trainer.steps_per_epoch,
        )  # fmt: skip
    loss_sum, correct, count = trainer.evaluate(params, run.test)
    return float(loss_sum / count), float(correct / count)


@pytest.mark.long
def test_sweep_models_equal_the_same_models_trained_one_by_one():
    # Nesterov momentum and the cosine schedule, so the traced lr is checked through the
    # schedule and the momentum, not only through plain SGD.
    config = load_config(
        SMOKE, {"epochs": 2, "train_size": 1500, "test_size": 500, "optimizer": "nesterov"}
    )
    rows = sweep.run_sweep(config, SEEDS, LRS, log=lambda _: None)
    assert [(r["seed"], r["lr"]) for r in rows] == [(s, lr) for s in SEEDS for lr in LRS]
    for r in rows:
        loss, accuracy = one_by_one(config, r["seed"], r["lr"])
        assert r["test_loss"] == pytest.approx(loss, rel=1e-4)
        assert r["test_accuracy"] == pytest.approx(accuracy, abs=2 / 500)
    # The models really differ: another seed or lr gives another result.
    assert len({round(r["test_loss"], 6) for r in rows}) == len(rows)


def test_each_sweep_model_records_the_split_it_trained_on():
    # every model read the split of the sweep's seed (4), so a model's folder must rebuild that
    # split, not the one its own seed would draw
    config = load_config(SMOKE).replace(seed=4)
    records = sweep.Records(config, [(0, 0.1), (3, 0.2)], None, num_train=1000)
    assert [(c.seed, c.lr, c.split_seed) for c in records.configs] == [(0, 0.1, 4), (3, 0.2, 4)]


def test_sweep_rejects_lbfgs_and_empty_grids():
    config = load_config(SMOKE)
    with pytest.raises(ConfigError, match="SGD"):
        sweep.run_sweep(config.replace(optimizer="lbfgs", batch_size="full"), [0], [1.0])
    with pytest.raises(ConfigError, match="at least one"):
        sweep.run_sweep(config, [], [0.1])


def test_sweep_command_rejects_a_bad_seed_list_in_one_line():
    from typer.testing import CliRunner

    from mnist_jax.cli.app import app

    result = CliRunner().invoke(app, ["sweep", "--seeds", "0,x", "--dataset", "sample"])
    assert result.exit_code == 2
    assert "error: --seeds must be comma-separated numbers" in result.output
