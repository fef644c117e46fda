"""When a run has diverged: a non-finite loss, or one that rose far above where it started.

A model that knows nothing predicts every class alike, and its loss is the *blank* loss:
ln C for softmax outputs, C ln 2 for sigmoid ones (C classes). Training lowers the loss from
there, so an epoch's mean training loss is judged against two references:

- the first epoch trained may not exceed `RISE` times the blank loss: an epoch whose *mean*
  is ten times a blank guess's has blown up within it (the usual sign of too large a step);
- each later epoch may not exceed `RISE` times the first epoch's loss, unless it is still
  below the blank loss (so that the noise of a run already near zero loss is not a rise).

Why ten: the mean loss of a healthy SGD run falls after its first epoch, and what noise
lifts it by from one epoch to the next is tens of percent, not an order of magnitude; a step
that is too large grows the loss geometrically, so it passes ten times its start within an
epoch or two of leaving the healthy regime, and stopping there saves the rest of the run.
NumPy only: the loop checks one run's loss, the sweep a vector of K models' at once.
"""

from __future__ import annotations

import math

import numpy as np

RISE = 10.0


def blank_loss(output: str, num_classes: int) -> float:
    """The loss of a guess that gives every class the same score: ln C, or C ln 2 (sigmoid)."""
    return num_classes * math.log(2.0) if output == "sigmoid" else math.log(num_classes)


def diverged(
    loss: np.ndarray | float, first: np.ndarray | float | None, blank: float
) -> np.ndarray:
    """Which losses have diverged: non-finite, or past the limit the module docstring gives.

    Args:
        loss: an epoch's mean training loss, one per model: () or (K,).
        first: the first epoch's losses trained in this run (same shape), or None when `loss`
            is that first epoch's.
        blank: `blank_loss` of the models' output and class count.

    Returns:
        A bool array of `loss`'s shape.
    """
    loss = np.asarray(loss, np.float64)
    limit = RISE * blank if first is None else np.maximum(RISE * np.asarray(first), blank)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(loss) | (loss > limit)


def reason(loss: float, first: float | None, blank: float) -> str:
    """Say, for a person, why `loss` counts as diverged (see `diverged`)."""
    if not math.isfinite(loss):
        return f"the training loss is {loss}"
    if first is None:
        return f"loss {loss:.4g}, over {RISE:g} times that of a uniform guess ({blank:.4g})"
    return f"loss {loss:.4g}, over {RISE:g} times the first epoch's ({first:.4g})"
