"""The one place a training run is assembled: `build(config, splits, placement) -> Trainer`.

The CLI, the Python API, the benchmark, the sweep, the gradient check and the tests all build
their runs here: the run's keys, the data on the devices, the optimiser, the loss, the jitted
step, epoch and evaluation, and the initial state. Nothing else calls those pieces in sequence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax import architecture, model
from mnist_jax.config import Config
from mnist_jax.data import Splits, owndata, standardize
from mnist_jax.devices import backend, shards
from mnist_jax.errors import MnistJaxError
from mnist_jax.keys import RunKeys, epoch_key, root_keys
from mnist_jax.training import distort, optim, step

Placement = jax.Device | jax.sharding.Sharding


class DeviceSplit(NamedTuple):
    """One training split on the device: images (N, pixels) uint8 and labels (N,) int32."""

    x: jax.Array
    y: jax.Array


class EvalBatches(NamedTuple):
    """A split padded to whole batches: x (B, size, pixels) uint8, y and mask (B, size)."""

    x: jax.Array
    y: jax.Array
    mask: jax.Array

    @property
    def count(self) -> int:
        """The number of real (unpadded) examples."""
        return int(jax.jit(jnp.sum)(self.mask))


class DeviceData(NamedTuple):
    """Everything a run reads, already on the device."""

    name: str  # dataset name recorded in the outputs
    train: DeviceSplit  # host arrays when the run spans processes (each epoch draws its rows)
    validation: EvalBatches | None
    test: EvalBatches
    train_eval: EvalBatches  # the training split again, batched for evaluation
    image_shape: tuple[int, ...] = (28, 28)  # one image's shape before flattening

    def eval_split(self, split: str) -> EvalBatches:
        """The padded batches of "test", "validation" or "train"."""
        batches = {"test": self.test, "validation": self.validation, "train": self.train_eval}
        if batches[split] is None:
            raise MnistJaxError(f"this run has no {split} split (validation_size = 0)")
        return batches[split]


@dataclasses.dataclass
class TrainState:
    """Where training stands: parameters, optimiser state, epochs done, seconds spent."""

    params: Any
    opt_state: Any
    epoch: int = 0
    train_seconds: float = 0.0


def to_device(x: np.ndarray, y: np.ndarray, placement: Placement) -> DeviceSplit:
    """Put a split on `placement`: images flattened to (N, pixels) uint8, labels int32."""
    return DeviceSplit(
        jax.device_put(x.reshape(len(x), -1), placement),
        jax.device_put(y.astype(np.int32), placement),
    )


def eval_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, placement: Placement
) -> EvalBatches:
    """Pad a split to whole batches of `batch_size` (the last one masked) on `placement`.

    Each batch is split over the placement's devices (its size rounded up to a multiple of
    their count); every process sends only its devices' rows.
    """
    n = len(x)
    devices = shards.device_count(placement)
    size = -(-max(1, min(batch_size, n)) // devices) * devices
    count = max(1, math.ceil(n / size))
    pad = count * size - n
    flat = x.reshape(n, -1)  # (n, pixels)
    xs = np.concatenate([flat, np.zeros((pad, flat.shape[1]), np.uint8)])
    ys = np.concatenate([y.astype(np.int32), np.zeros(pad, np.int32)])
    mask = np.arange(count * size) < n
    return EvalBatches(
        *(
            shards.put_rows(a.reshape(count, size, *a.shape[1:]), placement, 1)
            for a in (xs, ys, mask)
        )
    )


def put_splits(config: Config, splits: Splits, placement: Placement) -> DeviceData:
    """Move a run's host splits to `placement`; evaluation splits padded to whole batches.

    When the placement spans processes, the training split stays on the host: each epoch
    sends every process's share of its batches (`shards.host_drawn_epoch`).
    """
    batch = config.eval_batch_size
    val = splits.validation
    x, y = splits.train
    train = (
        DeviceSplit(x.reshape(len(x), -1), y.astype(np.int32))
        if shards.spans_processes(placement)
        else to_device(x, y, placement)
    )
    return DeviceData(
        name=splits.name,
        train=train,
        validation=eval_batches(*val, batch, placement) if len(val.x) else None,
        test=eval_batches(*splits.test, batch, placement),
        train_eval=eval_batches(*splits.train, batch, placement),
        image_shape=tuple(splits.image_shape),
    )


@contextlib.contextmanager
def precision(config: Config) -> Iterator[None]:
    """JAX's x64 mode for a float64 config, only inside the block."""
    with jax.enable_x64(config.dtype == "float64"):
        yield


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Every piece of one training run, assembled by `build`.

    `train_epoch` and `evaluate` are the jitted functions of `mnist_jax.training.step`; `data` lives
    on `placement` (one device, or a replicated sharding whose mesh splits each batch); `policy`
    holds the per-backend choices for its platform (`mnist_jax.devices.backend`).
    """

    config: Config
    placement: Placement
    policy: backend.Policy
    data: DeviceData
    keys: RunKeys
    optimizer: optax.GradientTransformation
    loss_fn: Callable[..., jax.Array]
    step: Callable
    train_epoch: Callable
    evaluate: Callable

    @property
    def num_train(self) -> int:
        return int(self.data.train.x.shape[0])

    @property
    def steps_per_epoch(self) -> int:
        return optim.steps_per_epoch(self.config, self.num_train)

    def init_state(self, init_key: jax.Array | None = None) -> TrainState:
        """Draw the initial parameters (from the run's init key) and the optimiser's state."""
        return init_state(self.config, self.keys.init if init_key is None else init_key,
                          self.optimizer, self.placement)  # fmt: skip

    def compiled_epoch_bytes(self) -> int | None:
        """JAX's own count of the bytes one epoch holds, from the compiled program.

        Arguments (the dataset, params and optimiser state) plus outputs plus temporaries,
        less the donated buffers the outputs reuse; the state's shapes come from
        `jax.eval_shape`, so nothing is allocated. None where the backend gives no analysis
        (or the epoch is not one jitted program, as across processes).
        """
        state = jax.eval_shape(
            partial(draw_state, self.config, optimizer=self.optimizer), self.keys.init
        )
        steps = self.steps_per_epoch if not self.config.full_batch else self.config.eval_every
        train = self.data.train
        try:
            lowered = self.train_epoch.lower(
                *state, train.x, train.y, self.epoch_key(0), self.put(np.int32(0)),
                num_steps=min(steps, self.config.epochs) if self.config.full_batch else steps,
            )  # fmt: skip
            stats = lowered.compile().memory_analysis()
        except (AttributeError, NotImplementedError):
            return None
        if stats is None:
            return None
        return int(
            stats.argument_size_in_bytes + stats.output_size_in_bytes
            + stats.temp_size_in_bytes - stats.alias_size_in_bytes
        )  # fmt: skip

    def epoch_key(self, epoch: int) -> jax.Array:
        """The shuffle key of epoch `epoch` (0-based), committed to the run's placement."""
        return self.put(epoch_key(self.keys, epoch))

    def put(self, value: Any) -> Any:
        """Commit a host value (a step index, a pytree) to the run's placement."""
        return shards.put(value, self.placement)

    def metrics(self, params: Any, split: str) -> dict[str, float]:
        """Loss (without L2) and accuracy of `params` on "test", "validation" or "train"."""
        return step.metrics_of(self.evaluate(params, self.data.eval_split(split)))


def draw_state(
    config: Config, init_key: jax.Array, optimizer: optax.GradientTransformation
) -> tuple[Any, Any]:
    """Draw the config's initial parameters and the optimiser's state: (params, opt_state).

    Pure, so `jax.eval_shape(draw_state, ...)` gives their shapes without allocating them.
    """
    params = model.init_params(
        init_key,
        architecture.layer_sizes(config),
        init=config.init,
        bias_init=config.bias_init,
        low=config.init_low,
        high=config.init_high,
        std=config.init_std,
        dtype=step.dtype_of(config),
    )
    # L-BFGS's state holds the same array in several leaves (the initial params, value and
    # gradient slots); the epoch donates every leaf, and one buffer cannot be donated twice.
    return params, jax.tree_util.tree_map(jnp.copy, optimizer.init(params))


def init_state(
    config: Config, init_key: jax.Array, optimizer: optax.GradientTransformation,
    placement: Placement,
) -> TrainState:  # fmt: skip
    """Draw the config's initial parameters on `placement` and the optimiser's state."""
    with jax.default_device(shards.local_device(placement)):
        params, opt_state = draw_state(config, init_key, optimizer)
        # Committed to `placement` like the jitted outputs, so the second epoch does not
        # compile again for a different placement.
        return TrainState(*shards.put((params, opt_state), placement))


def build(
    config: Config,
    splits: Splits,
    placement: Placement | None = None,
    *,
    optimizer: optax.GradientTransformation | None = None,
) -> Trainer:
    """Assemble a training run: keys, device data, optimiser, loss, step, epoch, evaluation.

    Call it (and use the Trainer) inside `precision(config)` when the config is float64.

    Args:
        config: the resolved config; its `input_size` and `num_classes` are filled in from
            `splits` (`owndata.fit_config`), and its pixel statistics from the training split
            (`standardize.fit`), so the Trainer's config is the one to save.
        splits: the run's host data (`mnist_jax.data.load`).
        placement: one device, or a replicated `NamedSharding` over a "data" mesh
            (`runtime.placement`); JAX's default device when None.
        optimizer: replaces the config's optimiser (the sweep's learning-rate-scaled one).

    Returns:
        The Trainer; its `init_state()` draws the initial parameters.
    """
    placement = placement or jax.local_devices()[0]
    config = owndata.fit_config(config, splits.image_shape, splits.num_classes, splits.name)
    config = standardize.fit(config, splits.train.x)
    num_train = len(splits.train.x)
    check_batch_size(config, placement, num_train)
    optimizer = optimizer or optim.make_optimizer(config, num_train)
    policy = backend.policy(config, placement)
    loss_fn = step.make_loss(config, num_train, policy)
    one_step = step.make_step(config, loss_fn, optimizer, policy)
    return Trainer(
        config=config,
        placement=placement,
        policy=policy,
        data=put_splits(config, splits, placement),
        keys=root_keys(config.seed),
        optimizer=optimizer,
        loss_fn=loss_fn,
        step=one_step,
        train_epoch=make_epoch(config, one_step, placement, splits.image_shape),
        evaluate=step.make_evaluate(config, policy),
    )


def make_epoch(
    config: Config, one_step: Callable, placement: Placement, image_shape: tuple[int, ...]
) -> Callable:
    """The run's jitted epoch; across processes, one that draws each process's rows on the host.

    Training batches of images of `image_shape` are distorted as `config.augment` asks.
    """
    distorter = distort.batch_distorter(config, image_shape)
    train_epoch = step.make_train_epoch(config, one_step, placement, distorter)
    if not shards.spans_processes(placement):
        return train_epoch
    batch = 0 if config.full_batch else config.batch_size
    return shards.host_drawn_epoch(train_epoch, placement, batch)


def check_batch_size(config: Config, placement: Placement, num_train: int | None = None) -> None:
    """Fail unless each training batch splits evenly over the placement's devices.

    Raises:
        MnistJaxError: a batch size that is not a multiple of the device count, or (full
            batch across processes) a training split that is not.
    """
    devices = shards.device_count(placement)
    if (
        config.full_batch
        and num_train
        and num_train % devices
        and shards.spans_processes(placement)
    ):
        raise MnistJaxError(
            f"full-batch training across processes needs a training split that divides over "
            f"{devices} devices, and it has {num_train} images; change validation_size"
        )
    if devices > 1 and not config.full_batch and config.batch_size % devices:
        raise MnistJaxError(
            f"batch size {config.batch_size} does not split over {devices} devices; "
            f"choose a multiple of {devices} (e.g. --batch-size "
            f"{max(devices, config.batch_size // devices * devices)})"
        )
