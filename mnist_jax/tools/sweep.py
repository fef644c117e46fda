"""Train many models at once: one compiled program, `jax.vmap` over seeds and learning rates.

Every model of a sweep reads the same data split (drawn by the config's `split_seed`) and the
same shuffled batch order (from the config's seed); they differ in their initial parameters
(drawn from their own seed, as `mnist-jax train --seed S` draws them) and their learning rate.
Sharing the batches lets XLA turn K small matrix products into one K times wider product, which
is where the speed-up over K separate runs comes from on a CPU.

The learning rate is a traced value: the config's optimiser is built with lr = 1 (its
schedule's shape) and its updates are scaled by each model's lr, so one program serves them
all. The data, loss, initial states and evaluation are the builder's (`mnist_jax.training.trainer`).

Given an `out` folder, each model gets a folder of its own, `out/seed<S>-lr<LR>`, with the
records a run folder gets (`mnist_jax.records.rundir.open_writers`: metrics.jsonl, summary.json,
TensorBoard's event files), so that `tensorboard --logdir out` shows the models side by side.
There is no checkpoint: a sweep is for choosing a recipe, and `train` makes the model.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax import data
from mnist_jax.config import Config
from mnist_jax.data import Splits
from mnist_jax.devices import distributed
from mnist_jax.errors import ConfigError
from mnist_jax.keys import root_keys
from mnist_jax.records import rundir
from mnist_jax.training import distort, divergence, memory, optim, step
from mnist_jax.training.trainer import Trainer, build, precision

Log = Callable[[str], None]


def scaled_optimizer(config: Config, num_train: int, lr: Any) -> optax.GradientTransformation:
    """The config's optimiser with its learning rate replaced by `lr` (may be traced)."""
    return optax.chain(optim.make_optimizer(config.replace(lr=1.0), num_train), optax.scale(lr))


def sweep_trainer(config: Config, splits: Splits, placement: Any = None) -> Trainer:
    """The builder's Trainer for a sweep: its optimiser state fits `scaled_optimizer`'s."""
    optimizer = scaled_optimizer(config, len(splits.train.x), 1.0)
    return build(config, splits, placement, optimizer=optimizer)


def make_sweep_epoch(trainer: Trainer) -> Callable:
    """Return the jitted epoch of K models at once.

    Signature: sweep_epoch(params, opt_state, lrs, x, y, key, first, *, num_steps) ->
    (params, opt_state, loss_sums): params and opt_state carry a leading axis of K models,
    lrs is (K,), the data and `key` are shared (see `step.make_train_epoch`); loss_sums is
    (K,) or (K, num_steps) when full-batch. Params and optimiser state are donated.
    """
    config, num_train, loss_fn = trainer.config, trainer.num_train, trainer.loss_fn
    # every model sees the same distorted batches, as it sees the same batch order
    distorter = distort.batch_distorter(config, trainer.data.image_shape)

    def sweep_epoch(params, opt_state, lrs, x, y, key, first, *, num_steps):
        def one(params, opt_state, lr):
            optimizer = scaled_optimizer(config, num_train, lr)
            one_step = step.make_step(config, loss_fn, optimizer, trainer.policy)
            epoch = step.make_train_epoch(config, one_step, distort=distorter)
            return epoch(params, opt_state, x, y, key, first, num_steps=num_steps)

        return jax.vmap(one)(params, opt_state, lrs)

    return jax.jit(sweep_epoch, static_argnames="num_steps", donate_argnums=(0, 1))


def init_models(trainer: Trainer, seeds: Sequence[int]) -> tuple[Any, Any]:
    """Stack the initial params and optimiser states of one model per seed (leading axis K)."""
    states = [trainer.init_state(root_keys(s).init) for s in seeds]
    return jax.tree_util.tree_map(
        lambda *leaves: jnp.stack(leaves), *[(s.params, s.opt_state) for s in states]
    )


def run_sweep(
    config: Config,
    seeds: Sequence[int],
    lrs: Sequence[float],
    *,
    device: jax.Device | None = None,
    log: Log = print,
    out: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train one model per (seed, lr) pair at once; return one result row per model.

    Args:
        config: the recipe every model follows (its seed picks the data split and order).
        seeds: the models' init seeds.
        lrs: the models' (peak) learning rates.
        device: where to train; JAX's default device when None.
        log: receives one line per epoch.
        out: a folder for one sub-folder of records per model (`model_folder`); None
            writes nothing.

    Returns:
        [{"seed", "lr", "train_loss", "val_accuracy", "val_loss", "test_accuracy",
        "test_loss"}], in the order of itertools.product(seeds, lrs).

    Raises:
        ConfigError: no models, or an optimiser the sweep cannot vectorise (L-BFGS).
    """
    models = grid(config, seeds, lrs)
    with precision(config):
        return _run_sweep(config, models, device, log, out)


def grid(config: Config, seeds: Sequence[int], lrs: Sequence[float]) -> list[tuple[int, float]]:
    """The sweep's (seed, lr) models in table order.

    Raises:
        ConfigError: no models, or an optimiser the sweep cannot vectorise (L-BFGS).
    """
    if config.optimizer == "lbfgs":
        raise ConfigError("a sweep trains SGD models only (sgd, momentum or nesterov), not lbfgs")
    models = list(itertools.product(seeds, lrs))
    if not models:
        raise ConfigError("a sweep needs at least one seed and one learning rate")
    if len({model_folder(seed, lr) for seed, lr in models}) < len(models):
        raise ConfigError("a sweep's seeds and learning rates must each be distinct")
    return models


def model_folder(seed: int, lr: float) -> str:
    """The name of one model's folder under a sweep's `out`: "seed0-lr0.1"."""
    return f"seed{seed}-lr{lr:g}"


RESULTS = ("train_loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "diverged_epoch")


def sweep_command(
    config: Config,
    seeds: Sequence[int],
    lrs: Sequence[float],
    cluster: distributed.Cluster | None = None,
    *,
    device: str = "auto",
    devices: int | None = None,
    log: Log = print,
    out: Path | None = None,
) -> list[dict[str, Any]] | None:
    """What `mnist-jax sweep` does: the rows of `run_sweep`, shared among a job's processes.

    In one process the models train on `--device`/`--devices` (`runtime.placement`, resolved
    after joining the job). In a job of several processes each trains its contiguous share
    of the models (with `vmap` on its own device) and process 0 gathers the rows; it returns
    them, the others None. With `out`, each process writes its own models' folders.
    """
    from mnist_jax.devices import runtime

    distributed.join(cluster or distributed.Cluster())
    if jax.process_count() == 1:
        placed = runtime.placement(device, devices)
        return run_sweep(config, seeds, lrs, device=placed, log=log, out=out)
    models = grid(config, seeds, lrs)
    ours = [models[i] for i in distributed.share(len(models))]
    rows = []
    if ours:
        with precision(config):
            rows = _run_sweep(config, ours, jax.local_devices()[0], log, out)
    table = np.array([[r.get(k, np.nan) for k in RESULTS] for r in rows], np.float64)
    table = distributed.gather_rows(table.reshape(len(rows), len(RESULTS)), len(models))
    if not distributed.is_lead():
        return None
    rows = [
        {"seed": seed, "lr": lr, **{k: float(v) for k, v in zip(RESULTS, values) if v == v}}
        for (seed, lr), values in zip(models, table)
    ]
    for row in rows:
        if "diverged_epoch" in row:
            row["diverged_epoch"] = int(row["diverged_epoch"])
    return rows


def _run_sweep(config, models, placement, log, out=None) -> list[dict[str, Any]]:
    splits = data.load(config, log)
    memory.check_run(config, splits, placement or jax.devices()[0], models=len(models))
    trainer = sweep_trainer(config, splits, placement)
    params, opt_state = init_models(trainer, [s for s, _ in models])
    lrs = trainer.put(np.asarray([lr for _, lr in models], step.dtype_of(config)))
    epoch = make_sweep_epoch(trainer)
    per_epoch = trainer.steps_per_epoch
    fused = config.eval_every if config.full_batch else 1
    first = trainer.put(np.int32(0))
    train = trainer.data.train
    watch = Watch(divergence.blank_loss(config.output, trainer.config.num_classes), len(models))
    records = Records(trainer.config, models, out, trainer.num_train)
    done, mean = 0, None
    while done < config.epochs:
        now = min(fused, config.epochs - done)
        started = time.perf_counter()
        params, opt_state, losses = epoch(
            params, opt_state, lrs, train.x, train.y, trainer.epoch_key(done), first,
            num_steps=now if config.full_batch else per_epoch,
        )  # fmt: skip
        # (K, epochs in this call): full-batch calls fuse several epochs of one step each
        losses = np.asarray(losses, np.float64)
        epochs = losses if config.full_batch else losses[:, None] / per_epoch
        seconds = time.perf_counter() - started
        for column in epochs.T:
            done += 1
            watch.epoch(done, column)
            records.epoch(done, column, seconds / now, watch)
        mean = epochs[:, -1]
        log(f"epoch {done}/{config.epochs}  {watch.describe(mean)}  {seconds:.2f} s")
    evaluate = jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, None)))
    rows = [
        {"seed": seed, "lr": lr, "train_loss": float(loss)}
        for (seed, lr), loss in zip(models, mean)
    ]
    for name, batches in (("val", trainer.data.validation), ("test", trainer.data.test)):
        if batches is None:
            continue
        loss_sum, correct, count = (np.asarray(a) for a in evaluate(params, batches))
        for r, l_sum, c, m in zip(rows, loss_sum, correct, count):
            r[f"{name}_accuracy"] = float(c / m)
            r[f"{name}_loss"] = float(l_sum / m)
    rows = [watch.mark(i, row) for i, row in enumerate(rows)]
    records.finish(rows, done)
    return rows


class Records:
    """Each model's records, handed to the writers of its own folder (none without `out`)."""

    def __init__(
        self, config: Config, models: Sequence[tuple[int, float]], out: Path | None, num_train: int
    ):
        # every model trained on the split the sweep's config draws: its folder says which,
        # so `eval` of one model rebuilds the images it held out, not those of its own seed
        self.configs = [
            config.replace(seed=seed, lr=lr, data_seed=config.split_seed) for seed, lr in models
        ]
        self.writers = [] if out is None else [
            rundir.open_writers(Path(out) / model_folder(seed, lr)) for seed, lr in models
        ]  # fmt: skip
        # every model's lr per epoch: the schedule's shape times its own peak
        shape = optim.epoch_lrs(config.replace(lr=1.0), num_train)
        self.lrs = None if shape is None else np.outer([lr for _, lr in models], shape)

    def epoch(self, number: int, losses: np.ndarray, seconds: float, watch: Watch) -> None:
        """Write epoch `number`'s mean training losses (K,); a diverged model's stop there."""
        for i, writers in enumerate(self.writers):
            if watch.at[i] and watch.at[i] < number:
                continue
            scalars = {"train_loss": float(losses[i])}
            if self.lrs is not None:
                scalars["lr"] = float(self.lrs[i, number - 1])
            writers.write_scalars(number, {**scalars, "seconds": seconds})
            writers.flush()

    def finish(self, rows: list[dict[str, Any]], epochs: int) -> None:
        """Write each model's summary (its row, named as a run's summary is) and close."""
        for writers, row, config in zip(self.writers, rows, self.configs):
            final = {k.replace("val_", "validation_"): v for k, v in row.items()}
            writers.write_summary({**final, "epochs": epochs, "config": config.to_dict()})
            writers.close()


class Watch:
    """Which models of a sweep diverged, at which epoch and loss (`training.divergence`)."""

    def __init__(self, blank: float, count: int):
        self.blank, self.first = blank, None
        self.at = np.zeros(count, np.int64)  # the epoch each model diverged at; 0: it has not
        self.loss = np.full(count, np.nan)

    def epoch(self, number: int, loss: np.ndarray) -> None:
        """Take the models' mean training losses (K,) of epoch `number`."""
        new = divergence.diverged(loss, self.first, self.blank) & (self.at == 0)
        self.at[new], self.loss[new] = number, loss[new]
        self.first = loss if self.first is None else self.first

    def describe(self, loss: np.ndarray) -> str:
        """The epoch's log: the loss range of the models still training, and how many diverged."""
        alive = loss[self.at == 0]
        text = f"{len(loss)} models"
        if len(alive):
            text += f"  loss {alive.min():.4f}..{alive.max():.4f}"
        gone = int((self.at > 0).sum())
        return f"{text}  {gone} diverged" if gone else text

    def mark(self, i: int, row: dict[str, Any]) -> dict[str, Any]:
        """Model i's row, or for a diverged model its seed, lr, epoch and loss only."""
        if not self.at[i]:
            return row
        marked = {"seed": row["seed"], "lr": row["lr"], "diverged_epoch": int(self.at[i])}
        if np.isfinite(self.loss[i]):  # JSON has no nan
            marked["train_loss"] = float(self.loss[i])
        return marked


def bench_epoch(configs: Sequence[Config], splits: Splits, device: jax.Device):
    """Compile one sweep epoch of `configs` (same recipe, own seeds and lrs) for the benchmark.

    Returns (compile_s, prepare, run): `prepare()` gives fresh stacked state, `run(state)`
    trains one epoch (or the full-batch iterations) and waits for it.
    """
    config = configs[0]
    trainer = sweep_trainer(config, splits, device)
    params, opt_state = init_models(trainer, [c.seed for c in configs])
    lrs = trainer.put(np.asarray([c.lr for c in configs], np.float32))
    train, key, first = trainer.data.train, trainer.epoch_key(0), trainer.put(np.int32(0))
    steps = config.epochs if config.full_batch else trainer.steps_per_epoch
    started = time.perf_counter()
    compiled = (
        make_sweep_epoch(trainer)
        .lower(params, opt_state, lrs, train.x, train.y, key, first, num_steps=steps)
        .compile()
    )
    compile_s = time.perf_counter() - started

    def prepare():
        return jax.tree_util.tree_map(jnp.copy, (params, opt_state))

    def run(state):
        jax.block_until_ready(compiled(*state, lrs, train.x, train.y, key, first))

    return compile_s, prepare, run


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Render the sweep's results, one line per model."""
    lines = ["seed  lr        train_loss  val_acc  test_acc"]
    for r in rows:
        if "diverged_epoch" in r:
            loss = f"loss {r['train_loss']:.4g}" if "train_loss" in r else "loss not finite"
            lines.append(
                f"{r['seed']:<5} {r['lr']:<9.4g} diverged at epoch {r['diverged_epoch']} ({loss})"
            )
            continue
        val = f"{r['val_accuracy']:.2%}" if "val_accuracy" in r else "-"
        lines.append(
            f"{r['seed']:<5} {r['lr']:<9.4g} {r['train_loss']:<11.4f} {val:<8} "
            f"{r['test_accuracy']:.2%}"
        )
    return lines
