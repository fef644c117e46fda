"""Per-backend choices, in one place: matrix-product precision and the CPU-tuned kernels.

Two things depend on the platform a run compiles for, and both are decided here from the
config and the platform (`policy`), then handed to `step` and `model` as plain values:

Matrix-product precision (`Config.matmul_precision`, `--matmul-precision`). XLA's "default"
precision for float32 products means full float32 on the CPU, but reduced precision (TF32,
a 10-bit mantissa) on recent NVIDIA GPUs. So "auto" resolves to:

- "highest" for float64 runs and for the gradient check (`gradcheck` forces it): its float32
  tolerance of 1e-4 assumes full float32 products;
- "default" on the CPU, where it already is full float32;
- "highest" on a GPU and anything else: the default model (784-800-10, batch 128) is bound
  by kernel launches and memory, not by tensor-core throughput, so full float32 costs little
  there and keeps GPU results within float32 rounding of the CPU's. Ask for "default" (or
  "high") to allow TF32 where the model is large enough for it to pay.

CPU-tuned kernels (`Config.cpu_tricks`: "auto", "on", "off"). Three layouts were measured to
help on a 2-core x86 CPU and nowhere else: the narrow layer's weight gradient computed as
(g.T @ x).T behind an optimisation barrier (`model.dense`), the full batch taken 1,024 rows at
a time, and two such chunks per scan step (`step.chunked_value_and_grad`). "auto" turns them
on for the CPU only; "on" and "off" force them, so the two paths can be compared on one
machine (they give the same gradients to float32 rounding: `tests/test_backend.py`).
"""

from __future__ import annotations

import dataclasses

import jax

from mnist_jax.config import Config

# What "auto" means per platform, float32 training (float64 and gradcheck: always "highest").
DEFAULT_PRECISION = {"cpu": "default"}
FALLBACK_PRECISION = "highest"
TUNED_PLATFORMS = ("cpu",)  # where the CPU-tuned kernels were measured to help


@dataclasses.dataclass(frozen=True)
class Policy:
    """The resolved per-backend choices of one run.

    Attributes:
        platform: "cpu", "gpu" ("cuda" and "rocm" are reported as "gpu"), "tpu", ...
        matmul_precision: "default", "high" or "highest", passed to every matrix product.
        cpu_tricks: whether the CPU-tuned kernels are used.
    """

    platform: str
    matmul_precision: str
    cpu_tricks: bool

    def to_dict(self) -> dict[str, str | bool]:
        """The JSON-ready record of the choices."""
        return dataclasses.asdict(self)


def platform_of(placement: jax.Device | jax.sharding.Sharding | None) -> str:
    """The platform of a device or sharding ("cpu", "gpu", ...); JAX's default when None."""
    if placement is None:
        device = jax.devices()[0]
    elif isinstance(placement, jax.Device):
        device = placement
    else:
        device = next(iter(placement.device_set))
    return "gpu" if device.platform in ("cuda", "rocm", "gpu") else device.platform


def resolve_precision(requested: str, platform: str, dtype: str = "float32") -> str:
    """Turn a requested precision ("auto" or a level) into the level used on `platform`."""
    if requested != "auto":
        return requested
    if dtype == "float64":
        return "highest"
    return DEFAULT_PRECISION.get(platform, FALLBACK_PRECISION)


def resolve_tricks(requested: str, platform: str) -> bool:
    """Whether the CPU-tuned kernels run: "on", "off", or "auto" (on for the CPU only)."""
    if requested == "auto":
        return platform in TUNED_PLATFORMS
    return requested == "on"


def policy(config: Config, placement: jax.Device | jax.sharding.Sharding | None = None) -> Policy:
    """Resolve a run's per-backend choices for the platform of `placement`.

    Args:
        config: reads `matmul_precision` ("auto", "default", "high", "highest"), `cpu_tricks`
            ("auto", "on", "off") and `dtype` (float64 runs use "highest" under "auto").
        placement: the run's device or sharding; JAX's default device when None.

    Returns:
        The Policy.
    """
    platform = platform_of(placement)
    return Policy(
        platform=platform,
        matmul_precision=resolve_precision(config.matmul_precision, platform, config.dtype),
        cpu_tricks=resolve_tricks(config.cpu_tricks, platform),
    )
