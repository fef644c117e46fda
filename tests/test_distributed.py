"""Multi-process jobs on 127.0.0.1: equal to one process, resumable after kill -9, clean failures.

Every test starts real `mnist-jax` processes (gloo collectives on the CPU) with bounded
timeouts, and kills what it started in a `finally`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_jax.devices import distributed, launch
from mnist_jax.errors import MnistJaxError
from mnist_jax.records import checkpoint
from tests.conftest import SMOKE

# Measured on the bundled sample after one epoch of configs/smoke.toml (float32): 2 processes x
# 1 device and 1 process x 2 devices train bitwise-equal parameters; both differ from 1 x 1 by
# at most 6.4e-5 (the batch's gradient summed in two halves), with the same test accuracy.
PARAM_TOLERANCE = 2e-4
TIMEOUT_S = 900  # a guard against a hung job; a loaded 2-core machine takes minutes


def mnist_jax(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist_jax", *args]


def run(args: list[str], env: dict | None = None, timeout: float = TIMEOUT_S):
    """Run a command to its end (bounded); return the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=timeout)


def params_of(folder: Path) -> list[np.ndarray]:
    ckpt = checkpoint.load(folder)
    return [layer[k] for layer in ckpt.params for k in sorted(layer)]


def max_diff(a: Path, b: Path) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(params_of(a), params_of(b)))


@pytest.mark.long  # a whole multi-process job: `make test-long`, after the main suite
def test_two_processes_equal_one_process_on_two_devices_and_on_one(tmp_path):
    common = ["train", "--config", str(SMOKE), "--epochs", "1", "--json", "--no-progress"]
    two = run(mnist_jax("launch", "-n", "2", "--", *common, "--out", str(tmp_path / "2x1")))
    assert two.returncode == 0, two.stderr
    fake_two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    pair = run(mnist_jax(*common, "--devices", "2", "--out", str(tmp_path / "1x2")), fake_two)
    assert pair.returncode == 0, pair.stderr
    one = run(mnist_jax(*common, "--out", str(tmp_path / "1x1")))
    assert one.returncode == 0, one.stderr

    # Process 0 alone prints the result (one JSON document) and writes the run folder.
    results = {
        name: json.loads(p.stdout) for name, p in (("2x1", two), ("1x2", pair), ("1x1", one))
    }
    assert "Mesh('data': 2" in results["2x1"]["device"]
    written = sorted(p.name for p in (tmp_path / "2x1").iterdir())
    events = [name for name in written if name.startswith("events.out.tfevents.")]
    assert len(events) == 1  # TensorBoard's, from process 0 alone
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "2x1")).Reload().Tags()
    assert "loss/train" in board["scalars"] and board["images"] == []  # no pictures in a job
    assert sorted(set(written) - set(events)) == ["checkpoint.npz", "metrics.jsonl", "summary.json"]
    assert len((tmp_path / "2x1" / "metrics.jsonl").read_text().splitlines()) == 1
    assert max_diff(tmp_path / "2x1", tmp_path / "1x2") < 1e-6
    for name in ("2x1", "1x2"):
        assert max_diff(tmp_path / name, tmp_path / "1x1") < PARAM_TOLERANCE
        assert abs(results[name]["test_accuracy"] - results["1x1"]["test_accuracy"]) <= 0.002
    # The split really happened: two processes do not train exactly what one does.
    assert max_diff(tmp_path / "2x1", tmp_path / "1x1") > 0


@pytest.mark.long  # a whole multi-process job: `make test-long`, after the main suite
def test_sweep_across_two_processes_prints_the_single_process_table(tmp_path):
    args = ["sweep", "--config", str(SMOKE), "--epochs", "1", "--seeds", "0,1,2", "--lrs", "0.1"]
    alone = run(mnist_jax(*args))
    shared = run(mnist_jax("launch", "-n", "2", "--", *args))
    assert alone.returncode == 0 and shared.returncode == 0, shared.stderr
    assert shared.stdout == alone.stdout
    assert len(alone.stdout.splitlines()) == 4  # the header and one row per model


def start_job(args: list[str], port: int, count: int = 2) -> list[subprocess.Popen]:
    """Start the processes of one job directly (as a cluster would), told by the environment."""
    procs = []
    for i in range(count):
        env = dict(os.environ, MNIST_JAX_COORDINATOR=f"127.0.0.1:{port}")
        env.update(MNIST_JAX_NUM_PROCESSES=str(count), MNIST_JAX_PROCESS_ID=str(i))
        procs.append(
            subprocess.Popen(
                mnist_jax(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        )
    return procs


@pytest.mark.long  # a whole multi-process job: `make test-long`, after the main suite
def test_killed_process_stops_the_job_and_resume_equals_an_uninterrupted_run(tmp_path):
    args = ["train", "--config", str(SMOKE), "--hidden", "512,512", "--epochs", "4", "--lr", "0.1"]
    args += ["--no-progress"]
    whole = run(mnist_jax("launch", "-n", "2", "--", *args, "--out", str(tmp_path / "whole")))
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "cut"
    procs = start_job([*args, "--out", str(out)], launch.free_port())
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (out / "checkpoint.npz").exists():
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)  # epoch 2 is under way
        killed_at = time.monotonic()
        code = procs[0].wait(timeout=60)
        survivor_s = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stderr.close()
    assert code != 0
    assert survivor_s < 40  # the coordinator's heartbeat timeout, plus slack
    saved = checkpoint.load(out)  # never half-written: a whole epoch's checkpoint
    assert 1 <= saved.epoch < 4

    resumed = run(mnist_jax("launch", "-n", "2", "--", "train", "--resume", str(out)))
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(out).epoch == 4
    assert max_diff(out, tmp_path / "whole") == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


@pytest.mark.option("train", "--coordinator")
@pytest.mark.long
def test_unreachable_coordinator_is_one_line_within_the_timeout():
    port = launch.free_port()
    started = time.monotonic()
    result = run(
        mnist_jax("train", "--config", str(SMOKE), "--coordinator", f"127.0.0.1:{port}",
                  "--num-processes", "2", "--process-id", "1"),
        env={distributed.TIMEOUT_ENV: "3"},
        timeout=60,
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: the coordinator 127.0.0.1:{port} did not answer")


@pytest.mark.long
def test_indivisible_batch_is_one_line_per_process_before_any_work(tmp_path):
    result = run(
        mnist_jax("launch", "-n", "2", "--", "train", "--config", str(SMOKE), "--batch-size",
                  "63", "--out", str(tmp_path / "run")),
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines and all("batch size 63 does not split over 2 devices" in line for line in lines)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.long
def test_launcher_reports_the_worst_exit_code_and_prefixes_lines():
    result = run(mnist_jax("launch", "-n", "2", "--", "train", "--epochs", "0"), timeout=60)
    assert result.returncode == 2
    assert {line[:4] for line in result.stderr.splitlines()} == {"[0] ", "[1] "}


def test_settings_come_from_flags_then_environment(monkeypatch):
    monkeypatch.setenv("MNIST_JAX_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("MNIST_JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("MNIST_JAX_PROCESS_ID", "3")
    assert distributed.settings() == distributed.Cluster("10.0.0.1:1234", 4, 3)
    assert distributed.settings("h:1", 2, 1) == distributed.Cluster("h:1", 2, 1)
    with pytest.raises(MnistJaxError, match="HOST:PORT"):
        distributed.settings("nohost")
    with pytest.raises(MnistJaxError, match="between 0 and 1"):
        distributed.settings("h:1", 2, 2)
    monkeypatch.setenv("MNIST_JAX_NUM_PROCESSES", "1")
    assert not distributed.settings(process_id=0).multi_process


def test_shares_cover_every_model_once(monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_count", lambda: 3)
    shares = [list(distributed.share(7, i)) for i in range(3)]
    assert shares == [[0, 1, 2], [3, 4], [5, 6]]


@pytest.mark.long  # a whole multi-process job: `make test-long`, after the main suite
def test_two_processes_draw_the_distortions_one_process_draws(tmp_path):
    plain = ["train", "--config", str(SMOKE), "--epochs", "1", "--json", "--no-progress"]
    distorted = [*plain, "--augment", "both"]
    two = run(mnist_jax("launch", "-n", "2", "--", *distorted, "--out", str(tmp_path / "2x1")))
    assert two.returncode == 0, two.stderr
    for args, name in ((distorted, "1x1"), (plain, "plain")):
        one = run(mnist_jax(*args, "--out", str(tmp_path / name)))
        assert one.returncode == 0, one.stderr
    assert checkpoint.load(tmp_path / "2x1").config.augment == "both"
    # The same distorted batches: the two runs differ only by the halves' summing order,
    # while distorting or not moves the parameters a hundred times further.
    assert max_diff(tmp_path / "2x1", tmp_path / "1x1") < PARAM_TOLERANCE
    assert max_diff(tmp_path / "1x1", tmp_path / "plain") > 100 * PARAM_TOLERANCE
