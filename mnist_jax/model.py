"""The MLP as pure functions over a parameter pytree.

Params are a list with one `{"w": (fan_in, fan_out), "b": (fan_out,)}` dict per layer.
`forward` returns logits; the losses turn logits into a scalar, stably, averaged over the
batch after summing over classes. Nothing here holds state; everything is jit- and
grad-friendly.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp

Params = list[dict[str, jax.Array]]

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
}


def init_params(
    key: jax.Array,
    sizes: Sequence[int],
    *,
    init: str = "he",
    bias_init: str = "zeros",
    low: float = -0.5,
    high: float = 0.5,
    std: float = 1.0,
    dtype: jnp.dtype = jnp.float32,
) -> Params:
    """Draw the parameters of an MLP with layer widths `sizes` (input first, output last).

    Args:
        key: a PRNG key; split into one subkey per layer, then into weight and bias keys.
        sizes: e.g. (784, 512, 10) for one hidden layer of 512 units.
        init: "he" (normal, std sqrt(2 / fan_in)), "glorot" (uniform in
            +-sqrt(6 / (fan_in + fan_out))), "uniform" (in [low, high)) or "normal" (std `std`).
        bias_init: "zeros", or "drawn" from the same distribution as the weights.
        low, high, std: the parameters of the "uniform" and "normal" initialisers.
        dtype: floating type of the parameters.

    Returns:
        A list of {"w": (fan_in, fan_out), "b": (fan_out,)} dicts.
    """
    params = []
    for layer_key, fan_in, fan_out in zip(
        jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:], strict=True
    ):
        w_key, b_key = jax.random.split(layer_key)

        def draw(k: jax.Array, shape: tuple[int, ...], fan_in=fan_in, fan_out=fan_out):
            if init == "he":
                return jax.random.normal(k, shape, dtype) * jnp.sqrt(2.0 / fan_in).astype(dtype)
            if init == "glorot":
                limit = (6.0 / (fan_in + fan_out)) ** 0.5
                return jax.random.uniform(k, shape, dtype, -limit, limit)
            if init == "uniform":
                return jax.random.uniform(k, shape, dtype, low, high)
            if init == "normal":
                return jax.random.normal(k, shape, dtype) * std
            raise ValueError(f"unknown initialiser {init!r}")

        w = draw(w_key, (fan_in, fan_out))
        b = draw(b_key, (fan_out,)) if bias_init == "drawn" else jnp.zeros((fan_out,), dtype)
        params.append({"w": w, "b": b})
    return params


def dense(x: jax.Array, w: jax.Array, precision: str | None = None, tuned: bool = False):
    """x (batch, fan_in) @ w (fan_in, fan_out) -> (batch, fan_out) at `precision`.

    Args:
        x, w: the layer's inputs and weights.
        precision: XLA's matrix-product precision ("default", "high", "highest"), or None
            for JAX's ambient default (`mnist_jax.devices.backend` chooses it per platform).
        tuned: lay out the weight gradient of a narrow layer the way that is faster on the
            CPU (`_tuned_dense`); False leaves the gradient to JAX's autodiff.
    """
    if tuned:
        return _tuned_dense(x, w, precision)
    return jnp.matmul(x, w, precision=precision)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tuned_dense(x: jax.Array, w: jax.Array, precision: str | None) -> jax.Array:
    return jnp.matmul(x, w, precision=precision)


def _dense_fwd(x: jax.Array, w: jax.Array, precision: str | None):
    return jnp.matmul(x, w, precision=precision), (x, w)


def _dense_bwd(precision: str | None, saved: tuple[jax.Array, jax.Array], g: jax.Array):
    x, w = saved
    dx = jnp.matmul(g, w.T, precision=precision)
    if 8 * w.shape[1] <= w.shape[0]:
        # A narrow layer (e.g. 784 -> 10): XLA's CPU dot computes g.T @ x, (out, in), about
        # twice as fast as x.T @ g, (in, out); the barrier keeps XLA from folding the
        # transpose back into the slow form. The transposed copy is small.
        return dx, jax.lax.optimization_barrier(jnp.matmul(g.T, x, precision=precision)).T
    return dx, jnp.matmul(x.T, g, precision=precision)


_tuned_dense.defvjp(_dense_fwd, _dense_bwd)


# --8<-- [start:forward]
def forward(
    params: Params,
    x: jax.Array,
    activation: str = "relu",
    *,
    precision: str | None = None,
    tuned: bool = False,
) -> jax.Array:
    """Compute logits (batch, 10) from inputs x (batch, 784); the last layer is linear.

    `precision` and `tuned` are passed to every `dense` layer.
    """
    act = ACTIVATIONS[activation]
    for layer in params[:-1]:
        x = act(dense(x, layer["w"], precision, tuned) + layer["b"])  # (batch, hidden)
    return dense(x, params[-1]["w"], precision, tuned) + params[-1]["b"]
    # --8<-- [end:forward]


# --8<-- [start:losses]
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example -log softmax(logits)[label]: logits (batch, C), labels (batch,) -> (batch,)."""
    log_probs = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example binary cross-entropy summed over the classes: (batch, C) -> (batch,).

    With t the one-hot target, -t log s(z) - (1 - t) log(1 - s(z)) = softplus(z) - t z,
    which stays finite for any logit z.
    """
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return jnp.sum(jax.nn.softplus(logits) - targets * logits, axis=-1)
    # --8<-- [end:losses]


LOSSES = {"softmax": softmax_cross_entropy, "sigmoid": sigmoid_cross_entropy}


def l2_penalty(params: Params) -> jax.Array:
    """Sum of squared weights over all layers; biases are not penalised."""
    return sum(jnp.sum(layer["w"] ** 2) for layer in params)


# --8<-- [start:loss]
def loss(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "relu",
    output: str = "softmax",
    l2: float = 0.0,
    num_train: int = 1,
    precision: str | None = None,
    tuned: bool = False,
) -> jax.Array:
    """The training objective: data loss + l2 / (2 num_train) * sum of squared weights.

    Args:
        params: the parameter pytree.
        x: inputs (batch, 784), already scaled.
        y: integer labels (batch,).
        activation: hidden activation name.
        output: "softmax" or "sigmoid" (see `LOSSES`).
        l2: the textbook regularisation strength lambda.
        num_train: m in lambda / (2 m); the size of the training set.
        precision, tuned: how the matrix products run (see `dense`).

    Returns:
        A scalar.
    """
    data_loss = jnp.mean(
        LOSSES[output](forward(params, x, activation, precision=precision, tuned=tuned), y)
    )
    if l2 == 0.0:
        return data_loss
    return data_loss + (l2 / (2.0 * num_train)) * l2_penalty(params)
    # --8<-- [end:loss]


def accuracy(params: Params, x: jax.Array, y: jax.Array, activation: str = "relu") -> jax.Array:
    """Fraction of rows of x (batch, 784) whose largest logit is at the label y (batch,)."""
    return jnp.mean(jnp.argmax(forward(params, x, activation), axis=-1) == y)


def count_params(params: Params) -> int:
    """Return the number of scalars in `params`."""
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
