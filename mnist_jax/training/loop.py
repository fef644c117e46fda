"""The training loop: run a Trainer's jitted epochs, evaluate, and return the history as values.

`fit` advances a `TrainState` epoch by epoch (a few jitted calls per epoch only when a progress bar
is drawn; full-batch runs fuse `eval_every` iterations into one call), stops with `Diverged` when
the loss turns non-finite or rises far above its start (`mnist_jax.training.divergence`), evaluates
the validation split every `eval_every` epochs, and hands each epoch's records to `on_epoch` (the
run folder writes them; a diverged epoch never reaches it, so the last finite checkpoint stays).
Metrics stay on the device during an epoch and become Python numbers only once it ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.errors import Diverged, Interrupted
from mnist_jax.training import divergence, optim
from mnist_jax.training.trainer import Trainer, TrainState

Log = Callable[[str], None]
Progress = Callable[[int, int], None]  # (steps done this epoch, steps per epoch)
OnEpoch = Callable[[list[dict[str, Any]], TrainState], None]
PROGRESS_SEGMENTS = 10


def segments(total: int, parts: int) -> list[tuple[int, int]]:
    """Cut `total` steps into at most `parts` runs of equal length plus one remainder.

    Returns (first, length) pairs; at most two distinct lengths, so at most two compiles.
    """
    size = math.ceil(total / max(1, parts))
    return [(first, min(size, total - first)) for first in range(0, total, size)]


def fit(
    trainer: Trainer,
    state: TrainState,
    *,
    log: Log = print,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: OnEpoch | None = None,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Train from `state` until the config's epochs are done.

    Args:
        trainer: the assembled run (`trainer.build`).
        state: where to start (a fresh `trainer.init_state()` or a restored checkpoint).
        log: receives one line per epoch.
        progress: called with (steps done, steps per epoch) as an epoch advances; when given,
            each epoch is split into a few jitted calls so the callback can fire.
        should_stop: polled between the jitted calls; when it returns True the run stops,
            raising `Interrupted`, after the last *completed* epoch was handed to `on_epoch`
            (a partly trained epoch is dropped, never reported as done).
        on_epoch: receives each call's epoch records and the state after them.

    Returns:
        (the final state, the history: one record per epoch trained here, {"epoch",
        "train_loss", "lr" (the step size at the epoch's last step; not for L-BFGS),
        "seconds", "examples_per_second"} plus "val_loss" and "val_accuracy" on evaluated
        epochs).

    Raises:
        Diverged: after the first epoch whose loss diverged, before `on_epoch` sees it.
        Interrupted: `should_stop` asked to stop.
    """
    config = trainer.config
    stop = should_stop or (lambda: False)
    per_epoch = trainer.steps_per_epoch
    examples_per_epoch = trainer.num_train if config.full_batch else per_epoch * config.batch_size
    fused = config.eval_every if config.full_batch else 1
    parts = PROGRESS_SEGMENTS if progress is not None and not config.full_batch else 1
    starts = {first: trainer.put(np.int32(first)) for first, _ in segments(per_epoch, parts)}
    history: list[dict[str, Any]] = []
    blank = divergence.blank_loss(config.output, config.num_classes)
    lrs = optim.epoch_lrs(config, trainer.num_train)

    while state.epoch < config.epochs:
        epochs_now = min(fused, config.epochs - state.epoch)
        key = trainer.epoch_key(state.epoch)
        started = time.perf_counter()
        loss_parts = []
        for first, length in segments(per_epoch, parts) if fused == 1 else [(0, epochs_now)]:
            state.params, state.opt_state, loss_sum = trainer.train_epoch(
                state.params, state.opt_state, trainer.data.train.x, trainer.data.train.y, key,
                starts[first], num_steps=length,
            )  # fmt: skip
            loss_parts.append(loss_sum)
            if progress is not None:
                jax.block_until_ready(loss_sum)
                progress(first + length, per_epoch)
            if first + length < per_epoch and stop():
                raise Interrupted(f"stopped during epoch {state.epoch + 1} of {config.epochs}")
        losses = np.asarray(jax.device_get(loss_parts), dtype=np.float64).ravel()
        seconds = time.perf_counter() - started
        state.train_seconds += seconds
        records = _epoch_records(config.full_batch, state.epoch, losses, per_epoch, epochs_now)
        for record in records if lrs is not None else ():
            record["lr"] = float(lrs[record["epoch"] - 1])
        kept, state.epoch = state.epoch, state.epoch + epochs_now
        _check_divergence([*history, *records], len(history), blank, state.params, config.lr, kept)
        last = records[-1]
        evaluate_now = state.epoch % config.eval_every == 0 or state.epoch == config.epochs
        if evaluate_now and trainer.data.validation is not None:
            val = trainer.metrics(state.params, "validation")
            last.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        last.update(seconds=seconds, examples_per_second=examples_per_epoch * epochs_now / seconds)
        log(format_epoch(last, config.epochs))
        history.extend(records)
        if on_epoch is not None:
            on_epoch(records, state)
        if state.epoch < config.epochs and stop():
            raise Interrupted(f"stopped after epoch {state.epoch} of {config.epochs}")
    return state, history


def _check_divergence(
    records: list[dict[str, Any]], new: int, blank: float, params: Any, lr: float, kept: int
) -> None:
    """Raise `Diverged` when an epoch from `records[new:]` diverged (`training.divergence`).

    `records` is the run's history so far, its first record the first epoch trained here;
    `kept` is the epoch count of the state before these epochs (the last finite one).
    """
    first = records[0]["train_loss"]
    for i, record in enumerate(records[new:], start=new):
        reference = None if i == 0 else first
        if divergence.diverged(record["train_loss"], reference, blank):
            why = divergence.reason(record["train_loss"], reference, blank)
            raise Diverged(record["epoch"], record["train_loss"], lr, why, kept)
    if not _all_finite(params):  # a step can blow up after a finite mean loss
        last = records[-1]
        why = f"the parameters are no longer finite (loss {last['train_loss']:.4g})"
        raise Diverged(last["epoch"], last["train_loss"], lr, why, kept)


def final_metrics(trainer: Trainer, params: Any) -> dict[str, float]:
    """Loss and accuracy on every split the run has: {"test_accuracy", "test_loss", ...}."""
    out = {}
    for split in ("test", "validation", "train"):
        if split == "validation" and trainer.data.validation is None:
            continue
        for name, value in trainer.metrics(params, split).items():
            out[f"{split}_{name}"] = value
    return out


def _epoch_records(full_batch, epoch, losses, per_epoch, epochs_now) -> list[dict[str, Any]]:
    """One metrics record per epoch in this call (full-batch calls fuse several)."""
    if epochs_now == 1 and not full_batch:
        return [{"epoch": epoch + 1, "train_loss": float(losses.sum() / per_epoch)}]
    return [{"epoch": epoch + 1 + i, "train_loss": float(v)} for i, v in enumerate(losses)]


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """Render one epoch's record as the line printed during training."""
    parts = [
        f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}",
        f"loss {record['train_loss']:.4f}",
    ]
    if "val_accuracy" in record:
        parts.append(f"val_loss {record['val_loss']:.4f}  val_acc {record['val_accuracy']:.2%}")
    parts.append(f"{record['seconds']:.2f} s  {record['examples_per_second']:,.0f} ex/s")
    return "  ".join(parts)


def _all_finite(params: Any) -> bool:
    """True when no parameter is NaN or infinite (a step can blow up after a finite loss)."""
    leaves = jax.tree_util.tree_leaves(params)
    return bool(jax.device_get(jnp.all(jnp.stack([jnp.isfinite(p).all() for p in leaves]))))
