"""Facts about the model a config describes, read from the config alone (no JAX, no arrays).

`layer_sizes(config)` is every layer's width, (input, *hidden, classes): the shapes
`model.init_params` draws, the "784-100-10" a run prints, what a checkpoint or a file in another
format must hold. `num_params` counts its weights and biases; `optimizer_buffers` says how many
parameter-sized arrays the config's optimiser keeps beside them, for the memory plan and the
checkpoint's size bound. The CLI asks these before it imports JAX.
"""

from __future__ import annotations

from mnist_jax.config import Config

MNIST_INPUT, MNIST_CLASSES = 784, 10  # what a config that leaves the sizes to the data assumes
# Parameter-sized arrays in optax's L-BFGS state: 10 (memory_size) past differences each of the
# parameters and of the updates, and the line search's parameters, updates and gradient.
LBFGS_BUFFERS = 2 * 10 + 3


def layer_sizes(config: Config) -> tuple[int, ...]:
    """Return (input_size, *hidden, num_classes): the widths of every layer of the config's MLP.

    A config whose sizes are still None (not yet fitted to its data) gets MNIST's 784 and 10.
    """
    return (
        config.input_size or MNIST_INPUT,
        *config.hidden,
        config.num_classes or MNIST_CLASSES,
    )


def num_params(config: Config) -> int:
    """Count the weights and biases of the config's MLP."""
    sizes = layer_sizes(config)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def optimizer_buffers(config: Config) -> int:
    """Parameter-sized arrays the config's optimiser keeps."""
    return {"sgd": 0, "momentum": 1, "nesterov": 1}.get(config.optimizer, LBFGS_BUFFERS)
