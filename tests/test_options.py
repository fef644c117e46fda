"""Every option of every command, set through the command line, changes what it promises.

Each test runs a command with one option set (in-process, through `cli.main`, unless it must be
a process of its own) and checks an outcome that would differ were the option ignored or handed
to another setting. Each carries `@pytest.mark.option(COMMAND, FLAG)`; `test_option_coverage.py`
fails for an option of the typer app that no test marks. Options whose outcome an older test
already checks carry the marker there (test_cli, test_bench, test_theta, test_formats, ...).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from mnist_jax import __version__
from mnist_jax.config import load_config
from mnist_jax.data import convert, formats, mnist
from mnist_jax.records import checkpoint
from tests.conftest import SMOKE, built, run_cli
from tests.test_formats import assert_same
from tests.test_owndata import stroke_folder
from tests.trained_model import (  # noqa: F401 (the cli_smoke_run and smoke_model fixtures)
    shared_cli_smoke_run,
    trained_smoke_model,
)

option = pytest.mark.option
# Tests that share a module fixture go to one worker (`make test` runs with --dist loadgroup).
group = pytest.mark.xdist_group
STROKES_TEST = 200  # test images of the stroke dataset; the sample's test split holds 2,000


def cli(*args: object):
    """`mnist-jax ARGS` in-process; exit code, stdout and stderr."""
    return run_cli([str(a) for a in args])


def ok_json(*args: object):
    """Run `mnist-jax ARGS` (with --json among them) and return its one JSON document."""
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def strokes(tmp_path_factory) -> Path:
    """An IDX folder of 28x28 strokes in 10 classes, 600 training and 200 test images."""
    return stroke_folder(tmp_path_factory.mktemp("options") / "strokes", 28, 10, 600, STROKES_TEST)


@pytest.fixture(scope="session")
def tanh_config(tmp_path_factory) -> Path:
    """The smoke config with tanh units: a config file whose effect the flags cannot mimic."""
    path = tmp_path_factory.mktemp("options") / "tanh.toml"
    path.write_text(SMOKE.read_text() + 'activation = "tanh"\n')
    return path


@pytest.fixture
def precisions(monkeypatch) -> list[str]:
    """The matrix-product precisions that runs resolve (`backend.policy`), in order."""
    from mnist_jax.devices import backend

    seen: list[str] = []
    real = backend.policy

    def spy(*args, **kwargs):
        chosen = real(*args, **kwargs)
        seen.append(chosen.matmul_precision)
        return chosen

    monkeypatch.setattr(backend, "policy", spy)
    return seen


# ----------------------------------------------------------------------------- train


def dry_plan(*args: object) -> dict:
    """`train --config smoke ARGS --dry-run --json`: the resolved plan, nothing trained."""
    return ok_json("train", "--config", SMOKE, "--dry-run", "--json", *args)


@pytest.fixture(scope="module")
def smoke_plan(tmp_path_factory) -> dict:
    """The plan of `train --config smoke` with no other flag."""
    return dry_plan("--out", tmp_path_factory.mktemp("plan") / "run")


@group("smoke-plan")
@pytest.mark.parametrize(
    ("flag", "value", "field", "expected"),
    [
        pytest.param("--epochs", "5", "epochs", 5, marks=option("train", "--epochs")),
        pytest.param(
            "--batch-size", "100", "batch_size", 100, marks=option("train", "--batch-size")
        ),
        pytest.param("--lr", "0.25", "lr", 0.25, marks=option("train", "--lr")),
        pytest.param(
            "--optimizer", "nesterov", "optimizer", "nesterov", marks=option("train", "--optimizer")
        ),
        pytest.param(
            "--schedule", "constant", "schedule", "constant", marks=option("train", "--schedule")
        ),
        pytest.param("--hidden", "16,8", "hidden", [16, 8], marks=option("train", "--hidden")),
        pytest.param("--seed", "7", "seed", 7, marks=option("train", "--seed")),
        pytest.param(
            "--matmul-precision",
            "high",
            "matmul_precision",
            "high",
            marks=option("train", "--matmul-precision"),
        ),  # fmt: skip
    ],
)
def test_train_flag_sets_its_own_config_value_and_no_other(
    flag, value, field, expected, smoke_plan, tmp_path
):
    base = smoke_plan["config"]
    assert base[field] != expected  # the flag must change something to be seen
    changed = dry_plan(flag, value, "--out", tmp_path / "b")["config"]
    assert changed == {**base, field: expected}


def test_train_batch_size_sets_the_steps_per_epoch(tmp_path):
    plan = dry_plan("--batch-size", "100", "--out", tmp_path / "r")
    assert plan["steps_per_epoch"] == plan["images"]["train"] // 100


@option("train", "--config")
@pytest.mark.long
def test_train_config_is_read(tanh_config, tmp_path):
    default = ok_json(
        "train", "--dataset", "sample", "--dry-run", "--json", "--out", tmp_path / "d"
    )
    plan = ok_json("train", "--config", tanh_config, "--dry-run", "--json", "--out", tmp_path / "r")
    assert default["config"]["activation"] != "tanh"
    assert plan["config"]["activation"] == "tanh" and plan["architecture"] == [784, 32, 10]


@option("train", "--data")
@pytest.mark.long
def test_train_data_reads_that_folder(strokes, tmp_path):
    plan = dry_plan("--data", strokes, "--out", tmp_path / "r")
    assert plan["dataset"] == "idx:strokes" and plan["images"]["test"] == STROKES_TEST


@option("train", "--data-dir")
@option("train", "--dataset")
def test_train_dataset_idx_reads_data_dir(strokes, tmp_path):
    plan = dry_plan("--dataset", "idx", "--data-dir", strokes, "--out", tmp_path / "r")
    assert plan["dataset"] == "idx:strokes" and plan["images"]["test"] == STROKES_TEST


@option("train", "--out")
def test_train_out_is_the_run_folder(cli_smoke_run):
    out, output = cli_smoke_run  # `train --config smoke --epochs 1 --out DIR`
    assert checkpoint.load(out).epoch == 1 and f"run saved in {out}" in output
    assert {"checkpoint.npz", "metrics.jsonl", "summary.json"} <= {p.name for p in out.iterdir()}


@option("train", "--resume")
@option("train", "--json")
def test_train_resume_continues_the_run_and_json_is_its_summary(cli_smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cli_smoke_run[0], run)
    result = cli("train", "--resume", run, "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.stderr and "epoch 1/2" not in result.stderr
    assert checkpoint.load(run).epoch == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    document = json.loads(result.stdout)  # --json: the summary, and nothing else on stdout
    assert document == json.loads((run / "summary.json").read_text()) and document["epochs"] == 2


@option("train", "--momentum")
@pytest.mark.long
def test_train_momentum_scales_the_first_nesterov_step_by_one_plus_momentum(tmp_path):
    # One full-batch step of Nesterov momentum m moves the params by (1 + m) times the plain
    # gradient step (optax: trace = g, update = g + m * trace).
    flags = {"epochs": 1, "batch_size": "full", "hidden": (8,), "optimizer": "nesterov"}
    args = ["train", "--config", SMOKE, "--epochs", "1", "--batch-size", "full", "--hidden", "8"]
    start = jax.device_get(built(load_config(SMOKE, flags))[1].params)

    def moved(*flags: str) -> np.ndarray:
        out = tmp_path / "-".join(flags)
        result = cli(*args, *flags, "--out", out)
        assert result.exit_code == 0, result.output
        after = checkpoint.load(out).params
        return np.concatenate(
            [(a[k] - s[k]).ravel() for a, s in zip(after, start) for k in ("w", "b")]
        )

    plain = moved("--optimizer", "sgd")  # the gradient step itself
    half = moved("--optimizer", "nesterov", "--momentum", "0.5")  # the default is 0.9
    assert np.abs(plain).max() > 0
    np.testing.assert_allclose(half, 1.5 * plain, rtol=1e-3, atol=1e-6 * np.abs(plain).max())


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal, as a person's stderr would."""

    def isatty(self) -> bool:
        return True


def train_on_a_terminal(*args: object) -> str:
    """Run `mnist-jax train ARGS` with stderr on a (fake) terminal; return what stderr got."""
    from mnist_jax.cli.app import main

    err = Terminal()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["train", *map(str, args)]) == 0, err.getvalue()
    return err.getvalue()


@group("smoke-plan")
@option("train", "--progress")
@pytest.mark.long
def test_train_progress_draws_a_bar_and_no_progress_does_not(smoke_plan, tmp_path, monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    common = ["--config", SMOKE, "--epochs", "1"]
    bar = train_on_a_terminal(*common, "--progress", "--out", tmp_path / "bar")
    quiet = train_on_a_terminal(*common, "--no-progress", "--out", tmp_path / "quiet")
    steps = smoke_plan["steps_per_epoch"]
    assert re.search(rf"\b\d+/{steps}\b", bar), bar  # the bar's "done/total" column
    assert not re.search(rf"\b\d+/{steps}\b", quiet), quiet
    assert "epoch 1/1" in quiet  # the per-epoch log line is there either way


# --- the job of several processes: each flag reaches the job's settings


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(
            ["train", "--config", SMOKE, "--dry-run"], marks=option("train", "--num-processes")
        ),
        pytest.param(["sweep", "--config", SMOKE], marks=option("sweep", "--num-processes")),
    ],
)
def test_num_processes_reaches_the_job_settings(command):
    result = cli(*command, "--num-processes", "0")
    assert result.exit_code == 2
    assert "--num-processes must be at least 1, got 0" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(
            ["train", "--config", SMOKE, "--dry-run"], marks=option("train", "--process-id")
        ),
        pytest.param(["sweep", "--config", SMOKE], marks=option("sweep", "--process-id")),
    ],
)
def test_process_id_is_checked_against_num_processes(command):
    # 5 of 3 is out of range; swapped (3 of 5) it would not be, and alone it reads 0..0.
    result = cli(*command, "--num-processes", "3", "--process-id", "5")
    assert result.exit_code == 2
    assert "--process-id must be between 0 and 2, got 5" in result.stderr


@option("sweep", "--coordinator")
def test_sweep_coordinator_reaches_the_job_settings():
    result = cli("sweep", "--config", SMOKE, "--coordinator", "no-port-here")
    assert result.exit_code == 2
    assert "--coordinator must be HOST:PORT, got 'no-port-here'" in result.stderr


# ----------------------------------------------------------------------------- --device, --devices


def other_platform() -> str:
    """The platform that JAX's default device is not: what --device must pick for it to show."""
    return "gpu" if jax.devices()[0].platform == "cpu" else "cpu"


def busy_port() -> tuple[socket.socket, int]:
    """A listening socket and its port: a server that ignored an option fails fast there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


@pytest.fixture
def commands(smoke_model, tmp_path):
    """A quick form of each command that takes --device, keyed by its name."""
    image = tmp_path / "digit.npy"
    np.save(image, mnist.load_sample().test_images[0])
    sock, port = busy_port()
    quick, sample = ["--config", SMOKE, "--epochs", "1"], ["--dataset", "sample"]
    yield {
        "train": ["train", *quick, "--dry-run", "--out", tmp_path / "run"],
        "eval": ["eval", smoke_model],
        "predict": ["predict", smoke_model, image],
        "serve": ["serve", smoke_model, "--port", port],
        "gradcheck": ["gradcheck", "--config", SMOKE, "--batch", "8", "--dtype", "float32"],
        "compare": ["compare", *quick, "--activations", "relu"],
        "bench": ["bench", "--quick", "--repeats", "1", "--workloads", "tiny", *sample],
        "sweep": ["sweep", *quick, "--seeds", "0"],
    }
    sock.close()


# The markers are spelled out: test_option_coverage.py reads them from this file's source.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("train", marks=option("train", "--device")),
        pytest.param("eval", marks=option("eval", "--device")),
        pytest.param("predict", marks=option("predict", "--device")),
        pytest.param("serve", marks=option("serve", "--device")),
        pytest.param("gradcheck", marks=option("gradcheck", "--device")),
        pytest.param("compare", marks=option("compare", "--device")),
        pytest.param("bench", marks=option("bench", "--device")),
        pytest.param("sweep", marks=option("sweep", "--device")),
    ],
)
def test_device_picks_the_platform(name, commands):
    other = other_platform()
    if name != "bench":  # stop before any work with a count no machine has
        result = cli(*commands[name], "--device", other, "--devices", "999")
        assert result.exit_code == 2, result.output
        expected = (
            "error: --device gpu: JAX says" if other == "gpu" else "999 asked for, but JAX sees"
        )
        assert expected in result.stderr and other in result.stderr
    elif other == "gpu":
        result = cli(*commands[name], "--device", "gpu")
        assert result.exit_code == 2 and "error: --device gpu: JAX says" in result.stderr
    else:
        report = ok_json(*commands[name], "--device", "cpu", "--json")
        assert report["backend"]["platform"] == "cpu"


@pytest.mark.parametrize(
    "name",
    [  # not bench: it times one device
        pytest.param("train", marks=option("train", "--devices")),
        pytest.param("eval", marks=option("eval", "--devices")),
        pytest.param("predict", marks=option("predict", "--devices")),
        pytest.param("serve", marks=option("serve", "--devices")),
        pytest.param("gradcheck", marks=option("gradcheck", "--devices")),
        pytest.param("compare", marks=option("compare", "--devices")),
        pytest.param("sweep", marks=option("sweep", "--devices")),
    ],
)
def test_devices_asks_for_that_many(name, commands):
    result = cli(*commands[name], "--device", "cpu", "--devices", "999")
    assert result.exit_code == 2, result.output
    assert "--devices 999 asked for, but JAX sees" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- eval


@pytest.mark.parametrize("split", ["validation", "train"])
@option("eval", "--split")
def test_eval_split_evaluates_that_split(split, smoke_model):
    summary = json.loads((smoke_model / "summary.json").read_text())
    counts = {"validation": 833, "train": 9167}  # the sample's; the test split holds 2,000
    assert summary["config"]["dataset"] == "sample"
    report = ok_json("eval", smoke_model, "--split", split, "--json")
    assert report["split"] == split and report["count"] == counts[split]
    assert report["accuracy"] == pytest.approx(summary[f"{split}_accuracy"], abs=1e-9)
    text = cli("eval", smoke_model, "--split", split).stdout
    assert f"{summary[f'{split}_accuracy']:.2%}" in text


@option("eval", "--mistakes")
def test_eval_mistakes_lists_that_many(smoke_model):
    report = ok_json("eval", smoke_model, "--mistakes", "3", "--json")
    assert len(report["confident_mistakes"]) == 3
    text = cli("eval", smoke_model, "--mistakes", "3").stdout.split("most confident mistakes")[1]
    assert len(text.strip().splitlines()) == 1 + 3  # the header and three rows
    assert len(ok_json("eval", smoke_model, "--json")["confident_mistakes"]) == 10  # the default


@option("eval", "--json")
def test_eval_json_is_one_document_of_the_figures(smoke_model):
    report = ok_json("eval", smoke_model, "--json")
    summary = json.loads((smoke_model / "summary.json").read_text())
    assert report["accuracy"] == summary["test_accuracy"] and report["count"] == 2000


@option("eval", "--data")
def test_eval_data_reads_that_folder(smoke_model, strokes):
    report = ok_json("eval", smoke_model, "--data", strokes, "--json")
    assert report["dataset"] == "idx:strokes" and report["count"] == STROKES_TEST


@option("eval", "--data-dir")
@option("eval", "--dataset")
def test_eval_dataset_idx_reads_data_dir(smoke_model, strokes):
    report = ok_json("eval", smoke_model, "--dataset", "idx", "--data-dir", strokes, "--json")
    assert report["dataset"] == "idx:strokes" and report["count"] == STROKES_TEST


@pytest.mark.parametrize(
    "command",
    [
        pytest.param("eval", marks=option("eval", "--matmul-precision")),
        pytest.param("sweep", marks=[option("sweep", "--matmul-precision"), pytest.mark.long]),
    ],
)
def test_matmul_precision_reaches_the_matrix_products(command, smoke_model, precisions):
    args = {
        "eval": ["eval", smoke_model],
        "sweep": ["sweep", "-c", SMOKE, "--epochs", "1", "--seeds", "0"],
    }
    assert cli(*args[command]).exit_code == 0
    assert precisions and "high" not in precisions  # not what the run picks by itself
    precisions.clear()
    result = cli(*args[command], "--matmul-precision", "high")
    assert result.exit_code == 0, result.output
    assert precisions and set(precisions) == {"high"}


# ----------------------------------------------------------------------------- predict, plot


@option("plot", "--data")
@option("plot", "--data-dir")
@option("plot", "--dataset")
@pytest.mark.long
def test_plot_draws_the_data_it_is_given(smoke_model, strokes, tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    shutil.copytree(smoke_model, run)

    def drawn(*args: object) -> bytes:
        result = cli("plot", run, *args)
        assert result.exit_code == 0, result.output
        return (run / "confusion.png").read_bytes()

    own = drawn()
    assert own == drawn()  # the same data draws the same bytes
    given = drawn("--data", strokes)
    assert given != own
    assert drawn("--dataset", "idx", "--data-dir", strokes) == given


# ----------------------------------------------------------------------------- serve


@pytest.fixture(scope="module")
def live_options(smoke_model):
    """`mnist-jax serve` in its own process on 127.0.0.2, a chosen port, 3 s, 2 connections."""
    from mnist_jax.devices.launch import free_port
    from tests.test_serve import LiveServer

    port = free_port("127.0.0.2")
    server = LiveServer(
        smoke_model, "--host", "127.0.0.2", "--port", str(port), "--timeout", "3",
        "--max-connections", "2",
    )  # fmt: skip
    yield server, port
    server.stop()


@group("serve-live")
@option("serve", "--host")
@pytest.mark.long
def test_serve_host_binds_that_address_only(live_options):
    server, port = live_options
    assert server.address[0] == "127.0.0.2"
    with socket.create_connection(("127.0.0.2", port), timeout=10):
        pass
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10)


@group("serve-live")
@option("serve", "--port")
def test_serve_port_is_the_port_listened_on(live_options):
    server, port = live_options
    assert server.address[1] == port


@group("serve-live")
@option("serve", "--max-connections")
@pytest.mark.long
def test_serve_max_connections_refuses_the_third(live_options):
    server, _ = live_options
    held = [http.client.HTTPConnection(*server.address, timeout=10) for _ in range(2)]
    try:
        for connection in held:  # answered and kept open
            connection.request("GET", "/")
            assert connection.getresponse().read()
        third = http.client.HTTPConnection(*server.address, timeout=10)
        third.request("GET", "/")
        response = third.getresponse()
        assert response.status == 503 and "busy" in json.loads(response.read())["error"]
        third.close()
    finally:
        for connection in held:
            connection.close()


@group("serve-live")
@option("serve", "--timeout")
@pytest.mark.long
def test_serve_timeout_closes_an_idle_connection_after_that_long(live_options):
    server, _ = live_options
    time.sleep(0.5)  # the connections of other tests are closed by now
    with socket.create_connection(server.address, timeout=20) as sock:
        start = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, nothing sent
        waited = time.monotonic() - start
    assert 2 < waited < 8, waited  # 3 s, not the default 10 s


# ----------------------------------------------------------------------------- gradcheck


@pytest.fixture(scope="module")
def gradcheck_report(strokes):
    args = ["--config", SMOKE, "--batch", "8", "--dtype", "float32", "--seed", "3", "--json"]
    return ok_json("gradcheck", *args, "--data", strokes)


@group("gradcheck-report")
@option("gradcheck", "--config")
def test_gradcheck_config_is_the_checked_model(gradcheck_report):
    assert gradcheck_report["config"] == "smoke" and gradcheck_report["architecture"] == "784-32-10"


@group("gradcheck-report")
@option("gradcheck", "--batch")
def test_gradcheck_batch_is_the_checked_batch(gradcheck_report):
    assert gradcheck_report["batch"] == 8


@group("gradcheck-report")
@option("gradcheck", "--dtype")
def test_gradcheck_dtype_sets_the_precision_and_tolerance(gradcheck_report):
    assert gradcheck_report["dtype"] == "float32" and gradcheck_report["tolerance"] == 1e-4


@group("gradcheck-report")
@option("gradcheck", "--seed")
def test_gradcheck_seed_is_the_checked_seed(gradcheck_report):
    assert gradcheck_report["seed"] == 3


@group("gradcheck-report")
@option("gradcheck", "--data")
def test_gradcheck_data_reads_that_folder(gradcheck_report):
    assert gradcheck_report["dataset"] == "idx:strokes" and gradcheck_report["passed"]


@option("gradcheck", "--data-dir")
@option("gradcheck", "--dataset")
def test_gradcheck_dataset_idx_reads_data_dir(strokes):
    report = ok_json(
        "gradcheck", "--config", SMOKE, "--batch", "8", "--dtype", "float32", "--json",
        "--dataset", "idx", "--data-dir", strokes,
    )  # fmt: skip
    assert report["dataset"] == "idx:strokes"


# ----------------------------------------------------------------------------- compare


@pytest.fixture(scope="module")
def compared(strokes, tanh_config, tmp_path_factory):
    """`compare` with every option set: (rows, the kept run of its one activation, the plot)."""
    pytest.importorskip("matplotlib")
    folder = tmp_path_factory.mktemp("compare")
    rows = ok_json(
        "compare", "--config", tanh_config, "--data", strokes, "--activations", "sigmoid",
        "--epochs", "1", "--seed", "5", "--matmul-precision", "high", "--out", folder / "runs",
        "--plot", folder / "loss.png", "--json",
    )  # fmt: skip
    summary = json.loads((folder / "runs" / "sigmoid" / "summary.json").read_text())
    return rows, summary, folder / "loss.png"


@group("compared")
@option("compare", "--config")
@pytest.mark.long
def test_compare_config_is_the_compared_model(compared):
    _, summary, _ = compared
    assert summary["config"]["name"] == "smoke-sigmoid" and summary["config"]["hidden"] == [32]


@group("compared")
@option("compare", "--activations")
@pytest.mark.long
def test_compare_activations_are_the_rows(compared):
    rows, summary, _ = compared
    assert [r["activation"] for r in rows] == ["sigmoid"]
    assert summary["config"]["activation"] == "sigmoid"  # the config's tanh replaced


@group("compared")
@option("compare", "--epochs")
@pytest.mark.long
def test_compare_epochs_is_each_runs_length(compared):
    assert compared[1]["epochs"] == 1  # the smoke config's own is 2


@group("compared")
@option("compare", "--seed")
@pytest.mark.long
def test_compare_seed_is_each_runs_seed(compared):
    assert compared[1]["config"]["seed"] == 5


@group("compared")
@option("compare", "--matmul-precision")
@pytest.mark.long
def test_compare_matmul_precision_is_each_runs(compared):
    assert compared[1]["config"]["matmul_precision"] == "high"


@group("compared")
@option("compare", "--data")
@pytest.mark.long
def test_compare_data_reads_that_folder(compared):
    assert compared[1]["dataset"] == "idx:strokes"


@group("compared")
@option("compare", "--out")
@pytest.mark.long
def test_compare_out_keeps_each_run(compared):
    _, summary, _ = compared
    assert summary["test_accuracy"] == pytest.approx(1 - compared[0][0]["test_error"])


@group("compared")
@option("compare", "--plot")
@pytest.mark.long
def test_compare_plot_draws_the_loss_curves(compared):
    with open(compared[2], "rb") as picture:
        assert picture.read(8) == b"\x89PNG\r\n\x1a\n"


@group("compared")
@option("compare", "--json")
@pytest.mark.long
def test_compare_json_is_one_row_per_activation(compared):
    (row,) = compared[0]
    assert {"activation", "test_error", "train_error"} <= set(row)


@option("compare", "--data-dir")
@option("compare", "--dataset")
@pytest.mark.long
def test_compare_dataset_idx_reads_data_dir(strokes, tmp_path):
    ok_json(
        "compare", "--config", SMOKE, "--dataset", "idx", "--data-dir", strokes, "--epochs", "1",
        "--activations", "relu", "--out", tmp_path, "--json",
    )  # fmt: skip
    assert json.loads((tmp_path / "relu" / "summary.json").read_text())["dataset"] == "idx:strokes"


# ----------------------------------------------------------------------------- bench


@pytest.fixture(scope="module")
def bench_report(strokes):
    return ok_json(
        "bench", "--quick", "--repeats", "1", "--workloads", "tiny", "--dataset", "idx",
        "--data-dir", strokes, "--matmul-precision", "high", "--json",
    )  # fmt: skip


@group("bench-report")
@option("bench", "--data-dir")
@option("bench", "--dataset")
@pytest.mark.long
def test_bench_dataset_idx_reads_data_dir(bench_report):
    assert bench_report["dataset"] == "idx:strokes"


@group("bench-report")
@option("bench", "--matmul-precision")
@pytest.mark.long
def test_bench_matmul_precision_is_the_backends(bench_report):
    assert bench_report["backend"]["matmul_precision"] == "high"


# ----------------------------------------------------------------------------- sweep


@pytest.fixture(scope="module")
def swept(strokes, tanh_config, tmp_path_factory):
    """A one-model sweep with every option set, and the same model trained by `train`."""
    folder = tmp_path_factory.mktemp("sweep")
    common = ["-c", tanh_config, "--data", strokes, "--epochs", "1", "--hidden", "8",
              "--batch-size", "50"]  # fmt: skip
    rows = ok_json(
        "sweep", *common, "--seeds", "0", "--lrs", "0.3", "--json",
        "--write-json", folder / "rows.json",
    )  # fmt: skip
    alone = ok_json(
        "train", *common, "--seed", "0", "--lr", "0.3", "--out", folder / "run", "--json"
    )
    return rows, alone, folder / "rows.json", common


@group("swept")
@pytest.mark.parametrize(
    "flag",
    [
        pytest.param("--config", marks=option("sweep", "--config")),
        pytest.param("--data", marks=option("sweep", "--data")),
        pytest.param("--epochs", marks=option("sweep", "--epochs")),
        pytest.param("--hidden", marks=option("sweep", "--hidden")),
        pytest.param("--batch-size", marks=option("sweep", "--batch-size")),
        pytest.param("--seeds", marks=option("sweep", "--seeds")),
        pytest.param("--lrs", marks=option("sweep", "--lrs")),
    ],
)
@pytest.mark.long
def test_sweep_model_is_the_model_train_makes_with_the_same_flags(swept, flag):
    # Every sweep flag (the config's tanh too) changes the trained model; the sweep's one model
    # must match the one `train` makes with those settings.
    rows, alone, _, _ = swept
    (row,) = rows
    assert (row["seed"], row["lr"]) == (0, 0.3)  # one model, not the default 4 (0,1,2,3 at 0.1)
    assert row["test_loss"] == pytest.approx(alone["test_loss"], rel=1e-4)
    assert alone["config"]["activation"] == "tanh" and alone["dataset"] == "idx:strokes"


@group("swept")
@option("sweep", "--json")
@option("sweep", "--write-json")
@pytest.mark.long
def test_sweep_json_and_write_json_are_the_rows(swept):
    rows, _, written, _ = swept
    assert json.loads(written.read_text()) == rows and len(rows) == 1


@group("swept")
@option("sweep", "--data-dir")
@option("sweep", "--dataset")
@pytest.mark.long
def test_sweep_dataset_idx_reads_data_dir(swept, strokes):
    rows, _, _, common = swept
    common = [a for a in common if a not in ("--data", strokes)]
    again = ok_json(
        "sweep", *common, "--dataset", "idx", "--data-dir", strokes, "--seeds", "0",
        "--lrs", "0.3", "--json",
    )  # fmt: skip
    assert again == rows


# ----------------------------------------------------------------------------- launch, the root


@option("launch", "--processes")
def test_launch_processes_starts_that_many():
    result = cli("launch", "-n", "3", "--", "configs")
    assert result.exit_code == 0, result.output
    prefixes = {line[:4] for line in result.output.splitlines() if line.startswith("[")}
    assert prefixes == {"[1] ", "[2] "}  # process 0's lines go out as they are


@option("mnist-jax", "--version")
def test_version_prints_the_package_version():
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"mnist-jax {__version__}"


def in_bash(args: str, home: Path) -> str:
    """Run `python -m mnist_jax ARGS` from bash (the shell typer detects); return its stdout."""
    import subprocess
    import sys

    done = subprocess.run(  # "; true": bash must stay the parent, not exec python in its place
        ["bash", "-c", f"'{sys.executable}' -m mnist_jax {args}; true"],
        env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    return done.stdout


@option("mnist-jax", "--show-completion")
def test_show_completion_prints_the_shells_script(tmp_path):
    script = in_bash("--show-completion", tmp_path)
    assert "_MNIST_JAX_COMPLETE=complete_bash" in script and "complete " in script
    assert not list(tmp_path.iterdir())  # shown, not installed


@option("mnist-jax", "--install-completion")
def test_install_completion_writes_the_script_into_home(tmp_path):
    in_bash("--install-completion", tmp_path)
    script = tmp_path / ".bash_completions" / "mnist-jax.sh"
    assert "_MNIST_JAX_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="session")
def imported(tmp_path_factory) -> Path:
    """An imported IDX folder (`data import`, with its manifest): 50 training, 1,000 test images."""
    folder = tmp_path_factory.mktemp("imported")
    sample = mnist.load_sample()
    csv = folder / "train.csv"
    formats.write_kaggle_csv(csv, sample.train_images[-1050:], sample.train_labels[-1050:])
    return convert.import_dataset("kaggle-csv", csv, folder / "idx", log=lambda _: None)


@option("data info", "--data-dir")
@option("data info", "--json")
def test_data_info_reports_that_folder(imported):
    report = ok_json("data", "info", "--data-dir", imported, "--json")
    assert report["using"] == str(imported) and report["searched"][0]["origin"] == "--data-dir"
    assert all(f["sha256_ok"] for f in report["files"].values())


@option("data fetch", "--data-dir")
def test_data_fetch_writes_into_data_dir(tmp_path, monkeypatch):
    asked = []  # no network in the tests: the download itself is tested in test_reliability
    monkeypatch.setattr(mnist, "fetch", lambda folder, **_: asked.append(Path(folder)))
    result = cli("data", "fetch", "--data-dir", tmp_path / "here")
    assert result.exit_code == 0, result.output
    assert (
        asked == [tmp_path / "here"] and result.stdout.strip() == f"MNIST is in {tmp_path / 'here'}"
    )


@option("data import", "--seed")
def test_data_import_seed_chooses_the_dev_rows(tmp_path):
    sample = mnist.load_sample()
    csv = tmp_path / "train.csv"
    formats.write_kaggle_csv(csv, sample.train_images[:1010], sample.train_labels[:1010])
    for seed in (2, 3):
        folder = tmp_path / f"seed-{seed}"
        result = cli(
            "data", "import", csv, "--format", "kaggle-csv", "--data-dir", folder, "--seed", seed
        )
        assert result.exit_code == 0, result.output
        assert_same(
            formats.read_kaggle_csv(csv, seed=seed), mnist.load_mnist(folder, download=False)
        )
    a, b = (mnist.load_mnist(tmp_path / f"seed-{s}", download=False) for s in (2, 3))
    assert not np.array_equal(a.train_labels, b.train_labels)


def export(imported: Path, *args: object) -> None:
    """`data export ARGS` from the imported folder (not whatever MNIST the machine holds)."""
    result = cli("data", "export", "--data-dir", imported, *args)
    assert result.exit_code == 0, result.output


def kaggle_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    return formats.parse_kaggle_csv(path.read_bytes(), path.name)


@option("data export", "--rows")
@option("data export", "--out")
def test_data_export_rows_writes_that_many_into_out(imported, tmp_path):
    export(imported, "--format", "kaggle-csv", "--out", tmp_path / "k.csv", "--rows", "50")
    images, labels = kaggle_rows(tmp_path / "k.csv")
    assert images.shape == (50, 28, 28) and labels.shape == (50,)
    assert len((tmp_path / "k.csv").read_text().splitlines()) == 1 + 50  # the header


@option("data export", "--seed")
def test_data_export_seed_draws_the_rows(imported, tmp_path):
    source = mnist.load_mnist(imported, download=False)
    for seed in ("5", "6"):
        out = tmp_path / f"{seed}.csv"
        export(imported, "--format", "kaggle-csv", "--out", out, "--rows", "50", "--seed", seed)
        images, labels = kaggle_rows(out)
        chosen = np.random.default_rng(int(seed)).permutation(50)
        np.testing.assert_array_equal(labels, source.train_labels[chosen])
        np.testing.assert_array_equal(images, source.train_images[chosen])


@option("data export", "--format")
def test_data_export_format_onehot_writes_both_splits(imported, tmp_path):
    export(imported, "--format", "onehot-csv", "--out", tmp_path / "onehot")
    assert_same(
        mnist.load_mnist(imported, download=False), formats.read_onehot_csv(tmp_path / "onehot")
    )


@option("data export", "--data-dir")
def test_data_export_data_dir_is_the_source(imported, tmp_path):
    export(imported, "--format", "kaggle-csv", "--out", tmp_path / "k.csv", "--rows", "50")
    images, _ = kaggle_rows(tmp_path / "k.csv")
    source = mnist.load_mnist(imported, download=False).train_images
    assert sorted(map(bytes, images)) == sorted(map(bytes, source))
