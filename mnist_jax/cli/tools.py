"""The command line's tool commands: benchmark, sweep, launcher, bundled configs, data, the
model in other formats (ONNX, safetensors, Theta).

Registered on the apps of `cli_options` when `cli.py` imports this module; each command is
options plus a docstring plus one library call, like those in `cli.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_jax import architecture
from mnist_jax.cli.options import (
    BatchSizeOption,
    CheckpointArgument,
    ConfigOption,
    CoordinatorOption,
    DataDirOption,
    DataOption,
    DatasetOption,
    Device,
    DeviceOption,
    DevicesOption,
    EpochsOption,
    Format,
    HiddenOption,
    JsonOption,
    MatmulPrecisionOption,
    ModelArgument,
    ModelFormat,
    NumProcessesOption,
    ProcessIdOption,
    WriteJsonOption,
    app,
    data_app,
    data_overrides,
    parse_batch_size,
    parse_hidden,
    parse_numbers,
    placement,
    reports_errors,
    resolve,
    say_tensorboard,
    show,
    theta_app,
)
from mnist_jax.console import note

# --- performance: benchmark and sweep


@app.command()
@reports_errors
def bench(
    workloads: Annotated[
        str,
        typer.Option(
            metavar="W1,W2",
            help="Comma-separated: tiny, wide, fullbatch, default, sweep, time-to-accuracy.",
        ),
    ] = "tiny,wide,fullbatch,default,sweep,time-to-accuracy",
    repeats: Annotated[
        int,
        typer.Option(help="Timed repetitions after one warm-up (time-to-accuracy: seeds)."),
    ] = 5,
    target_accuracy: Annotated[
        float,
        typer.Option(
            metavar="FRACTION", help="time-to-accuracy: the test accuracy to reach, e.g. 0.983."
        ),
    ] = 0.983,
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
    from mnist_jax.tools import bench as benchmark

    report = benchmark.run_benchmark(
        [w.strip() for w in workloads.split(",") if w.strip()],
        data_source=data_overrides(data, data_dir, dataset),
        options=benchmark.Options(repeats, quick, target_accuracy),
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
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Keep each model's metrics, summary and TensorBoard events in "
            "DIR/seed<S>-lr<LR> (default: none).",
        ),
    ] = None,
    as_json: JsonOption = False,
    write_json: WriteJsonOption = None,
) -> None:
    """Train one model per (seed, lr) pair at once in one compiled program; one row each.

    In a job of several processes, each trains its share of the models; process 0 prints all.
    """
    from mnist_jax.devices import distributed
    from mnist_jax.tools import sweep as sweeping

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
        out=out,
    )
    if rows is not None:  # None in the processes other than 0 of a job
        show(rows, as_json, sweeping.format_rows, write_json)
        say_tensorboard(out)


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
    from mnist_jax.devices import launch as launching

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
    from mnist_jax.data import mnist

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
    from mnist_jax import files
    from mnist_jax.data import mnist

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
    from mnist_jax.data import convert

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
    from mnist_jax.data import convert

    convert.export_command(fmt.value, out, data_dir=data_dir, seed=seed, rows=rows, log=note)


# --- the model in other formats: ONNX and safetensors, the L-BFGS seed's Theta files


@app.command("export")
@reports_errors
def export_model(
    checkpoint: ModelArgument,
    fmt: Annotated[
        ModelFormat,
        typer.Option(
            "--format",
            help="onnx: pixels to probabilities, for ONNX Runtime (needs the onnx extra); "
            "safetensors: one run's weights and config (needs the safetensors extra).",
        ),
    ],
    out: Annotated[Path, typer.Option(metavar="FILE", help="File to write (replaced whole).")],
) -> None:
    """Write a checkpoint as an ONNX model or a safetensors file, for use outside mnist-jax."""
    from mnist_jax.interchange import onnxfile, safetensorsfile

    exporters = {"onnx": onnxfile.export_onnx, "safetensors": safetensorsfile.export_safetensors}
    typer.echo(str(exporters[fmt.value](checkpoint, out, log=note)))


@app.command("import")
@reports_errors
def import_model(
    file: Annotated[Path, typer.Argument(help="A safetensors file written by `mnist-jax export`.")],
    out: Annotated[Path, typer.Option(metavar="DIR", help="Run folder to write.")],
) -> None:
    """Make a run folder (checkpoint.npz) from a safetensors file, for eval, predict and serve."""
    from mnist_jax.interchange import safetensorsfile

    ckpt = safetensorsfile.import_safetensors(file, out)
    sizes = "-".join(map(str, architecture.layer_sizes(ckpt.config)))
    typer.echo(f"{sizes} {ckpt.config.activation} model written to {out}")


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
    from mnist_jax.interchange import theta

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
    from mnist_jax.interchange import theta

    ckpt = theta.import_theta(folder, resolve(config, {}), out, log=note)
    sizes = "-".join(map(str, architecture.layer_sizes(ckpt.config)))
    typer.echo(f"{sizes} {ckpt.config.activation} model written to {out}")
