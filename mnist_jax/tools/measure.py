"""What a benchmark run measures besides its peers: timing, the machine's limits, a workload's cost.

`time_runs` and `row` are the one way every workload times a call and records it; the limits
(GEMM rate and copy bandwidth, measured on the benchmark's device) and `workload_cost` (the
FLOPs and bytes of an MLP's SGD steps) give the least time a workload could take.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def time_runs(prepare: Callable[[], Any], run: Callable[[Any], Any], repeats: int) -> list[float]:
    """Time `run(prepare())` `repeats` times after one warm-up; `prepare` is not timed."""
    run(prepare())
    times = []
    for _ in range(repeats):
        args = prepare()
        started = time.perf_counter()
        run(args)
        times.append(time.perf_counter() - started)
    return times


def row(peer: str, times: Sequence[float] | None, compile_s: float | None = None, note: str = ""):
    """One result row; `times` None means the peer was skipped (the note says why)."""
    return {
        "peer": peer,
        "median_s": statistics.median(times) if times else None,
        "times_s": list(times) if times else None,
        "compile_s": compile_s,
        "ratio": None,
        "note": note,
    }


# ----------------------------------------------------------------------------- the machine


def measure_limits(
    gemm_size: int, copy_bytes: int, device: jax.Device, precision: str = "default"
) -> dict[str, Any]:
    """Measure float32 GEMM FLOP/s and copy bandwidth of the device the benchmark runs on.

    The GEMM multiplies two (gemm_size, gemm_size) matrices; the copy moves `copy_bytes`.

    On the CPU the better of NumPy's and XLA's GEMM counts, and NumPy's copy; on another
    device XLA's GEMM (at the run's matrix-product `precision`) and an on-device copy.
    """
    n = gemm_size
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    dot = jax.jit(partial(jnp.dot, precision=precision))
    da, db = jax.device_put((a, b), device)
    xla_s = min(time_runs(lambda: None, lambda _: dot(da, db).block_until_ready(), 5))
    on_cpu = device.platform == "cpu"
    # The best seen is a limit; NumPy's GEMM runs on the host, so it counts on the CPU only.
    numpy_s = min(time_runs(lambda: None, lambda _: a @ b, 5)) if on_cpu else math.inf
    flops = 2.0 * n**3
    src = np.ones(copy_bytes // 4, np.float32)
    if on_cpu:
        dst = np.empty_like(src)
        copy_s = min(time_runs(lambda: None, lambda _: np.copyto(dst, src), 3))
    else:
        bump, on_device = jax.jit(lambda v: v + 1.0), jax.device_put(src, device)
        copy_s = min(time_runs(lambda: None, lambda _: bump(on_device).block_until_ready(), 3))
    return {
        "gemm_size": n,
        "numpy_gemm_flops": flops / numpy_s,
        "xla_gemm_flops": flops / xla_s,
        "peak_flops": max(flops / numpy_s, flops / xla_s),
        "copy_bandwidth_bytes": 2.0 * src.nbytes / copy_s,  # read + write
    }


def machine_info(device: jax.Device) -> dict[str, Any]:
    """The device, CPU model, core count and library versions of this run."""
    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
    }
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return {
        "device": f"{device.platform}: {device.device_kind}",
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "versions": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def workload_cost(sizes: Sequence[int], batch: int, steps: int, full: bool) -> dict[str, float]:
    """FLOPs and the least bytes moved by `steps` SGD steps of an MLP of layer `sizes`.

    Per example: forward 2*in*out per layer, weight gradients the same, input gradients the
    same except for the first layer (no gradient is needed for the images). Bytes: the uint8
    images (read once per epoch; twice per iteration when full-batch, once forward and once
    for the first layer's weight gradient) plus reading and writing the float32 params each
    step.
    """
    products = [i * o for i, o in zip(sizes[:-1], sizes[1:])]
    per_example = 2 * (3 * sum(products) - products[0])
    params = sum(products) + sum(sizes[1:])
    image_reads = 2 if full else 1
    return {
        "flops": float(per_example * batch * steps),
        "bytes": float(image_reads * batch * steps * sizes[0] + 2 * 4 * params * steps),
    }
