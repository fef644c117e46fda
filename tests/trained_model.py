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


def confident_digit(smoke_model: Path) -> tuple[np.ndarray, int]:
    """A real test digit (28, 28) uint8 and its label, one the model reads with p > 0.9.

    Tests of the image pipeline then fail only when the pipeline spoils the digit.
    """
    from mnist_jax.serving.inference import load_predictor

    sample = mnist.load_sample()
    probs = load_predictor(smoke_model)(sample.test_images[:64])
    for i, p in enumerate(probs):
        if p.argmax() == sample.test_labels[i] and p.max() > 0.9:
            return sample.test_images[i], int(sample.test_labels[i])
    raise AssertionError("the smoke model reads none of 64 test digits confidently")
