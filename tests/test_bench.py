import json

import pytest
from typer.testing import CliRunner

from mnist_jax.cli.app import app
from mnist_jax.tools import bench, measure


@pytest.mark.option("bench", "--workloads")
@pytest.mark.option("bench", "--json")
@pytest.mark.option("bench", "--write-json")
@pytest.mark.option("bench", "--quick")
@pytest.mark.long
def test_quick_benchmark_writes_every_column_as_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench", "--quick", "--repeats", "1", "--dataset", "sample",
            "--workloads", "tiny,fullbatch,sweep", "--json", "--write-json", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert json.loads(result.stdout) == report  # --json: the one document on stdout
    assert {"device", "cpu", "cores", "versions"} <= set(report["machine"])
    assert report["limits"]["peak_flops"] > 0 and report["limits"]["copy_bandwidth_bytes"] > 0
    assert [w["name"] for w in report["workloads"]] == ["tiny", "fullbatch", "sweep"]
    assert report["quick"] is True and report["workloads"][0]["images"] == 1024  # --quick's size
    for workload in report["workloads"]:
        rows = workload["rows"]
        for r in rows:
            assert set(r) == set(bench.ROW_KEYS)
        ours = rows[0]
        assert ours["median_s"] > 0 and ours["compile_s"] > 0 and ours["ratio"] is None
        for r in rows[1:]:
            # A skipped peer (torch absent) says why; a timed one has a positive ratio.
            assert (r["median_s"] is None and r["note"]) or r["ratio"] > 0
    peers = [r["peer"] for r in report["workloads"][0]["rows"]]
    assert peers == list(bench.PEERS)
    assert workload["name"] == "sweep" and len(workload["rows"]) == 2
    text = CliRunner().invoke(
        app, ["bench", "--quick", "--repeats", "1", "--dataset", "sample", "--workloads", "tiny"]
    )
    assert "| tiny | mnist-jax |" in text.stdout


def test_workload_cost_counts_forward_and_backward_products():
    # 784-10-10: forward 7,840 + 100 multiply-adds; backward the same for the weights, and
    # 100 more for the hidden layer's input gradient (none for the images).
    cost = measure.workload_cost((784, 10, 10), batch=128, steps=2, full=False)
    assert cost["flops"] == 2 * (3 * 7940 - 7840) * 128 * 2
    params = 7840 + 10 + 100 + 10
    assert cost["bytes"] == 128 * 2 * 784 + 2 * 4 * params * 2
    full = measure.workload_cost((784, 10, 10), batch=1000, steps=1, full=True)
    assert full["bytes"] == 2 * 1000 * 784 + 2 * 4 * params


def test_unknown_workload_is_a_config_error():
    with pytest.raises(bench.ConfigError, match="unknown workload 'huge'"):
        bench.run_benchmark(["huge"])


@pytest.mark.long
def test_the_bench_script_is_the_bench_command():
    import subprocess
    import sys

    from tests.conftest import ROOT

    args = ["--quick", "--repeats", "1", "--dataset", "sample", "--workloads", "tiny", "--json"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert [w["name"] for w in report["workloads"]] == ["tiny"]


@pytest.mark.option("bench", "--data")
@pytest.mark.long
def test_bench_takes_its_sizes_from_a_dataset_that_is_not_mnist(tmp_path):
    from tests.conftest import run_cli
    from tests.test_owndata import stroke_folder

    folder = stroke_folder(tmp_path / "strokes", 16, 3, train=300, test=50)  # 16x16, 3 classes
    args = ["bench", "--quick", "--repeats", "1", "--workloads", "tiny,sweep", "--json"]
    result = run_cli([*args, "--data", str(folder)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"] == "idx:strokes"
    tiny = report["workloads"][0]
    assert tiny["sizes"] == [256, 10, 3] and tiny["description"].startswith("256-10-3, ")
    cost = measure.workload_cost((256, 10, 3), tiny["batch_size"], tiny["steps"], full=False)
    assert tiny["flops"] == cost["flops"]
    assert all(r["median_s"] > 0 for w in report["workloads"] for r in w["rows"][:1])


@pytest.mark.option("bench", "--repeats")
@pytest.mark.option("bench", "--target-accuracy")
@pytest.mark.long
def test_time_to_accuracy_races_one_seed_per_repeat_to_the_target(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench", "--quick", "--repeats", "2", "--dataset", "sample",
            "--workloads", "time-to-accuracy", "--target-accuracy", "0.05",
            "--write-json", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (workload,) = json.loads(out.read_text())["workloads"]
    assert workload["target_accuracy"] == 0.05
    assert workload["sizes"] == [784, 800, 10]  # the data's sizes and the default widths
    assert workload["description"].startswith("784-800-10, ")
    assert [s["seed"] for s in workload["seeds"]] == [0, 1]
    (ours,) = workload["rows"]
    reached = [s for s in workload["seeds"] if s["reached"]]
    assert ours["times_s"] == [s["seconds"] for s in reached]
    for s in reached:
        assert s["curve"][-1][2] >= 0.05 and all(p[2] < 0.05 for p in s["curve"][:-1])
        assert f"seed {s['seed']}: epoch {s['epoch']}" in ours["note"]
    assert "| time-to-accuracy | mnist-jax |" in result.stdout


def test_a_target_accuracy_outside_0_1_is_one_line():
    from tests.conftest import run_cli

    done = run_cli(["bench", "--quick", "--workloads", "tiny", "--target-accuracy", "98.3"])
    assert done.exit_code != 0
    assert done.stderr.strip().splitlines()[-1].startswith("error: --target-accuracy")


@pytest.mark.long
def test_augment_workload_times_distorted_epochs_beside_the_plain_one():
    options = bench.Options(repeats=1, quick=True)
    source = {"dataset": "sample"}
    report = bench.run_benchmark(["augment"], data_source=source, options=options, log=print)
    (workload,) = report["workloads"]
    rows = {r["peer"]: r for r in workload["rows"]}
    assert list(rows)[:5] == [
        "mnist-jax", "mnist-jax+both", "mnist-jax+elastic", "distort-only", "map-coordinates"
    ]  # fmt: skip
    assert rows["mnist-jax"]["ratio"] is None and rows["mnist-jax"]["note"] == "none"
    for name in ("mnist-jax+both", "mnist-jax+elastic", "distort-only", "map-coordinates"):
        assert rows[name]["ratio"] == rows[name]["median_s"] / rows["mnist-jax"]["median_s"]
    # the distortion alone costs less than training on the distorted images
    assert rows["distort-only"]["median_s"] < rows["mnist-jax+both"]["median_s"]
    dm_pix = rows["dm-pix"]
    assert (dm_pix["median_s"] is None and "mnist-jax[pix]" in dm_pix["note"]) or (
        dm_pix["ratio"] > 0 and dm_pix["note"].startswith("elastic, no training")
    )
