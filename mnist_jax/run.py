"""What `mnist-jax train` does around the trainer: resolve, check, report, and save.

Kept apart from `cli.py` so the CLI stays free of JAX, and apart from `train.py` so the
trainer stays free of terminal concerns.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_jax import checkpoint, runtime
from mnist_jax.config import Config, load_config
from mnist_jax.errors import MnistJaxError


def log(line: str) -> None:
    """Print a progress line on stderr; results go to stdout."""
    print(line, file=sys.stderr, flush=True)


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
    devices: int | None = None,
) -> dict[str, Any] | None:
    """Resolve the config (or a run to resume), then train and report; see `mnist-jax train`."""
    ckpt = None
    if resume is not None:
        ckpt = checkpoint.load(resume)
        config = ckpt.config.replace(**{k: v for k, v in overrides.items() if v is not None})
        out = resume
    else:
        config = load_config(config_path, overrides)
        out = out or default_out(config)
        if checkpoint.resolve(out).exists():
            raise MnistJaxError(
                f"{out} already holds a run; continue it with --resume {out} "
                "or choose another --out"
            )
    check_writable(out)
    jax_device = runtime.placement(device, devices)
    runtime.enable_compilation_cache()
    if dry_run:
        print_plan(config, out, jax_device)
        return None
    from mnist_jax.train import train_and_evaluate

    with progress_bar(progress) as (callback, line):
        summary = train_and_evaluate(
            config, out, device=jax_device, log=line, progress=callback, resume=ckpt
        )
    print(f"run saved in {out}  (evaluate again with: mnist-jax eval {out})")
    return summary


def check_writable(out: Path) -> None:
    """Fail before training if the run folder cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MnistJaxError(f"cannot write to the run folder {out}: {e.strerror or e}") from None


def print_plan(config: Config, out: Path, device: Any) -> None:
    """Print what a run would do, without training."""
    from mnist_jax.train import prepare_data, root_keys, steps_per_epoch

    run = prepare_data(config, root_keys(config)["data"], device, log)
    num_train = int(run.train.x.shape[0])
    sizes = checkpoint.layer_sizes(config)
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    num_val = 0 if run.validation is None else int(run.validation.mask.sum())
    arch = "-".join(map(str, sizes))
    print(f"config     {config.name}: {arch} {config.activation}, {params:,} parameters")
    print(
        f"data       {run.name}: {num_train:,} train, {num_val:,} validation, "
        f"{int(run.test.mask.sum()):,} test"
    )
    print(
        f"training   {config.optimizer}, {config.epochs} epochs x "
        f"{steps_per_epoch(config, num_train)} steps, batch {config.batch_size}, lr {config.lr}"
    )
    print(f"device     {device}")
    print(f"output     {out}")


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
