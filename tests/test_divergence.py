"""Divergence: the rule, the typed error the Python API raises, and a sweep that marks its models.

The CLI's side (one line, the last finite checkpoint kept, `--json`) is pinned in
test_reliability.py next to the other failure cases of `mnist-jax train`.
"""

import math

import numpy as np
import pytest

import mnist_jax
from mnist_jax.config import load_config
from mnist_jax.errors import MnistJaxError
from mnist_jax.tools import sweep
from mnist_jax.training import divergence
from tests.conftest import SMOKE

BLANK = math.log(10)


def test_a_blank_guess_loses_ln_c_with_softmax_and_c_ln_2_with_sigmoid():
    assert divergence.blank_loss("softmax", 10) == pytest.approx(2.302585)
    assert divergence.blank_loss("sigmoid", 10) == pytest.approx(6.931472)


def test_the_first_epoch_is_judged_against_a_blank_guess():
    first_epochs = np.array([0.3, 80.0, 230.0, 231.0, np.nan, np.inf])
    assert divergence.diverged(first_epochs, None, BLANK).tolist() == [
        False, False, False, True, True, True,
    ]  # fmt: skip


def test_later_epochs_are_judged_against_the_first_one_but_not_below_a_blank_guess():
    first = np.array([0.5, 0.5, 0.01, 0.01, 3.0])
    later = np.array([4.9, 5.1, 0.5, 2.4, 31.0])  # 2.4 > 10 x 0.01 but beats a blank guess
    assert divergence.diverged(later, first, BLANK).tolist() == [False, True, False, True, True]
    assert not divergence.diverged(2.0, 0.01, BLANK)  # scalars too


@pytest.mark.long
def test_the_api_raises_a_typed_error_with_the_facts_and_keeps_no_state(tmp_path):
    config = load_config(SMOKE, {"lr": 1000.0, "epochs": 2})
    with pytest.raises(mnist_jax.Diverged) as caught:
        mnist_jax.train(config, tmp_path / "run", log=lambda _: None)
    error = caught.value
    assert isinstance(error, MnistJaxError)  # the CLI's one-line handling applies
    assert (error.epoch, error.lr, error.suggested_lr, error.kept_epoch) == (1, 1000.0, 100.0, 0)
    assert not error.loss < 100 * BLANK  # past the limit (or not a number at all)
    assert "epoch 1" in str(error) and "--lr 100" in str(error)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.long
def test_a_sweep_marks_its_diverged_models_and_reports_the_others():
    config = load_config(SMOKE, {"epochs": 2, "train_size": 1000, "test_size": 200})
    rows = sweep.run_sweep(config, [0], [0.5, 1000.0], log=lambda _: None)
    healthy, diverged = rows
    assert "diverged_epoch" not in healthy and healthy["test_accuracy"] > 0.5
    assert diverged["diverged_epoch"] == 1 and "test_accuracy" not in diverged
    table = sweep.format_rows(rows)
    assert "diverged at epoch 1" in table[2] and f"{healthy['test_accuracy']:.2%}" in table[1]
