"""The project's own error type: bad input a person can fix, reported as one line.

Anything raised as `MnistJaxError` (or a subclass) is shown by the CLI as a single line on
stderr with exit code 2 (or the error's own `exit_code`, 130 for `Interrupted`). Every
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import math
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
