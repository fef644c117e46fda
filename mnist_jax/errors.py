"""The project's own error type: bad input a person can fix, reported as one line.

Anything raised as `MnistJaxError` (or a subclass) is shown by the CLI as a single line on
stderr with exit code 2 (or the error's own `exit_code`, 130 for `Interrupted`). Every
other exception is a bug and keeps its traceback, except inside `decoding`: the one place per
reader where whatever a decoding library raises on a user's file becomes that reader's line.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Iterator
from typing import Any


class MnistJaxError(Exception):
    """Bad input or an unusable environment, described in one actionable line."""


class DataError(MnistJaxError):
    """A data file is missing, malformed or fails its checksum."""


class ConfigError(MnistJaxError):
    """A config file or flag has an unknown key, a wrong type or an invalid value."""


class CheckpointError(MnistJaxError):
    """A checkpoint is missing, damaged, or does not fit the requested model."""


class Interrupted(MnistJaxError):
    """Training was stopped on request (Ctrl-C); the last completed epoch is saved."""

    exit_code = 130  # the shell's convention for a process ended by SIGINT


class Diverged(MnistJaxError):
    """Training diverged: its loss became non-finite or rose far above where it started.

    Attributes:
        epoch: the epoch (1-based) whose loss diverged; training stopped after it.
        loss: that epoch's mean training loss (may be nan or inf).
        lr: the learning rate the run used; suggested_lr: a tenth of it, to try next.
        kept_epoch: epochs done in the last finite state (the one a run folder keeps).
    """

    def __init__(self, epoch: int, loss: float, lr: float, reason: str, kept_epoch: int):
        self.epoch, self.loss, self.lr, self.reason = epoch, loss, lr, reason
        self.kept_epoch = kept_epoch
        self.suggested_lr = float(f"{lr / 10:.3g}")  # a tenth, as a number a person types
        self.where = ""
        super().__init__(self._line())

    def _line(self) -> str:
        line = (
            f"training diverged at epoch {self.epoch}: {self.reason}; try a smaller learning "
            f"rate, e.g. --lr {self.suggested_lr:g} (this run used {self.lr:g})"
        )
        return f"{line}; {self.where}" if self.where else line

    def saying(self, where: str) -> Diverged:
        """This error with a note on what was kept (e.g. the run folder and how to resume)."""
        self.where = where
        self.args = (self._line(),)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON-ready values (a non-finite loss becomes None: JSON has no nan)."""
        return {
            "status": "diverged",
            "epoch": self.epoch,
            "train_loss": self.loss if math.isfinite(self.loss) else None,
            "lr": self.lr,
            "suggested_lr": self.suggested_lr,
            "kept_epoch": self.kept_epoch,
            "error": str(self),
        }


# `warnings.catch_warnings` swaps process-wide state, so decoders take turns: one file is
# decoded at a time (which also bounds the memory that decoding takes in `serve`).
_DECODING = threading.RLock()
DETAIL_CHARS = 200  # of a library's message, in the line


@contextlib.contextmanager
def decoding(where: str, what: str, error: type[MnistJaxError] = DataError) -> Iterator[None]:
    """The decoder boundary: run a library's reading of a user's file, and turn whatever it
    raises into one line.

    Inside, a `MnistJaxError` (the reader's own checks) passes unchanged; any other
    `Exception` (Pillow's `SyntaxError`, `KeyError` or `DecompressionBombError`, JSON's
    `ValueError` or `RecursionError`, `struct.error`, `EOFError`, NumPy's errors, ...) becomes
    `error(f"{where}: {what} ({detail})")`. Warnings raised inside are recorded, never
    printed: the first is added to the detail when decoding fails, and dropped when it works.

    Args:
        where: the file, as the line names it.
        what: what is wrong, e.g. "not a readable PNG image".
        error: the project's error type to raise.

    Example:
        >>> import json
        >>> with decoding("x.json", "not JSON", ConfigError):
        ...     json.loads("[" * 100_000)
        Traceback (most recent call last):
        mnist_jax.errors.ConfigError: x.json: not JSON (nested too deeply)
    """
    with _DECODING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except MnistJaxError:
            raise
        except Exception as e:
            notes = [describe(e), *(describe(w.message) for w in caught[:1])]
            raise error(f"{where}: {what} ({'; '.join(n for n in notes if n)})") from None


def describe(problem: BaseException | Warning | str) -> str:
    """One line of at most DETAIL_CHARS saying what a library reported."""
    if isinstance(problem, RecursionError):
        return "nested too deeply"
    if isinstance(problem, MemoryError):
        return "too large to decode in the memory available"
    text = " ".join(str(problem).split())
    if isinstance(problem, (LookupError, TypeError, AttributeError, AssertionError)):
        text = f"{type(problem).__name__}: {text}".rstrip(": ")  # KeyError: 'MPO'
    elif not text and isinstance(problem, BaseException):
        text = type(problem).__name__
    return text[:DETAIL_CHARS] + ("..." if len(text) > DETAIL_CHARS else "")
