"""The run folder: `checkpoint.npz`, `metrics.jsonl`, `summary.json` and TensorBoard's event
files, written from values.

Training hands each finished epoch to `RunFolder.record` (its records to every writer of
`mnist_jax.records.tracking`, then the checkpoint replaced atomically), the images drawn at the
end to `write_images`, and the final summary to `write_summary`; nothing here is read back
during a run. Reading happens only when a user hands a folder over: `--resume` restores
the state, and `read_metrics` gives a finished run's history to the plots.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.config import Config
from mnist_jax.devices import shards
from mnist_jax.errors import MnistJaxError
from mnist_jax.records import checkpoint, tensorboard, tracking
from mnist_jax.training.trainer import Placement, TrainState

METRICS = tracking.METRICS
SUMMARY = tracking.SUMMARY


class RunFolder:
    """Where one run's files go; opening it drops metrics of epochs its checkpoint lacks."""

    def __init__(self, path: str | Path, config: Config, dataset: str, epochs_done: int = 0):
        self.path = Path(path)
        self.config = config
        self.dataset = dataset
        self.writers = open_writers(self.path, epochs_done)

    @property
    def takes_images(self) -> bool:
        """Whether images handed to `write_images` go anywhere (TensorBoard is installed)."""
        return self.writers.takes_images

    def record(self, records: list[dict[str, Any]], state: TrainState) -> None:
        """Hand the epochs' records to every writer, then checkpoint the state atomically."""
        for record in records:
            self.writers.write_scalars(*tracking.split_record(record))
        self.writers.flush()
        save_state(self.path, state, self.config, self.dataset)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Hand named images, (H, W) or (H, W, C) uint8, to every writer that keeps them.

        The hook for pictures of a run (the confusion matrix, its mistakes, a config's
        distorted training samples): draw them once, then call this.
        """
        if images:
            self.writers.write_images(step, images)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Hand the summary to every writer (`summary.json`, the HParams entry)."""
        self.writers.write_summary(summary)

    def close(self) -> None:
        """Flush and close every writer."""
        self.writers.close()


def open_writers(folder: str | Path, epochs_done: int = 0) -> tracking.Writers:
    """The writers of one run folder: metrics.jsonl, summary.json, and TensorBoard if installed.

    Args:
        folder: the run folder (created if missing).
        epochs_done: epochs a resumed run has already recorded (0: a fresh run).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    board = tensorboard.open_events(folder, epochs_done)
    files = [tracking.MetricsFile(folder, epochs_done), tracking.SummaryFile(folder)]
    return tracking.Writers([*files, *filter(None, [board])])


def save_state(out: Path, state: TrainState, config: Config, dataset_name: str) -> None:
    """Write the run's checkpoint (params, optimiser state, epochs done) atomically."""
    checkpoint.save(
        out,
        jax.device_get(state.params),
        jax.device_get(jax.tree_util.tree_leaves(state.opt_state)),
        config,
        state.epoch,
        dataset=dataset_name,
        train_seconds=state.train_seconds,
    )


def restore_state(
    ckpt: checkpoint.Checkpoint, fresh: TrainState, placement: Placement
) -> TrainState:
    """Fill a freshly initialised state with a checkpoint's arrays (same structure)."""
    leaves, treedef = jax.tree_util.tree_flatten(fresh.opt_state)
    if len(leaves) != len(ckpt.opt_leaves):
        raise MnistJaxError("the checkpoint's optimiser state does not fit this config")
    for i, (saved, like) in enumerate(zip(ckpt.opt_leaves, leaves)):
        if saved.shape != like.shape:
            raise MnistJaxError(
                f"the checkpoint's optimiser array {i} has shape {saved.shape}, "
                f"this config's optimiser needs {like.shape}"
            )
    params = shards.put(
        [{k: jnp.asarray(v) for k, v in layer.items()} for layer in ckpt.params], placement
    )
    opt_state = jax.tree_util.tree_unflatten(
        treedef,
        [
            shards.put(np.asarray(saved, dtype=like.dtype), placement)
            for saved, like in zip(ckpt.opt_leaves, leaves)
        ],
    )
    return TrainState(params, opt_state, ckpt.epoch, float(ckpt.meta.get("train_seconds", 0.0)))


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Read a finished run's `metrics.jsonl` (one record per epoch); torn lines are skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        raise MnistJaxError(f"{path} not found: give the folder of a training run")
    records = []
    for line in path.read_text().splitlines():
        if math.isfinite(tracking.record_epoch(line)):
            records.append(json.loads(line))
    return records


def remove_stale_temporaries(out: Path) -> None:
    """Delete half-written temporaries a killed process left behind (never a finished file)."""
    for stale in out.glob(f".{checkpoint.FILE_NAME}.*.tmp"):
        stale.unlink(missing_ok=True)


def how_to_continue(out: Path) -> str:
    """Say how to pick up a run that stopped early, or that there is nothing to pick up."""
    if not checkpoint.resolve(out).exists():
        return "no epoch was completed, so there is nothing to resume"
    return f"continue with: mnist-jax train --resume {out}"
