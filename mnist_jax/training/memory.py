"""The memory plan: what a run will hold, checked against what its device offers, before allocating.

`plan(config, sizes, device)` estimates, from the config and the split sizes alone, the bytes
of the parameters, their gradients and update, the optimiser state, the activations of one
training batch, the dataset on the device (the training images and their padded evaluation
copies) and the activations of one evaluation batch; a sweep multiplies the per-model parts by
its models. `check(plan)` compares the total with the device's offer (a GPU's
`memory_stats()["bytes_limit"]` less what is in use; on the CPU the host's available memory)
and, when it cannot fit, raises one line with the figures and what to reduce. The estimate
errs high; `is_out_of_memory` recognises the out-of-memory that still happens.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mnist_jax import architecture
from mnist_jax.config import Config
from mnist_jax.errors import MnistJaxError
from mnist_jax.limits import available_host_bytes, size_text

# Float arrays per hidden unit and example in a training step: pre-activation, activation and
# their gradients (XLA fuses some; the estimate keeps them all).
STEP_ACTIVATIONS = 4
EVAL_ACTIVATIONS = 2  # the forward pass only: pre-activation and activation


def estimate(config: Config, sizes: dict[str, int], models: int = 1) -> dict[str, int]:
    """Estimate the bytes a run holds on its device, part by part.

    Args:
        config: the resolved config.
        sizes: images per split: {"train", "validation", "test"}.
        models: models trained at once (a sweep's seeds x learning rates).

    Returns:
        {"parameters", "gradients and update", "optimizer state", "training activations",
        "dataset", "evaluation activations"}: bytes.
    """
    item = 8 if config.dtype == "float64" else 4
    widths = architecture.layer_sizes(config)
    params = architecture.num_params(config) * item * models
    batch = sizes["train"] if config.full_batch else min(config.batch_size, sizes["train"])
    eval_batch = min(config.eval_batch_size, max(1, sizes["train"]))
    units = sum(widths) * item  # one example's activations, input included
    padded = sum(-(-n // eval_batch) * eval_batch for n in sizes.values() if n)
    return {
        "parameters": params,
        "gradients and update": 2 * params,
        "optimizer state": architecture.optimizer_buffers(config) * params,
        "training activations": STEP_ACTIVATIONS * batch * units * models,
        # Training images and labels, then every split again in padded evaluation batches.
        "dataset": sizes["train"] * (widths[0] + 4) + padded * (widths[0] + 4 + 1),
        "evaluation activations": EVAL_ACTIVATIONS * eval_batch * units * models,
    }


def device_offer(device: Any) -> tuple[int, str]:
    """Return (bytes the device can still give, where that figure comes from)."""
    stats = None
    if getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats()
        except Exception:  # noqa: BLE001 - a backend without statistics: fall back to the host
            stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device} limit"
    return available_host_bytes(), "host memory available"


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """The estimate of one run (or sweep) and what its device offers."""

    parts: dict[str, int]
    models: int
    device: str
    offer: int
    source: str
    compiled: int | None = None  # JAX's own count for one compiled epoch, when asked for

    @property
    def need(self) -> int:
        """The larger of the estimate and JAX's count for the epoch (which omits evaluation)."""
        return max(self.total, self.compiled or 0)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.need <= self.offer

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes": dict(self.parts),
            "total_bytes": self.total,
            "compiled_epoch_bytes": self.compiled,
            "models": self.models,
            "device": self.device,
            "available_bytes": self.offer,
            "available_from": self.source,
            "fits": self.fits,
        }

    def lines(self) -> list[str]:
        parts = ", ".join(f"{name} {size_text(n)}" for name, n in self.parts.items() if n)
        verdict = "fits" if self.fits else "does NOT fit"
        compiled = (
            [] if self.compiled is None
            else [f"           JAX's compiled epoch: {size_text(self.compiled)} (memory_analysis)"]
        )  # fmt: skip
        return [
            f"memory     about {size_text(self.total)} ({parts})",
            *compiled,
            f"           {verdict} in {size_text(self.offer)} ({self.source})",
        ]


def plan(config: Config, sizes: dict[str, int], device: Any, models: int = 1) -> MemoryPlan:
    """Estimate a run's memory and read what `device` offers (see the module docstring)."""
    offer, source = device_offer(device)
    return MemoryPlan(estimate(config, sizes, models), models, str(device), offer, source)


def check(memory: MemoryPlan) -> MemoryPlan:
    """Return the plan when it fits; else raise one line with the figures and what to reduce.

    Raises:
        MnistJaxError: the estimate exceeds what the device offers.
    """
    if memory.fits:
        return memory
    if memory.compiled is not None and memory.compiled > memory.total:
        raise MnistJaxError(
            f"not enough memory: JAX's compiled epoch alone needs {size_text(memory.compiled)} "
            f"but {memory.device} offers {size_text(memory.offer)} ({memory.source}); "
            "reduce --batch-size or --hidden"
        )
    largest = max(memory.parts, key=memory.parts.get)
    advice = {
        "dataset": "use fewer images (--data-path a smaller set) or a larger machine",
        "training activations": "reduce --batch-size or --hidden",
        "evaluation activations": "reduce eval_batch_size or --hidden",
    }.get(largest, "reduce --hidden" + (" or the sweep's models" if memory.models > 1 else ""))
    raise MnistJaxError(
        f"not enough memory: this run needs about {size_text(memory.total)} (largest part "
        f"{largest}, {size_text(memory.parts[largest])}) but {memory.device} offers "
        f"{size_text(memory.offer)} ({memory.source}); {advice}"
    )


def check_run(config: Config, splits: Any, device: Any, models: int = 1) -> MemoryPlan:
    """`check(plan(...))` for host splits (`mnist_jax.data.Splits`) about to go to `device`."""
    sizes = {name: len(getattr(splits, name).x) for name in ("train", "validation", "test")}
    return check(plan(config, sizes, device, models))


def check_compiled(memory: MemoryPlan, trainer: Any) -> MemoryPlan:
    """Refine a plan that comes close to the offer with JAX's own count of the epoch.

    The arithmetic errs high but misses what XLA adds (temporaries of the line search, a
    fusion's buffers); when it reaches half of what the device offers, the epoch is compiled
    for its `memory_analysis()` (its state from `jax.eval_shape`, nothing allocated) and the
    larger figure decides.

    Raises:
        MnistJaxError: JAX's count exceeds the offer.
    """
    if memory.total * 2 < memory.offer:
        return memory
    return check(dataclasses.replace(memory, compiled=trainer.compiled_epoch_bytes()))


def is_out_of_memory(error: BaseException) -> bool:
    """True for NumPy's MemoryError and XLA's RESOURCE_EXHAUSTED / out-of-memory errors."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and (
        "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()
    )
