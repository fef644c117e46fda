"""Randomness, explicitly: one root key from the config's seed, split once per purpose."""

from __future__ import annotations

from typing import NamedTuple

import jax
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
