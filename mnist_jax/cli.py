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
data_app = typer.Typer(
    help="Find, verify, download, import and export the MNIST files.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


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

EXIT_BAD_INPUT = 2


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
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (only what differs from the defaults), or a bundled config's "
        "name (see `mnist-jax configs`).",
    ),
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
    plot: Annotated[
        bool, typer.Option("--plot", help="Also draw the run's PNG plots (needs the plot extra).")
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
        plot=plot,
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
    mistakes: Annotated[
        int, typer.Option(min=0, help="How many of the most confident mistakes to list.")
    ] = 10,
) -> None:
    """Recompute a checkpoint's accuracy and loss, with a confusion matrix and mistakes.

    Also prints per-class precision, recall and F1, and the most confident mistakes.
    """
    if split not in ("test", "validation", "train"):
        raise ConfigError(f"unknown split '{split}': choose test, validation or train")
    from mnist_jax import report

    result = report.evaluation_report(checkpoint, split, data_dir, log=_note, mistakes=mistakes)
    if as_json:
        echo_json(result)
    else:
        typer.echo(
            f"{split} accuracy {result['accuracy']:.2%}  loss {result['loss']:.4f}  "
            f"({result['count']:,} images of {result['dataset']}, epoch {result['epoch']})"
        )
        typer.echo("")
        for line in report.format_report(result):
            typer.echo(line)


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


@app.command("configs")
@reports_errors
def list_configs() -> None:
    """List the bundled configs that --config takes by name, with what each one is for."""
    from mnist_jax.config import format_bundled_configs

    for line in format_bundled_configs():
        typer.echo(line)


# --- visualisation: plots, prediction from image files, a drawing page


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

    for path in plots.plot_run(run_dir, data_dir, log=_note):
        typer.echo(str(path))


@app.command()
@reports_errors
def predict(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint.npz or the run folder holding it.")
    ],
    files: Annotated[
        list[Path], typer.Argument(help="PNG/JPEG (needs Pillow), PGM (P2/P5) or .npy files.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Predict the digit in each image file, normalised the way MNIST digits were made."""
    from mnist_jax import predict as predicting

    results = predicting.predict_files(checkpoint, files)
    if as_json:
        echo_json(results)
        return
    for line in predicting.format_predictions(results):
        typer.echo(line)


@app.command()
@reports_errors
def serve(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint.npz or the run folder holding it.")
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default accepts local visitors only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8000,
) -> None:
    """Serve a page where you draw a digit and watch the model's probabilities update."""
    from mnist_jax import serve as serving

    serving.serve(checkpoint, host, port, log=_note)


# --- seed systems: other data formats and the activation comparison

FormatOption = Annotated[str, typer.Option("--format", help="kaggle-csv, onehot-csv or mat.")]


@data_app.command("import")
@reports_errors
def data_import(
    path: Annotated[
        Path, typer.Argument(help="The file to read (for onehot-csv: the folder of the 4 CSVs).")
    ],
    fmt: FormatOption,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder to write the IDX files into (default: cache/imported-FORMAT)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="kaggle-csv: seed choosing the 1,000 dev (test) rows.")
    ] = 0,
) -> None:
    """Convert a Kaggle CSV, one-hot CSV folder or .mat file into IDX files for --data-dir."""
    from mnist_jax import convert

    folder = convert.import_dataset(fmt, path, data_dir, seed=seed, log=_note)
    typer.echo(f"train on it with: mnist-jax train --dataset mnist --data-dir {folder}")


@data_app.command("export")
@reports_errors
def data_export(
    fmt: FormatOption,
    out: Annotated[
        Path, typer.Option(help="File to write (for onehot-csv: the folder for the 4 CSVs).")
    ],
    data_dir: DataDirOption = None,
    seed: Annotated[int, typer.Option(help="kaggle-csv: seed choosing the rows.")] = 0,
    rows: Annotated[
        int, typer.Option(help="kaggle-csv: training images to write (Kaggle's file has 42,000).")
    ] = 42_000,
) -> None:
    """Write MNIST as a Kaggle train.csv, one-hot CSV files or a .mat file."""
    from mnist_jax import convert

    convert.export_command(fmt, out, data_dir=data_dir, seed=seed, rows=rows, log=_note)


@app.command()
@reports_errors
def compare(
    config: ConfigOption = None,
    activations: Annotated[
        str, typer.Option(help="Hidden activations to train, comma-separated.")
    ] = "sigmoid,tanh,relu",
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for init, split and shuffling.")] = None,
    data_dir: DataDirOption = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw the loss curves into this image (needs [plot]).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Keep each run in OUT/<activation> (default: keep none).")
    ] = None,
) -> None:
    """Train one config with each hidden activation; print train/test error, loss and seconds."""
    from mnist_jax import compare as comparison
    from mnist_jax.config import load_config

    resolved = load_config(config, {"epochs": epochs, "seed": seed, "data_dir": data_dir})
    names = comparison.parse_activations(activations)
    comparison.compare_command(resolved, names, plot=plot, out_dir=out, log=_note)


# --- gradcheck


@app.command()
@reports_errors
def gradcheck(
    config: ConfigOption = None,
    batch: Annotated[int, typer.Option(help="Training images in the checked batch.")] = 100,
    dtype: Annotated[
        str, typer.Option(help="float64 (tolerance 1e-10) or float32 (tolerance 1e-4).")
    ] = "float64",
    seed: Annotated[
        int | None,
        typer.Option(help="Seed for init, batch and checked points (default: config's)."),
    ] = None,
    data_dir: DataDirOption = None,
    dataset: Annotated[
        str | None, typer.Option(help="mnist (full set, or the sample offline) or sample.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check JAX's gradients against hand-written NumPy backpropagation; exit 1 if they differ."""
    from mnist_jax import gradcheck as checking
    from mnist_jax.config import load_config

    resolved = load_config(config, {"data_dir": data_dir, "dataset": dataset})
    report = checking.check_gradients(resolved, batch=batch, dtype=dtype, seed=seed, log=_note)
    if as_json:
        echo_json(report)
    else:
        for line in checking.format_report(report):
            typer.echo(line)
    if not report["passed"]:
        raise typer.Exit(1)


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
