"""The `mnist-jax` command line: one thin command per verb, no JAX here.

Each command parses its options and makes one call into the library, then shows the value it
returns: text for a person, or with `--json` exactly one JSON document on stdout (messages
always go to stderr). Options shared by several commands are declared once, in `cli_options`;
the tool commands live in `cli_tools`. Bad input
(any `MnistJaxError`) ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mnist_jax.cli.options import (
    EXIT_BAD_INPUT,
    TYPED,
    AugmentOption,
    BatchSizeOption,
    ConfigOption,
    CoordinatorOption,
    DataDirOption,
    DataOption,
    DatasetOption,
    Device,
    DeviceOption,
    DevicesOption,
    EpochsOption,
    HiddenOption,
    JsonOption,
    LrOption,
    MatmulPrecisionOption,
    ModelArgument,
    MomentumOption,
    NumProcessesOption,
    OptimizerOption,
    Precision,
    ProcessIdOption,
    ScheduleOption,
    SeedOption,
    Split,
    app,
    data_overrides,
    parse_batch_size,
    parse_hidden,
    parse_seeds,
    placement,
    reports_errors,
    resolve,
    say_tensorboard,
    show,
    typed_command,
)
from mnist_jax.console import emit_json, note
from mnist_jax.errors import Diverged


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
    augment: AugmentOption = None,
    seed: SeedOption = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            metavar="S1-S2|S1,S2",
            help="Train once per seed (e.g. 0-4), each run in OUT/seed-S; write the row of "
            "their figures and the machine to OUT/seeds.json.",
        ),
    ] = None,
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
    from mnist_jax.cli import run
    from mnist_jax.devices import distributed

    overrides = {
        "epochs": epochs,
        "batch_size": parse_batch_size(batch_size),
        "lr": lr,
        "optimizer": optimizer and optimizer.value,
        "momentum": momentum,
        "schedule": schedule and schedule.value,
        "hidden": parse_hidden(hidden),
        "augment": augment and augment.value,
        "seed": seed,
        "matmul_precision": matmul_precision and matmul_precision.value,
        **data_overrides(data, data_dir, dataset),
    }
    settings = dict(
        config_path=config,
        overrides=overrides,
        device=device.value,
        devices=devices,
        resume=resume,
        progress=progress and not as_json and sys.stderr.isatty(),
        dry_run=dry_run,
        plot=plot,
        cluster=distributed.settings(coordinator, num_processes, process_id),
    )
    try:
        if seeds is not None:
            row = run.seeds_command(
                seeds=parse_seeds(seeds, seed, dry_run), command=typed_command(), out=out,
                **settings,
            )  # fmt: skip
            if row:
                from mnist_jax.tools.results import row_lines

                show(row, as_json, row_lines)
            return
        outcome = run.train_command(out=out, **settings)
    except Diverged as e:  # the facts as the one JSON document too, then the error line
        if as_json:
            emit_json(e.to_dict())
        raise
    if outcome is not None:  # None in the processes other than 0 of a job
        show(outcome.to_dict(), as_json, lambda _: outcome.lines())


@app.command("eval")
@reports_errors
def evaluate(
    checkpoint: ModelArgument,
    split: Annotated[Split, typer.Option(help="Which split of the run's data.")] = Split.test,
    data: DataOption = None,
    data_dir: DataDirOption = None,
    dataset: DatasetOption = None,
    mistakes: Annotated[
        int, typer.Option(min=0, help="How many of the most confident mistakes to list.")
    ] = 10,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    matmul_precision: MatmulPrecisionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute a checkpoint's accuracy and loss, with a confusion matrix and mistakes.

    Also prints per-class precision, recall and F1, and the most confident mistakes; for a
    committee, its figures and then each member's accuracy and loss.
    """
    from mnist_jax import api
    from mnist_jax.checks import report

    result = api.evaluate(
        checkpoint, split.value, data_dir=data_dir, data_path=data,
        dataset=dataset and dataset.value, log=note, placement=placement(device, devices),
        matmul_precision=matmul_precision and matmul_precision.value,
    ).to_dict(mistakes)  # fmt: skip
    show(result, as_json, report.format_evaluation)


@app.command()
@reports_errors
def committee(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN", help="Run folders (or checkpoint.npz files) of trained runs."
        ),
    ],
    out: Annotated[Path, typer.Option(metavar="DIR", help="The committee folder to write.")],
    as_json: JsonOption = False,
) -> None:
    """Make one model of several trained runs: the mean of their probabilities.

    The folder holds a copy of each run's checkpoint and a JSON manifest; eval, predict, serve
    and export --format onnx take it as they take a run folder. The runs must share the input
    size and the classes; each keeps its own input standardisation.
    """
    from mnist_jax.records import committee as committees

    made = committees.make(runs, out)
    show(made.to_dict(), as_json, committees.format_committee)


@app.command()
@reports_errors
def predict(
    checkpoint: ModelArgument,
    files: Annotated[
        list[Path],
        typer.Argument(
            help="PNG, JPEG, TIFF, BMP, GIF or WebP (needs Pillow), PGM (P2/P5) or .npy files."
        ),
    ],
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict the digit in each image file, normalised the way MNIST digits were made."""
    from mnist_jax.serving import inference as predicting

    results = predicting.predict_files(checkpoint, files, placement(device, devices))
    show(results, as_json, predicting.format_predictions)


@app.command()
@reports_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (metrics.jsonl, checkpoint.npz).")],
    data: DataOption = None,
    data_dir: DataDirOption = None,
    dataset: DatasetOption = None,
) -> None:
    """Draw a run's curves, confusion matrix, predictions and weights as PNG files.

    The files go into the run folder. Needs the plot extra (matplotlib, Pillow).
    """
    from mnist_jax.checks import plots

    for path in plots.plot_run(
        run_dir, data_dir, log=note, data_path=data, dataset=dataset and dataset.value
    ):
        typer.echo(str(path))


@app.command()
@reports_errors
def serve(
    checkpoint: ModelArgument,
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
    from mnist_jax.serving import serve as serving

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
    from mnist_jax.checks import gradcheck as checking

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
    dataset: DatasetOption = None,
    plot: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Draw the loss curves into this image (needs [plot])."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Keep each run (with its TensorBoard events) in DIR/<activation> (default: none).",
        ),
    ] = None,
    device: DeviceOption = Device.auto,
    devices: DevicesOption = None,
    matmul_precision: MatmulPrecisionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train one config with each hidden activation; print train/test error, loss and seconds."""
    from mnist_jax.tools import compare as comparison

    precision = matmul_precision and matmul_precision.value
    resolved = resolve(
        config,
        {"epochs": epochs, "seed": seed, "matmul_precision": precision,
         **data_overrides(data, data_dir, dataset)},
    )  # fmt: skip
    names = comparison.parse_activations(activations)
    rows = comparison.compare_command(
        resolved, names, plot=plot, out_dir=out, log=note, placement=placement(device, devices)
    )
    show(rows, as_json, comparison.format_table)
    say_tensorboard(out)


# The tool commands (bench, sweep, launch, configs, data, theta) register after the ones above,
# so that --help lists training and evaluation first.
from mnist_jax.cli import tools as cli_tools  # noqa: E402, F401


def main(args: list[str] | None = None) -> int:
    """Entry point of the `mnist-jax` console script; returns the exit code.

    Usage errors (an unknown option, a value that is not among the choices) become one
    `error:` line and exit code 2, like every other bad input.
    """
    # Typer raises click's UsageError (vendored by recent typer releases): find it by name.
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    command = typer.main.get_command(app)
    TYPED[:] = sys.argv[1:] if args is None else args
    try:
        # Without standalone mode, click returns an Exit's code (or the command's None).
        code = command.main(args, prog_name="mnist-jax", standalone_mode=False)
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `mnist-jax` alone: show the help
            note(e.format_message())
            return EXIT_BAD_INPUT
        where = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
        note(f"error: {e.format_message()}{where}")
        return EXIT_BAD_INPUT
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        note("error: interrupted")
        return 130
    return code if isinstance(code, int) else 0
