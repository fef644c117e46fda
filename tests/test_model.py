import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_jax import model


def test_shapes_and_parameter_count(key):
    params = model.init_params(key, (784, 64, 32, 10))
    assert [(p["w"].shape, p["b"].shape) for p in params] == [
        ((784, 64), (64,)),
        ((64, 32), (32,)),
        ((32, 10), (10,)),
    ]
    assert model.count_params(params) == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert model.forward(params, jnp.zeros((5, 784))).shape == (5, 10)


def test_no_hidden_layer_is_logistic_regression(key):
    params = model.init_params(key, (784, 10))
    assert len(params) == 1
    assert model.forward(params, jnp.ones((2, 784))).shape == (2, 10)


def test_initialisers_draw_the_documented_distributions(key):
    he = model.init_params(key, (2000, 500, 10))[0]["w"]
    assert float(jnp.std(he)) == pytest.approx(np.sqrt(2 / 2000), rel=0.02)
    glorot = model.init_params(key, (2000, 500, 10), init="glorot")[0]["w"]
    limit = np.sqrt(6 / 2500)
    assert float(jnp.abs(glorot).max()) <= limit
    assert float(jnp.abs(glorot).max()) > 0.99 * limit
    uniform = model.init_params(
        key, (300, 200, 10), init="uniform", low=-0.15, high=0.15, bias_init="drawn"
    )
    for leaf in jax.tree_util.tree_leaves(uniform):
        assert float(leaf.min()) >= -0.15 and float(leaf.max()) < 0.15
    assert float(jnp.abs(uniform[0]["b"]).sum()) > 0
    normal = model.init_params(key, (1000, 1000, 10), init="normal", std=0.001)
    assert float(jnp.std(normal[0]["w"])) == pytest.approx(0.001, rel=0.02)
    assert float(jnp.abs(normal[0]["b"]).sum()) == 0.0


def test_softmax_cross_entropy_matches_optax(key):
    logits = jax.random.normal(key, (16, 10)) * 5
    labels = jnp.arange(16) % 10
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(model.softmax_cross_entropy(logits, labels), expected, rtol=1e-6)


def test_sigmoid_cross_entropy_matches_optax_summed_over_classes(key):
    logits = jax.random.normal(key, (16, 10)) * 5
    labels = jnp.arange(16) % 10
    expected = optax.sigmoid_binary_cross_entropy(logits, jax.nn.one_hot(labels, 10)).sum(-1)
    np.testing.assert_allclose(model.sigmoid_cross_entropy(logits, labels), expected, rtol=1e-5)


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_losses_stay_finite_for_huge_logits(output):
    logits = jnp.array([[1e4, -1e4] + [0.0] * 8, [-1e4, 1e4] + [0.0] * 8])
    values = model.LOSSES[output](logits, jnp.array([1, 0]))
    assert bool(jnp.all(jnp.isfinite(values)))
    assert float(values.min()) > 1e3  # confidently wrong is expensive, not NaN


def test_loss_is_batch_mean_plus_l2_over_2m(key):
    params = model.init_params(
        key, (784, 8, 10), bias_init="drawn", init="uniform", low=-0.1, high=0.1
    )
    x = jax.random.uniform(key, (6, 784))
    y = jnp.arange(6)
    plain = model.loss(params, x, y)
    per_example = model.softmax_cross_entropy(model.forward(params, x), y)
    np.testing.assert_allclose(plain, per_example.mean(), rtol=1e-6)
    squares = sum(float(jnp.sum(p["w"] ** 2)) for p in params)  # biases excluded
    regularised = model.loss(params, x, y, l2=0.1, num_train=50)
    np.testing.assert_allclose(regularised - plain, 0.1 / 100 * squares, rtol=1e-4)


def test_accuracy_counts_argmax_hits(key):
    params = [{"w": jnp.eye(784, 10), "b": jnp.zeros(10)}]
    x = jnp.zeros((4, 784)).at[jnp.arange(4), jnp.array([0, 1, 2, 3])].set(1.0)
    assert float(model.accuracy(params, x, jnp.array([0, 1, 2, 9]))) == 0.75


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_activations_are_applied_to_hidden_layers_only(key, activation):
    params = model.init_params(key, (784, 16, 10))
    x = jax.random.normal(key, (3, 784))
    hidden = model.ACTIVATIONS[activation](x @ params[0]["w"] + params[0]["b"])
    expected = hidden @ params[1]["w"] + params[1]["b"]
    np.testing.assert_allclose(model.forward(params, x, activation), expected, rtol=1e-5, atol=1e-6)
