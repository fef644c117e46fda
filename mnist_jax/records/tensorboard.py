"""TensorBoard event files in the run folder: a `tracking.Writer` backed by tensorboardX.

tensorboardX writes the event files without TensorFlow or PyTorch (its dependencies are NumPy,
protobuf and packaging); TensorBoard itself (the `tensorboard` extra brings both) reads them:

    tensorboard --logdir runs          # every run folder under runs/ is one run

What goes where (steps are epochs):

    loss/train, loss/validation, accuracy/validation    per epoch (validation when evaluated)
    learning_rate, time/epoch_seconds, time/examples_per_second
    final/test_accuracy, final/test_loss, ...            once, at the last epoch
    HParams: the config's values, with the final/... metrics
    images/confusion_matrix, images/mistakes, ...        once, at the last epoch

A record key with no tag below keeps its own name, so a new metric reaches TensorBoard as is.
Images are encoded as PNG here (`png`), so no image library is needed.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax.console import note
from mnist_jax.records.tracking import Writer

INSTALL_HINT = "pip install 'mnist-jax[tensorboard]'"
TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/validation",
    "val_accuracy": "accuracy/validation",
    "lr": "learning_rate",
    "seconds": "time/epoch_seconds",
    "examples_per_second": "time/examples_per_second",
}
FINAL = ("_accuracy", "_loss")  # the summary's keys that are final metrics
EVENTS_GLOB = "events.out.tfevents.*"


class EventWriter(Writer):
    """Write a run's records as TensorBoard summaries into one folder (one TensorBoard run)."""

    takes_images = True

    def __init__(self, folder: Path, epochs_done: int = 0):
        from tensorboardX import FileWriter

        # Flushed after each epoch's records (`flush`), not on a timer. The suffix keeps a
        # resumed run's file apart from one started in the same second (the name holds it).
        self.file = FileWriter(
            str(folder), max_queue=1000, flush_secs=3600, filename_suffix=f".from{epochs_done}"
        )
        self.last_step = epochs_done

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from tensorboardX import summary

        for key, value in scalars.items():
            self.file.add_summary(summary.scalar(TAGS.get(key, key), float(value)), step)
        self.last_step = max(self.last_step, step)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        for name, image in images.items():
            pixels = _hwc(image)
            encoded = Summary.Image(
                height=pixels.shape[0], width=pixels.shape[1], colorspace=pixels.shape[2],
                encoded_image_string=png(pixels),
            )  # fmt: skip
            self.file.add_summary(
                Summary(value=[Summary.Value(tag=f"images/{name}", image=encoded)]), step
            )

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write the final metrics as scalars and the config with them for the HParams view."""
        from tensorboardX import summary as summaries

        step = int(summary.get("epochs", self.last_step))
        final = {
            f"final/{k}": float(v)
            for k, v in summary.items()
            if k.endswith(FINAL) and isinstance(v, int | float)
        }
        for tag, value in final.items():
            self.file.add_summary(summaries.scalar(tag, value), step)
        for part in summaries.hparams(hparams(summary.get("config", {})), final):
            self.file.add_summary(part, step)
        self.flush()

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def open_events(folder: Path, epochs_done: int = 0) -> EventWriter | None:
    """An `EventWriter` for `folder`, or None (said once per process) without tensorboardX.

    A fresh run (`epochs_done` 0; not a resumed one) first removes event files an earlier
    run left in the folder, as it starts metrics.jsonl anew, so that TensorBoard shows one
    run there.
    """
    if not available():
        _say_missing()
        return None
    if epochs_done == 0:
        for stale in folder.glob(EVENTS_GLOB):
            stale.unlink(missing_ok=True)
    return EventWriter(folder, epochs_done)


def available() -> bool:
    """Whether the TensorBoard writer (tensorboardX, the `tensorboard` extra) is installed."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _say_missing() -> None:
    """Say once per process how to get TensorBoard event files."""
    note(f"no TensorBoard events written: {INSTALL_HINT} adds them to every run folder")


def hparams(config: Mapping[str, Any]) -> dict[str, float | int | str | bool]:
    """The config's values as HParams can show them: numbers, strings and booleans as they
    are, lists as "a,b" text; None values are left out."""
    out: dict[str, float | int | str | bool] = {}
    for key, value in config.items():
        if isinstance(value, list | tuple):
            out[key] = ",".join(map(str, value))
        elif isinstance(value, bool | int | float | str):
            out[key] = value
    return out


def png(image: np.ndarray) -> bytes:
    """Encode an (H, W, C) uint8 image (C = 1 grey, 3 RGB or 4 RGBA) as a PNG file's bytes."""
    height, width, channels = image.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    # each row: filter byte 0 (none), then its pixels
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(np.ascontiguousarray(rows).tobytes()))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def _hwc(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) as (H, W, C) uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"an image is (H, W) or (H, W, C) uint8, got {image.shape} {image.dtype}")
    return image[..., None] if image.ndim == 2 else image
