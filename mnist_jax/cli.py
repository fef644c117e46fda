"""The `mnist-jax` command line: one thin command per verb, no JAX here.

Each command parses its options and makes one call into the library. Bad input (any
`MnistJaxError`) ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mnist_jax.errors import ConfigError, MnistJaxError

app = typer.Typer(
    help="Train, evaluate and check a JAX MLP on MNIST.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Find, verify and download the MNIST files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

EXIT_BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print `message` as one error line on stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def reports_errors(command):
    """Turn the project's own errors into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MnistJaxError as e:
            raise fail(str(e)) from None

    return wrapper


def echo_json(value: Any) -> None:
    """Print `value` as indented JSON on stdout."""
    typer.echo(json.dumps(value, indent=2))


def parse_hidden(text: str | None) -> tuple[int, ...] | None:
    """Parse '512,256' into (512, 256); an empty string means no hidden layer."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"--hidden must be comma-separated integers like 512,256, got '{text}'"
        ) from None


def parse_batch_size(text: str | None) -> int | str | None:
    """Parse --batch-size: a positive integer or 'full'."""
    if text is None or text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--batch-size must be an integer or 'full', got '{text}'") from None


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (only what differs from the defaults)."),
]
DataDirOption = Annotated[
    str | None, typer.Option(help="Folder holding the four MNIST IDX files (.gz or raw).")
]


@app.command()
@reports_errors
def train(
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    batch_size: Annotated[str | None, typer.Option(help="Examples per step, or 'full'.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (peak, with a schedule).")] = None,
    hidden: Annotated[str | None, typer.Option(help="Hidden widths, e.g. 512,256.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for init, split and shuffling.")] = None,
    data_dir: DataDirOption = None,
    dataset: Annotated[
        str | None, typer.Option(help="mnist (full set, or the sample offline) or sample.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/<time>-<name>).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    devices: Annotated[
        int | None,
        typer.Option(help="Data-parallel over this many devices (default: all of that kind)."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its checkpoint.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Draw a progress bar on a terminal.")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Resolve the config and data, print the plan, stop.")
    ] = False,
) -> None:
    """Train an MLP and report its test accuracy; writes a checkpoint, metrics and a summary."""
    from mnist_jax import run

    overrides = {
        "epochs": epochs,
        "batch_size": parse_batch_size(batch_size),
        "lr": lr,
        "hidden": parse_hidden(hidden),
        "seed": seed,
        "data_dir": data_dir,
        "dataset": dataset,
    }
    run.train_command(
        config_path=config,
        overrides=overrides,
        out=out,
        device=device,
        resume=resume,
        progress=progress and sys.stderr.isatty(),
        dry_run=dry_run,
        devices=devices,
    )


@app.command("eval")
@reports_errors
def evaluate(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint.npz or the run folder holding it.")
    ],
    split: Annotated[str, typer.Option(help="test, validation or train.")] = "test",
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recompute accuracy and loss of a saved checkpoint on one split."""
    if split not in ("test", "validation", "train"):
        raise ConfigError(f"unknown split '{split}': choose test, validation or train")
    from mnist_jax import train as training

    result = training.evaluate_checkpoint(checkpoint, split, data_dir, log=_note)
    if as_json:
        echo_json(result)
    else:
        typer.echo(
            f"{split} accuracy {result['accuracy']:.2%}  loss {result['loss']:.4f}  "
            f"({result['count']:,} images of {result['dataset']}, epoch {result['epoch']})"
        )


@data_app.command("info")
@reports_errors
def data_info(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Say where the MNIST files are found and whether their checksums match."""
    from mnist_jax import data

    report = data.describe(data_dir)
    if as_json:
        echo_json(report)
        return
    for line in data.format_description(report):
        typer.echo(line)


@data_app.command("fetch")
@reports_errors
def data_fetch(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where to put the files (default: the user cache).")
    ] = None,
) -> None:
    """Download the four MNIST files from the public mirrors, verified, into the cache."""
    from mnist_jax import data

    folder = data_dir or data.cache_dir()
    data.fetch(folder, log=_note)
    typer.echo(f"MNIST is in {folder}")


# --- performance: benchmark and sweep


@app.command()
@reports_errors
def bench(
    workloads: Annotated[
        str, typer.Option(help="Comma-separated: tiny, wide, fullbatch, default, sweep.")
    ] = "tiny,wide,fullbatch,default,sweep",
    repeats: Annotated[int, typer.Option(help="Timed repetitions after one warm-up.")] = 5,
    quick: Annotated[
        bool, typer.Option("--quick", help="A tiny size (1,024 images, 3 iterations) for tests.")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    dataset: Annotated[str, typer.Option(help="mnist (full set if found) or sample.")] = "mnist",
    data_dir: DataDirOption = None,
) -> None:
    """Time mnist-jax side by side with NumPy, PyTorch, a per-step jit loop and the hardware."""
    from mnist_jax import bench as benchmark

    benchmark.bench_command(workloads, repeats, quick, json_path, dataset, data_dir)


@app.command()
@reports_errors
def sweep(
    config: ConfigOption = None,
    seeds: Annotated[str, typer.Option(help="Init seeds, e.g. 0,1,2,3.")] = "0,1,2,3",
    lrs: Annotated[str, typer.Option(help="Learning rates, e.g. 0.05,0.1,0.2.")] = "0.1",
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    batch_size: Annotated[str | None, typer.Option(help="Examples per step, or 'full'.")] = None,
    hidden: Annotated[str | None, typer.Option(help="Hidden widths, e.g. 512,256.")] = None,
    data_dir: DataDirOption = None,
    dataset: Annotated[
        str | None, typer.Option(help="mnist (full set, or the sample offline) or sample.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the rows as JSON here.")
    ] = None,
) -> None:
    """Train one model per (seed, lr) pair at once in one compiled program; one row each."""
    from mnist_jax import sweep as sweeping
    from mnist_jax.config import load_config

    overrides = {
        "epochs": epochs,
        "batch_size": parse_batch_size(batch_size),
        "hidden": parse_hidden(hidden),
        "data_dir": data_dir,
        "dataset": dataset,
    }
    sweeping.sweep_command(
        load_config(config, overrides),
        parse_numbers(seeds, int, "--seeds"),
        parse_numbers(lrs, float, "--lrs"),
        json_path,
        log=_note,
    )


def parse_numbers(text: str, kind: type, option: str) -> list:
    """Parse '0,1,2' into numbers of `kind`; a bad entry is a ConfigError naming `option`."""
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated numbers, got '{text}'") from None


def _note(line: str) -> None:
    typer.echo(line, err=True)


def main() -> None:
    """Entry point of the `mnist-jax` console script."""
    app()
