"""mnist-jax: a small, fast, trustworthy JAX MLP for MNIST.

The public names: the config, the run (`train`, `evaluate`, `predict`, `check_gradients`,
returning values), the builder every run goes through, the model's pure functions, and the
errors they raise (`MnistJaxError`; `Diverged` when training blows up):

    >>> import mnist_jax
    >>> result = mnist_jax.train(mnist_jax.load_config(overrides={"dataset": "sample"}))

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
    "Splits": "mnist_jax.data",
    "load_data": "mnist_jax.data",
    "train": "mnist_jax.api",
    "evaluate": "mnist_jax.api",
    "predict": "mnist_jax.api",
    "Result": "mnist_jax.api",
    "Evaluation": "mnist_jax.checks.evaluation",
    "check_gradients": "mnist_jax.checks.gradcheck",
    "build": "mnist_jax.training.trainer",
    "Trainer": "mnist_jax.training.trainer",
    "MnistJaxError": "mnist_jax.errors",
    "Diverged": "mnist_jax.errors",
}

_RENAMED = {"load_data": "load"}  # exported names that differ from their module's

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        module = importlib.import_module(_PUBLIC[name])
        return getattr(module, _RENAMED.get(name, name))
    raise AttributeError(f"module 'mnist_jax' has no attribute {name!r}")
