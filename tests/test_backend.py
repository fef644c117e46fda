"""Per-backend choices: the precision and CPU-tuned kernels each platform gets, the device error.

The CPU-tuned kernels and the plain ones must compute the same gradients (to float32
rounding); `--device gpu` on a machine without one must end in one line naming JAX's reason.
"""

import jax
import numpy as np
import optax
import pytest
from conftest import SMOKE, run_cli

from mnist_jax import data
from mnist_jax.config import Config
from mnist_jax.devices import backend
from mnist_jax.training import trainer

HAS_GPU = any(d.platform == "gpu" for d in jax.devices())


@pytest.mark.parametrize(
    ("requested", "platform", "dtype", "want"),
    [
        ("auto", "cpu", "float32", "default"),  # full float32 on the CPU already
        ("auto", "gpu", "float32", "highest"),  # no TF32 unless asked for
        ("auto", "cpu", "float64", "highest"),
        ("auto", "gpu", "float64", "highest"),
        ("default", "gpu", "float32", "default"),  # the user's choice wins
        ("high", "cpu", "float64", "high"),
    ],
)
def test_precision_per_platform(requested, platform, dtype, want):
    assert backend.resolve_precision(requested, platform, dtype) == want


@pytest.mark.parametrize(
    ("requested", "platform", "want"),
    [("auto", "cpu", True), ("auto", "gpu", False), ("on", "gpu", True), ("off", "cpu", False)],
)
def test_cpu_tricks_only_where_measured(requested, platform, want):
    assert backend.resolve_tricks(requested, platform) is want


def test_policy_of_this_machine_follows_its_platform():
    policy = backend.policy(Config(), jax.devices()[0])
    assert policy.platform == ("gpu" if HAS_GPU else "cpu")
    assert policy.cpu_tricks is (policy.platform == "cpu")


def test_unknown_precision_is_a_config_error():
    result = run_cli(["train", "--config", str(SMOKE), "--matmul-precision", "fast", "--dry-run"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "fast" in result.stderr


def one_gradient(config: Config, splits: data.Splits) -> tuple[float, list]:
    """The loss and gradient of the first full-batch step, through the trainer's own step."""
    # optax.scale(1.0) makes the update the gradient itself: new params = params + grad.
    run = trainer.build(config, splits, optimizer=optax.scale(1.0))
    state = run.init_state()
    before = jax.device_get(state.params)
    x, y = run.data.train
    after, _, value = jax.jit(run.step)(state.params, state.opt_state, x, y)
    grads = jax.tree_util.tree_map(lambda a, b: a - b, jax.device_get(after), before)
    return float(value), jax.tree_util.tree_leaves(grads)


@pytest.mark.parametrize("hidden", [(10,), (64,)])  # narrow: the barrier path; wide: plain
@pytest.mark.long
def test_cpu_tricks_and_plain_path_give_the_same_gradients(hidden):
    # 5,000 training images in full batch: two pairs of 1,024-row chunks and a remainder.
    base = Config(dataset="sample", train_size=5000, validation_size=0, hidden=hidden,
                  batch_size="full", l2=1.0, epochs=1)  # fmt: skip
    splits = data.load(base, log=lambda _: None)
    tuned = one_gradient(base.replace(cpu_tricks="on"), splits)
    plain = one_gradient(base.replace(cpu_tricks="off"), splits)
    assert tuned[0] == pytest.approx(plain[0], rel=1e-6)
    for a, b in zip(tuned[1], plain[1], strict=True):
        scale = np.max(np.abs(b))
        assert scale > 0
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


def test_trainer_records_its_policy():
    config = Config(dataset="sample", train_size=256, validation_size=0, hidden=(8,),
                    matmul_precision="highest", cpu_tricks="off")  # fmt: skip
    with trainer.precision(config):
        run = trainer.build(config, data.load(config, log=lambda _: None))
    assert run.policy.matmul_precision == "highest"
    assert run.policy.cpu_tricks is False


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("command", [["train", "--config", str(SMOKE)], ["gradcheck"], ["bench"]])
def test_gpu_without_a_gpu_is_one_line_naming_jaxs_reason(command, tmp_path):
    extra = ["--out", str(tmp_path / "o")] if command[0] == "train" else []
    result = run_cli([*command, "--device", "gpu", *extra])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: --device gpu: JAX says: ")
    assert "Traceback" not in result.stderr
    with pytest.raises(RuntimeError) as jax_error:  # the reason JAX itself gives
        jax.devices("gpu")
    assert str(jax_error.value).splitlines()[0].strip() in result.stderr


@pytest.mark.gpu  # skipped where JAX sees no GPU (conftest.py)
def test_gpu_training_matches_cpu_to_float32_rounding():
    config = Config(dataset="sample", train_size=2048, validation_size=0, hidden=(32,),
                    batch_size="full", epochs=1)  # fmt: skip
    splits = data.load(config, log=lambda _: None)
    gpu = one_gradient(config, splits)
    with jax.default_device(jax.devices("cpu")[0]):
        cpu_run = trainer.build(config, splits, jax.devices("cpu")[0], optimizer=optax.scale(1.0))
        state = cpu_run.init_state()
        after, _, value = jax.jit(cpu_run.step)(state.params, state.opt_state, *cpu_run.data.train)
    assert gpu[0] == pytest.approx(float(value), rel=1e-5)
    cpu_grads = jax.tree_util.tree_map(
        lambda a, b: a - b, jax.device_get(after), jax.device_get(state.params)
    )
    for a, b in zip(gpu[1], jax.tree_util.tree_leaves(cpu_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.max(np.abs(b)))
