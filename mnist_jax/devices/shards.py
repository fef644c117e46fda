"""Putting a run's arrays where it runs: one device, a mesh of devices, or a mesh over processes.

A run's placement is one device or a replicated `NamedSharding` over a one-axis "data" mesh
(`runtime.placement`). When the mesh spans several processes, no process can address every
device, so `jax.device_put` of a host value cannot fill it; every array is built from the rows
this process's devices hold instead (`jax.make_array_from_callback`):

- replicated values (parameters, optimiser state, keys, step indices): each process supplies its
  own copy, the same everywhere since every process draws it from the same seed;
- rows split over "data" (evaluation batches, each epoch's training batches): each process
  supplies only the rows of each batch its devices consume.

Each multi-process epoch draws the same permutation in every process (the epoch's key, as the
single-process epoch draws it on the device), so the batches, and the results, equal those of a
single-process run up to the order in which the devices' gradient sums are added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from mnist_jax import keys

Placement = jax.Device | jax.sharding.Sharding


def spans_processes(placement: Placement) -> bool:
    """True when `placement` holds devices of other processes."""
    return isinstance(placement, jax.sharding.Sharding) and not placement.is_fully_addressable


def device_count(placement: Placement) -> int:
    """How many devices share each batch."""
    return 1 if isinstance(placement, jax.Device) else len(placement.device_set)


def local_device(placement: Placement) -> jax.Device:
    """The lowest-id device of `placement` that this process drives."""
    if isinstance(placement, jax.Device):
        return placement
    return min(placement.addressable_devices, key=lambda d: d.id)


def put(value: Any, placement: Placement) -> Any:
    """Commit a pytree (the same in every process) to `placement`, replicated over a mesh."""
    if not spans_processes(placement):
        return jax.device_put(value, placement)
    return jax.tree_util.tree_map(lambda a: _replicate(a, placement), value)


def _replicate(a: Any, placement: jax.sharding.Sharding) -> jax.Array:
    """One replicated global array from this process's copy of `a` (a key stays a key)."""
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        data = _replicate(jax.random.key_data(a), placement)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    host = np.asarray(jax.device_get(a))
    return jax.make_array_from_callback(host.shape, placement, lambda index: host[index])


def split_rows(placement: Placement, ndim: int, axis: int) -> Placement:
    """The sharding that splits `axis` of an `ndim`-dimensional array over the "data" axis."""
    if not isinstance(placement, jax.sharding.NamedSharding) or placement.mesh.size == 1:
        return placement
    spec = [None] * ndim
    spec[axis] = "data"
    return jax.sharding.NamedSharding(placement.mesh, jax.sharding.PartitionSpec(*spec))


def put_rows(host: np.ndarray, placement: Placement, axis: int) -> jax.Array:
    """Put `host` (the same in every process) split along `axis`; each process sends its rows."""
    sharding = split_rows(placement, host.ndim, axis)
    if isinstance(sharding, jax.Device):
        return jax.device_put(host, sharding)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def drawn_batches(
    host: np.ndarray, take: np.ndarray, placement: Placement
) -> jax.Array:  # fmt: skip
    """Build the global (steps, batch, ...) array host[take], split over batch; local rows only.

    Args:
        host: one training split's rows on the host, (N, ...).
        take: (steps, batch) row indices, the same in every process.
        placement: the run's mesh.
    """
    shape = (*take.shape, *host.shape[1:])
    sharding = split_rows(placement, len(shape), 1)
    return jax.make_array_from_callback(shape, sharding, lambda index: host[take[index[:2]]])


def host_drawn_epoch(train_epoch: Callable, placement: Placement, batch: int) -> Callable:
    """Wrap a jitted epoch so it draws its batches on the host, each process its own rows.

    The returned call has the epoch's signature, train_epoch(params, opt_state, x, y, key,
    first, *, num_steps), but takes x (N, 784) and y (N,) as host arrays: it draws the epoch's
    permutation from `key` (as the jitted epoch does on the device), takes the `num_steps`
    batches from `first` on, and hands the jitted epoch (steps, batch, 784) and (steps, batch)
    arrays split over the batch axis. Full-batch epochs get the whole split, split by rows.
    """
    whole: dict[int, tuple[jax.Array, jax.Array]] = {}
    permute = jax.jit(keys.shuffle, static_argnums=1)

    def epoch(params, opt_state, x, y, key, first, *, num_steps):
        if batch == 0:  # full batch: the same rows every step, put once
            if id(x) not in whole:
                whole[id(x)] = (put_rows(x, placement, 0), put_rows(y, placement, 0))
            xs, ys = whole[id(x)]
        else:
            order = np.asarray(permute(key, len(x)))
            start = int(np.asarray(first)) * batch
            take = order[start : start + num_steps * batch].reshape(num_steps, batch)
            xs, ys = drawn_batches(x, take, placement), drawn_batches(y, take, placement)
        return train_epoch(params, opt_state, xs, ys, key, first, num_steps=num_steps)

    return epoch
