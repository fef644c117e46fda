"""Runs trained once per test session on the bundled sample, for the report, plot, predict,
serve and CLI tests. Import a fixture into a test module to use it.

Under pytest-xdist each worker has a session of its own; `shared_run` makes each run once for
all of them (a folder beside the workers' own temporary folders, built under a file lock). The
runs are read, never changed: a test that writes into a run works on a copy.
"""

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_jax import api
from mnist_jax.config import load_config
from mnist_jax.data import mnist
from tests.conftest import SMOKE, run_cli, session_folder


def shared_run(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `make(folder)` fills, made once per session whatever the number of workers."""
    folder = session_folder(tmp_path_factory) / "shared-runs" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker making it: wait for it
        if not folder.exists():
            partial = folder.parent / f"{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # a run whose making failed
            partial.mkdir()
            make(partial)
            partial.rename(folder)
    return folder


@pytest.fixture(scope="session", name="smoke_model")
def trained_smoke_model(tmp_path_factory) -> Path:
    """The folder of a finished smoke run (checkpoint.npz, metrics.jsonl, summary.json)."""

    def make(folder: Path) -> None:
        api.train(load_config(SMOKE), folder / "run", log=lambda _: None)

    return shared_run(tmp_path_factory, "smoke-model", make) / "run"


@pytest.fixture(scope="session", name="cli_smoke_run")
def shared_cli_smoke_run(tmp_path_factory) -> tuple[Path, str]:
    """`mnist-jax train --config smoke --epochs 1 --out DIR`: DIR and what it printed."""

    def make(folder: Path) -> None:
        result = run_cli(
            ["train", "--config", str(SMOKE), "--epochs", "1", "--out", str(folder / "run")]
        )
        assert result.exit_code == 0, result.output
        # it trained in the partial folder; the tests see it where it is moved when done
        final = folder.with_name(folder.name.removesuffix(".partial"))
        (folder / "output.txt").write_text(result.output.replace(str(folder), str(final)))

    folder = shared_run(tmp_path_factory, "cli-smoke-run", make)
    return folder / "run", (folder / "output.txt").read_text()


def confident_digits(smoke_model: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` real test digits (count, 28, 28) uint8 the model reads right with
    p > 0.9, and their labels (count,).

    Tests of the image pipeline then fail only when the pipeline spoils the digits.
    """
    from mnist_jax.serving.inference import load_predictor

    sample = mnist.load_sample()
    probs = load_predictor(smoke_model)(sample.test_images[:256])
    sure = (probs.argmax(axis=1) == sample.test_labels[:256]) & (probs.max(axis=1) > 0.9)
    chosen = np.flatnonzero(sure)[:count]
    assert len(chosen) == count, f"the smoke model reads {len(chosen)} of 256 digits confidently"
    return sample.test_images[chosen], sample.test_labels[chosen].astype(int)


def confident_digit(smoke_model: Path) -> tuple[np.ndarray, int]:
    """One real test digit (28, 28) uint8 and its label, as `confident_digits` picks them."""
    images, labels = confident_digits(smoke_model, 1)
    return images[0], int(labels[0])
