"""Shared fixtures: a fixed key, an isolated user cache, and the full MNIST files if present."""

import os
from pathlib import Path
from types import SimpleNamespace

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.toml"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Keep tests away from the real user cache; share one compilation cache per session."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("MNIST_JAX_COMPILE_CACHE", str(cache / "jax"))


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


@pytest.fixture(scope="session")
def full_mnist() -> Path:
    """The folder of the full MNIST files (MNIST_JAX_DATA), or skip: they are not shipped."""
    folder = os.environ.get("MNIST_JAX_DATA")
    if not folder or not Path(folder).is_dir():
        pytest.skip("full MNIST not available: set MNIST_JAX_DATA to the folder of the IDX files")
    return Path(folder)


def trainer_pieces(config, init_key=None) -> SimpleNamespace:
    """Build a run's pieces the way `train.train_and_evaluate` does, for tests that drive them.

    Returns run (device data), num_train, optimizer, loss_fn, epoch (the jitted epoch), state
    (initial params and optimiser state), keys and device. `init_key` replaces the config's.
    """
    from mnist_jax import train

    keys = train.root_keys(config)
    device = jax.devices()[0]
    run = train.prepare_data(config, keys["data"], device, log=lambda _: None)
    num_train = int(run.train.x.shape[0])
    optimizer = train.make_optimizer(config, num_train)
    loss_fn = train.make_loss(config, num_train)
    epoch = train.make_train_epoch(config, train.make_step(config, loss_fn, optimizer))
    state = train.init_state(
        config, keys["init"] if init_key is None else init_key, optimizer, device
    )
    return SimpleNamespace(
        run=run, num_train=num_train, optimizer=optimizer, loss_fn=loss_fn, epoch=epoch,
        state=state, keys=keys, device=device,
    )  # fmt: skip
