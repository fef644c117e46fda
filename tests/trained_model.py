"""A small model trained once per session on the bundled sample, for the report, plot,
predict and serve tests. Import the fixture into a test module to use it."""

from pathlib import Path

import numpy as np
import pytest

from mnist_jax import api
from mnist_jax.config import load_config
from mnist_jax.data import mnist
from tests.conftest import SMOKE


@pytest.fixture(scope="session", name="smoke_model")
def trained_smoke_model(tmp_path_factory) -> Path:
    """The folder of a finished smoke run (checkpoint.npz, metrics.jsonl, summary.json)."""
    out = tmp_path_factory.mktemp("smoke-model")
    api.train(load_config(SMOKE), out, log=lambda _: None)
    return out


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
