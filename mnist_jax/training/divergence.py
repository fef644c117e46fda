"""When a run has diverged: a non-finite loss, or one far above where training starts.

A model that knows nothing gives every class the same score, and its loss is the *blank*
loss: ln C for softmax outputs, C ln 2 for sigmoid ones (C classes); training starts near it.
An epoch's mean training loss has diverged when it is not finite, or:

- for the first epoch trained, when it exceeds `FIRST_RISE` (100) times the blank loss:
  logits in the hundreds, weights blown up by too large a step. The margin is wide because a
  first epoch may start badly and still recover: sigmoid hidden units on 16x16 stroke images
  at lr 1 average 37 times the blank loss in their first epoch, then reach 97.5% accuracy,
  while plain SGD on the bundled sample at lr 100 or more averages thousands of times it;
- for each later epoch, when it exceeds `RISE` (10) times the first epoch's loss and is above
  the blank loss (so that the noise of a run already near zero loss is not a rise). The mean
  loss of a healthy run falls after its first epoch, and what noise lifts it by from one epoch
  to the next is tens of percent, not an order of magnitude; a step that is too large grows it
  geometrically, so it passes ten times within an epoch or two of leaving the healthy regime.

NumPy only: the loop checks one run's loss, the sweep a vector of K models' at once.
"""

from __future__ import annotations

import math

import numpy as np

FIRST_RISE = 100.0
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
    limit = FIRST_RISE * blank if first is None else np.maximum(RISE * np.asarray(first), blank)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(loss) | (loss > limit)


def reason(loss: float, first: float | None, blank: float) -> str:
    """Say, for a person, why `loss` counts as diverged (see `diverged`)."""
    if not math.isfinite(loss):
        return f"the training loss is {loss}"
    if first is None:
        return f"loss {loss:.4g}, over {FIRST_RISE:g} times that of a uniform guess ({blank:.4g})"
    return f"loss {loss:.4g}, over {RISE:g} times the first epoch's ({first:.4g})"
