"""The speed-minded code paths compute the same numbers as the plain ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax import model
from mnist_jax.config import Config
from mnist_jax.training import step


@pytest.mark.parametrize("shape", [(784, 10), (64, 32), (10, 10)])
def test_dense_gradient_equals_plain_matmul_gradient(key, shape):
    # (784, 10) takes the transposed weight-gradient path, the others the usual one.
    kx, kw, kg = jax.random.split(key, 3)
    x = jax.random.normal(kx, (16, shape[0]))
    w = jax.random.normal(kw, shape)
    g = jax.random.normal(kg, (16, shape[1]))
    fast = jax.vjp(lambda x, w: model.dense(x, w, None, True), x, w)[1](g)
    plain = jax.vjp(jnp.matmul, x, w)[1](g)
    for a, b in zip(fast, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.long
def test_chunked_full_batch_gradient_equals_one_piece(key):
    # 1,000 rows in chunks of 300: one pair of chunks and a remainder of 400; L2 counted once.
    config = Config(hidden=(16,), l2=5.0, batch_size="full", input_norm="scale")
    loss_fn = step.make_loss(config, num_train=1000)
    params = model.init_params(key, (784, 16, 10))
    kx, ky = jax.random.split(jax.random.fold_in(key, 1))
    x = jax.random.randint(kx, (1000, 784), 0, 256).astype(jnp.uint8)
    y = jax.random.randint(ky, (1000,), 0, 10)
    value, grad = jax.jit(step.chunked_value_and_grad(loss_fn, chunk=300))(params, x, y)
    want_value, want_grad = jax.value_and_grad(loss_fn)(params, x, y)
    assert float(value) == pytest.approx(float(want_value), rel=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(want_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
