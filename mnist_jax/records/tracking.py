"""Run tracking: every record a run produces goes to every writer, from one place.

A run hands out three kinds of record, each as a value, never read back from a file:

    write_scalars(step, {"train_loss": ..., "val_accuracy": ..., "lr": ...})   once per epoch
    write_images(step, {"confusion_matrix": (H, W, 3) uint8, ...})             once, at the end
    write_summary({"test_accuracy": ..., "config": {...}, ...})                once, at the end

`Writers` fans each call out to its backends, the way `clu.metric_writers.MultiWriter` does:
`metrics.jsonl` (one line per epoch), `summary.json`, and TensorBoard's event files when the
`tensorboard` extra is installed (`mnist_jax.records.tensorboard`, a `Writer` like the others);
the run folder opens them (`rundir.open_writers`). A new backend is one more class overriding
some of `Writer`'s methods; the training loop does not change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax.files import atomic_write_bytes, atomic_write_json

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


class Writer:
    """A backend for a run's records (all steps are 1-based epochs); each method does nothing
    until a backend overrides it, so a backend names only the records it keeps."""

    takes_images = False  # whether write_images keeps anything

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Take one epoch's numbers, keyed as the loop's history records are."""

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Take named images: (H, W) or (H, W, C) uint8 arrays, C = 1, 3 or 4."""

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Take the finished run's summary: final metrics and its "config" dict."""

    def flush(self) -> None:
        """Make what was written so far readable by others."""

    def close(self) -> None:
        """Flush and release the backend."""


class MetricsFile(Writer):
    """`metrics.jsonl`: one JSON line per epoch, {"epoch": step, **scalars}, each line written
    and closed at once.

    Opening it keeps only the lines of the first `epochs_done` epochs (a resumed run's
    checkpoint has those; a fresh run starts the file empty).
    """

    def __init__(self, folder: Path, epochs_done: int = 0):
        self.path = folder / METRICS
        _truncate_metrics(self.path, epochs_done)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"epoch": step, **scalars}) + "\n")


class SummaryFile(Writer):
    """`summary.json`, written atomically."""

    def __init__(self, folder: Path):
        self.path = folder / SUMMARY

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path, dict(summary))


class Writers(Writer):
    """Hand every record to every writer (the one place a run's records fan out).

    Attributes:
        takes_images: whether some writer keeps images, so that a caller draws them only
            when they go somewhere.
    """

    def __init__(self, writers: Sequence[Writer]):
        self.writers = list(writers)
        self.takes_images = any(w.takes_images for w in self.writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for writer in self.writers:
            writer.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for writer in self.writers:
            writer.write_images(step, images)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        for writer in self.writers:
            writer.write_summary(summary)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def split_record(record: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
    """A history record {"epoch": n, ...} as (step n, the other values)."""
    return int(record["epoch"]), {k: v for k, v in record.items() if k != "epoch"}


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Keep only the records of epochs a resumed checkpoint has completed."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if record_epoch(line) <= epochs_done]
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def record_epoch(line: str) -> float:
    """The epoch of one metrics line; a torn or foreign line (a killed write) counts as never."""
    try:
        return float(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return math.inf
