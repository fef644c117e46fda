"""Textbook backpropagation in plain NumPy: an independent check on JAX's gradients.

Nothing here imports JAX. Params are the same list of `{"w": (fan_in, fan_out),
"b": (fan_out,)}` dicts the JAX model uses (as NumPy arrays), and every function keeps
their floating type (float32 or float64). The backward pass is written out layer by
layer, with m the batch size, Y the one-hot labels and g the hidden activation:

    Z_l = A_(l-1) W_l + b_l,   A_l = g(Z_l),   A_0 = x,   logits = Z_L
    dZ_L = (softmax(Z_L) - Y) / m        softmax output, cross-entropy
    dZ_L = (sigmoid(Z_L) - Y) / m        per-class sigmoid output, BCE summed over classes
    dW_l = A_(l-1)^T dZ_l + (l2 / num_train) W_l,   db_l = sum over the batch of dZ_l
    dZ_(l-1) = (dZ_l W_l^T) * g'(Z_(l-1))

with relu' = [Z > 0], sigmoid' = s (1 - s) and tanh' = 1 - tanh^2. The loss is the batch
mean of the per-example loss plus l2 / (2 num_train) * sum of squared weights (biases
excluded), exactly `mnist_jax.model.loss`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_jax.errors import MnistJaxError

Params = list[dict[str, np.ndarray]]
Cache = list[tuple[np.ndarray, np.ndarray]]  # per layer: (its input A_(l-1), its Z_l)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: exp is only taken of -|z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype)


def softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log softmax of (batch, C), shifted by the row maximum so exp cannot overflow."""
    shifted = z - np.max(z, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def activate(z: np.ndarray, activation: str) -> np.ndarray:
    """Apply the hidden activation g ("relu", "sigmoid" or "tanh") elementwise."""
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "sigmoid":
        return sigmoid(z)
    if activation == "tanh":
        return np.tanh(z)
    raise ValueError(f"unknown activation {activation!r}")


def activation_derivative(z: np.ndarray, a: np.ndarray, activation: str) -> np.ndarray:
    """Return g'(z), given also a = g(z): relu' = [z > 0], sigmoid' = a (1 - a), tanh' = 1 - a^2."""
    if activation == "relu":
        return (z > 0).astype(z.dtype)
    if activation == "sigmoid":
        return a * (1 - a)
    if activation == "tanh":
        return 1 - a * a
    raise ValueError(f"unknown activation {activation!r}")


def one_hot(y: np.ndarray, classes: int, dtype: np.dtype) -> np.ndarray:
    """Integer labels (batch,) -> one-hot rows (batch, classes)."""
    return (np.asarray(y)[:, None] == np.arange(classes)).astype(dtype)


def _dtype(params: Params) -> np.dtype:
    return np.asarray(params[0]["w"]).dtype


# --8<-- [start:forward]
def forward(params: Params, x: np.ndarray, activation: str = "relu") -> tuple[np.ndarray, Cache]:
    """Compute logits (batch, C) from x (batch, D); the last layer is linear.

    Returns:
        (logits, cache) where cache[l] = (A_(l-1), Z_l), the input and pre-activation of
        layer l, which the backward pass reads.
    """
    a = np.asarray(x, dtype=_dtype(params))
    cache: Cache = []
    for index, layer in enumerate(params):
        z = a @ layer["w"] + layer["b"]  # (batch, fan_out)
        cache.append((a, z))
        a = z if index == len(params) - 1 else activate(z, activation)
    return a, cache
    # --8<-- [end:forward]


# --8<-- [start:output-delta]
def _data_loss_and_delta(logits: np.ndarray, y: np.ndarray, output: str) -> tuple[Any, np.ndarray]:
    """Return the batch-mean data loss and dZ_L = d(mean loss)/d logits, (batch, C)."""
    m = logits.shape[0]
    targets = one_hot(y, logits.shape[1], logits.dtype)
    if output == "softmax":
        log_probs = log_softmax(logits)
        per_example = -np.sum(targets * log_probs, axis=1)
        probs = np.exp(log_probs)
    elif output == "sigmoid":
        per_example = np.sum(softplus(logits) - targets * logits, axis=1)
        probs = sigmoid(logits)
    else:
        raise ValueError(f"unknown output {output!r}")
    return np.mean(per_example), (probs - targets) / logits.dtype.type(m)
    # --8<-- [end:output-delta]


def _l2_term(params: Params, l2: float, num_train: int) -> Any:
    """l2 / (2 num_train) * sum of squared weights; biases are not penalised."""
    dtype = _dtype(params)
    total = sum(np.sum(layer["w"] ** 2) for layer in params)
    return dtype.type(l2 / (2.0 * num_train)) * total


def loss(
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    *,
    activation: str = "relu",
    output: str = "softmax",
    l2: float = 0.0,
    num_train: int = 1,
) -> float:
    """The training objective of `mnist_jax.model.loss`, in NumPy.

    Args:
        params: list of {"w": (fan_in, fan_out), "b": (fan_out,)} arrays.
        x: inputs (batch, 784), already scaled.
        y: integer labels (batch,).
        activation, output, l2, num_train: as in `mnist_jax.model.loss`.

    Returns:
        The batch-mean data loss plus l2 / (2 num_train) * sum of squared weights.
    """
    logits, _ = forward(params, x, activation)
    data_loss, _ = _data_loss_and_delta(logits, y, output)
    if l2 == 0.0:
        return float(data_loss)
    return float(data_loss + _l2_term(params, l2, num_train))


# --8<-- [start:backward]
def gradients(
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    *,
    activation: str = "relu",
    output: str = "softmax",
    l2: float = 0.0,
    num_train: int = 1,
) -> tuple[float, Params]:
    """Backpropagate by hand: the loss and its gradient with respect to every parameter.

    Args:
        params, x, y, activation, output, l2, num_train: as in `loss`.

    Returns:
        (loss, grads) with grads shaped like params: [{"w": (fan_in, fan_out), "b": (fan_out,)}].
    """
    dtype = _dtype(params)
    logits, cache = forward(params, x, activation)
    data_loss, dz = _data_loss_and_delta(logits, y, output)  # dz: (batch, fan_out of layer L)
    decay = dtype.type(l2 / num_train)
    grads: Params = [{} for _ in params]
    for index in range(len(params) - 1, -1, -1):
        a_prev, _ = cache[index]  # (batch, fan_in)
        w = params[index]["w"]
        grads[index] = {"w": a_prev.T @ dz + decay * w, "b": np.sum(dz, axis=0)}
        if index > 0:
            z_prev = cache[index - 1][1]
            dz = (dz @ w.T) * activation_derivative(z_prev, a_prev, activation)
    value = data_loss if l2 == 0.0 else data_loss + _l2_term(params, l2, num_train)
    return float(value), grads
    # --8<-- [end:backward]


def _update(params: Params, grads: Params, lr: float) -> Params:
    """One plain gradient step: p - lr * g for every leaf, in the params' type."""
    step = _dtype(params).type(lr)
    return [{k: layer[k] - step * grad[k] for k in layer} for layer, grad in zip(params, grads)]


def gradient_descent(
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    *,
    lr: float,
    steps: int,
    activation: str = "relu",
    output: str = "softmax",
    l2: float = 0.0,
    num_train: int = 1,
) -> tuple[Params, np.ndarray]:
    """Full-batch gradient descent: `steps` updates p <- p - lr * dL/dp on all of (x, y).

    Returns:
        (final params, losses (steps,)) where losses[i] is the loss before update i.
    """
    losses = np.empty(steps, dtype=np.float64)
    for i in range(steps):
        losses[i], grads = gradients(
            params, x, y, activation=activation, output=output, l2=l2, num_train=num_train
        )
        params = _update(params, grads, lr)
    return params, losses


def sgd_epoch(
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    *,
    lr: float,
    batch_size: int,
    activation: str = "relu",
    output: str = "softmax",
    l2: float = 0.0,
    num_train: int = 1,
) -> tuple[Params, float]:
    """One epoch of plain SGD (no momentum) over contiguous batches of (x, y) in the given order.

    The last partial batch is dropped, as the JAX trainer does.

    Returns:
        (params after the epoch, mean of the batch losses, each taken before its update).
    """
    count = len(x) // batch_size
    if count == 0:
        raise MnistJaxError(f"batch_size {batch_size} is larger than the {len(x)} examples given")
    losses = []
    for start in range(0, count * batch_size, batch_size):
        batch = slice(start, start + batch_size)
        value, grads = gradients(
            params,
            x[batch],
            y[batch],
            activation=activation,
            output=output,
            l2=l2,
            num_train=num_train,
        )
        losses.append(value)
        params = _update(params, grads, lr)
    return params, float(np.mean(losses))
