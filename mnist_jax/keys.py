"""Randomness, explicitly: one root key from the config's seed, split once per purpose."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class RunKeys(NamedTuple):
    """The keys of one run: parameter init, the train/validation split, the epochs' shuffles."""

    init: jax.Array
    data: jax.Array
    shuffle: jax.Array  # folded with the epoch number: `epoch_key`


def root_keys(seed: int) -> RunKeys:
    """Split `jax.random.key(seed)` into one key per purpose."""
    return RunKeys(*jax.random.split(jax.random.key(seed), 3))


def epoch_key(keys: RunKeys, epoch: int) -> jax.Array:
    """The shuffle key of epoch `epoch` (0-based): a new batch order every epoch.

    The epoch number is put on the device explicitly (the same key as folding in the Python
    int), so the training loop makes no implicit host-to-device transfer.
    """
    return jax.random.fold_in(keys.shuffle, jax.device_put(np.uint32(epoch)))


DISTORTION_STREAM = 0x64697374  # folded into an epoch's key for its distortions ("dist")


def distortion_key(epoch: jax.Array, step: jax.Array) -> jax.Array:
    """The key that distorts batch `step` (0-based, in the epoch) of the epoch keyed `epoch`.

    A function of the epoch's key and the batch's place alone, so a resumed run, a run split
    into progress segments and every process of a multi-process run draw the same distortions.
    """
    return jax.random.fold_in(jax.random.fold_in(epoch, DISTORTION_STREAM), step)


MIN_RANDOM_BITS = 8  # below this many random bits per key, `shuffle` sorts (key, index) pairs


def shuffle(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of range(n), int32 (n,): the order of an epoch's examples.

    Drawn as `jax.random.permutation` draws it (rounds of sorting by random keys, ties kept
    in the previous order), but each round sorts one uint32 array: the random key in the
    high bits, the position in the low ones. A single-operand sort takes XLA's fast CPU path,
    about 4x faster than sorting (key, index) pairs; on 60,000 rows the permutation fell
    from ~35 ms to ~12 ms, a third of the tiny model's epoch. With fewer random bits per
    round, more rounds are taken, by JAX's own rule: ceil(3 ln n / ln(2^bits - 1)).
    """
    index_bits = max(1, (n - 1).bit_length())
    random_bits = 32 - index_bits
    if random_bits < MIN_RANDOM_BITS:  # over 16M rows: too few bits left for a random key
        return jax.random.permutation(key, n).astype(jnp.int32)
    rounds = max(1, math.ceil(3 * math.log(max(n, 2)) / math.log(2**random_bits - 1)))
    positions = jnp.arange(n, dtype=jnp.uint32)
    low = jnp.uint32(2**index_bits - 1)
    order = positions
    for round_key in jax.random.split(key, rounds):
        drawn = jax.random.bits(round_key, (n,), jnp.uint32) & ~low  # (n,) keys, high bits
        order = order[jnp.sort(drawn | positions) & low]
    return order.astype(jnp.int32)
