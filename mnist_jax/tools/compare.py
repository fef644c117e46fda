"""Compare hidden activations: train one config once per activation, tabulate, plot the losses.

`mnist-jax compare --config configs/seed-activations-15.toml` trains the same network (same
seed, so the same initial weights and batch order) with sigmoid, tanh and ReLU hidden units
and reports train and test error, the final training loss and the training seconds of each.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_jax import files
from mnist_jax.checks.plots import require_matplotlib
from mnist_jax.config import ACTIVATIONS, Config
from mnist_jax.errors import ConfigError, Diverged, MnistJaxError


def parse_activations(text: str) -> tuple[str, ...]:
    """Parse 'sigmoid,tanh,relu' into a tuple, rejecting unknown or repeated names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in ACTIVATIONS]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(
            f"--activations must be distinct names from {', '.join(ACTIVATIONS)}, got '{text}'"
        )
    return names


def compare(
    config: Config,
    activations: Sequence[str] = ("sigmoid", "tanh", "relu"),
    out_dir: Path | None = None,
    *,
    log: Callable[[str], None] = print,
    placement: Any = None,
) -> list[dict[str, Any]]:
    """Train `config` once per hidden activation.

    Args:
        config: the run to repeat; only `activation` (and `name`) change between runs.
        activations: the hidden activations to train.
        out_dir: keep each run in out_dir/<activation> (checkpoint, metrics, summary); None
            keeps nothing.
        log: receives each run's epoch lines.
        placement: where to train (`runtime.placement`); JAX's default device when None.

    Returns:
        One row per activation: activation, train_error, test_error, final_loss (the last
        epoch's mean training loss), seconds (training time) and losses (one per epoch); for
        an activation whose run diverged (`mnist_jax.training.divergence`), only activation,
        diverged_epoch and final_loss (the diverged loss, None when not finite), so that the
        others are still compared.
    """
    from mnist_jax import api, data  # JAX only once a comparison runs

    splits = data.load(config, log)  # the activation changes nothing in the data
    rows = []
    for activation in activations:
        run_config = config.replace(activation=activation, name=f"{config.name}-{activation}")
        folder = None if out_dir is None else Path(out_dir) / activation
        try:
            result = api.train(run_config, folder, splits=splits, placement=placement, log=log)
        except Diverged as e:
            log(f"{activation}: {e}")
            rows.append({"activation": activation, **_diverged(e)})
            continue
        losses = [record["train_loss"] for record in result.history]
        rows.append(
            {
                "activation": activation,
                "train_error": 1.0 - result.metrics["train_accuracy"],
                "test_error": 1.0 - result.metrics["test_accuracy"],
                "final_loss": losses[-1],
                "seconds": result.train_seconds,
                "losses": losses,
            }
        )
    return rows


def _diverged(error: Diverged) -> dict[str, Any]:
    facts = error.to_dict()
    return {"diverged_epoch": facts["epoch"], "final_loss": facts["train_loss"]}


def format_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Render `compare`'s rows as aligned text lines."""
    lines = [f"{'activation':<10}  {'train error':>11}  {'test error':>10}  "
             f"{'final loss':>10}  {'seconds':>7}"]  # fmt: skip
    for row in rows:
        if "diverged_epoch" in row:
            loss = "not finite" if row["final_loss"] is None else f"{row['final_loss']:.4g}"
            lines.append(
                f"{row['activation']:<10}  diverged at epoch {row['diverged_epoch']} (loss {loss})"
            )
            continue
        lines.append(
            f"{row['activation']:<10}  {row['train_error']:>11.2%}  {row['test_error']:>10.2%}  "
            f"{row['final_loss']:>10.4f}  {row['seconds']:>7.1f}"
        )
    return lines


def plot_losses(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Draw each activation's training loss per epoch into one figure at `path` (PNG, SVG...).

    Raises:
        MnistJaxError: matplotlib (the `plot` extra) is not installed.
    """
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        if "losses" in row:  # a diverged run has no curve to draw
            ax.plot(range(1, len(row["losses"]) + 1), row["losses"], label=row["activation"])
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    suffix = path.suffix.lstrip(".") or "png"
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=suffix)
    except ValueError as e:
        raise MnistJaxError(f"cannot draw {path}: {e}") from None
    finally:
        plt.close(fig)
    files.atomic_write_bytes(path, buffer.getvalue())


def compare_command(
    config: Config,
    activations: Sequence[str],
    *,
    plot: Path | None = None,
    out_dir: Path | None = None,
    log: Callable[[str], None] = print,
    placement: Any = None,
) -> list[dict[str, Any]]:
    """Run the comparison and draw the plot if asked; see `mnist-jax compare`."""
    if plot is not None:
        require_matplotlib()  # say what to install before training, not after
    rows = compare(config, activations, out_dir, log=log, placement=placement)
    if plot is not None:
        plot_losses(rows, plot, title=config.name)
        log(f"loss curves drawn in {plot}")
    return rows
