"""The NumPy reference against JAX: gradients, losses and whole training trajectories."""

import subprocess
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from mnist_jax import keys, model
from mnist_jax.checks import reference
from mnist_jax.checks.gradcheck import TOLERANCE, relative_error
from mnist_jax.config import load_config
from mnist_jax.errors import MnistJaxError
from mnist_jax.training import step
from tests.conftest import SMOKE, built

F64 = TOLERANCE["float64"]


def test_importing_the_reference_does_not_import_jax():
    code = "import sys, mnist_jax.checks.reference; print('jax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def random_problem(seed, sizes, batch, dtype=np.float64):
    """Params (NumPy) and a batch of inputs and labels, drawn from a NumPy generator."""
    rng = np.random.default_rng(seed)
    params = [
        {
            "w": rng.normal(0.0, 1.0, (fan_in, fan_out)).astype(dtype),
            "b": rng.normal(0.0, 0.5, fan_out).astype(dtype),
        }
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
    ]
    x = rng.uniform(-1.0, 1.0, (batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch)
    return params, x, y


# One compile per shape and setting; cheaper than eager JAX's compile per operation and shape.
_value_and_grad = jax.jit(
    jax.value_and_grad(model.loss), static_argnames=("activation", "output", "l2", "num_train")
)


def jax_value_and_grad(params, x, y, **settings):
    with jax.enable_x64(True):
        value, grads = _value_and_grad(
            jax.tree_util.tree_map(jnp.asarray, params), jnp.asarray(x), jnp.asarray(y), **settings
        )
        return float(value), jax.device_get(grads)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    hidden=st.lists(st.sampled_from([3, 5]), min_size=0, max_size=3),
    batch=st.sampled_from([1, 7]),  # few distinct shapes: eager JAX compiles once per shape
    activation=st.sampled_from(["relu", "sigmoid", "tanh"]),
    output=st.sampled_from(["softmax", "sigmoid"]),
    l2=st.sampled_from([0.0, 0.3]),
    num_train=st.sampled_from([1, 50]),
)
def test_jax_gradients_equal_the_reference(seed, hidden, batch, activation, output, l2, num_train):
    params, x, y = random_problem(seed, (6, *hidden, 4), batch)
    settings = {"activation": activation, "output": output, "l2": l2, "num_train": num_train}
    ref_loss, ref_grads = reference.gradients(params, x, y, **settings)
    jax_loss, jax_grads = jax_value_and_grad(params, x, y, **settings)
    assert relative_error(jax_loss, ref_loss) <= F64
    assert reference.loss(params, x, y, **settings) == ref_loss
    for ours, theirs in zip(jax_grads, ref_grads):
        for name in ("w", "b"):
            assert ours[name].shape == theirs[name].shape
            assert relative_error(ours[name], theirs[name]) <= F64, (name, hidden)


def test_jax_loss_passes_check_grads_as_a_third_opinion():
    params, x, y = random_problem(3, (6, 5, 4), 7)
    with jax.enable_x64(True):
        loss_fn = partial(
            model.loss, x=jnp.asarray(x), y=jnp.asarray(y), activation="tanh",
            output="sigmoid", l2=0.2, num_train=10,
        )  # fmt: skip
        check_grads(loss_fn, (jax.tree_util.tree_map(jnp.asarray, params),), 1, ["rev"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_keeps_the_dtype_of_the_params(dtype):
    params, x, y = random_problem(0, (6, 5, 4), 3, dtype)
    logits, _ = reference.forward(params, x.astype(np.float64), "sigmoid")
    _, grads = reference.gradients(params, x, y, activation="tanh", output="sigmoid", l2=0.1)
    new_params, _ = reference.gradient_descent(params, x, y, lr=0.1, steps=2)
    leaves = [logits, *(g[k] for g in grads for k in g), *(p[k] for p in new_params for k in p)]
    assert {leaf.dtype for leaf in leaves} == {np.dtype(dtype)}


def test_losses_stay_finite_for_huge_logits():
    params = [{"w": np.full((2, 3), 1e4), "b": np.array([0.0, -1e4, 5e3])}]
    x, y = np.array([[1.0, 1.0], [-1.0, 2.0]]), np.array([1, 2])
    for output in ("softmax", "sigmoid"):
        value, grads = reference.gradients(params, x, y, output=output)
        assert np.isfinite(value)
        assert all(np.all(np.isfinite(g[k])) for g in grads for k in g)
        jax_value, _ = jax_value_and_grad(params, x, y, output=output)
        assert relative_error(value, jax_value) <= F64


def full_batch_config(**changes):
    base = {
        "train_size": 240, "validation_size": 0, "batch_size": "full", "optimizer": "sgd",
        "schedule": "constant", "dtype": "float64",
        "lr": 0.5, "activation": "tanh", "l2": 0.5, "hidden": [16],
        "input_norm": "scale",  # the steps these tolerances were set for: pixels / 255
    }  # fmt: skip
    return load_config(SMOKE, {**base, **changes})


def trainer_run(config, num_steps):
    """Run the trainer's jitted epoch once; return (initial params, final params, losses, data)."""
    with jax.enable_x64(True):
        trainer, state = built(config)
        run, n = trainer.data, trainer.num_train
        start = jax.device_get(state.params)  # copied: the epoch donates its inputs
        epoch_key = trainer.epoch_key(0)
        params, _, losses = trainer.train_epoch(
            state.params, state.opt_state, run.train.x, run.train.y, epoch_key,
            trainer.put(np.int32(0)), num_steps=num_steps,
        )  # fmt: skip
        order = np.asarray(keys.shuffle(epoch_key, n))
        x = np.asarray(step.scale_inputs(run.train.x, trainer.config))  # its fitted stats
        result = jax.device_get(params), np.asarray(losses), x, np.asarray(run.train.y)
    return start, *result, order, n


def assert_params_close(ours, theirs, tolerance):
    for a, b in zip(ours, theirs):
        for name in ("w", "b"):
            np.testing.assert_allclose(a[name], b[name], rtol=0, atol=tolerance)


def test_fifty_steps_of_gradient_descent_follow_the_jax_trainer():
    config = full_batch_config()
    output = config.output
    start, jax_params, jax_losses, x, y, _, n = trainer_run(config, num_steps=50)
    ref_params, ref_losses = reference.gradient_descent(
        start, x, y, lr=config.lr, steps=50, activation=config.activation, output=output,
        l2=config.l2, num_train=n,
    )  # fmt: skip
    assert ref_losses[-1] < ref_losses[0] * 0.8  # it did train, so the paths had room to part
    np.testing.assert_allclose(jax_losses, ref_losses, rtol=1e-10)
    assert_params_close(jax_params, ref_params, 1e-8)


def test_sgd_epoch_follows_the_jax_trainer_on_the_same_batch_order():
    config = full_batch_config(batch_size=50, activation="relu", l2=0.0)
    start, jax_params, loss_sum, x, y, order, n = trainer_run(config, num_steps=240 // 50)
    ref_params, mean_loss = reference.sgd_epoch(
        start, x[order], y[order], lr=config.lr, batch_size=50, activation="relu", num_train=n
    )
    assert mean_loss == pytest.approx(float(loss_sum) / (240 // 50), rel=1e-10)
    assert_params_close(jax_params, ref_params, 1e-10)
    unshuffled, _ = reference.sgd_epoch(start, x, y, lr=config.lr, batch_size=50, num_train=n)
    assert not np.allclose(unshuffled[0]["w"], ref_params[0]["w"])  # the order matters


def test_sgd_epoch_drops_the_partial_batch_and_refuses_an_oversized_one():
    params, x, y = random_problem(1, (6, 4), 10)
    dropped, _ = reference.sgd_epoch(params, x, y, lr=0.1, batch_size=4)
    exact, _ = reference.sgd_epoch(params, x[:8], y[:8], lr=0.1, batch_size=4)
    assert_params_close(dropped, exact, 0.0)
    with pytest.raises(MnistJaxError, match="larger than"):
        reference.sgd_epoch(params, x, y, lr=0.1, batch_size=11)
