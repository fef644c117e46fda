"""The command line's shared pieces: the typer apps, the option types declared once, plumbing.

`cli.py` and `cli_tools.py` declare the commands; every option that several commands take is
an `Annotated` alias here with one help text, and every command reports through `show` (text
for a person, or one JSON document with `--json`) and `reports_errors` (one `error:` line and
exit code 2 for bad input). No JAX is imported here.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mnist_jax.console import emit_json, note
from mnist_jax.errors import ConfigError, MnistJaxError


def summary(command: Any) -> str:
    """The first paragraph of a click command's help (its docstring's first line), whole."""
    text = command.short_help or command.help or ""
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


class Group(TyperGroup):
    """A command group whose `--help` lists each command's first line whole.

    click cuts a command's line in the list to fit the terminal ("writes a..."); here the line
    wraps instead, so the list reads the same as each command's own `--help`.
    """

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:  # click.HelpFormatter
        rows = [
            (name, summary(command))
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=Group,
    help="Train, evaluate and check a JAX MLP on MNIST.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(
    cls=Group,
    help="Find, verify, download, import and export the MNIST files.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")
theta_app = typer.Typer(
    cls=Group,
    help="Move a model to and from the L-BFGS seed's Theta1.txt/Theta2.txt weight files.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(theta_app, name="theta")

EXIT_BAD_INPUT = 2


class Choice(enum.StrEnum):
    """A string option whose values --help lists."""


Device = Choice("Device", {name: name for name in ("auto", "cpu", "gpu")})
Dataset = Choice(
    "Dataset",
    {n: n for n in ("mnist", "sample", "auto", "idx", "kaggle-csv", "onehot-csv", "mat")},
)
Optimizer = Choice("Optimizer", {n: n for n in ("sgd", "momentum", "nesterov", "lbfgs")})
Schedule = Choice("Schedule", {n: n for n in ("constant", "cosine")})
Augment = Choice("Augment", {n: n for n in ("none", "affine", "elastic", "both")})
Split = Choice("Split", {n: n for n in ("test", "validation", "train")})
Precision = Choice("Precision", {n: n for n in ("float64", "float32")})
Format = Choice("Format", {n: n for n in ("kaggle-csv", "onehot-csv", "mat")})
ModelFormat = Choice("ModelFormat", {n: n for n in ("onnx", "safetensors")})
MatmulPrecision = Choice("MatmulPrecision", {n: n for n in ("auto", "default", "high", "highest")})

# --- options shared by several commands, each declared once

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE|NAME",
        help="TOML config (only what differs from the defaults), or a bundled config's name "
        "(see `mnist-jax configs`).",
    ),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="PATH",
        help="Dataset file or folder: an IDX folder (your own dataset, e.g. Fashion-MNIST: no "
        "MNIST checksum, sizes read from the files), a Kaggle CSV, a one-hot CSV folder or a "
        ".mat file; the format is told from the file.",
    ),
]
DataDirOption = Annotated[
    str | None,
    typer.Option(metavar="DIR", help="Folder holding the four MNIST IDX files (.gz or raw)."),
]
DatasetOption = Annotated[
    Dataset | None,
    typer.Option(
        help="mnist: the full set (the bundled sample offline); sample: the sample; idx: your "
        "own IDX folder (--data DIR or --data-dir DIR)."
    ),
]
EpochsOption = Annotated[int | None, typer.Option(help="Passes over the training set.")]
SeedOption = Annotated[int | None, typer.Option(help="Seed for init, split and shuffling.")]
BatchSizeOption = Annotated[
    str | None, typer.Option(metavar="N|full", help="Examples per step, or 'full'.")
]
HiddenOption = Annotated[
    str | None, typer.Option(metavar="W1,W2", help="Hidden widths, e.g. 512,256.")
]
LrOption = Annotated[float | None, typer.Option(help="Learning rate (the peak of a schedule).")]
OptimizerOption = Annotated[
    Optimizer | None,
    typer.Option(help="sgd (plain), momentum, nesterov (both optax.sgd) or lbfgs (full-batch)."),
]
MomentumOption = Annotated[
    float | None, typer.Option(help="Momentum coefficient of momentum and nesterov.")
]
ScheduleOption = Annotated[
    Schedule | None, typer.Option(help="Learning rate: constant, or cosine decay to 0.")
]
AugmentOption = Annotated[
    Augment | None,
    typer.Option(
        help="Distort every training image afresh each epoch: none, affine (rotation, scale, "
        "shear, shift), elastic (Simard et al. 2003) or both; strengths from the config."
    ),
]
DeviceOption = Annotated[Device, typer.Option(help="Where to run: JAX's default, cpu or gpu.")]
DevicesOption = Annotated[
    int | None, typer.Option(help="Data-parallel over this many devices (default 1).")
]
MatmulPrecisionOption = Annotated[
    MatmulPrecision | None,
    typer.Option(
        help="float32 matrix products: auto (full float32 everywhere), or XLA's default "
        "(TF32 on recent NVIDIA GPUs), high or highest."
    ),
]
CoordinatorOption = Annotated[
    str | None,
    typer.Option(
        metavar="HOST:PORT",
        help="Multi-process job: process 0's address (else MNIST_JAX_COORDINATOR; SLURM and "
        "Open MPI jobs are detected).",
    ),
]
NumProcessesOption = Annotated[
    int | None,
    typer.Option(
        metavar="N", help="Multi-process job: processes in it (else MNIST_JAX_NUM_PROCESSES)."
    ),
]
ProcessIdOption = Annotated[
    int | None,
    typer.Option(
        metavar="I", help="Multi-process job: this one's id, 0 to N-1 (else MNIST_JAX_PROCESS_ID)."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else there.")
]
WriteJsonOption = Annotated[
    Path | None, typer.Option(metavar="FILE", help="Also write the JSON document to FILE.")
]
CheckpointArgument = Annotated[
    Path, typer.Argument(help="A checkpoint.npz or the run folder holding it.")
]
ModelArgument = Annotated[
    Path,
    typer.Argument(
        metavar="CHECKPOINT",
        help="A checkpoint.npz, the run folder holding it, or a committee folder "
        "(`mnist-jax committee`).",
    ),
]


# --- plumbing


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print `message` as one error line on stderr; return the Exit to raise."""
    note(f"error: {message}")
    return typer.Exit(code)


def reports_errors(command):
    """Turn the project's own errors into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MnistJaxError as e:
            raise fail(str(e), getattr(e, "exit_code", EXIT_BAD_INPUT)) from None

    return wrapper


def say_tensorboard(folder: Path | None) -> None:
    """Say how to view the TensorBoard events a command wrote under `folder` (if it did)."""
    if folder is not None and any(folder.rglob("events.out.tfevents.*")):
        note(f"TensorBoard: tensorboard --logdir {folder}")


def show(
    value: Any,
    as_json: bool,
    lines: Callable[[Any], Iterable[str]],
    write_json: Path | None = None,
) -> None:
    """Print a command's result: JSON (`--json`) or the lines for a person; maybe a file too."""
    if write_json is not None:
        from mnist_jax.files import atomic_write_json

        atomic_write_json(write_json, value)
    if as_json:
        emit_json(value)
        return
    for line in lines(value):
        typer.echo(line)


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


def parse_seeds(text: str, seed: int | None, dry_run: bool) -> list[int]:
    """Parse --seeds ('0-4', '0,1,2'); it replaces --seed and trains, so no --dry-run."""
    from mnist_jax.tools.results import parse_seeds as parse

    if seed is not None or dry_run:
        raise ConfigError(
            f"--seeds trains each seed; drop {'--seed' if seed is not None else '--dry-run'}"
        )
    try:
        return parse(text)
    except ValueError as e:
        raise ConfigError(str(e)) from None


TYPED: list[str] = []  # the arguments of this process's command, as `main` received them


def typed_command() -> str:
    """The command line as typed, for a result to say how it was made."""
    import shlex

    return " ".join(shlex.quote(arg) for arg in ["mnist-jax", *TYPED])


def parse_batch_size(text: str | None) -> int | str | None:
    """Parse --batch-size: a positive integer or 'full'."""
    if text is None or text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--batch-size must be an integer or 'full', got '{text}'") from None


def parse_numbers(text: str, kind: type, option: str) -> list:
    """Parse '0,1,2' into numbers of `kind`; a bad entry is a ConfigError naming `option`."""
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated numbers, got '{text}'") from None


def data_overrides(
    data: str | None, data_dir: str | None, dataset: Dataset | None
) -> dict[str, Any]:
    """Config values of the data options: --data PATH picks the file and tells its format."""
    values: dict[str, Any] = {"data_dir": data_dir, "dataset": dataset and dataset.value}
    if data is not None:
        values.update(data_path=data, dataset=values["dataset"] or "auto")
    return values


def placement(device: Device, devices: int | None) -> Any:
    """Resolve --device and --devices (JAX is imported only now); turns on the compile cache."""
    from mnist_jax.devices import runtime

    return runtime.placement(device.value, devices)


def resolve(config: str | None, overrides: dict[str, Any]):
    """The config file plus the flags (None values ignored)."""
    from mnist_jax.config import load_config

    return load_config(config, overrides)
