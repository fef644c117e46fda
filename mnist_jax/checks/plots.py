"""PNG plots of a run: learning curves, confusion matrix, sample predictions, first-layer weights.

Needs the `plot` extra (matplotlib); it draws off-screen with the Agg backend, so it works
on machines without a display. Each figure is rendered to memory and written atomically
into the run folder.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax.errors import MnistJaxError
from mnist_jax.files import atomic_write_bytes

INSTALL_HINT = "pip install 'mnist-jax[plot]'"
FILES = ("curves.png", "confusion.png", "samples.png", "weights.png")
DISTORTED_FILE = "distorted.png"  # only for a run that distorts its training images
GRID = (6, 8)  # rows, columns of the sample grid
MAX_UNITS = 64  # first-layer units drawn


def require_matplotlib() -> Any:
    """Return pyplot on the Agg backend, or raise a one-line install hint."""
    try:
        import matplotlib
    except ImportError:
        raise MnistJaxError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    log: Callable[[str], None] = print,
    *,
    split: str = "test",
    data_path: str | None = None,
    dataset: str | None = None,
) -> list[Path]:
    """Write the four PNG files of `FILES` into a finished run's folder; return their paths.

    The curves come from its metrics.jsonl; the rest from its checkpoint, evaluated again on
    `split` (rebuilt from its config and seed, as `mnist-jax eval` does, with its data read
    from `data_dir`, `data_path` or as `dataset` when given).
    """
    require_matplotlib()
    from mnist_jax.checks import evaluation
    from mnist_jax.records import rundir

    run_dir = Path(run_dir)
    records = rundir.read_metrics(run_dir)
    result, model = evaluation.evaluate_checkpoint(
        run_dir, split, data_dir=data_dir, data_path=data_path, dataset=dataset, log=log
    )
    weights = np.asarray(model.members[0].params[0]["w"])
    return draw(run_dir, records, result, weights, distorted_samples(model.config, log))


def plot_result(result: Any, out: str | Path, log: Callable[[str], None] = print) -> list[Path]:
    """Draw the plots of a training `api.Result` (its history, and its test evaluation)."""
    from mnist_jax.checks import evaluation

    evaluated = evaluation.evaluate_params(result.config, result.params, "test", log=log)
    weights = np.asarray(result.params[0]["w"])
    distorted = distorted_samples(result.config, log)
    return draw(Path(out), result.history, evaluated, weights, distorted)


def distorted_samples(config: Any, log: Callable[[str], None]) -> np.ndarray | None:
    """Training images beside distorted copies, (n, 1 + copies, h, w), or None (no distortion).

    The first training images of the run's data, and copies distorted as the run's epochs
    distort them (`mnist_jax.training.distort.samples`).
    """
    if config.augment == "none":
        return None
    from mnist_jax import data
    from mnist_jax.training import distort

    images = data.load(config, log).train.x[: distort.SAMPLES[0]]  # (n, h, w) uint8
    return distort.samples(config, images)


def draw(
    out: Path,
    records: list[dict[str, Any]],
    result: Any,
    weights: np.ndarray,
    distorted: np.ndarray | None = None,
) -> list[Path]:
    """Write curves, confusion, samples and weights PNGs into `out`; return their paths.

    Args:
        records: the per-epoch history; result: an `evaluation.Evaluation`;
        weights: the first layer's weights (pixels, hidden), pixels = 784 for MNIST;
        distorted: training images beside their distorted copies (`distorted_samples`),
            drawn into `DISTORTED_FILE` when given.
    """
    from mnist_jax.checks import report

    plt = require_matplotlib()
    labels, probs = result.labels, result.probabilities
    figures = {
        "curves.png": curves_figure(plt, records),
        "confusion.png": confusion_figure(
            plt,
            report.confusion_matrix(labels, probs.argmax(axis=1), probs.shape[1]),
            result.accuracy,
            result.split,
        ),
        "samples.png": samples_figure(plt, result.images, labels, probs, result.split),
        "weights.png": weights_figure(plt, weights, result.images.shape[1:]),
    }
    if distorted is not None:
        figures[DISTORTED_FILE] = distorted_figure(plt, distorted)
    return [save_figure(plt, figure, out / name) for name, figure in figures.items()]


def save_figure(plt: Any, figure: Any, path: Path) -> Path:
    """Render `figure` as PNG into `path` atomically, then free it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def curves_figure(plt: Any, records: list[dict[str, Any]]) -> Any:
    """Loss (train, validation) and accuracy (validation, and train when recorded) per epoch."""
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")

    def series(key: str) -> tuple[list[int], list[float]]:
        points = [(r["epoch"], r[key]) for r in records if key in r]
        return [p[0] for p in points], [p[1] for p in points]

    for ax, keys, title in (
        (loss_ax, ("train_loss", "val_loss"), "loss"),
        (acc_ax, ("train_accuracy", "val_accuracy"), "accuracy"),
    ):
        for key, style in zip(keys, ("o-", "s--")):
            epochs, values = series(key)
            if epochs:
                label = "train" if key.startswith("train") else "validation"
                ax.plot(epochs, values, style, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return figure


def confusion_figure(plt: Any, confusion: np.ndarray, accuracy: float, split: str) -> Any:
    """The confusion matrix as a heat map, counts written in the cells."""
    figure, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    image = ax.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8)
    classes = np.arange(len(confusion))
    ax.set_xticks(classes)
    ax.set_yticks(classes)
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"{split} confusion matrix, accuracy {accuracy:.2%}")
    dark = confusion.max() / 2
    for (t, p), count in np.ndenumerate(confusion):
        if count:
            colour = "white" if count > dark else "black"
            ax.text(p, t, str(count), ha="center", va="center", fontsize=7, color=colour)
    return figure


def pick_samples(labels: np.ndarray, probs: np.ndarray, count: int) -> np.ndarray:
    """Indices to show: the first examples, plus up to a quarter of the grid of mistakes."""
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)[: count // 4]
    first = [i for i in range(len(labels)) if i not in set(wrong)][: count - len(wrong)]
    return np.sort(np.concatenate([first, wrong]).astype(np.int64))


def samples_figure(
    plt: Any, images: np.ndarray, labels: np.ndarray, probs: np.ndarray, split: str
) -> Any:
    """A grid of images titled 'predicted (true)'; mistakes in red with a red frame."""
    rows, cols = GRID
    # A fixed layout: constrained layout costs seconds on a grid of 48 axes.
    figure, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.35))
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.1, hspace=0.35)
    chosen = pick_samples(labels, probs, rows * cols)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, i in zip(axes.ravel(), chosen):
        predicted = int(probs[i].argmax())
        wrong = predicted != labels[i]
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(
            f"{predicted} ({labels[i]})" if wrong else f"{predicted}",
            color="red" if wrong else "black",
            fontsize=9,
        )
        if wrong:
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    figure.suptitle(f"{split} images: predicted digit, true digit in brackets when wrong")
    return figure


def distorted_figure(plt: Any, grid: np.ndarray) -> Any:
    """Each row one training image, then its distorted copies: grid (n, 1 + copies, h, w)."""
    rows, cols = grid.shape[:2]
    figure, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.2 + 0.4), squeeze=False)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / (rows + 0.5),
                           wspace=0.08, hspace=0.08)  # fmt: skip
    for (r, c), ax in np.ndenumerate(axes):
        ax.imshow(grid[r, c], cmap="gray_r", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        if r == 0:
            ax.set_title("as stored" if c == 0 else f"epoch {c}", fontsize=9)
    figure.suptitle("training images and the distortions of their first epochs")
    return figure


def weights_figure(plt: Any, weights: np.ndarray, image_shape: tuple[int, ...] = (28, 28)) -> Any:
    """The first layer's weights (pixels, units), each unit's column drawn as an image."""
    units = min(weights.shape[1], MAX_UNITS)
    cols = int(np.ceil(np.sqrt(units)))
    rows = int(np.ceil(units / cols))
    figure, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.0 + 0.4), squeeze=False)
    figure.subplots_adjust(
        left=0.02, right=0.98, bottom=0.02, top=1 - 0.4 / (rows + 0.4), wspace=0.08, hspace=0.08
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for unit, ax in zip(range(units), axes.ravel()):
        w = weights[:, unit].reshape(image_shape)
        limit = float(np.abs(w).max()) or 1.0  # symmetric colours: white is 0
        ax.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit)
    figure.suptitle(f"first-layer weights, {units} of {weights.shape[1]} units (red +, blue -)")
    return figure
