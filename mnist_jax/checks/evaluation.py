"""Evaluate trained parameters on one split: accuracy and loss exactly as training computed
them, plus every example's probabilities, returned as one `Evaluation` value.

`evaluate_checkpoint` rebuilds the split from the checkpoint's own config and seed, so its
numbers equal those its training run reported; a committee folder gets its own figures and
each member's (`evaluate_committee`); `mnist_jax.checks.report` renders the value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax import data
from mnist_jax.checks import report
from mnist_jax.config import Config
from mnist_jax.devices.shards import local_device
from mnist_jax.records import committee
from mnist_jax.serving.inference import make_classify
from mnist_jax.training import memory
from mnist_jax.training.trainer import EvalBatches, Trainer, build, precision

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The result of evaluating parameters on one split.

    Fields:
        split, dataset, accuracy, loss (data loss, no L2), count (examples);
        labels (count,) int64, probabilities (count, classes) float64, images (count, rows,
        cols) uint8 (28x28 for MNIST);
        checkpoint and epoch when the parameters came from a checkpoint;
        for a committee: its manifest as `checkpoint`, each member's Evaluation in `members`
        and how they combine in `rule`.
    """

    split: str
    dataset: str
    accuracy: float
    loss: float
    count: int
    labels: np.ndarray
    probabilities: np.ndarray
    images: np.ndarray
    checkpoint: str | None = None
    epoch: int | None = None
    members: tuple[Evaluation, ...] = ()
    rule: str | None = None

    def to_dict(self, mistakes: int = report.MISTAKES) -> dict[str, Any]:
        """JSON-ready: the figures, plus confusion matrix, per-class table, confident mistakes."""
        return {
            "checkpoint": self.checkpoint,
            "split": self.split,
            "dataset": self.dataset,
            "epoch": self.epoch,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "count": self.count,
            **report.summarize(self.labels, self.probabilities, mistakes),
            **(self._committee() if self.members else {}),
        }

    def _committee(self) -> dict[str, Any]:
        """The rule and each member's figures, for a committee's `to_dict`."""
        keys = ("checkpoint", "epoch", "accuracy", "loss")
        return {
            "rule": self.rule,
            "members": [{k: getattr(m, k) for k in keys} for m in self.members],
        }


def split_predictions(
    config: Config, params: Any, batches: EvalBatches
) -> tuple[np.ndarray, np.ndarray]:
    """Predict a whole padded split on its device (one jitted `lax.map` over the batches).

    Returns:
        labels (N,) int64 and probabilities (N, classes) float64 of the real (unmasked)
        examples.
    """
    classify = make_classify(config, batches.x.sharding)
    probs = jax.jit(lambda p, x: jax.lax.map(lambda b: classify(p, b), x))(params, batches.x)
    probs, labels, mask = jax.device_get((probs, batches.y, batches.mask))
    keep = np.asarray(mask).reshape(-1)
    return (
        np.asarray(labels).reshape(-1)[keep].astype(np.int64),
        np.asarray(probs, np.float64).reshape(-1, probs.shape[-1])[keep],
    )


def evaluate(trainer: Trainer, params: Any, split: str = "test") -> Evaluation:
    """Evaluate `params` (on the trainer's placement) on one of the trainer's splits."""
    batches = trainer.data.eval_split(split)
    metrics = trainer.metrics(params, split)
    labels, probs = split_predictions(trainer.config, params, batches)
    keep = np.asarray(batches.mask).reshape(-1)
    images = np.asarray(batches.x).reshape(-1, *trainer.data.image_shape)[keep]
    return Evaluation(
        split, trainer.data.name, metrics["accuracy"], metrics["loss"], len(labels), labels,
        probs, images,
    )  # fmt: skip


def evaluate_checkpoint(
    path: str | Path,
    split: str = "test",
    *,
    data_dir: str | None = None,
    data_path: str | None = None,
    dataset: str | None = None,
    log: Log = print,
    placement: Any = None,
    matmul_precision: str | None = None,
) -> tuple[Evaluation, committee.Committee]:
    """Recompute loss and accuracy of a saved model on one split of its run's data.

    Args:
        path: a checkpoint.npz, the run folder holding it, or a committee folder (evaluated
            on its first member's data; see `evaluate_committee`).
        split: "test", "validation" or "train". A committee is evaluated on validation only
            if its members held out the same images (`committee.check_shared_validation`).
        data_dir, data_path, dataset: read the data from here, or as this kind of dataset,
            instead of the run's own source (see `with_data`).
        log: receives the data loader's notes.
        placement: where to evaluate (`runtime.placement`); JAX's default device when None.
        matmul_precision: replaces the saved configs' (`mnist_jax.devices.backend`) when given.

    Returns:
        (the Evaluation, the model as `committee.load` read it).
    """
    model = committee.load(path)
    first = model.members[0]
    config = with_data(first.config, data_dir, data_path, matmul_precision, dataset)
    if first.dataset == "mnist-sample" and config.dataset == "mnist":
        config = config.replace(dataset="sample")  # trained offline: evaluate on the same sample
    if not model.is_committee:
        result = evaluate_params(config, first.params, split, log=log, placement=placement)
        return named(result, first), model
    if split == "validation":
        committee.check_shared_validation(model)
    with precision(config):
        splits = data.load(config, log)
    return evaluate_committee(model, splits, split, placement, matmul_precision), model


def evaluate_committee(
    model: committee.Committee,
    splits: data.Splits,
    split: str = "test",
    placement: Any = None,
    matmul_precision: str | None = None,
) -> Evaluation:
    """Evaluate each member on the same split, then the committee on their combined outputs.

    Each member is evaluated by its own config (its standardisation, network and precision)
    exactly as `mnist-jax eval` evaluates its run; the committee's probabilities are the
    members' combined (`committee.combine`), its accuracy their argmax against the labels,
    and its loss their negative log-likelihood, -mean(log p[label]): a one-member committee
    of a softmax run reports that run's cross-entropy. (A probability under float32's
    smallest normal number counts as that number, so one confident mistake cannot make the
    loss infinite.)

    Returns:
        The committee's Evaluation, with each member's in `members`.
    """
    members = []
    for member in model.members:
        config = with_data(member.config, matmul_precision=matmul_precision)
        result = evaluate_params(config, member.params, split, splits=splits, placement=placement)
        members.append(named(result, member))
    labels = members[0].labels
    probs = committee.combine([m.probabilities for m in members])
    chosen = probs[np.arange(len(labels)), labels]
    return Evaluation(
        split, members[0].dataset, float(np.mean(probs.argmax(axis=1) == labels)),
        float(-np.mean(np.log(np.maximum(chosen, np.finfo(np.float32).tiny)))), len(labels),
        labels, probs, members[0].images, str(model.source), None, tuple(members), model.rule,
    )  # fmt: skip


def named(result: Evaluation, member: committee.Member) -> Evaluation:
    """`result` with the member's checkpoint and epoch."""
    return dataclasses.replace(result, checkpoint=str(member.checkpoint), epoch=member.epoch)


def evaluate_params(
    config: Config,
    params: Any,
    split: str = "test",
    *,
    log: Log = print,
    placement: Any = None,
    splits: data.Splits | None = None,
) -> Evaluation:
    """Load the config's data (or take `splits`), check it fits, build the run and evaluate
    `params` on `split`."""
    with precision(config):
        splits = data.load(config, log) if splits is None else splits
        memory.check_run(config, splits, local_device(placement or jax.local_devices()[0]))
        trainer = build(config, splits, placement)
        return evaluate(trainer, trainer.put(params), split)


def with_data(
    config: Config,
    data_dir: str | None = None,
    data_path: str | None = None,
    matmul_precision: str | None = None,
    dataset: str | None = None,
) -> Config:
    """A trained model's config, reading its data from `data_path` or `data_dir` when given,
    as `dataset` when given (for `data_path`, "auto": told from the file), with another matmul
    precision when given."""
    if data_path is not None:
        config = config.replace(data_path=data_path, dataset="auto")
    elif data_dir is not None:
        config = config.replace(data_dir=data_dir)
    if dataset is not None:
        config = config.replace(dataset=dataset)
    if matmul_precision is not None:
        config = config.replace(matmul_precision=matmul_precision)
    return config
