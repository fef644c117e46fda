"""What `mnist-jax train` does around the trainer: resolve, check, report, and save.

Kept apart from `cli.py` so the CLI stays free of JAX, and apart from the trainer so it
stays free of terminal concerns. Nothing a run has finished is lost: the first Ctrl-C
stops at the next boundary with the last completed epoch saved, a second one ends the process
at once (checkpoint writes are atomic, so the last good one survives), and a failed write
(a full disk) is one error line that leaves the last checkpoint in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_jax import architecture
from mnist_jax.cli.options import say_tensorboard
from mnist_jax.config import Config, load_config
from mnist_jax.console import note
from mnist_jax.data import owndata
from mnist_jax.devices import distributed, runtime
from mnist_jax.errors import ConfigError, Diverged, Interrupted, MnistJaxError
from mnist_jax.records import checkpoint, rundir
from mnist_jax.training import memory

# Room asked for beyond the checkpoint itself: metrics, summary, and the temporary copy that
# an atomic write holds next to the old file.
SPACE_MARGIN_BYTES = 1 << 20


log = note  # progress and messages go to stderr; results to stdout


def default_out(config: Config) -> Path:
    """Return runs/<YYYYmmdd-HHMMSS>-<config name>."""
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{config.name}"


def train_command(
    *,
    config_path: Path | None,
    overrides: dict[str, Any],
    out: Path | None,
    device: str,
    resume: Path | None,
    progress: bool,
    dry_run: bool,
    plot: bool = False,
    devices: int | None = None,
    cluster: distributed.Cluster | None = None,
) -> Any:
    """Resolve the config (or a run to resume), then train and report; see `mnist-jax train`.

    In a job of several processes (`cluster`), every process trains its share of each batch;
    process 0 alone writes the run folder and returns the result (the others return None).
    """
    distributed.join(cluster or distributed.Cluster())
    lead = distributed.is_lead()
    if plot:  # fail before training, not after, when matplotlib is missing
        from mnist_jax.checks import plots

        plots.require_matplotlib()
    ckpt = None
    if resume is not None:
        if config_path is not None:
            raise ConfigError(
                "--resume continues with the run's own config; drop --config and change single "
                "values with flags (e.g. --epochs)"
            )
        ckpt = checkpoint.load(resume)
        config = ckpt.config.replace(**{k: v for k, v in overrides.items() if v is not None})
        checkpoint.check_shapes(ckpt.params, config, f"--resume {resume}")
        checkpoint.check_dtypes(ckpt.params, ckpt.opt_leaves, config, f"--resume {resume}")
        out = checkpoint.resolve(resume).parent
        rundir.remove_stale_temporaries(out)
    else:
        config = load_config(config_path, overrides)
        out = out or default_out(config)
        if checkpoint.resolve(out).exists():
            raise MnistJaxError(
                f"{out} already holds a run; continue it with --resume {out} "
                "or choose another --out"
            )
    if lead:
        check_writable(out, create=not dry_run)
        check_free_space(out, config)
    jax_device = runtime.placement(device, devices)  # turns on the compilation cache too
    from mnist_jax.training import trainer

    trainer.check_batch_size(config, jax_device)
    if dry_run:
        return plan(config, out, jax_device) if lead else None
    from mnist_jax import api

    try:
        with (
            stop_on_interrupt() as should_stop,
            progress_bar(progress and lead) as (
                callback,
                line,
            ),
        ):
            result = api.train(
                config, out, placement=jax_device, log=line if lead else _quiet,
                progress=callback, resume=ckpt, should_stop=distributed.agreed(should_stop),
            )  # fmt: skip
    except Interrupted as e:
        raise Interrupted(f"{e}; {rundir.how_to_continue(out)}") from None
    except Diverged as e:
        told = e.saying(kept_in(out, e))
        # the same line everywhere, but only process 0 reports the facts (--json)
        raise (told if lead else MnistJaxError(str(told))) from None
    except (MemoryError, RuntimeError) as e:  # XLA's JaxRuntimeError is a RuntimeError
        if not memory.is_out_of_memory(e):
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise MnistJaxError(
            f"out of memory while training ({first}); reduce --hidden or --batch-size; "
            f"{rundir.how_to_continue(out)}"
        ) from None
    except OSError as e:
        # Reading inputs already turned its OSErrors into DataError; what is left is writing.
        raise MnistJaxError(
            f"could not write {e.filename or out}: {e.strerror or e}; {rundir.how_to_continue(out)}"
        ) from None
    if not lead:
        return None
    if plot:
        for path in plots.plot_result(result, out, log=log):
            log(f"plot {path}")
    log(f"run saved in {out}  (evaluate again with: mnist-jax eval {out})")
    say_tensorboard(out)
    return result


def seeds_command(
    *, seeds: list[int], command: str, out: Path | None, **train: Any
) -> dict[str, Any]:
    """Train one config once per seed, each into OUT/seed-S; write and return the row.

    The row (`tools.results.make_row`) holds each seed's figures, their mean and sample
    standard deviation, and the machine with its measured GEMM rate; it is written to
    OUT/seeds.json, and the run folders stay for `mnist-jax committee`.
    """
    if train.get("resume") is not None:
        raise ConfigError("--seeds trains new runs; continue one seed's run with --resume alone")
    config = load_config(train["config_path"], train["overrides"])
    out = out or default_out(config.replace(name=f"{config.name}-seeds"))
    if (out / "seeds.json").exists():
        raise MnistJaxError(f"{out} already holds a row of seeds; choose another --out")
    summaries, outs = [], []
    for seed in seeds:
        log(f"seed {seed} of {config.name} ({len(outs) + 1} of {len(seeds)})")
        run_out = out / f"seed-{seed}"
        overrides = {**train["overrides"], "seed": seed}
        result = train_command(**{**train, "overrides": overrides, "out": run_out})
        if result is None:
            return {}  # a process other than 0 of a job: process 0 writes the row
        summaries.append(result.to_dict())
        outs.append(str(run_out))
    from mnist_jax.files import atomic_write_json
    from mnist_jax.tools import results as rows

    row = rows.make_row(summaries, rows.machine(runtime.placement(train["device"])), command, outs)
    atomic_write_json(out / "seeds.json", row)
    log(f"row saved in {out / 'seeds.json'}  (a committee of its runs: mnist-jax committee)")
    return row


def kept_in(out: Path, error: Diverged) -> str:
    """Say what the run folder of a diverged run keeps, and how to go on with a smaller lr."""
    if error.kept_epoch == 0:
        return f"nothing was saved in {out}"
    return (
        f"{out} keeps epoch {error.kept_epoch}; continue with: mnist-jax train --resume {out} "
        f"--lr {error.suggested_lr:g}"
    )


def _quiet(line: str) -> None:
    """The log of processes other than 0: their epochs are process 0's."""


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest folder above it that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(out: Path, create: bool = True) -> None:
    """Fail before training if the run folder cannot be created or written.

    With `create` False (a dry run) nothing is made: the folder, or the nearest one above it
    that exists, must be a folder this process may write in.
    """
    if not create:
        there = nearest_existing(out.absolute())
        if not there.is_dir() or not os.access(there, os.W_OK | os.X_OK):
            raise MnistJaxError(
                f"cannot write to the run folder {out}: {there} is not a folder "
                "this process may write in"
            )
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MnistJaxError(f"cannot write to the run folder {out}: {e.strerror or e}") from None


def check_free_space(out: Path, config: Config) -> None:
    """Fail before training if the run folder's disk cannot hold two checkpoints."""
    needed = 2 * checkpoint.expected_bytes(config) + SPACE_MARGIN_BYTES
    free = shutil.disk_usage(nearest_existing(out.absolute())).free
    if free < needed:
        raise MnistJaxError(
            f"not enough free space for the run folder {out}: {free / 1e6:,.1f} MB free, "
            f"a run of this config needs about {needed / 1e6:,.1f} MB"
        )


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[Any]:
    """Yield should_stop(): the first Ctrl-C asks the run to stop at the next boundary.

    A second Ctrl-C restores the default handler's effect and ends the process at once;
    checkpoints are written atomically, so the last completed one is never damaged.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set  # signal handlers can only be set from the main thread
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        if requested.is_set():
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.raise_signal(signal.SIGINT)
            return
        requested.set()
        log("stopping; the last completed epoch will be kept (press Ctrl-C again to quit at once)")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run would do: `train --dry-run` shows it and stops."""

    config: Config
    dataset: str
    sizes: dict[str, int]  # images per split
    steps_per_epoch: int
    device: str
    out: str
    memory: memory.MemoryPlan

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "architecture": list(architecture.layer_sizes(self.config)),
            "num_params": architecture.num_params(self.config),
            "dataset": self.dataset,
            "images": self.sizes,
            "steps_per_epoch": self.steps_per_epoch,
            "device": self.device,
            "out": self.out,
            "memory": self.memory.to_dict(),
            "flops_per_epoch": self.flops_per_epoch(),
        }

    def flops_per_epoch(self) -> float:
        """The FLOPs of one epoch's matrix products, forward and backward (`measure`)."""
        from mnist_jax.tools import measure

        c = self.config
        batch = self.sizes["train"] if c.full_batch else c.batch_size
        sizes = architecture.layer_sizes(c)
        return measure.workload_cost(sizes, batch, self.steps_per_epoch, c.full_batch)["flops"]

    def lines(self) -> list[str]:
        from mnist_jax.training import distort

        c, sizes, flops = self.config, self.sizes, self.flops_per_epoch()
        arch = "-".join(map(str, architecture.layer_sizes(c)))
        params = architecture.num_params(c)
        # L-BFGS's line search picks each step: lr and the schedule are unused
        step_size = "line search" if c.optimizer == "lbfgs" else f"lr {c.lr}, {c.schedule} schedule"
        return [
            f"config     {c.name}: {arch} {c.activation}, {params:,} parameters",
            f"data       {self.dataset}: {sizes['train']:,} train, {sizes['validation']:,} "
            f"validation, {sizes['test']:,} test",
            f"training   {c.optimizer}, {c.epochs} epochs x {self.steps_per_epoch} steps, "
            f"batch {c.batch_size}, {step_size}",
            *([f"distort    {distort.describe(c)}"] if c.augment != "none" else []),
            f"compute    {flops / 1e12:.3g} TFLOP an epoch, "
            f"{flops * c.epochs / 1e12:,.4g} TFLOP in all (products, forward "
            "and backward)",
            f"device     {self.device}",
            *self.memory.lines(),
            f"output     {self.out}",
        ]


def plan(config: Config, out: Path, device: Any) -> Plan:
    """Read the config's data and say what a run would do, with its memory plan.

    When the data fits, it goes on the device and the epoch is compiled (not run) so that the
    plan also shows JAX's own count (`Trainer.compiled_epoch_bytes`); no parameter is drawn.
    """
    import dataclasses

    from mnist_jax import data
    from mnist_jax.devices.shards import local_device
    from mnist_jax.training import optim, trainer

    splits = data.load(config, log)
    config = owndata.fit_config(config, splits.image_shape, splits.num_classes, splits.name)
    sizes = {name: len(getattr(splits, name).x) for name in ("train", "validation", "test")}
    steps = optim.steps_per_epoch(config, sizes["train"])
    estimate = memory.plan(config, sizes, local_device(device))
    if estimate.parts["dataset"] < estimate.offer:
        with trainer.precision(config):
            built = trainer.build(config, splits, device)
            estimate = dataclasses.replace(estimate, compiled=built.compiled_epoch_bytes())
    return Plan(config, splits.name, sizes, steps, str(device), str(out), estimate)


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[tuple[Any, Any]]:
    """Yield (progress callback or None, line printer) for one training run.

    The bar (rich, which typer already brings) is transient: it shows the running epoch and
    disappears, leaving the one-line-per-epoch log.
    """
    if not enabled:
        yield None, log
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "epoch", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip
    task = None

    def advance(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("epoch", total=total)
        bar.update(task, completed=done)
        if done >= total:
            bar.remove_task(task)
            task = None

    with bar:
        yield advance, bar.console.print
