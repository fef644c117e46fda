"""Seconds of training until the test accuracy first reaches a target: a recipe as a race.

`seconds_to_accuracy` trains a config through the real path (`trainer.build`, `loop.fit`),
evaluates the test split after every epoch (outside the timed calls: `train_seconds` counts
only the jitted epochs, the first one's compilation included, as `mnist-jax train` reports
them) and stops at the first epoch whose test accuracy reaches the target.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mnist_jax.config import Config
from mnist_jax.data import Splits
from mnist_jax.errors import Interrupted
from mnist_jax.training import loop
from mnist_jax.training.trainer import Placement, build, precision


def seconds_to_accuracy(
    config: Config, splits: Splits, target: float, placement: Placement | None = None
) -> dict[str, Any]:
    """Train `config` on `splits` until its test accuracy reaches `target` (a fraction).

    Returns:
        {"reached": bool, "seconds": train seconds at the first epoch at or above the target
        (None if never), "epoch": that epoch (None if never), "epochs": epochs trained,
        "curve": [(epoch, train_seconds, test_accuracy), ...] one per evaluated epoch}.
    """
    curve: list[tuple[int, float, float]] = []
    with precision(config):
        trainer = build(config, splits, placement)
        state = trainer.init_state()

        def on_epoch(_records: list[dict[str, Any]], now: Any) -> None:
            accuracy = trainer.metrics(now.params, "test")["accuracy"]
            curve.append((now.epoch, now.train_seconds, accuracy))

        def reached() -> bool:
            return bool(curve) and curve[-1][2] >= target

        # Stopping at the target raises Interrupted after the last whole epoch's record.
        with contextlib.suppress(Interrupted):
            loop.fit(trainer, state, log=lambda _: None, should_stop=reached, on_epoch=on_epoch)
    hit = next((point for point in curve if point[2] >= target), None)
    return {
        "reached": hit is not None,
        "seconds": None if hit is None else hit[1],
        "epoch": None if hit is None else hit[0],
        "epochs": curve[-1][0] if curve else 0,
        "curve": curve,
    }
