"""The run's randomness: the epoch shuffle is a permutation, fixed by its key, and unbiased."""

import jax
import numpy as np
import pytest

from mnist_jax import keys


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 65_537])
def test_shuffle_is_a_permutation_fixed_by_its_key(n):
    key = keys.epoch_key(keys.root_keys(0), 3)
    order = np.asarray(keys.shuffle(key, n))
    assert order.dtype == np.int32
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(order, np.asarray(keys.shuffle(key, n)))
    if n >= 1000:
        other = np.asarray(keys.shuffle(keys.epoch_key(keys.root_keys(0), 4), n))
        assert not np.array_equal(order, other)


def test_shuffle_puts_every_example_first_equally_often():
    draws = 8_000
    firsts = jax.vmap(lambda k: keys.shuffle(k, 6)[0])(jax.random.split(jax.random.key(1), draws))
    counts = np.bincount(np.asarray(firsts), minlength=6)
    expected = draws / 6
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 25.0  # 5 degrees of freedom: p ~ 1e-4 for an unbiased shuffle


def test_shuffle_of_a_huge_split_sorts_key_index_pairs(monkeypatch):
    monkeypatch.setattr(keys, "MIN_RANDOM_BITS", 33)  # no bits left: the pair sort's path
    key = jax.random.key(2)
    expected = np.asarray(jax.random.permutation(key, 100))
    assert np.array_equal(np.asarray(keys.shuffle(key, 100)), expected)
