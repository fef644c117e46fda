"""The jitted math of training: the loss on uint8 batches, one update step, one epoch, evaluation.

`make_step` puts `value_and_grad`, the optax update and `apply_updates` in one region;
`make_train_epoch` jits a whole epoch: one on-device permutation, then a `lax.scan` over its
contiguous batches, each gathered from the device-resident uint8 dataset inside the loop (one
step ahead, so the gather overlaps the step), with parameters and optimiser state donated. The
dataset is an argument, never closed over (a closed-over array would become a compile-time
constant). `make_evaluate` scans padded, masked batches of one shape, so nothing compiles
again after the first epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import optax

from mnist_jax import keys, model
from mnist_jax.config import Config
from mnist_jax.data import standardize
from mnist_jax.devices import backend, shards
from mnist_jax.devices.backend import Policy


def dtype_of(config: Config) -> jnp.dtype:
    """Return the floating type the config trains in."""
    return jnp.float64 if config.dtype == "float64" else jnp.float32


def scale_inputs(x: jax.Array, config: Config) -> jax.Array:
    """Turn uint8 pixels (..., 784) into the network's inputs, inside jit.

    Standardised by the training split's mean and std, or times `input_scale`
    (`mnist_jax.data.standardize`).
    """
    return standardize.inputs(x, config, dtype_of(config))


def make_loss(
    config: Config, num_train: int, policy: Policy | None = None
) -> Callable[..., jax.Array]:
    """Return loss(params, x_uint8 (batch, 784), y (batch,)) -> scalar for this config.

    `policy` (`mnist_jax.devices.backend.policy`; JAX's default device's when None) sets the
    matrix-product precision and whether the CPU-tuned weight gradient is used.
    """
    policy = policy or backend.policy(config)

    def loss_fn(params: model.Params, x: jax.Array, y: jax.Array) -> jax.Array:
        return model.loss(
            params,
            scale_inputs(x, config),
            y,
            activation=config.activation,
            output=config.output,
            l2=config.l2,
            num_train=num_train,
            precision=policy.matmul_precision,
            tuned=policy.cpu_tricks,
        )

    return loss_fn


def make_step(
    config: Config,
    loss_fn: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    policy: Policy | None = None,
) -> Callable:
    """Return step(params, opt_state, x, y) -> (params, opt_state, loss): one update.

    For SGD: value_and_grad, the optax update and apply_updates; a full batch is taken in
    chunks when `policy.cpu_tricks` (`chunked_value_and_grad`). For L-BFGS, the line
    search re-evaluates the loss, and the state carries the last value and gradient.
    """
    policy = policy or backend.policy(config)
    if config.optimizer == "lbfgs":

        def lbfgs_step(params, opt_state, x, y):
            value_fn = partial(loss_fn, x=x, y=y)
            value, grad = optax.value_and_grad_from_state(value_fn)(params, state=opt_state)
            updates, opt_state = optimizer.update(
                grad, opt_state, params, value=value, grad=grad, value_fn=value_fn
            )
            return optax.apply_updates(params, updates), opt_state, value

        return lbfgs_step

    chunked = config.full_batch and policy.cpu_tricks
    value_and_grad = chunked_value_and_grad(loss_fn) if chunked else None

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
    of writing and re-reading a float copy of the whole set (four times its bytes). A CPU
    layout, measured on the CPU only (`mnist_jax.devices.backend`).
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
    config: Config,
    step: Callable,
    sharding: jax.sharding.Sharding | None = None,
    distort: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> Callable:
    """Return the jitted training call for (part of) one epoch.

    Signature: train_epoch(params, opt_state, x, y, key, first, *, num_steps) ->
    (params, opt_state, loss_sum), with x (N, 784) uint8 and y (N,) int32 the whole training
    split on the device (or x (num_steps, batch, 784) and y (num_steps, batch): the epoch's
    batches already drawn, as a multi-process run hands them over), `key` the epoch's shuffle
    key and `first` (a device int32) the index of the first batch to run. It draws one
    permutation of the split, then scans `num_steps` contiguous batches of it, gathering each
    batch inside the loop, one step ahead. With
    batch_size = "full" each of the `num_steps` iterations sees the whole split, unshuffled.
    Params and optimiser state are donated.
    With `sharding` (a replicated `NamedSharding` over a mesh with a "data" axis; see
    `runtime.placement`) each batch is split across the mesh's devices, params replicated.
    With `distort` (`distort.batch_distorter`: (key, x (batch, 784)) -> float32 x), each batch
    is distorted before its step, keyed by the epoch's key and the batch's index in the epoch
    (`keys.distortion_key`).
    """
    split = partial(_split_batch, sharding)

    def prepare(x: jax.Array, key: jax.Array, index: jax.Array) -> jax.Array:
        if distort is None:
            return split(x, 0)
        return split(distort(keys.distortion_key(key, index), x), 0)

    def train_epoch(params, opt_state, x, y, key, first, *, num_steps):
        if config.full_batch:

            def full_body(carry, _):
                params, opt_state, value = step(*carry, split(x, 0), split(y, 0))
                return (params, opt_state), value

            (params, opt_state), values = jax.lax.scan(
                full_body, (params, opt_state), None, length=num_steps
            )
            return params, opt_state, values

        indices = first + jnp.arange(num_steps, dtype=jnp.int32)  # the batches' places
        if x.ndim == 3:  # (steps, batch, 784): batches already drawn (`shards.host_drawn_epoch`)
            (params, opt_state), values = jax.lax.scan(
                lambda carry, xyi: _step_carry(
                    step, carry, prepare(xyi[0], key, xyi[2]), split(xyi[1], 0)
                ),
                (params, opt_state),
                (x, y, indices),
            )
            return params, opt_state, jnp.sum(values)
        batch = config.batch_size
        order = keys.shuffle(key, x.shape[0])
        take = jax.lax.dynamic_slice_in_dim(order, first * batch, num_steps * batch)
        take = take.reshape(num_steps, batch)  # (steps, batch) image indices

        def gather(idx: jax.Array, index: jax.Array) -> tuple[jax.Array, jax.Array]:
            # (batch, 784) uint8, or float32 when distorted; (batch,)
            return prepare(x[idx], key, index), split(y[idx], 0)

        def body(carry, following):
            # The step trains on the batch in the carry and gathers the next one, which does
            # not depend on the step, so XLA's CPU runtime runs the gather (the loop's largest
            # op) beside the step's products instead of before them: the tiny model's epoch
            # ~15-20% faster. Gathering inside the loop keeps each batch in cache; gathering
            # the whole epoch first writes and re-reads a shuffled copy of the set (slower).
            # A distortion of the next batch runs beside the step in the same way.
            params, opt_state, xb, yb = carry
            (params, opt_state), value = _step_carry(step, (params, opt_state), xb, yb)
            return (params, opt_state, *gather(*following)), value

        # step i gathers batch i + 1 (the last one: unused)
        following = (jnp.roll(take, -1, axis=0), indices + 1)
        carry = (params, opt_state, *gather(take[0], indices[0]))
        (params, opt_state, _, _), values = jax.lax.scan(body, carry, following)
        return params, opt_state, jnp.sum(values)

    return jax.jit(train_epoch, static_argnames="num_steps", donate_argnums=(0, 1))


def _step_carry(step: Callable, carry: tuple, x: jax.Array, y: jax.Array) -> tuple:
    """One scan iteration: (params, opt_state) -> ((params, opt_state), loss)."""
    params, opt_state, value = step(*carry, x, y)
    return (params, opt_state), value


def _split_batch(sharding: jax.sharding.Sharding | None, a: jax.Array, axis: int) -> jax.Array:
    """Constrain `a` to be split along `axis` over the "data" axis of `sharding`'s mesh."""
    if not isinstance(sharding, jax.sharding.NamedSharding) or sharding.mesh.size == 1:
        return a
    return jax.lax.with_sharding_constraint(a, shards.split_rows(sharding, a.ndim, axis))


def make_evaluate(config: Config, policy: Policy | None = None) -> Callable:
    """Return evaluate(params, batches) -> (loss_sum, correct, count) over `trainer.EvalBatches`.

    The loss is the data loss without the L2 term, summed over the unmasked examples; the
    products run at `policy.matmul_precision`.
    """
    per_example = model.LOSSES[config.output]
    precision = (policy or backend.policy(config)).matmul_precision

    def evaluate(params, batches):
        def body(totals, batch):
            x, y, mask = batch
            logits = model.forward(
                params, scale_inputs(x, config), config.activation, precision=precision
            )
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
