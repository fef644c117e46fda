"""Process-wide JAX settings: which device to run on, and the persistent compilation cache."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from mnist_jax.errors import MnistJaxError
from mnist_jax.files import cache_dir

DEVICE_CHOICES = ("auto", "cpu", "gpu")


def select_device(name: str = "auto") -> jax.Device:
    """Return the device to train on: "cpu", "gpu", or "auto" (JAX's default device).

    Raises:
        MnistJaxError: a GPU was asked for and JAX finds none.
    """
    if name not in DEVICE_CHOICES:
        raise MnistJaxError(f"unknown device '{name}': choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return jax.local_devices()[0]
    try:
        return jax.local_devices(backend=name)[0]
    except RuntimeError as e:
        raise MnistJaxError(
            f"--device {name}: JAX says: {one_line(e)} (it sees: {describe_devices()}); "
            f"{GPU_HINT if name == 'gpu' else 'use --device auto'}"
        ) from None


GPU_HINT = (
    "install JAX's CUDA build with `pip install 'mnist-jax[cuda12]'` (or [cuda13]), "
    "check `nvidia-smi`, or use --device cpu"
)


def one_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, e.g. JAX's reason for no GPU."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def describe_devices() -> str:
    """Return e.g. 'cpu: TFRT_CPU_0' for the devices JAX sees."""
    return ", ".join(f"{d.platform}: {d}" for d in jax.devices())


def enable_compilation_cache(folder: Path | None = None) -> Path:
    """Turn on JAX's persistent compilation cache so later runs skip compiling.

    The cache lives in the user cache (`~/.cache/mnist-jax/jax`) unless
    `MNIST_JAX_COMPILE_CACHE` or `folder` says otherwise; `MNIST_JAX_COMPILE_CACHE=off`
    turns it off.
    """
    setting = os.environ.get("MNIST_JAX_COMPILE_CACHE", "")
    if setting.lower() in ("off", "0", "false", "no"):
        return Path()
    folder = Path(setting) if setting else (folder or cache_dir() / "jax")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def placement(name: str = "auto", count: int | None = None) -> jax.Device | jax.sharding.Sharding:
    """Return where a run lives: one device, or a replicated sharding for data parallelism.

    Every command that compiles resolves its placement here, so this is also where the
    persistent compilation cache is turned on (`enable_compilation_cache`).

    With `count` > 1, or in a job of several processes (`mnist_jax.devices.distributed`), the run
    uses a one-axis mesh named "data" over the first `count` devices of every process, in process
    order: params are replicated and each batch is split across the devices
    (`step.make_train_epoch`).

    Raises:
        MnistJaxError: more devices than this process has, or a count below 1.
    """
    first = select_device(name)
    enable_compilation_cache()
    local = jax.local_devices(backend=first.platform)
    wanted = 1 if count is None else count
    if wanted < 1 or wanted > len(local):
        raise MnistJaxError(
            f"--devices {wanted} asked for, but JAX sees {len(local)} {first.platform} "
            f"device(s){' in this process' if jax.process_count() > 1 else ''}; "
            f"choose 1 to {len(local)}"
        )
    chosen = []  # the first `wanted` devices of each process, process 0's first
    for p in range(jax.process_count()):
        chosen += [d for d in jax.devices(first.platform) if d.process_index == p][:wanted]
    if len(chosen) == 1:
        return first
    mesh = jax.sharding.Mesh(np.array(chosen), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
