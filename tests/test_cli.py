import inspect
import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mnist_jax.cli.app import app
from tests.conftest import SMOKE, run_cli
from tests.trained_model import shared_cli_smoke_run  # noqa: F401 (the cli_smoke_run fixture)

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(cli_smoke_run):
    """`train --config smoke --epochs 1 --out DIR` (shared by the session): DIR, its output."""
    return cli_smoke_run


@pytest.mark.long
def test_train_prints_epochs_and_test_accuracy(trained):
    out, output = trained
    assert "epoch 1/1" in output
    assert "test accuracy" in output
    assert (out / "checkpoint.npz").exists() and (out / "summary.json").exists()
    assert f"TensorBoard: tensorboard --logdir {out}" in output  # its events are there


def test_eval_prints_the_accuracy_training_reported(trained):
    out, _ = trained
    summary = json.loads((out / "summary.json").read_text())
    result = runner.invoke(app, ["eval", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] == summary["test_accuracy"]
    text = runner.invoke(app, ["eval", str(out)])
    assert f"{summary['test_accuracy']:.2%}" in text.stdout


def test_training_into_an_existing_run_is_refused(trained):
    out, _ = trained
    result = runner.invoke(app, ["train", "--config", str(SMOKE), "--out", str(out)])
    assert result.exit_code == 2
    assert "--resume" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--config", str(SMOKE), "--lr", "-1"], "lr must be a positive"),
        (["train", "--config", str(SMOKE), "--hidden", "12,x"], "--hidden must be"),
        (["train", "--config", str(SMOKE), "--batch-size", "100000"], "larger than the"),
        (["train", "--config", "no-such.toml"], "config file not found"),
        (["train", "--config", str(SMOKE), "--dataset", "cifar"], "'cifar' is not one of"),
        (["train", "--config", str(SMOKE), "--device", "tpu"], "'tpu' is not one of"),
        (["eval", "no-such-run"], "checkpoint not found"),
        (["eval", "no-such-run", "--split", "dev"], "'dev' is not one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path):
    result = run_cli([*args, *(["--out", str(tmp_path / "o")] if args[0] == "train" else [])])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.option("train", "--dry-run")
def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    result = runner.invoke(
        app, ["train", "--config", str(SMOKE), "--dry-run", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "784-32-10" in result.output and "9,167 train" in result.output
    assert not (tmp_path / "o").exists()  # not even an empty run folder


def test_a_dry_run_into_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    args = ["train", "--config", str(SMOKE), "--dry-run", "--out", str(tmp_path / "file" / "o")]
    result = run_cli(args)
    assert result.exit_code != 0 and "cannot write to the run folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "command", [[], ["train"], ["eval"], ["data"], ["data", "info"], ["data", "fetch"]]
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


@pytest.mark.parametrize("columns", ["80", "50"])
@pytest.mark.parametrize("group", [[], ["data"], ["theta"]])
def test_help_lists_each_commands_first_line_whole(group, columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)  # click fits the help to the terminal's width
    text = run_cli([*group, "--help"]).stdout.split("Commands:\n")[1]
    listed: dict[str, str] = {}
    for line in text.splitlines():
        if match := re.match(r"  ([a-z][a-z-]*)  +(.*)", line):
            name = match.group(1)
            listed[name] = match.group(2)
        else:  # a wrapped line goes on with the command above it (split at a space or a "-")
            listed[name] += line.strip()
    click_group = typer.main.get_command(app)
    for word in group:
        click_group = click_group.commands[word]
    for name, command in click_group.commands.items():
        first_line = inspect.cleandoc(command.help).splitlines()[0]
        assert listed[name].replace(" ", "") == first_line.replace(" ", ""), name


def test_data_info_reports_checksums(full_mnist):
    result = runner.invoke(app, ["data", "info", "--data-dir", str(full_mnist), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["using"] == str(full_mnist)
    assert all(f["sha256_ok"] for f in report["files"].values())


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("mnist-jax tr", 1, {"train"}),
        ("mnist-jax train --optimizer ", 3, {"sgd", "momentum", "nesterov", "lbfgs"}),
        ("mnist-jax data ", 2, {"info", "fetch", "import", "export"}),
    ],
)
def test_shell_completion_offers_commands_and_choices(words, cword, expected):
    import os
    import subprocess
    import sys

    env = {**os.environ, "_MNIST_JAX_COMPLETE": "complete_bash", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(cword)
    done = subprocess.run(
        [sys.executable, "-m", "mnist_jax"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == expected


DATA_COMMANDS = [["train"], ["eval"], ["plot"], ["gradcheck"], ["compare"], ["bench"], ["sweep"]]


def test_every_command_that_reads_a_dataset_takes_the_same_data_options():
    from tests.test_readme import help_options

    helps = {}
    for command in DATA_COMMANDS:
        assert {"--data", "--data-dir", "--dataset"} <= help_options(command), command
        text = " ".join(run_cli([*command, "--help"]).stdout.split())
        helps[command[0]] = text[text.index("--data PATH") : text.index("--data PATH") + 80]
    assert len(set(helps.values())) == 1, helps  # one declaration, one help text


@pytest.mark.long
def test_eval_and_plot_read_another_source_through_the_same_options(trained, tmp_path):
    out, _ = trained
    sample = str(Path(__file__).resolve().parents[1] / "mnist_jax" / "sample")
    own = json.loads(runner.invoke(app, ["eval", str(out), "--json"]).stdout)
    for source in (["--data", sample], ["--dataset", "idx", "--data-dir", sample]):
        result = run_cli(["eval", str(out), "--json", *source])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["accuracy"] == own["accuracy"]  # the same images
    wrong = run_cli(["eval", str(out), "--dataset", "idx", "--data-dir", str(tmp_path)])
    assert wrong.exit_code == 2 and str(tmp_path) in wrong.stderr  # really read from there
    pytest.importorskip("matplotlib")
    out = Path(shutil.copytree(out, tmp_path / "run"))  # the shared run stays as it was
    drawn = run_cli(["plot", str(out), "--dataset", "idx", "--data", sample])
    assert drawn.exit_code == 0, drawn.output
    assert all(Path(line).exists() for line in drawn.stdout.split())


@pytest.mark.long
def test_dry_run_names_the_step_size_each_optimiser_really_uses():
    from tests.conftest import run_cli

    def training_line(*args: str) -> str:
        result = run_cli(["train", "--dataset", "sample", "--dry-run", *args])
        assert result.exit_code == 0, result.output
        return next(line for line in result.output.splitlines() if line.startswith("training"))

    assert "lr 0.3, constant schedule" in training_line("--lr", "0.3", "--schedule", "constant")
    lbfgs = training_line("-c", "seed-lbfgs-100")  # its line search picks each step
    assert "line search" in lbfgs and "lr" not in lbfgs
