"""Train many models at once: one compiled program, `jax.vmap` over seeds and learning rates.

Every model of a sweep reads the same data split and the same shuffled batch order (both from
the config's seed); they differ in their initial parameters (drawn from their own seed, as
`mnist-jax train --seed S` draws them) and their learning rate. Sharing the batches lets XLA
turn K small matrix products into one K times wider product, which is where the speed-up over
K separate runs comes from on a CPU.

The learning rate is a traced value: the config's optimiser is built with lr = 1 (its
schedule's shape) and its updates are scaled by each model's lr, so one program serves them
all. The step, loss, epoch and evaluation are the trainer's own (`mnist_jax.train`).
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

from mnist_jax import data, train
from mnist_jax.config import Config
from mnist_jax.errors import ConfigError

Log = Callable[[str], None]


def scaled_optimizer(config: Config, num_train: int, lr: jax.Array) -> optax.GradientTransformation:
    """The config's optimiser with its learning rate replaced by `lr` (may be traced)."""
    return optax.chain(train.make_optimizer(config.replace(lr=1.0), num_train), optax.scale(lr))


def make_sweep_epoch(config: Config, num_train: int) -> Callable:
    """Return the jitted epoch of K models at once.

    Signature: sweep_epoch(params, opt_state, lrs, x, y, key, first, *, num_steps) ->
    (params, opt_state, loss_sums): params and opt_state carry a leading axis of K models,
    lrs is (K,), the data and `key` are shared (see `train.make_train_epoch`); loss_sums is
    (K,) or (K, num_steps) when full-batch. Params and optimiser state are donated.
    """
    loss_fn = train.make_loss(config, num_train)

    def sweep_epoch(params, opt_state, lrs, x, y, key, first, *, num_steps):
        def one(params, opt_state, lr):
            optimizer = scaled_optimizer(config, num_train, lr)
            epoch = train.make_train_epoch(config, train.make_step(config, loss_fn, optimizer))
            return epoch(params, opt_state, x, y, key, first, num_steps=num_steps)

        return jax.vmap(one)(params, opt_state, lrs)

    return jax.jit(sweep_epoch, static_argnames="num_steps", donate_argnums=(0, 1))


def init_models(
    config: Config, seeds: Sequence[int], num_train: int, device: jax.Device
) -> tuple[Any, Any]:
    """Stack the initial params and optimiser states of one model per seed (leading axis K)."""
    optimizer = scaled_optimizer(config, num_train, jnp.asarray(1.0, train.dtype_of(config)))
    states = [
        train.init_state(config, train.root_keys(config.replace(seed=s))["init"], optimizer, device)
        for s in seeds
    ]
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
) -> list[dict[str, Any]]:
    """Train one model per (seed, lr) pair at once; return one result row per model.

    Args:
        config: the recipe every model follows (its seed picks the data split and order).
        seeds: the models' init seeds.
        lrs: the models' (peak) learning rates.
        device: where to train; JAX's default device when None.
        log: receives one line per epoch.

    Returns:
        [{"seed", "lr", "train_loss", "val_accuracy", "val_loss", "test_accuracy",
        "test_loss"}], in the order of itertools.product(seeds, lrs).

    Raises:
        ConfigError: no models, or an optimiser the sweep cannot vectorise (L-BFGS).
    """
    if config.optimizer != "sgd":
        raise ConfigError("a sweep trains SGD models only; set optimizer = 'sgd'")
    models = list(itertools.product(seeds, lrs))
    if not models:
        raise ConfigError("a sweep needs at least one seed and one learning rate")
    with jax.enable_x64(config.dtype == "float64"):
        return _run_sweep(config, models, device or jax.devices()[0], log)


def _run_sweep(config, models, device, log) -> list[dict[str, Any]]:
    keys = train.root_keys(config)
    run = train.prepare_data(config, keys["data"], device, log)
    n = int(run.train.x.shape[0])
    params, opt_state = init_models(config, [s for s, _ in models], n, device)
    lrs = jax.device_put(np.asarray([lr for _, lr in models], train.dtype_of(config)), device)
    epoch = make_sweep_epoch(config, n)
    per_epoch = train.steps_per_epoch(config, n)
    fused = config.eval_every if config.full_batch else 1
    first = jax.device_put(np.int32(0), device)
    done, losses = 0, None
    while done < config.epochs:
        now = min(fused, config.epochs - done)
        epoch_key = jax.device_put(jax.random.fold_in(keys["shuffle"], done), device)
        started = time.perf_counter()
        params, opt_state, losses = epoch(
            params, opt_state, lrs, run.train.x, run.train.y, epoch_key, first,
            num_steps=now if config.full_batch else per_epoch,
        )  # fmt: skip
        losses = np.asarray(losses, np.float64)
        done += now
        mean = losses[:, -1] if config.full_batch else losses / per_epoch
        log(
            f"epoch {done}/{config.epochs}  {len(models)} models  loss {mean.min():.4f}.."
            f"{mean.max():.4f}  {time.perf_counter() - started:.2f} s"
        )
    evaluate = jax.jit(jax.vmap(train.make_evaluate(config), in_axes=(0, None)))
    rows = [
        {"seed": seed, "lr": lr, "train_loss": float(loss)}
        for (seed, lr), loss in zip(
            models, losses[:, -1] if config.full_batch else losses / per_epoch
        )
    ]
    for name, batches in (("val", run.validation), ("test", run.test)):
        if batches is None:
            continue
        loss_sum, correct, count = (np.asarray(a) for a in evaluate(params, batches))
        for r, l_sum, c, m in zip(rows, loss_sum, correct, count):
            r[f"{name}_accuracy"] = float(c / m)
            r[f"{name}_loss"] = float(l_sum / m)
    return rows


def bench_epoch(configs: Sequence[Config], x: np.ndarray, y: np.ndarray, device: jax.Device):
    """Compile one sweep epoch of `configs` (same recipe, own seeds and lrs) for the benchmark.

    Returns (compile_s, prepare, run): `prepare()` gives fresh stacked state, `run(state)`
    trains one epoch (or the full-batch iterations) and waits for it.
    """
    config, n = configs[0], len(x)
    params, opt_state = init_models(config, [c.seed for c in configs], n, device)
    lrs = jax.device_put(np.asarray([c.lr for c in configs], np.float32), device)
    split = train.to_device(x, y, device)
    key = jax.device_put(jax.random.fold_in(train.root_keys(config)["shuffle"], 0), device)
    first = jax.device_put(np.int32(0), device)
    steps = config.epochs if config.full_batch else train.steps_per_epoch(config, n)
    started = time.perf_counter()
    compiled = (
        make_sweep_epoch(config, n)
        .lower(params, opt_state, lrs, split.x, split.y, key, first, num_steps=steps)
        .compile()
    )
    compile_s = time.perf_counter() - started

    def prepare():
        return jax.tree_util.tree_map(jnp.copy, (params, opt_state))

    def run(state):
        jax.block_until_ready(compiled(*state, lrs, split.x, split.y, key, first))

    return compile_s, prepare, run


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Render the sweep's results, one line per model."""
    lines = ["seed  lr        train_loss  val_acc  test_acc"]
    for r in rows:
        val = f"{r['val_accuracy']:.2%}" if "val_accuracy" in r else "-"
        lines.append(
            f"{r['seed']:<5} {r['lr']:<9.4g} {r['train_loss']:<11.4f} {val:<8} "
            f"{r['test_accuracy']:.2%}"
        )
    return lines


def sweep_command(
    config: Config, seeds: Sequence[int], lrs: Sequence[float], json_path: Path | None, log: Log
) -> list[dict[str, Any]]:
    """What `mnist-jax sweep` does: train, print one row per model, optionally write JSON."""
    rows = run_sweep(config, seeds, lrs, log=log)
    print("\n".join(format_rows(rows)))
    if json_path is not None:
        data.atomic_write_json(json_path, rows)
    return rows
