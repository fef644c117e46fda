"""Shared fixtures: a fixed key, an isolated user cache, and the full MNIST files if present."""

import os
from pathlib import Path

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
