"""Predict digits with a saved checkpoint: class probabilities for images of any source.

`load_predictor` reads a model once (a run, or a committee of runs: `records.committee.load`)
and returns a function from images of the model's size ((N, 28, 28) uint8 for MNIST) to
probabilities (N, classes); it runs one jitted call per fixed-size batch, so it compiles once
whatever N is. `predict_files` is `mnist-jax predict`:
it reads the files (`mnist_jax.data.preprocess`), normalises them the way MNIST digits were made,
and ranks the classes; like `serve`, it needs a model of 28x28 inputs (`load_image_predictor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import architecture, model
from mnist_jax.config import Config
from mnist_jax.data import preprocess
from mnist_jax.devices import backend
from mnist_jax.errors import DataError
from mnist_jax.records import committee

Placement = jax.Device | jax.sharding.Sharding
Predictor = Callable[[np.ndarray], np.ndarray]
TOP = 3  # probabilities printed per image


def probabilities(logits: jax.Array, output: str) -> jax.Array:
    """Turn logits (..., 10) into probabilities that sum to 1 over the last axis.

    A softmax model gives its softmax. A sigmoid model scores each class on its own; its
    ten sigmoids are divided by their sum so that both kinds read the same way.
    """
    if output == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    scores = jax.nn.sigmoid(logits)
    return scores / jnp.sum(scores, axis=-1, keepdims=True)


def make_classify(
    config: Config, placement: Placement | None = None
) -> Callable[[Any, jax.Array], jax.Array]:
    """Return classify(params, x uint8 (batch, 784)) -> probabilities (batch, 10); not jitted.

    The products run at the config's precision for `placement`'s platform
    (`mnist_jax.devices.backend`).
    """
    from mnist_jax.training.step import scale_inputs

    precision = backend.policy(config, placement).matmul_precision

    def classify(params: Any, x: jax.Array) -> jax.Array:
        logits = model.forward(
            params, scale_inputs(x, config), config.activation, precision=precision
        )
        return probabilities(logits, config.output)

    return classify


def make_committee_classify(
    model: committee.Committee, placement: Placement | None = None
) -> Callable[[list[Any], jax.Array], jax.Array]:
    """Return classify(members' params, x uint8 (batch, pixels)) -> probabilities (batch, C).

    Each member standardises the pixels and runs its network by its own config
    (`make_classify`); the committee's probabilities are their mean (`committee.combine`), so
    a committee of one gives its run's exactly. Not jitted.
    """
    classifiers = [make_classify(member.config, placement) for member in model.members]

    def classify(params: list[Any], x: jax.Array) -> jax.Array:
        return committee.combine([f(p, x) for f, p in zip(classifiers, params)])

    return classify


def load_predictor(
    path: str | Path, *, batch_size: int = 64, placement: Placement | None = None
) -> Predictor:
    """Load a model once (a run or a committee, `committee.load`); return
    predict(images (N, rows, cols) uint8) -> (N, C) float64."""
    return make_predictor(committee.load(path), batch_size=batch_size, placement=placement)


def load_image_predictor(
    path: str | Path, *, batch_size: int = 64, placement: Placement | None = None
) -> Predictor:
    """Like `load_predictor`, for image files: the model must take 28x28 MNIST-style digits.

    Raises:
        DataError: the model was trained on images of another size (one line saying so).
    """
    model = committee.load(path)
    if model.input_size != architecture.MNIST_INPUT:
        raise DataError(
            f"{model.source}: this model takes {model.input_size} pixels per image, but image "
            "files are read as 28x28 MNIST-style digits (784 pixels); use `mnist-jax eval`, or "
            "mnist_jax.predict on arrays of the model's image size"
        )
    return make_predictor(model, batch_size=batch_size, placement=placement)


def make_predictor(
    model: committee.Committee, *, batch_size: int = 64, placement: Placement | None = None
) -> Predictor:
    """Return predict(images (N, rows, cols) or (N, pixels) uint8) -> (N, C) float64.

    Images are fed in padded batches of `batch_size`, so the jitted call sees one shape; their
    pixel count must be the model's input size (784 for MNIST). The parameters live on
    `placement` (JAX's default device when None).
    """
    inputs = model.input_size
    x64 = any(member.config.dtype == "float64" for member in model.members)
    with jax.enable_x64(x64):
        params = jax.device_put([member.params for member in model.members], placement)
        classify = jax.jit(make_committee_classify(model, placement))

    def predict(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.uint8)
        if images.size != len(images) * inputs:
            raise DataError(
                f"images of shape {images.shape[1:]} have {images[:1].size} pixels each; "
                f"the model takes {inputs}"
            )
        flat = images.reshape(len(images), inputs)
        pad = -len(flat) % batch_size
        flat = np.concatenate([flat, np.zeros((pad, inputs), np.uint8)])
        with jax.enable_x64(x64):
            parts = [
                classify(params, flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)
            ]
            probs = np.concatenate([np.asarray(p, np.float64) for p in jax.device_get(parts)])
        return probs[: len(images)]

    return predict


def rank(probs: np.ndarray, top: int = TOP) -> list[dict[str, Any]]:
    """Return the `top` most probable digits of one probability vector (10,), best first."""
    order = np.argsort(-probs, kind="stable")[:top]
    return [{"digit": int(d), "probability": float(probs[d])} for d in order]


def predict_files(
    path: str | Path, files: Sequence[str | Path], placement: Placement | None = None
) -> list[dict[str, Any]]:
    """Predict the digit in each image of each file (`preprocess.FORMATS`), on `placement`.

    Returns:
        One record per image: {"file", "digit", "top": [{"digit", "probability"}] * 3,
        "probabilities": (10,) list}. A .npy holding N images gives N records named
        "file[i]".
    """
    if not files:
        raise DataError("no image files given")
    predict = load_image_predictor(path, placement=placement)
    names, images = [], []
    for file in files:
        for name, image in preprocess.read_images(file):
            names.append(name)
            images.append(preprocess.to_mnist(image, where=name))
    probs = predict(np.stack(images))
    return [
        {
            "file": name,
            "digit": int(np.argmax(p)),
            "top": rank(p),
            "probabilities": [float(v) for v in p],
        }
        for name, p in zip(names, probs)
    ]


def format_predictions(results: list[dict[str, Any]]) -> list[str]:
    """Render one line per image: the digit, then the top probabilities."""
    width = max(len(r["file"]) for r in results)
    return [
        f"{r['file']:<{width}}  {r['digit']}   "
        + "  ".join(f"{t['digit']}: {t['probability']:6.1%}" for t in r["top"])
        for r in results
    ]
