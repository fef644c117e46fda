"""The Python API: train a model, evaluate it, predict images, check its gradients.

    import mnist_jax

    config = mnist_jax.load_config("smoke")            # a bundled config, or a TOML path
    result = mnist_jax.train(config)                   # -> Result: params, history, metrics
    print(result.metrics["test_accuracy"])
    probs = mnist_jax.predict(result, images)            # images (N, 28, 28) uint8 -> (N, 10)

Every function returns values; files are written only where an `out` folder is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax import data, model
from mnist_jax.checks import evaluation, pictures
from mnist_jax.config import Config
from mnist_jax.data import Splits
from mnist_jax.devices.shards import local_device
from mnist_jax.records import checkpoint
from mnist_jax.records.rundir import RunFolder, restore_state
from mnist_jax.training import distort, loop, memory
from mnist_jax.training.trainer import Placement, Trainer, build, precision

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Result:
    """What a training run produced.

    Attributes:
        config: the resolved config it trained.
        params: the final parameters, a list of {"w": (in, out), "b": (out,)} NumPy arrays.
        opt_state: the final optimiser state (a pytree of NumPy arrays).
        history: one record per epoch trained: epoch, train_loss, lr (not for L-BFGS),
            seconds, examples_per_second, and val_loss / val_accuracy on evaluated epochs.
        metrics: test_/validation_/train_ accuracy and loss of the final parameters.
        dataset: the dataset's name ("mnist", "mnist-sample", ...).
        epochs: epochs completed; train_seconds: time in the training loop.
        device: where it trained.
    """

    config: Config
    params: list[dict[str, np.ndarray]]
    opt_state: Any
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    dataset: str
    epochs: int
    train_seconds: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready summary written to `summary.json` and printed by `train --json`."""
        return {
            "dataset": self.dataset,
            "epochs": self.epochs,
            "train_seconds": self.train_seconds,
            "device": self.device,
            "num_params": model.count_params(self.params),
            **self.metrics,
            "config": self.config.to_dict(),
        }

    def lines(self) -> list[str]:
        """The final figures for a person."""
        m = self.metrics
        return [
            f"test accuracy {m['test_accuracy']:.2%}  test loss {m['test_loss']:.4f}  "
            f"({self.dataset}, {self.epochs} epochs, {self.train_seconds:.1f} s training)"
        ]


def train(
    config: Config,
    out: str | Path | None = None,
    *,
    splits: Splits | None = None,
    placement: Placement | None = None,
    resume: checkpoint.Checkpoint | None = None,
    log: Log = print,
    progress: loop.Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Result:
    """Train the config's model, evaluating each epoch; return the run as a value.

    Args:
        config: the resolved config (`load_config`).
        out: a run folder for checkpoint.npz, metrics.jsonl, summary.json and (with the
            `tensorboard` extra) TensorBoard's event files, or None to write nothing (only
            process 0 of a multi-process job writes it).
        splits: the host data (`mnist_jax.data.load(config)`); loaded from the config if None.
        placement: a device, or a replicated sharding over several (`runtime.placement`).
        resume: a checkpoint of this run to continue from.
        log: receives the data notes and one line per epoch.
        progress, should_stop: see `mnist_jax.training.loop.fit`.

    Returns:
        The Result: final params, optimiser state, per-epoch history and final metrics.

    Raises:
        Diverged: an epoch's loss turned non-finite or rose far above its start; it carries
            the epoch, the loss, the lr and a suggested smaller one, and `out` keeps the last
            finite checkpoint (`mnist_jax.training.divergence`).
    """
    with precision(config):
        splits = data.load(config, log) if splits is None else splits
        # Before any device array exists: a run that cannot fit ends here, in one line.
        estimate = memory.check_run(
            config, splits, local_device(placement or jax.local_devices()[0])
        )
        trainer = build(config, splits, placement)
        memory.check_compiled(estimate, trainer)  # before the parameters are drawn
        state = trainer.init_state()
        if resume is not None:
            state = restore_state(resume, state, trainer.placement)
        config = trainer.config  # with the sizes and pixel statistics read from the data
        # In a job of several processes, process 0 alone writes the run folder.
        writes = out is not None and jax.process_index() == 0
        folder = RunFolder(out, config, trainer.data.name, state.epoch) if writes else None
        try:
            state, history = loop.fit(
                trainer, state, log=log, progress=progress, should_stop=should_stop,
                on_epoch=None if folder is None else folder.record,
            )  # fmt: skip
            result = Result(
                config=config,
                params=jax.device_get(state.params),
                opt_state=jax.device_get(state.opt_state),
                history=history,
                metrics=loop.final_metrics(trainer, state.params),
                dataset=trainer.data.name,
                epochs=state.epoch,
                train_seconds=state.train_seconds,
                device=str(trainer.placement),
            )
            # A job of several processes would have to evaluate in all of them: no pictures.
            if folder is not None and folder.takes_images and jax.process_count() == 1:
                folder.write_images(state.epoch, end_images(trainer, state.params))
            if folder is not None:
                folder.write_summary(result.to_dict())
        finally:
            if folder is not None:
                folder.close()
    return result


def end_images(trainer: Trainer, params: Any) -> dict[str, np.ndarray]:
    """The pictures a run's trackers get once, at its end: {name: (H, W[, C]) uint8}.

    The test split's confusion matrix and most confident mistakes (`checks.pictures`); a run
    that distorts its training images adds "distorted_samples": each row a training image,
    then its copies as the run's first epochs distort them (`distort.samples`).
    """
    images = pictures.of_evaluation(evaluation.evaluate(trainer, params, "test"))
    if trainer.config.augment != "none" and len(trainer.data.image_shape) == 2:
        count = distort.SAMPLES[0]
        first = np.asarray(trainer.data.train.x[:count]).reshape(-1, *trainer.data.image_shape)
        rows = distort.samples(trainer.config, first)  # (count, 1 + copies, h, w)
        tiles = np.clip(np.rint(rows), 0, 255).astype(np.uint8).reshape(-1, *first.shape[1:])
        images["distorted_samples"] = pictures.grid(tiles, columns=rows.shape[1])
    return images


def evaluate(
    model_or_path: Result | str | Path,
    split: str = "test",
    *,
    data_dir: str | None = None,
    data_path: str | None = None,
    dataset: str | None = None,
    log: Log = print,
    placement: Placement | None = None,
    matmul_precision: str | None = None,
) -> evaluation.Evaluation:
    """Evaluate a trained Result, a checkpoint (file or run folder) or a committee folder
    (its figures, and each member's in `members`), on one split.

    `data_dir`, `data_path` and `dataset` read the data from elsewhere than the model's own
    source (`evaluation.with_data`); `placement` is where to evaluate (JAX's default device
    when None); `matmul_precision` replaces the model's config's when given
    (`mnist_jax.devices.backend`).

    Returns:
        An Evaluation: accuracy, loss, count, labels and probabilities (see `to_dict`).
    """
    if not isinstance(model_or_path, Result):
        return evaluation.evaluate_checkpoint(
            model_or_path, split, data_dir=data_dir, data_path=data_path, dataset=dataset,
            log=log, placement=placement, matmul_precision=matmul_precision,
        )[0]  # fmt: skip
    config = evaluation.with_data(
        model_or_path.config, data_dir, data_path, matmul_precision, dataset
    )
    return evaluation.evaluate_params(
        config, model_or_path.params, split, log=log, placement=placement
    )


def predict(model_or_path: Result | str | Path, images: np.ndarray) -> np.ndarray:
    """Class probabilities of MNIST-style images.

    Args:
        model_or_path: a Result, or a checkpoint file, run folder or committee folder.
        images: (N, 28, 28) or (N, 784) uint8, white digits on black as in MNIST.

    Returns:
        (N, 10) float64 probabilities.
    """
    from mnist_jax.records import committee
    from mnist_jax.serving.inference import load_predictor, make_predictor

    if isinstance(model_or_path, Result):
        return make_predictor(committee.of_run(model_or_path.config, model_or_path.params))(images)
    return load_predictor(model_or_path)(images)
