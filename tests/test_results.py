"""A results row: `train --seeds` trains each seed, and the row's figures are those runs' own."""

import json
import re
import statistics
import subprocess
import sys

import pytest

from mnist_jax.tools import results
from tests.conftest import ROOT, SMOKE, run_cli


def summary(seed: int, test_accuracy: float, seconds: float, name: str = "x") -> dict:
    """A run summary as `train --json` prints it, reduced to what a row reads."""
    return {
        "config": {"name": name, "seed": seed},
        "dataset": "mnist",
        "test_accuracy": test_accuracy,
        "test_loss": 0.1,
        "validation_accuracy": test_accuracy - 0.001,
        "train_seconds": seconds,
        "epochs": 3,
    }


HOST = {"cpu": "Some CPU", "cores": 2, "cores_used": 1, "gemm_gflops": 100.0}


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2,5", [0, 2, 5]), ("0-2,7", [0, 1, 2, 7])],
)
def test_seeds_are_listed_or_given_as_ranges(text, seeds):
    assert results.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "0-", "-1", "1,1", "0-2,2", "4-2", "0 1"])
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError, match="--seeds"):
        results.parse_seeds(text)


def test_a_row_gives_the_mean_and_sample_deviation_of_its_seeds_errors():
    accuracies = [0.9950, 0.9941, 0.9948, 0.9939, 0.9955]
    row = results.make_row(
        [summary(s, a, 100.0 + s) for s, a in enumerate(accuracies)], HOST, "cmd"
    )
    errors = [100 * (1 - a) for a in accuracies]
    assert [s["test_error"] for s in row["seeds"]] == pytest.approx(errors)
    assert row["test_error"]["mean"] == pytest.approx(statistics.fmean(errors), abs=1e-4)
    assert row["test_error"]["sd"] == pytest.approx(statistics.stdev(errors), abs=1e-4)
    assert row["test_error"]["max"] == pytest.approx(max(errors))
    assert row["validation_error"]["mean"] == pytest.approx(statistics.fmean(errors) + 0.1, 1e-3)
    assert row["train_seconds"]["min"] == 100.0 and row["machine"] == HOST
    cells = results.markdown_cells(row)
    assert f"{statistics.fmean(errors):.2f}%" in cells["test error"]
    assert cells["seeds"].split(", ") == [f"{e:.2f}" for e in errors]
    assert cells["machine"] == "Some CPU, 1 of 2 cores, 100 GFLOP/s"


def test_a_row_holds_one_configs_seeds():
    with pytest.raises(ValueError, match="one config"):
        results.make_row([summary(0, 0.99, 1.0, "a"), summary(1, 0.99, 1.0, "b")], HOST, "cmd")


@pytest.mark.option("train", "--seeds")
@pytest.mark.long
def test_train_seeds_trains_each_seed_and_writes_their_row(tmp_path):
    out = tmp_path / "row"
    args = ["train", "-c", str(SMOKE), "--dataset", "sample", "--epochs", "1"]
    done = run_cli([*args, "--seeds", "0,1", "--out", str(out), "--json", "--no-progress"])
    assert done.exit_code == 0, done.stderr
    row = json.loads(done.stdout)
    assert row == json.loads((out / "seeds.json").read_text())
    assert [s["seed"] for s in row["seeds"]] == [0, 1]
    for figures in row["seeds"]:  # each seed's figure is its own run's, read back by eval
        evaluated = run_cli(["eval", figures["out"], "--dataset", "sample", "--json"])
        accuracy = json.loads(evaluated.stdout)["accuracy"]
        assert figures["test_error"] == pytest.approx(100 * (1 - accuracy), abs=1e-3)
        saved = json.loads((out / f"seed-{figures['seed']}" / "summary.json").read_text())
        assert saved["config"]["seed"] == figures["seed"]
    assert row["seeds"][0]["test_error"] != row["seeds"][1]["test_error"] or (
        row["seeds"][0]["test_loss"] != row["seeds"][1]["test_loss"]
    )  # two seeds, two runs
    assert row["machine"]["gemm_gflops"] > 0 and row["machine"]["cpu"]
    assert row["command"].startswith("mnist-jax train") and "--seeds 0,1" in row["command"]

    made = tmp_path / "made.json"  # the same row from the run folders, as if trained apart
    script = ROOT / "scripts" / "results_row.py"
    folders = [s["out"] for s in row["seeds"]]
    code = subprocess.run(
        [sys.executable, str(script), *folders, "--command", row["command"], "--out", str(made)],
        capture_output=True, text=True, timeout=300, check=False,
    ).returncode  # fmt: skip
    assert code == 0
    again = json.loads(made.read_text())
    assert again["seeds"] == row["seeds"] and again["test_error"] == row["test_error"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--seed", "3"], "drop --seed"),
        (["--seed", "0"], "drop --seed"),
        (["--dry-run"], "drop --dry-run"),
        (["--resume", "x"], "with --resume alone"),
    ],
)
def test_seeds_refuse_what_contradicts_them_in_one_line(tmp_path, extra, says):
    args = ["train", "-c", str(SMOKE), "--dataset", "sample", "--seeds", "0-1"]
    done = run_cli([*args, "--out", str(tmp_path / "r"), *extra])
    assert done.exit_code == 2 and len(done.stderr.strip().splitlines()) == 1
    assert says in done.stderr
    assert not (tmp_path / "r" / "seeds.json").exists()


RESULTS = ROOT / "docs" / "results"
README = (ROOT / "README.md").read_text()


def readme_line(start: str) -> str:
    """The one README table line that begins with `start`."""
    (line,) = [line for line in README.splitlines() if line.startswith(start)]
    return line


@pytest.mark.parametrize(
    "path", sorted(p for p in RESULTS.glob("*.json") if "committee" not in p.stem), ids=str
)
def test_a_readme_row_is_rendered_from_its_json(path):
    row = json.loads(path.read_text())
    assert path.stem == row["config"] and len(row["seeds"]) == 5
    line = readme_line(f"| `{row['config']}` |")
    for cell in results.markdown_cells(row).values():
        assert f"| {cell} |" in line, (cell, line)


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*-committee.json")), ids=str)
def test_a_committees_figure_is_its_evals(path):
    evaluated = json.loads(path.read_text())
    assert len(evaluated["members"]) == 5
    name = path.stem.removesuffix("-committee")
    line = readme_line(f"| the five `{name}` runs |")
    assert f"| **{100 * (1 - evaluated['accuracy']):.2f}%** |" in line


def test_every_row_with_seeds_in_the_readme_has_its_json():
    named = re.findall(r"^\| `([a-z0-9-]+)` \| [^|]+ \| \*\*", README, re.M)
    assert named and all((RESULTS / f"{name}.json").is_file() for name in named), named
