"""The benchmark's peers: the same plain-SGD training done by mnist-jax and by other means.

Each peer gives, for a config and the images x (N, pixels) uint8 with labels y (N,) int32, a
`prepare()` that returns fresh starting state (not timed) and a `run(state)` that trains one
timed call's worth of steps and waits for it; `mnist_jax.tools.bench` times them side by side.

- `jax_epoch`: the real training path (`Trainer.train_epoch`: one jitted call per epoch);
- `numpy_reference`: the hand-written NumPy backprop in `mnist_jax.checks.reference`, in f32 or f64;
- `torch_eager`: PyTorch, nn.Linear layers and optim.SGD, on CUDA when the benchmark's device
  is a GPU (TF32 allowed exactly when mnist-jax's products allow it), else on the CPU;
- `jit_per_step`: a jitted update called once per batch from Python, each batch sliced on
  the host, as in JAX's own MNIST example.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.config import Config
from mnist_jax.data import Split, Splits, standardize
from mnist_jax.training import optim
from mnist_jax.training.trainer import Trainer, TrainState, build


def steps_per_call(config: Config, n: int) -> int:
    """Steps in one timed call: the iterations when full-batch, else one epoch's batches."""
    return config.epochs if config.full_batch else optim.steps_per_epoch(config, n)


def bench_splits(
    config: Config, x: np.ndarray, y: np.ndarray, image_shape: tuple[int, ...] | None = None
) -> Splits:
    """The benchmark's images as a run's splits: all of them train; the test split is unused.

    x is (N, pixels); the image size and class count are the config's (fitted to the data);
    `image_shape` (e.g. (28, 28)) is one image's shape, which a distorting config needs.
    """
    empty = Split(x[:0], y[:0])
    shape, classes = image_shape or (config.input_size,), config.num_classes
    return Splits("bench", Split(x, y), empty, Split(x[:1], y[:1]), shape, classes)


def jax_epoch(
    config: Config,
    x: np.ndarray,
    y: np.ndarray,
    device: jax.Device,
    image_shape: tuple[int, ...] | None = None,
):
    """Compile the trainer's epoch for `config` on (x, y); return (compile_s, prepare, run, ...).

    `image_shape`: one image's shape, for a config that distorts its images.
    """
    trainer = build(config, bench_splits(config, x, y, image_shape), device)
    state = trainer.init_state()
    train, key, first = trainer.data.train, trainer.epoch_key(0), trainer.put(np.int32(0))
    steps = steps_per_call(config, len(x))
    started = time.perf_counter()
    compiled = trainer.train_epoch.lower(
        state.params, state.opt_state, train.x, train.y, key, first, num_steps=steps
    ).compile()
    compile_s = time.perf_counter() - started

    def run(args):
        jax.block_until_ready(compiled(*args, train.x, train.y, key, first))

    return compile_s, copies_of(state), run, state, trainer


def copies_of(state: TrainState) -> Callable[[], Any]:
    """`prepare` for a timed run: a fresh copy of (params, opt_state) (the epoch donates them)."""
    return lambda: jax.tree_util.tree_map(jnp.copy, (state.params, state.opt_state))


def jit_per_step(trainer: Trainer, x: np.ndarray, y: np.ndarray, state: TrainState):
    """A jitted update called once per batch, the batch sliced from host arrays each step."""
    config, n = trainer.config, len(x)
    update = jax.jit(trainer.step, donate_argnums=(0, 1))
    steps, batch = steps_per_call(config, n), config.batch_size
    resident = trainer.data.train if config.full_batch else None
    rng = np.random.default_rng(0)

    prepare = copies_of(state)

    def run(args):
        params, opt_state = args
        order = None if config.full_batch else rng.permutation(n)
        for i in range(steps):
            if resident is not None:
                xb, yb = resident
            else:
                take = order[i * batch : (i + 1) * batch]
                xb, yb = x[take], y[take]
            params, opt_state, loss = update(params, opt_state, xb, yb)
        jax.block_until_ready(loss)

    started = time.perf_counter()
    run(prepare())  # the first call compiles
    return time.perf_counter() - started, prepare, run


def numpy_reference(config: Config, x: np.ndarray, y: np.ndarray, params0, dtype):
    """The NumPy backprop trainer on the same images and initial params, in `dtype`.

    `config` is fitted to `x` (`standardize.fit`), so its inputs are the trainer's.
    """
    from mnist_jax.checks import reference

    n = len(x)
    xf = standardize.inputs(x, config, dtype)  # once, as the notebooks do
    labels = y.astype(np.int64)
    common = {"activation": "relu", "output": "softmax", "l2": 0.0, "num_train": n}
    rng = np.random.default_rng(0)

    def prepare():
        return [{k: np.array(v, dtype=dtype) for k, v in layer.items()} for layer in params0]

    def run(params):
        if config.full_batch:
            reference.gradient_descent(
                params, xf, labels, lr=config.lr, steps=config.epochs, **common
            )
        else:
            order = rng.permutation(n)  # the shuffle is part of the epoch, as in the trainer
            reference.sgd_epoch(
                params, xf[order], labels[order], lr=config.lr, batch_size=config.batch_size,
                **common,
            )  # fmt: skip

    return prepare, run


def torch_device(platform: str, precision: str) -> str:
    """The torch device matching the benchmark's: "cuda" for a GPU, else "cpu".

    On CUDA, TF32 is allowed exactly when mnist-jax's products allow it (not at "highest").

    Raises:
        ImportError: torch is missing, or the device is a GPU and torch has no CUDA.
    """
    import torch

    if platform != "gpu":
        torch.set_num_threads(os.cpu_count() or 1)
        return "cpu"
    if not torch.cuda.is_available():
        raise ImportError("this torch build sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = precision != "highest"
    return "cuda"


def torch_eager(config: Config, x: np.ndarray, y: np.ndarray, params0, device: str = "cpu"):
    """PyTorch the idiomatic way: nn.Linear layers, F.cross_entropy, optim.SGD, eager.

    `device` is a torch device ("cpu" or "cuda"); the data lives there, as mnist-jax's does.
    `config` is fitted to `x` (`standardize.fit`), so its inputs are the trainer's.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    n = len(x)
    xt = torch.from_numpy(standardize.inputs(x, config, np.float32)).to(device)
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    steps, generator = steps_per_call(config, n), torch.Generator(device).manual_seed(0)

    def prepare():
        layers: list[nn.Module] = []
        for layer in params0:
            linear = nn.Linear(*layer["w"].shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.array(layer["w"].T)))
                linear.bias.copy_(torch.from_numpy(np.array(layer["b"])))
            layers += [linear, nn.ReLU()]
        net = nn.Sequential(*layers[:-1]).to(device)
        return net, torch.optim.SGD(net.parameters(), lr=config.lr)

    def run(args):
        net, optimizer = args
        if config.full_batch:
            batches = [(xt, yt)] * steps
        else:
            order = torch.randperm(n, generator=generator, device=device)
            xs, ys, b = xt[order], yt[order], config.batch_size
            batches = ((xs[i * b : (i + 1) * b], ys[i * b : (i + 1) * b]) for i in range(steps))
        for xb, yb in batches:
            optimizer.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()  # CUDA runs asynchronously: time the work, not the launch

    return prepare, run
