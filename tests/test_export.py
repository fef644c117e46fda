"""Every compiled program lowers for CUDA under the GPU policy, proven on the CPU.

`jax.export` lowers a jitted function for `platforms=["cuda"]` without a GPU: each program
the trainer compiles (every optimiser's epoch, full batch, L-BFGS, evaluation, the sweep and
the gradient check's derivative at "highest") is exported here with the policy `auto` picks on
a GPU (`mnist_jax.devices.backend`: full float32 products, no CPU-tuned kernels). Shapes are small
(a 16-unit model on a few hundred images), so the test stays fast.
"""

import re

import jax
import numpy as np
import pytest
from jax import export

from mnist_jax import data
from mnist_jax.checks import gradcheck
from mnist_jax.config import load_config
from mnist_jax.devices import backend
from mnist_jax.tools import sweep
from mnist_jax.training import trainer
from tests.conftest import SMOKE

SMALL = {"hidden": [16], "train_size": 256, "validation_size": 64, "batch_size": 32}


@pytest.fixture
def gpu_policy(monkeypatch):
    """Resolve every run's per-backend choices as on a GPU (the arrays stay on the CPU)."""
    monkeypatch.setattr(backend, "platform_of", lambda placement=None: "gpu")


def small_run(**changes):
    config = load_config(SMOKE).replace(**{**SMALL, **changes})
    return trainer.build(config, data.load(config, log=lambda _: None))


def to_cuda(jitted, *args, **kwargs) -> str:
    """Export `jitted` for CUDA; check the GPU policy shows in it; return the StableHLO text.

    Every matrix product runs at HIGHEST (no TF32), and none of the CPU-tuned layouts (their
    optimisation barrier) is left in the program.
    """
    exported = export.export(jitted, platforms=["cuda"])(*args, **kwargs)
    assert exported.platforms == ("cuda",)
    text = exported.mlir_module()
    precisions = set(re.findall(r"dot_general .*precision = (\[[A-Z, ]*\])", text))
    assert precisions == {"[HIGHEST, HIGHEST]"}
    assert "optimization_barrier" not in text
    return text


def epoch_args(run):
    state = run.init_state()
    train = run.data.train
    steps = run.config.epochs if run.config.full_batch else run.steps_per_epoch
    args = (state.params, state.opt_state, train.x, train.y, run.epoch_key(0), run.put(np.int32(0)))
    return args, steps


def assert_gpu_policy(run, precision="highest"):
    assert run.policy == backend.Policy("gpu", precision, False)


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "sgd"},
        {"optimizer": "momentum", "momentum": 0.9},
        {"optimizer": "nesterov", "momentum": 0.9},
        {"optimizer": "sgd", "batch_size": "full", "epochs": 3, "eval_every": 3},
        {"optimizer": "lbfgs", "batch_size": "full", "epochs": 3, "eval_every": 3},
    ],
    ids=["sgd", "momentum", "nesterov", "full-batch", "lbfgs"],
)
def test_each_epoch_lowers_for_cuda(gpu_policy, changes):
    run = small_run(**changes)
    assert_gpu_policy(run)
    args, steps = epoch_args(run)
    to_cuda(run.train_epoch, *args, num_steps=steps)


def test_evaluation_lowers_for_cuda(gpu_policy):
    run = small_run()
    to_cuda(run.evaluate, run.init_state().params, run.data.test)


def test_sweep_lowers_for_cuda(gpu_policy):
    config = load_config(SMOKE).replace(**SMALL)
    run = sweep.sweep_trainer(config, data.load(config, log=lambda _: None))
    assert_gpu_policy(run)
    params, opt_state = sweep.init_models(run, [0, 1, 2])
    lrs = run.put(np.asarray([0.1, 0.2, 0.3], np.float32))
    train = run.data.train
    to_cuda(
        sweep.make_sweep_epoch(run), params, opt_state, lrs, train.x, train.y,
        run.epoch_key(0), run.put(np.int32(0)), num_steps=run.steps_per_epoch,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.long
def test_gradient_check_lowers_for_cuda_at_highest(gpu_policy, dtype):
    config = load_config(SMOKE).replace(**SMALL, dtype=dtype, matmul_precision="highest")
    with trainer.precision(config):
        run = trainer.build(config, data.load(config, log=lambda _: None))
        assert_gpu_policy(run)
        x = jax.ShapeDtypeStruct((8, 784), np.uint8)
        y = jax.ShapeDtypeStruct((8,), np.int32)
        text = to_cuda(gradcheck.value_and_grad(run), run.init_state().params, x, y)
    assert ("f64" in text) == (dtype == "float64")
