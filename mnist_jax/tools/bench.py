"""Side-by-side timing of the trainer against its peers and against the machine's limits.

One run trains the same model, on the same images, for the same number of plain-SGD steps
(momentum 0, constant learning rate) with each peer of `mnist_jax.tools.peers`: ``mnist-jax`` (the
real training path), ``numpy-f32`` / ``numpy-f64``, ``torch-eager`` (when torch is installed)
and ``jit-per-step``. Beside them, ``limit`` is the least time the workload's FLOPs and bytes
need at the machine's measured matrix-multiply rate and memory bandwidth.

The ``augment`` workload (`mnist_jax.tools.distortion_bench`) times the default network's
epoch with and without distortions of its training images, and the distortions alone.

Each peer is warmed up once, then timed `repeats` times; the median is reported, compile time
separately. Ratios are peer time / mnist-jax time (above 1: mnist-jax is faster) and, for the
limit, limit time / mnist-jax time (the fraction of the machine's peak reached).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from mnist_jax import architecture, data
from mnist_jax.config import Config, from_dict
from mnist_jax.data import owndata, standardize
from mnist_jax.devices import backend
from mnist_jax.errors import ConfigError
from mnist_jax.keys import root_keys
from mnist_jax.tools import distortion_bench, measure, peers
from mnist_jax.tools.measure import row, time_runs
from mnist_jax.training import memory

Log = Callable[[str], None]
PEERS = ("mnist-jax", "numpy-f32", "numpy-f64", "torch-eager", "jit-per-step", "limit")
# Every result row carries these keys (None where a value does not apply).
ROW_KEYS = ("peer", "median_s", "times_s", "compile_s", "ratio", "note")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One thing to time: a model shape, a batch size and how much training."""

    name: str
    about: str  # what it times, after the layer sizes (which depend on the data)
    hidden: tuple[int, ...]
    batch_size: int | str  # "full": full-batch gradient descent
    iterations: int = 1  # full-batch iterations (one epoch when batch_size is an integer)
    images: int | None = None  # training images used (None: the whole training split)

    def description(self, sizes: Sequence[int]) -> str:
        """Say what it times for a model of layer `sizes`, e.g. '784-10-10, batch 128, ...'."""
        return f"{'-'.join(map(str, sizes))}, {self.about}"


WORKLOADS = {
    "tiny": Workload("tiny", "batch 128, one epoch (dispatch-bound)", (10,), 128),
    "wide": Workload("wide", "batch 128, one epoch (compute-bound)", (1000,), 128),
    "fullbatch": Workload(
        "fullbatch",
        "full-batch GD on 41,000 images, 100 iterations",
        (10,),
        "full",
        iterations=100,
        images=41_000,
    ),  # fmt: skip
    "default": Workload(
        "default", "the default widths, batch 128, one epoch", Config().hidden, 128
    ),
    "augment": Workload(
        "augment",
        "the default widths, batch 128, one epoch: distorted images vs undistorted",
        Config().hidden,
        128,
    ),
    "sweep": Workload("sweep", "8 tiny models at once (vmap) vs one after another", (10,), 128),
    "time-to-accuracy": Workload(
        "time-to-accuracy",
        "the default recipe, one seed per repeat: training seconds to a test accuracy",
        Config().hidden,
        Config().batch_size,
        iterations=Config().epochs,
    ),
}
LR = 0.1
SWEEP_MODELS = 8


@dataclasses.dataclass(frozen=True)
class Options:
    """How big and how careful a benchmark run is."""

    repeats: int = 5
    quick: bool = False  # a tiny size for tests: few images, few iterations, small GEMM
    target_accuracy: float = 0.983  # the time-to-accuracy workload's test accuracy

    @property
    def max_images(self) -> int | None:
        return 1024 if self.quick else None

    @property
    def gemm_size(self) -> int:
        return 256 if self.quick else 2048

    @property
    def copy_bytes(self) -> int:
        return (8 if self.quick else 256) * 2**20


# ----------------------------------------------------------------------------- workloads


def bench_config(workload: Workload, base: Config, num_images: int) -> Config:
    """The trainer's config for `workload`: plain SGD, constant lr, no validation split."""
    full = workload.batch_size == "full"
    return base.replace(
        hidden=list(workload.hidden),
        batch_size=workload.batch_size,
        epochs=workload.iterations if full else 1,
        eval_every=workload.iterations if full else 1,
        lr=LR,
        optimizer="sgd",
        schedule="constant",
        l2=0.0,
        activation="relu",
        output="softmax",
        dtype="float32",
        train_size=num_images,
        validation_size=0,
    )


def run_workload(
    workload: Workload,
    base: Config,
    host: tuple[np.ndarray, np.ndarray],
    limits: dict[str, Any],
    options: Options,
    device: jax.Device,
    log: Log,
    image_shape: tuple[int, ...] = (28, 28),
) -> dict[str, Any]:
    """Time every peer on one workload; return its record with rows and ratios.

    `host` is the training split (x (N, ...) uint8, y (N,)); `image_shape` one image's shape.
    """
    if workload.name == "time-to-accuracy":
        return accuracy_workload(workload, base, options, device, log)
    images = min(len(host[0]), workload.images or len(host[0]), options.max_images or 10**9)
    iterations = min(workload.iterations, 3) if options.quick else workload.iterations
    x, y = host[0][:images].reshape(images, -1), host[1][:images].astype(np.int32)
    # The statistics of these images, once: every peer standardises with the same numbers.
    config = bench_config(dataclasses.replace(workload, iterations=iterations), base, images)
    config = standardize.fit(config, x)
    steps = peers.steps_per_call(config, images)
    batch = images if config.full_batch else config.batch_size
    sizes = architecture.layer_sizes(config)  # input and output widths read from the data
    cost = measure.workload_cost(sizes, batch, steps, config.full_batch)
    memory.check(memory.plan(config, {"train": images, "validation": 0, "test": 0}, device))
    log(f"{workload.name}: {workload.description(sizes)}; {images:,} images, {steps} steps")
    if workload.name == "sweep":
        rows = sweep_rows(config, x, y, options, device)
    elif workload.name == "augment":
        rows = distortion_bench.augment_rows(config, x, y, image_shape, options.repeats, device)
    else:
        rows = peer_rows(config, x, y, options, device, log)
        limit_s = max(
            cost["flops"] / limits["peak_flops"], cost["bytes"] / limits["copy_bandwidth_bytes"]
        )
        rows.append(row("limit", [limit_s], note="max(FLOPs / GEMM rate, bytes / copy rate)"))
    ours = rows[0]["median_s"]
    for r in rows[1:]:
        if r["median_s"] is not None:
            r["ratio"] = r["median_s"] / ours
    return {
        "name": workload.name,
        "description": workload.description(sizes),
        "images": images,
        "batch_size": batch,
        "steps": steps,
        "sizes": list(sizes),
        **cost,
        "rows": rows,
    }


def peer_rows(config, x, y, options: Options, device, log: Log) -> list[dict[str, Any]]:
    """Time mnist-jax, the NumPy reference, PyTorch and the per-step jit loop."""
    repeats = options.repeats
    compile_s, prepare, run, state, trainer = peers.jax_epoch(config, x, y, device)
    rows = [row("mnist-jax", time_runs(prepare, run, repeats), compile_s)]
    params0 = jax.device_get(state.params)
    for name, dtype in (("numpy-f32", np.float32), ("numpy-f64", np.float64)):
        try:
            prepare_np, run_np = peers.numpy_reference(config, x, y, params0, dtype)
        except ImportError:
            rows.append(row(name, None, note="mnist_jax.checks.reference not found"))
            continue
        rows.append(row(name, time_runs(prepare_np, run_np, repeats)))
    try:
        where = peers.torch_device(trainer.policy.platform, trainer.policy.matmul_precision)
        prepare_t, run_t = peers.torch_eager(config, x, y, params0, where)
        rows.append(row("torch-eager", time_runs(prepare_t, run_t, repeats), note=where))
    except ImportError as e:
        missing = "torch not installed: pip install torch" if e.name == "torch" else str(e)
        rows.append(row("torch-eager", None, note=missing))
    compile_s, prepare_j, run_j = peers.jit_per_step(trainer, x, y, state)
    rows.append(row("jit-per-step", time_runs(prepare_j, run_j, repeats), compile_s))
    log("  " + "  ".join(f"{r['peer']} {_seconds(r['median_s'])}" for r in rows))
    return rows


def sweep_rows(config, x, y, options: Options, device) -> list[dict[str, Any]]:
    """Time K models trained at once by `mnist_jax.tools.sweep` against K single-model epochs."""
    from mnist_jax.tools import sweep

    seeds = list(range(SWEEP_MODELS))
    configs = [config.replace(seed=s) for s in seeds]
    compile_s, prepare, run = sweep.bench_epoch(configs, peers.bench_splits(config, x, y), device)
    rows = [row(f"sweep-x{SWEEP_MODELS}", time_runs(prepare, run, options.repeats), compile_s)]
    compile_s, _, run_one, _, trainer = peers.jax_epoch(config, x, y, device)
    starts = [peers.copies_of(trainer.init_state(root_keys(s).init)) for s in seeds]

    def run_all(states):
        for state in states:
            run_one(state)

    times = time_runs(lambda: [p() for p in starts], run_all, options.repeats)
    rows.append(row(f"mnist-jax-x{SWEEP_MODELS}", times, compile_s, note="one after another"))
    return rows


def accuracy_workload(
    workload: Workload, base: Config, options: Options, device: jax.Device, log: Log
) -> dict[str, Any]:
    """Train the base config's recipe once per seed 0..repeats-1 until the target accuracy.

    The row's times are each seed's training seconds to the target (`race`); the note says
    at which epochs, and which seeds never reached it.
    """
    from mnist_jax.tools import race

    config = base.replace(validation_size=None)
    if options.quick:
        config = config.replace(train_size=options.max_images, epochs=3)
    splits = data.load(config, lambda _: None)
    config = standardize.fit(config, splits.train.x)  # once, not once per seed
    target = options.target_accuracy
    sizes = architecture.layer_sizes(config)  # fitted to the data
    about = workload.description(sizes)
    log(f"{workload.name}: {about}; target {target:.2%}, {config.epochs} epochs")
    results = [
        race.seconds_to_accuracy(config.replace(seed=seed), splits, target, device)
        for seed in range(options.repeats)
    ]
    times = [r["seconds"] for r in results if r["reached"]]
    epochs = ", ".join(
        f"seed {seed}: epoch {r['epoch']}" if r["reached"] else f"seed {seed}: not in {r['epochs']}"
        for seed, r in enumerate(results)
    )  # fmt: skip
    note = f"test accuracy >= {target:.2%} ({epochs})"
    log(f"  {note}")
    return {
        "name": workload.name,
        "description": about,
        "images": len(splits.train.x),
        "batch_size": config.batch_size,
        "steps": None,
        "sizes": list(sizes),
        "target_accuracy": target,
        "seeds": [{"seed": seed, **r} for seed, r in enumerate(results)],
        "rows": [row("mnist-jax", times, note=note)],
    }


def run_benchmark(
    workloads: Sequence[str] = tuple(WORKLOADS),
    *,
    data_source: dict[str, Any] | None = None,
    options: Options = Options(),
    log: Log = print,
    device: jax.Device | None = None,
    matmul_precision: str | None = None,
) -> dict[str, Any]:
    """Run the named workloads; return the JSON-ready report (machine, limits, workloads).

    Args:
        workloads: names from `WORKLOADS`.
        data_source: config values choosing the images (dataset, data_dir, data_path).
        options: repeats and size; log: receives progress lines.
        device: where mnist-jax runs (`runtime.select_device`); JAX's default when None.
        matmul_precision: the products' precision (`mnist_jax.devices.backend`); "auto" when None.

    Raises:
        ConfigError: an unknown workload name, a repeat count below 1, or a target accuracy
            outside (0, 1].
    """
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ConfigError(f"unknown workload '{unknown[0]}': choose from {', '.join(WORKLOADS)}")
    if options.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {options.repeats}")
    if not 0.0 < options.target_accuracy <= 1.0:
        raise ConfigError(
            f"--target-accuracy must be a fraction in (0, 1], e.g. 0.983, got "
            f"{options.target_accuracy}"
        )
    device = device or jax.devices()[0]
    chosen = {"name": "bench", "matmul_precision": matmul_precision, **(data_source or {})}
    base = from_dict({k: v for k, v in chosen.items() if v})
    policy = backend.policy(bench_config(WORKLOADS["default"], base, 1), device)
    splits = data.load(base.replace(validation_size=0), log)
    # Every workload's input and output widths are the data's (784 and 10 for MNIST).
    base = owndata.fit_config(base, splits.image_shape, splits.num_classes, splits.name)
    limits = measure.measure_limits(
        options.gemm_size, options.copy_bytes, device, policy.matmul_precision
    )
    log(
        f"limits: GEMM {limits['peak_flops'] / 1e9:.1f} GFLOP/s, "
        f"copy {limits['copy_bandwidth_bytes'] / 1e9:.1f} GB/s"
    )
    report = {
        "dataset": splits.name,
        "repeats": options.repeats,
        "quick": options.quick,
        "machine": measure.machine_info(device),
        "backend": policy.to_dict(),
        "limits": limits,
        "workloads": [
            run_workload(
                WORKLOADS[w], base, splits.train, limits, options, device, log, splits.image_shape
            )
            for w in workloads
        ],
    }
    return report


# ----------------------------------------------------------------------------- output


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def format_table(report: dict[str, Any]) -> list[str]:
    """Render the report as a Markdown table, one row per workload and peer."""
    machine = report["machine"]
    lines = [
        f"{machine['cpu']} ({machine['cores']} cores), {machine['device']}, "
        f"jax {machine['versions']['jax']}, dataset {report['dataset']}, "
        f"median of {report['repeats']}",
        "",
        "| workload | peer | median | compile | peer / mnist-jax | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for w in report["workloads"]:
        for r in w["rows"]:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            lines.append(
                f"| {w['name']} | {r['peer']} | {_seconds(r['median_s'])} | "
                f"{_seconds(r['compile_s'])} | {ratio} | {r['note']} |"
            )
    return lines
