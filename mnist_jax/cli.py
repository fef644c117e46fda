"""The `mnist-jax` command line: one thin command per verb, no JAX here.

Each command parses its options and makes one call into the library, then shows the value it
returns: text for a person, or with `--json` exactly one JSON document on stdout (messages
always go to stderr). Options shared by several commands are declared once, below. Bad input
(any `MnistJaxError`) ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from mnist_jax.console import emit_json, note
from mnist_jax.errors import ConfigError, MnistJaxError

app = typer.Typer(
    help="Train, evaluate and check a JAX MLP on MNIST.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(
    help="Find, verify, download, import and export the MNIST files.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")
theta_app = typer.Typer(
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
Split = Choice("Split", {n: n for n in ("test", "validation", "train")})
Precision = Choice("Precision", {n: n for n in ("float64", "float32")})
Format = Choice("Format", {n: n for n in ("kaggle-csv", "onehot-csv", "mat")})
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


# --- plumbing


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print `message` as one error line on stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
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
    from mnist_jax import runtime

    return runtime.placement(device.value, devices)


def resolve(config: str | None, overrides: dict[str, Any]):
    """The config file plus the flags (None values ignored)."""
    from mnist_jax.config import load_config

    return load_config(config, overrides)


def _print_version(value: bool) -> None:
    if value:
        from mnist_jax import __version__

        typer.echo(f"mnist-jax {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Train, evaluate and check a JAX MLP on MNIST."""


# --- training and evaluation


@app.command()
@reports_errors
def train(
    config: ConfigOption = None,
    data: DataOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    optimizer: OptimizerOption = None,
    momentum: MomentumOption = None,
    schedule: ScheduleOption = None,
    hidden: HiddenOption = None,
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
    dataset: DatasetOption = None,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Run folder (default runs/<time>-<name>).")
    ] = None,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    matmul_precision: MatmulPrecisionOption = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Continue the run in this folder from its checkpoint."),
    ] = None,
    coordinator: CoordinatorOption = None,
    num_processes: NumProcessesOption = None,
    process_id: ProcessIdOption = None,
    progress: Annotated[bool, typer.Option(help="Draw a progress bar on a terminal.")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Resolve the config and data, print the plan, stop.")
    ] = False,
    plot: Annotated[
        bool, typer.Option("--plot", help="Also draw the run's PNG plots (needs the plot extra).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Train an MLP and report its test accuracy; writes a checkpoint, metrics and a summary."""
    from mnist_jax import distributed, run

    overrides = {
        "epochs": epochs,
        "batch_size": parse_batch_size(batch_size),
        "lr": lr,
        "optimizer": optimizer and optimizer.value,
        "momentum": momentum,
        "schedule": schedule and schedule.value,
        "hidden": parse_hidden(hidden),
        "seed": seed,
        "matmul_precision": matmul_precision and matmul_precision.value,
        **data_overrides(data, data_dir, dataset),
    }
    outcome = run.train_command(
        config_path=config,
        overrides=overrides,
        out=out,
        device=device.value,
        devices=devices,
        resume=resume,
        progress=progress and not as_json and sys.stderr.isatty(),
        dry_run=dry_run,
        plot=plot,
        cluster=distributed.settings(coordinator, num_processes, process_id),
    )
    if outcome is not None:  # None in the processes other than 0 of a job
        show(outcome.to_dict(), as_json, lambda _: outcome.lines())


@app.command("eval")
@reports_errors
def evaluate(
    checkpoint: CheckpointArgument,
    split: Annotated[Split, typer.Option(help="Which split of the run's data.")] = Split.test,
    data: DataOption = None,
    data_dir: DataDirOption = None,
    mistakes: Annotated[
        int, typer.Option(min=0, help="How many of the most confident mistakes to list.")
    ] = 10,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    matmul_precision: MatmulPrecisionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute a checkpoint's accuracy and loss, with a confusion matrix and mistakes.

    Also prints per-class precision, recall and F1, and the most confident mistakes.
    """
    from mnist_jax import api, report

    result = api.evaluate(
        checkpoint, split.value, data_dir=data_dir, data_path=data, log=note,
        placement=placement(device, devices),
        matmul_precision=matmul_precision and matmul_precision.value,
    ).to_dict(mistakes)  # fmt: skip
    show(result, as_json, report.format_evaluation)


@app.command()
@reports_errors
def predict(
    checkpoint: CheckpointArgument,
    files: Annotated[
        list[Path], typer.Argument(help="PNG/JPEG (needs Pillow), PGM (P2/P5) or .npy files.")
    ],
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict the digit in each image file, normalised the way MNIST digits were made."""
    from mnist_jax import inference as predicting

    results = predicting.predict_files(checkpoint, files, placement(device, devices))
    show(results, as_json, predicting.format_predictions)


@app.command()
@reports_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (metrics.jsonl, checkpoint.npz).")],
    data_dir: DataDirOption = None,
) -> None:
    """Draw a run's curves, confusion matrix, predictions and weights as PNG files.

    The files go into the run folder. Needs the plot extra (matplotlib, Pillow).
    """
    from mnist_jax import plots

    for path in plots.plot_run(run_dir, data_dir, log=note):
        typer.echo(str(path))


@app.command()
@reports_errors
def serve(
    checkpoint: CheckpointArgument,
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS", help="Address to listen on; the default accepts local visitors only."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8000,
    timeout: Annotated[
        float,
        typer.Option(min=0.001, help="Seconds a request may take to arrive whole, or stay idle."),
    ] = 10.0,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Connections open at once; more are answered 503.")
    ] = 1000,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
) -> None:
    """Serve a page where you draw a digit and watch the model's probabilities update.

    SIGTERM or Ctrl-C stops it after answering the requests under way.
    """
    from mnist_jax import serve as serving

    serving.serve(
        checkpoint, host, port, log=note, timeout=timeout, max_connections=max_connections,
        placement=placement(device, devices),
    )  # fmt: skip


# --- checking and comparing


@app.command()
@reports_errors
def gradcheck(
    config: ConfigOption = None,
    data: DataOption = None,
    batch: Annotated[int, typer.Option(help="Training images in the checked batch.")] = 100,
    dtype: Annotated[
        Precision, typer.Option(help="float64 (tolerance 1e-10) or float32 (tolerance 1e-4).")
    ] = Precision.float64,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed for init, batch and checked points (default: the config's)."),
    ] = None,
    data_dir: DataDirOption = None,
    dataset: DatasetOption = None,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check JAX's gradients against hand-written NumPy backpropagation; exit 1 if they differ.

    Matrix products run at full precision ("highest") on every device.
    """
    from mnist_jax import gradcheck as checking

    resolved = resolve(config, data_overrides(data, data_dir, dataset))
    report = checking.check_gradients(
        resolved, batch=batch, dtype=dtype.value, seed=seed, log=note,
        placement=placement(device, devices),
    )  # fmt: skip
    show(report, as_json, checking.format_report)
    if not report["passed"]:
        raise typer.Exit(1)


@app.command()
@reports_errors
def compare(
    config: ConfigOption = None,
    data: DataOption = None,
    activations: Annotated[
        str, typer.Option(metavar="A,B", help="Hidden activations to train, comma-separated.")
    ] = "sigmoid,tanh,relu",
    epochs: EpochsOption = None,
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
    plot: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Draw the loss curves into this image (needs [plot])."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Keep each run in DIR/<activation> (default: none)."),
    ] = None,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    matmul_precision: MatmulPrecisionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train one config with each hidden activation; print train/test error, loss and seconds."""
    from mnist_jax import compare as comparison

    precision = matmul_precision and matmul_precision.value
    resolved = resolve(
        config,
        {"epochs": epochs, "seed": seed, "matmul_precision": precision,
         **data_overrides(data, data_dir, None)},
    )  # fmt: skip
    names = comparison.parse_activations(activations)
    rows = comparison.compare_command(
        resolved, names, plot=plot, out_dir=out, log=note, placement=placement(device, devices)
    )
    show(rows, as_json, comparison.format_table)


# --- performance: benchmark and sweep


@app.command()
@reports_errors
def bench(
    workloads: Annotated[
        str,
        typer.Option(
            metavar="W1,W2", help="Comma-separated: tiny, wide, fullbatch, default, sweep."
        ),
    ] = "tiny,wide,fullbatch,default,sweep",
    repeats: Annotated[int, typer.Option(help="Timed repetitions after one warm-up.")] = 5,
    quick: Annotated[
        bool, typer.Option("--quick", help="A tiny size (1,024 images, 3 iterations) for tests.")
    ] = False,
    data: DataOption = None,
    data_dir: DataDirOption = None,
    dataset: DatasetOption = None,
    device: DeviceOption = Device.auto,
    matmul_precision: MatmulPrecisionOption = None,
    as_json: JsonOption = False,
    write_json: WriteJsonOption = None,
) -> None:
    """Time mnist-jax side by side with NumPy, PyTorch, a per-step jit loop and the hardware."""
    from mnist_jax import bench as benchmark

    report = benchmark.run_benchmark(
        [w.strip() for w in workloads.split(",") if w.strip()],
        data_source=data_overrides(data, data_dir, dataset),
        options=benchmark.Options(repeats, quick),
        log=note,
        device=placement(device, None),
        matmul_precision=matmul_precision and matmul_precision.value,
    )
    show(report, as_json, benchmark.format_table, write_json)


@app.command()
@reports_errors
def sweep(
    config: ConfigOption = None,
    data: DataOption = None,
    seeds: Annotated[
        str, typer.Option(metavar="S1,S2", help="Init seeds, e.g. 0,1,2,3.")
    ] = "0,1,2,3",
    lrs: Annotated[
        str, typer.Option(metavar="LR1,LR2", help="Learning rates, e.g. 0.05,0.1,0.2.")
    ] = "0.1",
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    hidden: HiddenOption = None,
    data_dir: DataDirOption = None,
    dataset: DatasetOption = None,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    matmul_precision: MatmulPrecisionOption = None,
    coordinator: CoordinatorOption = None,
    num_processes: NumProcessesOption = None,
    process_id: ProcessIdOption = None,
    as_json: JsonOption = False,
    write_json: WriteJsonOption = None,
) -> None:
    """Train one model per (seed, lr) pair at once in one compiled program; one row each.

    In a job of several processes, each trains its share of the models; process 0 prints all.
    """
    from mnist_jax import distributed
    from mnist_jax import sweep as sweeping

    overrides = {
        "epochs": epochs,
        "batch_size": parse_batch_size(batch_size),
        "hidden": parse_hidden(hidden),
        "matmul_precision": matmul_precision and matmul_precision.value,
        **data_overrides(data, data_dir, dataset),
    }
    rows = sweeping.sweep_command(
        resolve(config, overrides),
        parse_numbers(seeds, int, "--seeds"),
        parse_numbers(lrs, float, "--lrs"),
        distributed.settings(coordinator, num_processes, process_id),
        device=device.value,
        devices=devices,
        log=note,
    )
    if rows is not None:  # None in the processes other than 0 of a job
        show(rows, as_json, sweeping.format_rows, write_json)


@app.command(context_settings={"allow_interspersed_args": False})
@reports_errors
def launch(
    command: Annotated[
        list[str],
        typer.Argument(
            metavar="COMMAND", show_default=False, help="The mnist-jax command and its options."
        ),
    ],
    processes: Annotated[
        int, typer.Option("-n", "--processes", metavar="N", help="How many processes to start.")
    ] = 2,
) -> None:
    """Run `mnist-jax COMMAND` as a job of N processes on this machine, e.g. -n 2 -- train.

    For tests and for one node with several GPUs; CPU processes sum through gloo.

    Process 0's results go to stdout as they are; every other line is prefixed with [i].
    Ctrl-C and SIGTERM reach every process; the exit code is the worst of them.
    """
    from mnist_jax import launch as launching

    raise typer.Exit(launching.launch(processes, command))


@app.command("configs")
@reports_errors
def list_configs() -> None:
    """List the bundled configs that --config takes by name, with what each one is for."""
    from mnist_jax.config import format_bundled_configs

    for line in format_bundled_configs():
        typer.echo(line)


# --- data: where MNIST is, fetching it, other formats


@data_app.command("info")
@reports_errors
def data_info(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Say where the MNIST files are found and whether their checksums match."""
    from mnist_jax import mnist

    show(mnist.describe(data_dir), as_json, mnist.format_description)


@data_app.command("fetch")
@reports_errors
def data_fetch(
    data_dir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Where to put the files (default: the user cache)."),
    ] = None,
) -> None:
    """Download the four MNIST files from the public mirrors, verified, into the cache."""
    from mnist_jax import files, mnist

    folder = data_dir or files.cache_dir()
    mnist.fetch(folder, log=note)
    typer.echo(f"MNIST is in {folder}")


FormatOption = Annotated[Format, typer.Option("--format", help="The file format.")]


@data_app.command("import")
@reports_errors
def data_import(
    path: Annotated[
        Path, typer.Argument(help="The file to read (for onehot-csv: the folder of the 4 CSVs).")
    ],
    fmt: FormatOption,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder to write the IDX files into (default: cache/imported-FORMAT).",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="kaggle-csv: seed choosing the 1,000 dev (test) rows.")
    ] = 0,
) -> None:
    """Convert a Kaggle CSV, one-hot CSV folder or .mat file into IDX files for --data-dir."""
    from mnist_jax import convert

    folder = convert.import_dataset(fmt.value, path, data_dir, seed=seed, log=note)
    typer.echo(f"train on it with: mnist-jax train --data {folder}")


@data_app.command("export")
@reports_errors
def data_export(
    fmt: FormatOption,
    out: Annotated[
        Path,
        typer.Option(metavar="PATH", help="File to write (for onehot-csv: a folder for 4 CSVs)."),
    ],
    data_dir: DataDirOption = None,
    seed: Annotated[int, typer.Option(help="kaggle-csv: seed choosing the rows.")] = 0,
    rows: Annotated[
        int, typer.Option(help="kaggle-csv: training images to write (Kaggle's file has 42,000).")
    ] = 42_000,
) -> None:
    """Write MNIST as a Kaggle train.csv, one-hot CSV files or a .mat file."""
    from mnist_jax import convert

    convert.export_command(fmt.value, out, data_dir=data_dir, seed=seed, rows=rows, log=note)


# --- theta: the L-BFGS seed's weight files


@theta_app.command("export")
@reports_errors
def theta_export(
    checkpoint: CheckpointArgument,
    out: Annotated[
        Path, typer.Option(metavar="DIR", help="Folder for Theta1.txt, Theta2.txt, ...")
    ],
) -> None:
    """Write a checkpoint's layers as Theta1.txt, Theta2.txt: rows = units, bias column first."""
    from mnist_jax import theta

    for path in theta.export_theta(checkpoint, out, log=note):
        typer.echo(str(path))


@theta_app.command("import")
@reports_errors
def theta_import(
    folder: Annotated[Path, typer.Argument(help="Folder holding Theta1.txt, Theta2.txt, ...")],
    out: Annotated[Path, typer.Option(metavar="DIR", help="Run folder to write.")],
    config: ConfigOption = None,
) -> None:
    """Make a run folder (checkpoint.npz) from Theta files, for eval, predict and serve."""
    from mnist_jax import theta

    ckpt = theta.import_theta(folder, resolve(config, {}), out, log=note)
    sizes = "-".join(map(str, theta.checkpoint.layer_sizes(ckpt.config)))
    typer.echo(f"{sizes} {ckpt.config.activation} model written to {out}")


def main(args: list[str] | None = None) -> int:
    """Entry point of the `mnist-jax` console script; returns the exit code.

    Usage errors (an unknown option, a value that is not among the choices) become one
    `error:` line and exit code 2, like every other bad input.
    """
    # Typer raises click's UsageError (vendored by recent typer releases): find it by name.
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    command = typer.main.get_command(app)
    try:
        # Without standalone mode, click returns an Exit's code (or the command's None).
        code = command.main(args, prog_name="mnist-jax", standalone_mode=False)
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `mnist-jax` alone: show the help
            typer.echo(e.format_message(), err=True)
            return EXIT_BAD_INPUT
        where = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
        typer.echo(f"error: {e.format_message()}{where}", err=True)
        return EXIT_BAD_INPUT
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0
