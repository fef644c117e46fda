"""The optimiser as optax transformations: plain SGD, momentum, Nesterov or L-BFGS, a schedule.

Which optax transformation each `optimizer` builds:

    sgd       optax.sgd(schedule)                                  (no momentum)
    momentum  optax.sgd(schedule, momentum=config.momentum)         (heavy ball)
    nesterov  optax.sgd(schedule, momentum=config.momentum, nesterov=True)
    lbfgs     optax.lbfgs(learning_rate=None, memory_size=10, zoom line search)

and `schedule`: "constant" is the number `config.lr`; "cosine" is
`optax.warmup_cosine_decay_schedule` rising linearly from 0 over `warmup_epochs` epochs, then
decaying from `config.lr` to 0 at the last step of the run.
"""

from __future__ import annotations

import numpy as np
import optax

from mnist_jax.config import Config

LBFGS_MEMORY = 10  # past (step, gradient change) pairs, as in SciPy's L-BFGS-B default
LBFGS_LINESEARCH_STEPS = 20  # zoom iterations allowed per step before taking the best so far


def steps_per_epoch(config: Config, num_train: int) -> int:
    """Optimiser steps in one epoch: whole batches only (the partial batch is dropped)."""
    return 1 if config.full_batch else num_train // config.batch_size


def learning_rate(config: Config, num_train: int) -> float | optax.Schedule:
    """The config's step size: a number, or a schedule over all steps of the run."""
    if config.schedule == "constant":
        return config.lr
    per_epoch = steps_per_epoch(config, num_train)
    total = config.epochs * per_epoch
    warmup = int(config.warmup_epochs * per_epoch)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else config.lr,
        peak_value=config.lr,
        warmup_steps=warmup,
        decay_steps=max(total, warmup + 1),
        end_value=0.0,
    )


def epoch_lrs(config: Config, num_train: int) -> np.ndarray | None:
    """The step size of each epoch's last step: (epochs,) float64, or None for L-BFGS.

    Recorded with each epoch ("lr"), so a schedule shows in the metrics and in TensorBoard.
    """
    if config.optimizer == "lbfgs":
        return None  # the line search picks each step
    lr = learning_rate(config, num_train)
    last_steps = np.arange(1, config.epochs + 1) * steps_per_epoch(config, num_train) - 1
    if callable(lr):
        return np.asarray(lr(last_steps), np.float64)  # optax schedules work elementwise
    return np.full(config.epochs, lr, np.float64)


def make_optimizer(config: Config, num_train: int) -> optax.GradientTransformation:
    """Build the config's optax optimiser (see the module docstring for the mapping)."""
    if config.optimizer == "lbfgs":
        return make_lbfgs()
    lr = learning_rate(config, num_train)
    if config.optimizer == "sgd":
        return optax.sgd(lr)
    return optax.sgd(lr, momentum=config.momentum, nesterov=config.optimizer == "nesterov")


def make_lbfgs() -> optax.GradientTransformationExtraArgs:
    """Build full-batch L-BFGS whose step size is chosen by a zoom line search.

    `learning_rate=None` leaves the step to the line search (strong Wolfe conditions, first
    guess 1.0 each iteration, as in classic quasi-Newton codes); a fixed learning rate would
    scale the line search's step and break the curvature condition the search relies on, so
    `config.lr` is not used. The first direction is the gradient scaled to unit norm.
    """
    return optax.lbfgs(
        learning_rate=None,
        memory_size=LBFGS_MEMORY,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=LBFGS_LINESEARCH_STEPS, initial_guess_strategy="one"
        ),
    )
