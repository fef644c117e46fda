"""mnist-jax: a small, fast, trustworthy JAX MLP for MNIST.

The public names are the config and the pure functions of the model:

    >>> from mnist_jax import Config, init_params, forward, loss

They are imported lazily, so `mnist-jax --help` does not pay for importing JAX.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Config": "mnist_jax.config",
    "load_config": "mnist_jax.config",
    "init_params": "mnist_jax.model",
    "forward": "mnist_jax.model",
    "loss": "mnist_jax.model",
    "accuracy": "mnist_jax.model",
    "train_and_evaluate": "mnist_jax.train",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'mnist_jax' has no attribute {name!r}")
