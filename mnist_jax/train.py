"""Training and evaluation: the jitted step and epoch, batched evaluation, and the whole run.

Data flows one way: a `Config` picks the data (`mnist_jax.data`), the model
(`mnist_jax.model`) and the optimiser (optax); `train_and_evaluate` trains, writing a
checkpoint each epoch, `metrics.jsonl` and `summary.json` into the run folder.

Performance shape: the dataset lives on the device as uint8 and is passed to the jitted
functions as an argument (never closed over); an epoch is one jitted call that draws one
permutation and runs a `lax.scan` over its contiguous batches, gathering each in the loop
(split into a few calls only to drive a progress bar); params and optimiser state are
donated; evaluation runs on padded, masked batches of one fixed shape, so nothing compiles
again after the first epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax import checkpoint, data, model
from mnist_jax.config import Config
from mnist_jax.errors import Interrupted, MnistJaxError

Log = Callable[[str], None]
Progress = Callable[[int, int], None]  # (steps done this epoch, steps per epoch)
PROGRESS_SEGMENTS = 10


class Split(NamedTuple):
    """One split on the device: images (N, 784) uint8 and labels (N,) int32."""

    x: jax.Array
    y: jax.Array


class EvalBatches(NamedTuple):
    """A split padded to whole batches: x (B, size, 784) uint8, y and mask (B, size)."""

    x: jax.Array
    y: jax.Array
    mask: jax.Array


class RunData(NamedTuple):
    """Everything a run reads, already on the device."""

    name: str  # dataset name recorded in the outputs
    train: Split
    validation: EvalBatches | None
    test: EvalBatches
    train_eval: EvalBatches  # the training split again, batched for evaluation


# ----------------------------------------------------------------------------- data


def load_dataset(config: Config, log: Log = print) -> data.Dataset:
    """Read the raw dataset the config names (full MNIST, the sample, or a file format)."""
    if config.dataset == "sample":
        return data.load_sample()
    if config.dataset == "mnist":
        return data.load_mnist(config.data_dir, log=log)
    from mnist_jax import formats  # the CSV and .mat readers

    return formats.load(config)


def split_host_data(
    config: Config, dataset: data.Dataset, key: jax.Array
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Apply the config's subsets and validation split, chosen by `key`, on the host.

    Returns:
        {"train": (images, labels), "validation": ..., "test": ...}; images (N, 28, 28) uint8.
    """
    subset_key, split_key, test_key = jax.random.split(key, 3)
    train_x, train_y = dataset.train_images, dataset.train_labels
    test_x, test_y = dataset.test_images, dataset.test_labels
    if config.train_size is not None:
        train_x, train_y = _subset(train_x, train_y, config.train_size, subset_key, "train_size")
    if config.test_size is not None:
        test_x, test_y = _subset(test_x, test_y, config.test_size, test_key, "test_size")
    val_size = len(train_x) // 12 if config.validation_size is None else config.validation_size
    order = np.asarray(jax.random.permutation(split_key, len(train_x)))
    train_x, train_y, val_x, val_y = data.split_train(train_x, train_y, val_size, order)
    return {"train": (train_x, train_y), "validation": (val_x, val_y), "test": (test_x, test_y)}


def _subset(x: np.ndarray, y: np.ndarray, size: int, key: jax.Array, name: str):
    if size > len(x):
        raise MnistJaxError(f"{name} {size} is larger than the {len(x)} images available")
    keep = np.sort(np.asarray(jax.random.permutation(key, len(x)))[:size])
    return x[keep], y[keep]


def to_device(x: np.ndarray, y: np.ndarray, device: jax.Device) -> Split:
    """Put a split on `device`: images flattened to (N, 784) uint8, labels int32."""
    return Split(
        jax.device_put(x.reshape(len(x), -1), device),
        jax.device_put(y.astype(np.int32), device),
    )


def eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int, device: jax.Device) -> EvalBatches:
    """Pad a split to whole batches of `batch_size` (the last one masked) on `device`."""
    n = len(x)
    size = max(1, min(batch_size, n))
    count = max(1, math.ceil(n / size))
    pad = count * size - n
    xs = np.concatenate([x.reshape(n, -1), np.zeros((pad, 784), np.uint8)])
    ys = np.concatenate([y.astype(np.int32), np.zeros(pad, np.int32)])
    mask = np.arange(count * size) < n
    return EvalBatches(
        *(jax.device_put(a.reshape(count, size, *a.shape[1:]), device) for a in (xs, ys, mask))
    )


def prepare_data(config: Config, key: jax.Array, device: jax.Device, log: Log = print) -> RunData:
    """Load, split and move the config's data to `device`."""
    dataset = load_dataset(config, log)
    splits = split_host_data(config, dataset, key)
    if not config.full_batch and config.batch_size > len(splits["train"][0]):
        raise MnistJaxError(
            f"batch_size {config.batch_size} is larger than the "
            f"{len(splits['train'][0])} training images"
        )
    val = splits["validation"]
    return RunData(
        name=dataset.name,
        train=to_device(*splits["train"], device),
        validation=eval_batches(*val, config.eval_batch_size, device) if len(val[0]) else None,
        test=eval_batches(*splits["test"], config.eval_batch_size, device),
        train_eval=eval_batches(*splits["train"], config.eval_batch_size, device),
    )


# ----------------------------------------------------------------------------- the math


def dtype_of(config: Config) -> jnp.dtype:
    """Return the floating type the config trains in."""
    return jnp.float64 if config.dtype == "float64" else jnp.float32


def scale_inputs(x: jax.Array, config: Config) -> jax.Array:
    """Turn uint8 pixels (..., 784) into floats times `config.input_scale`, inside jit."""
    dtype = dtype_of(config)
    return x.astype(dtype) * jnp.asarray(config.input_scale, dtype)


def make_loss(config: Config, num_train: int) -> Callable[..., jax.Array]:
    """Return loss(params, x_uint8 (batch, 784), y (batch,)) -> scalar for this config."""

    def loss_fn(params: model.Params, x: jax.Array, y: jax.Array) -> jax.Array:
        return model.loss(
            params,
            scale_inputs(x, config),
            y,
            activation=config.activation,
            output=config.output,
            l2=config.l2,
            num_train=num_train,
        )

    return loss_fn


def steps_per_epoch(config: Config, num_train: int) -> int:
    """Optimiser steps in one epoch: whole batches only (the partial batch is dropped)."""
    return 1 if config.full_batch else num_train // config.batch_size


def make_optimizer(config: Config, num_train: int) -> optax.GradientTransformation:
    """Build the config's optax optimiser, with its learning-rate schedule."""
    if config.optimizer == "lbfgs":
        return make_lbfgs()
    per_epoch = steps_per_epoch(config, num_train)
    total = config.epochs * per_epoch
    lr: float | optax.Schedule = config.lr
    if config.schedule == "cosine":
        warmup = int(config.warmup_epochs * per_epoch)
        lr = optax.warmup_cosine_decay_schedule(
            init_value=0.0 if warmup else config.lr,
            peak_value=config.lr,
            warmup_steps=warmup,
            decay_steps=max(total, warmup + 1),
            end_value=0.0,
        )
    return optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov)


LBFGS_MEMORY = 10  # past (step, gradient change) pairs, as in SciPy's L-BFGS-B default
LBFGS_LINESEARCH_STEPS = 20  # zoom iterations allowed per step before taking the best so far


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


def make_step(
    config: Config, loss_fn: Callable[..., jax.Array], optimizer: optax.GradientTransformation
) -> Callable:
    """Return step(params, opt_state, x, y) -> (params, opt_state, loss): one update.

    For SGD: value_and_grad, the optax update and apply_updates. For L-BFGS, the line
    search re-evaluates the loss, and the state carries the last value and gradient.
    """
    if config.optimizer == "lbfgs":

        def lbfgs_step(params, opt_state, x, y):
            value_fn = partial(loss_fn, x=x, y=y)
            value, grad = optax.value_and_grad_from_state(value_fn)(params, state=opt_state)
            updates, opt_state = optimizer.update(
                grad, opt_state, params, value=value, grad=grad, value_fn=value_fn
            )
            return optax.apply_updates(params, updates), opt_state, value

        return lbfgs_step

    value_and_grad = chunked_value_and_grad(loss_fn) if config.full_batch else None

    def sgd_step(params, opt_state, x, y):
        if value_and_grad is None:
            value, grad = jax.value_and_grad(loss_fn)(params, x, y)
        else:
            value, grad = value_and_grad(params, x, y)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return sgd_step


FULL_BATCH_CHUNK = 1024  # rows converted from uint8 at a time: (1024, 784) float32 is 3 MB


def chunked_value_and_grad(loss_fn: Callable[..., jax.Array], chunk: int = 0) -> Callable:
    """Return value_and_grad of `loss_fn` over a large batch, taken `chunk` rows at a time.

    The mean loss over n rows is the sum over chunks of (rows in chunk / n) * chunk mean; the
    L2 term, added to every chunk's loss, comes out once since the weights sum to 1. Working
    chunk by chunk converts the uint8 images to floats in pieces that stay in cache, instead
    of writing and re-reading a float copy of the whole set (four times its bytes).
    """
    chunk = chunk or FULL_BATCH_CHUNK
    value_and_grad = jax.value_and_grad(loss_fn)

    def weighted(params, x, y, n):
        value, grad = value_and_grad(params, x, y)
        scale = x.shape[0] / n
        return jax.tree_util.tree_map(lambda a: a * jnp.asarray(scale, a.dtype), (value, grad))

    def chunked(params, x, y):
        n = x.shape[0]
        count = n // (2 * chunk)
        if count < 1:
            return value_and_grad(params, x, y)
        head = count * 2 * chunk

        def body(total, xy):
            # Two chunks per step: independent work that XLA's CPU runtime can overlap on
            # two cores (~10% faster than one chunk per step).
            xs, ys = xy
            first, second = weighted(params, xs[0], ys[0], n), weighted(params, xs[1], ys[1], n)
            return jax.tree_util.tree_map(lambda t, a, b: t + a + b, total, first, second), None

        shapes = jax.eval_shape(value_and_grad, params, x[:chunk], y[:chunk])
        zero = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        xs = x[:head].reshape(count, 2, chunk, *x.shape[1:])  # (pairs, 2, chunk, 784)
        total, _ = jax.lax.scan(body, zero, (xs, y[:head].reshape(count, 2, chunk)))
        if head < n:
            rest = weighted(params, x[head:], y[head:], n)
            total = jax.tree_util.tree_map(jnp.add, total, rest)
        return total

    return chunked


def make_train_epoch(
    config: Config, step: Callable, sharding: jax.sharding.Sharding | None = None
) -> Callable:
    """Return the jitted training call for (part of) one epoch.

    Signature: train_epoch(params, opt_state, x, y, key, first, *, num_steps) ->
    (params, opt_state, loss_sum), with x (N, 784) uint8 and y (N,) int32 the whole training
    split on the device, `key` the epoch's shuffle key and `first` (a device int32) the
    index of the first batch to run. It draws one permutation of the split, then scans
    `num_steps` contiguous batches of it, gathering each batch inside the loop. With
    batch_size = "full" each of the `num_steps` iterations sees the whole split, unshuffled.
    Params and optimiser state are donated.
    With `sharding` (a replicated `NamedSharding` over a mesh with a "data" axis; see
    `runtime.placement`) each batch is split across the mesh's devices, params replicated.
    """
    split = partial(_split_batch, sharding)

    def train_epoch(params, opt_state, x, y, key, first, *, num_steps):
        if config.full_batch:

            def full_body(carry, _):
                params, opt_state, value = step(*carry, split(x, 0), split(y, 0))
                return (params, opt_state), value

            (params, opt_state), values = jax.lax.scan(
                full_body, (params, opt_state), None, length=num_steps
            )
            return params, opt_state, values

        batch = config.batch_size
        order = jax.random.permutation(key, x.shape[0])
        take = jax.lax.dynamic_slice_in_dim(order, first * batch, num_steps * batch)
        take = take.reshape(num_steps, batch)  # (steps, batch) image indices

        def body(carry, idx):
            # Gathering each batch inside the loop keeps it in cache; gathering the whole
            # epoch first writes and re-reads a shuffled copy of the set (~15% slower).
            params, opt_state, value = step(*carry, split(x[idx], 0), split(y[idx], 0))
            return (params, opt_state), value

        (params, opt_state), values = jax.lax.scan(body, (params, opt_state), take)
        return params, opt_state, jnp.sum(values)

    return jax.jit(train_epoch, static_argnames="num_steps", donate_argnums=(0, 1))


def _split_batch(sharding: jax.sharding.Sharding | None, a: jax.Array, axis: int) -> jax.Array:
    """Constrain `a` to be split along `axis` over the "data" axis of `sharding`'s mesh."""
    if not isinstance(sharding, jax.sharding.NamedSharding) or sharding.mesh.size == 1:
        return a
    spec = [None] * a.ndim
    spec[axis] = "data"
    return jax.lax.with_sharding_constraint(
        a, jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
    )


def make_evaluate(config: Config) -> Callable:
    """Return evaluate(params, batches: EvalBatches) -> (loss_sum, correct, count).

    The loss is the data loss without the L2 term, summed over the unmasked examples.
    """
    per_example = model.LOSSES[config.output]

    def evaluate(params, batches: EvalBatches):
        def body(totals, batch):
            x, y, mask = batch
            logits = model.forward(params, scale_inputs(x, config), config.activation)
            losses = jnp.where(mask, per_example(logits, y), 0.0)
            correct = jnp.sum(mask & (jnp.argmax(logits, axis=-1) == y), dtype=jnp.int32)
            return (totals[0] + jnp.sum(losses), totals[1] + correct), None

        zero = (jnp.zeros((), dtype_of(config)), jnp.zeros((), jnp.int32))
        (loss_sum, correct), _ = jax.lax.scan(body, zero, batches)
        return loss_sum, correct, jnp.sum(batches.mask)

    return jax.jit(evaluate)


def metrics_of(totals: tuple[jax.Array, jax.Array, jax.Array]) -> dict[str, float]:
    """Turn device totals (loss_sum, correct, count) into Python {"loss", "accuracy"}."""
    loss_sum, correct, count = (float(t) for t in jax.device_get(totals))
    return {"loss": loss_sum / count, "accuracy": correct / count}


# ----------------------------------------------------------------------------- the run


@dataclasses.dataclass
class RunState:
    """The mutable bookkeeping of a run: where training stands and what it produced."""

    params: Any
    opt_state: Any
    epoch: int = 0  # epochs completed
    train_seconds: float = 0.0


def init_state(config: Config, init_key: jax.Array, optimizer, device: jax.Device) -> RunState:
    """Draw the config's initial parameters on `device` and the optimiser's state."""
    first_device = (
        device if isinstance(device, jax.Device) else min(device.device_set, key=lambda d: d.id)
    )
    with jax.default_device(first_device):
        params = model.init_params(
            init_key,
            checkpoint.layer_sizes(config),
            init=config.init,
            bias_init=config.bias_init,
            low=config.init_low,
            high=config.init_high,
            std=config.init_std,
            dtype=dtype_of(config),
        )
        # L-BFGS's state holds the same array in several leaves (the initial params, value and
        # gradient slots); the epoch donates every leaf, and one buffer cannot be donated twice.
        opt_state = jax.tree_util.tree_map(jnp.copy, optimizer.init(params))
        # Committed to `device` like the jitted outputs, so the second epoch does not compile
        # again for a different placement.
        return RunState(*jax.device_put((params, opt_state), device))


def root_keys(config: Config) -> dict[str, jax.Array]:
    """Split the config's seed into one key per purpose: init, data split, shuffling."""
    init_key, data_key, shuffle_key = jax.random.split(jax.random.key(config.seed), 3)
    return {"init": init_key, "data": data_key, "shuffle": shuffle_key}


def segments(total: int, parts: int) -> list[tuple[int, int]]:
    """Cut `total` steps into at most `parts` runs of equal length plus one remainder.

    Returns (first, length) pairs; at most two distinct lengths, so at most two compiles.
    """
    size = math.ceil(total / max(1, parts))
    return [(first, min(size, total - first)) for first in range(0, total, size)]


def train_and_evaluate(
    config: Config,
    out_dir: str | Path | None,
    *,
    device: jax.Device | None = None,
    log: Log = print,
    progress: Progress | None = None,
    resume: checkpoint.Checkpoint | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train the config's model, evaluating each epoch; write the run's files to `out_dir`.

    Args:
        config: the resolved config.
        out_dir: the run folder (checkpoint.npz, metrics.jsonl, summary.json), or None to
            write nothing.
        device: where to train: a device, or a replicated sharding over several devices for
            data parallelism (`runtime.placement`); JAX's default device when None.
        log: receives one line per epoch and the final results.
        progress: called with (steps done, steps per epoch) as an epoch advances; when given,
            each epoch is split into a few jitted calls so the callback can fire.
        resume: a checkpoint of this run to continue from.
        should_stop: polled between the jitted calls; when it returns True the run stops,
            raising `Interrupted`, with the last *completed* epoch checkpointed (a partly
            trained epoch is dropped, never saved as done).

    Returns:
        The summary: test/validation/train accuracy and loss, epochs, seconds, dataset, config.
    """
    with jax.enable_x64(config.dtype == "float64"):
        return _train_and_evaluate(config, out_dir, device, log, progress, resume, should_stop)


def _train_and_evaluate(
    config, out_dir, device, log, progress, resume, should_stop
) -> dict[str, Any]:
    stop = should_stop or (lambda: False)
    device = device or jax.devices()[0]
    keys = root_keys(config)
    run = prepare_data(config, keys["data"], device, log)
    num_train = int(run.train.x.shape[0])
    optimizer = make_optimizer(config, num_train)
    loss_fn = make_loss(config, num_train)
    train_epoch = make_train_epoch(config, make_step(config, loss_fn, optimizer), device)
    evaluate = make_evaluate(config)
    state = init_state(config, keys["init"], optimizer, device)
    if resume is not None:
        state = restore_state(resume, state, device)

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(out / "metrics.jsonl", state.epoch)
    per_epoch = steps_per_epoch(config, num_train)
    examples_per_epoch = num_train if config.full_batch else per_epoch * config.batch_size
    # Full-batch runs fuse `eval_every` iterations into one call; SGD runs one epoch per call
    # (a few calls when a progress bar is drawn).
    fused = config.eval_every if config.full_batch else 1
    parts = PROGRESS_SEGMENTS if progress is not None and not config.full_batch else 1
    starts = {
        first: jax.device_put(np.int32(first), device) for first, _ in segments(per_epoch, parts)
    }

    while state.epoch < config.epochs:
        epochs_now = min(fused, config.epochs - state.epoch)
        # The epoch index goes over explicitly: no implicit host-to-device copy per epoch.
        epoch_index = jax.device_put(np.uint32(state.epoch))
        epoch_key = jax.device_put(jax.random.fold_in(keys["shuffle"], epoch_index), device)
        started = time.perf_counter()
        loss_parts = []
        for first, length in segments(per_epoch, parts) if fused == 1 else [(0, epochs_now)]:
            state.params, state.opt_state, loss_sum = train_epoch(
                state.params, state.opt_state, run.train.x, run.train.y, epoch_key,
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
        records = _epoch_records(config, state.epoch, losses, per_epoch, epochs_now)
        state.epoch += epochs_now
        if not math.isfinite(records[-1]["train_loss"]) or not _all_finite(state.params):
            raise MnistJaxError(
                f"training diverged at epoch {state.epoch} (loss or parameters not finite); "
                f"try a smaller learning rate than {config.lr}"
            )
        last = records[-1]
        evaluate_now = state.epoch % config.eval_every == 0 or state.epoch == config.epochs
        if evaluate_now and run.validation is not None:
            val = metrics_of(evaluate(state.params, run.validation))
            last.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        last.update(seconds=seconds, examples_per_second=examples_per_epoch * epochs_now / seconds)
        log(format_epoch(last, config.epochs))
        if out is not None:
            _append_metrics(out / "metrics.jsonl", records)
            save_state(out, state, config, run.name)
        if state.epoch < config.epochs and stop():
            raise Interrupted(f"stopped after epoch {state.epoch} of {config.epochs}")

    summary = {
        "dataset": run.name,
        "epochs": state.epoch,
        "train_seconds": state.train_seconds,
        "device": str(device),
        "num_params": model.count_params(state.params),
    }
    for name, batches in (
        ("test", run.test),
        ("validation", run.validation),
        ("train", run.train_eval),
    ):
        if batches is not None:
            result = metrics_of(evaluate(state.params, batches))
            summary[f"{name}_accuracy"] = result["accuracy"]
            summary[f"{name}_loss"] = result["loss"]
    summary["config"] = config.to_dict()
    log(
        f"test accuracy {summary['test_accuracy']:.2%}  test loss {summary['test_loss']:.4f}  "
        f"({run.name}, {state.train_seconds:.1f} s training)"
    )
    if out is not None:
        data.atomic_write_json(out / "summary.json", summary)
    return summary


def _epoch_records(config, epoch, losses, per_epoch, epochs_now) -> list[dict[str, Any]]:
    """One metrics record per epoch in this call (full-batch calls fuse several)."""
    if epochs_now == 1 and not config.full_batch:
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


def save_state(out: Path, state: RunState, config: Config, dataset_name: str) -> None:
    """Write the run's checkpoint (params, optimiser state, epochs done) atomically."""
    checkpoint.save(
        out,
        jax.device_get(state.params),
        jax.device_get(jax.tree_util.tree_leaves(state.opt_state)),
        config,
        state.epoch,
        dataset=dataset_name,
        train_seconds=state.train_seconds,
    )


def restore_state(ckpt: checkpoint.Checkpoint, fresh: RunState, device: jax.Device) -> RunState:
    """Fill a freshly initialised state with a checkpoint's arrays (same structure)."""
    leaves, treedef = jax.tree_util.tree_flatten(fresh.opt_state)
    if len(leaves) != len(ckpt.opt_leaves):
        raise MnistJaxError("the checkpoint's optimiser state does not fit this config")
    for i, (saved, like) in enumerate(zip(ckpt.opt_leaves, leaves)):
        if saved.shape != like.shape:
            raise MnistJaxError(
                f"the checkpoint's optimiser array {i} has shape {saved.shape}, "
                f"this config's optimiser needs {like.shape}"
            )
    params = jax.device_put(
        [{k: jnp.asarray(v) for k, v in layer.items()} for layer in ckpt.params], device
    )
    opt_state = jax.tree_util.tree_unflatten(
        treedef,
        [
            jax.device_put(np.asarray(saved, dtype=like.dtype), device)
            for saved, like in zip(ckpt.opt_leaves, leaves)
        ],
    )
    return RunState(params, opt_state, ckpt.epoch, float(ckpt.meta.get("train_seconds", 0.0)))


def _all_finite(params: Any) -> bool:
    """True when no parameter is NaN or infinite (a step can blow up after a finite loss)."""
    leaves = jax.tree_util.tree_leaves(params)
    return bool(jax.device_get(jnp.all(jnp.stack([jnp.isfinite(p).all() for p in leaves]))))


def _append_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Keep only the records of epochs a resumed checkpoint has completed."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if _record_epoch(line) <= epochs_done]
    data.atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def _record_epoch(line: str) -> float:
    """The epoch of one metrics line; a torn or foreign line (a killed write) counts as never."""
    try:
        return float(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return math.inf


# ----------------------------------------------------------------------------- evaluation


def evaluate_checkpoint(
    path: str | Path,
    split: str = "test",
    data_dir: str | None = None,
    log: Log = print,
    *,
    details: Callable[[Config, Any, EvalBatches], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Recompute loss and accuracy of a saved checkpoint on one split of its run's data.

    The split is rebuilt from the checkpoint's config and seed, so the numbers equal those
    its training run reported. `details(config, params, batches)`, when given, runs on the
    same device data and its entries are added to the result (see `mnist_jax.report`).
    """
    ckpt = checkpoint.load(path)
    config = ckpt.config
    if data_dir is not None:
        config = config.replace(data_dir=data_dir)
    if ckpt.meta.get("dataset") == "mnist-sample" and config.dataset == "mnist":
        config = config.replace(dataset="sample")
    with jax.enable_x64(config.dtype == "float64"):
        device = jax.devices()[0]
        run = prepare_data(config, root_keys(config)["data"], device, log)
        batches = {"test": run.test, "validation": run.validation, "train": run.train_eval}[split]
        if batches is None:
            raise MnistJaxError(f"this run has no {split} split (validation_size = 0)")
        params = jax.device_put(ckpt.params, device)
        result = metrics_of(make_evaluate(config)(params, batches))
        extra = {} if details is None else details(config, params, batches)
    return {
        "checkpoint": str(checkpoint.resolve(path)),
        "split": split,
        "dataset": run.name,
        "epoch": ckpt.epoch,
        "accuracy": result["accuracy"],
        "loss": result["loss"],
        "count": int(np.asarray(batches.mask).sum()),
        **extra,
    }
