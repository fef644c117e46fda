"""scripts/gpu_check.py: its CPU dry run runs every step and writes one JSON report."""

import argparse
import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


@pytest.mark.long  # every step as a process, a minute: `make test-long`, after the main suite
def test_cpu_dry_run_runs_every_step_and_writes_one_report(tmp_path):
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--data", "sample",
         "--cpu-dry-run", "--quick", "--out", str(report_path),
         "--tests", "tests/test_backend.py::test_precision_per_platform"],
        capture_output=True, text=True, timeout=3600, check=False,  # a guard against a hang
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["mode"] == "cpu-dry-run" and report["passed"] is True
    names = [step["name"] for step in report["steps"]]
    first_seed = sorted(p.stem for p in (ROOT / "configs").glob("seed-*.toml"))[0]
    assert names == [
        "tests",
        *(f"gradcheck {first_seed} {d}" for d in ("float64", "float32")),
        "train default",
        "train default seed 1",
        "committee",
        "eval committee",
        "train ciresan-2010 epoch",
        "bench",
    ]
    # The dry run proves that each step runs, whatever the CPU's speed: no budget stops it.
    assert report["quick"] is True and report["budget_s"] is None
    assert not any(step.get("timed_out") or step.get("not_run") for step in report["steps"])
    assert all(step["exit_code"] == 0 for step in report["steps"])
    for name, figures in report["summary"].items():
        if name.startswith("gradcheck"):
            assert figures == {"passed": True, "precision": "highest"}
    assert 0.0 < report["summary"]["train default"]["test_accuracy"] <= 1.0
    committee = report["summary"]["eval committee"]
    assert 0.0 < committee["accuracy"] <= 1.0 and len(committee["members"]) == 2
    assert "--device" in report["steps"][-1]["command"]
    assert report["steps"][-1]["command"][report["steps"][-1]["command"].index("--device") + 1] == (
        "cpu"
    )


def test_missing_data_folder_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--data", str(tmp_path / "no"),
         "--cpu-dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not a folder" in done.stderr.strip().splitlines()[-1]


def test_quick_runs_a_few_test_files_one_gradcheck_config_and_short_steps(tmp_path):
    options = argparse.Namespace(quick=True, tests=None, cpu_dry_run=False, data=gpu_check.SAMPLE)
    todo = dict(gpu_check.steps("python", options, tmp_path))
    assert todo["tests"][-len(gpu_check.QUICK_TESTS) :] == gpu_check.QUICK_TESTS
    assert all((ROOT / path).is_file() for path in gpu_check.QUICK_TESTS)
    assert "tests/test_export.py" in gpu_check.QUICK_TESTS
    assert len([name for name in todo if name.startswith("gradcheck")]) == 2
    assert todo["train default"][todo["train default"].index("--epochs") + 1] == "1"
    second = todo["train default seed 1"]
    assert second[second.index("--seed") + 1] == "1" and second[second.index("--epochs") + 1] == "1"
    members = [args[args.index("--out") + 1] for args in (todo["train default"], second)]
    assert todo["committee"][-len(members) - 2 : -2] == members
    assert todo["committee"][-1] in todo["eval committee"] and "gpu" in todo["eval committee"]
    assert "--quick" in todo["bench"] and "gpu" in todo["bench"]
    largest = todo["train ciresan-2010 epoch"]
    assert "configs/ciresan-2010.toml" in largest and "gpu" in largest
    assert largest[largest.index("--epochs") + 1] == "1"
    full = dict(gpu_check.steps("python", argparse.Namespace(**{**vars(options), "quick": False}),
                                tmp_path))  # fmt: skip
    assert full["tests"][-1] == "tests" and "--epochs" not in full["train default"]


def test_the_quick_budget_is_a_gpus_and_the_dry_run_has_none_unless_given():
    quick = argparse.Namespace(quick=True, cpu_dry_run=False)
    assert gpu_check.default_budget(quick) == gpu_check.QUICK_BUDGET_S
    assert gpu_check.default_budget(argparse.Namespace(quick=True, cpu_dry_run=True)) is None
    assert gpu_check.default_budget(argparse.Namespace(quick=False, cpu_dry_run=False)) is None


def test_a_step_past_the_budget_is_stopped_and_later_ones_are_not_run():
    slow = [sys.executable, "-c", "import time; time.sleep(600)"]
    stopped = gpu_check.run_step("slow", slow, {}, lambda _: None, timeout=0.5)
    assert stopped["timed_out"] is True and stopped["exit_code"] is None
    assert stopped["seconds"] < 600  # stopped by the budget, not by the step's own end
    skipped = gpu_check.run_step("later", slow, {}, lambda _: None, timeout=0.0)
    assert skipped["not_run"] and skipped["exit_code"] is None and skipped["seconds"] == 0.0


@pytest.mark.long
def test_a_small_budget_stops_the_dry_run_and_records_the_rest_as_not_run(tmp_path):
    # A test step that would sleep ten minutes: a 5-second budget must stop it on any machine.
    sleeper = tmp_path / "test_sleeper.py"
    sleeper.write_text("import time\n\n\ndef test_sleeps():\n    time.sleep(600)\n")
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--data", "sample",
         "--cpu-dry-run", "--quick", "--budget", "5", "--out", str(report_path),
         "--tests", str(sleeper)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    report = json.loads(report_path.read_text())
    first, *rest = report["steps"]
    assert first["name"] == "tests" and first["timed_out"] is True
    assert rest and all(step.get("not_run") for step in rest)
    assert report["passed"] is False and report["budget_s"] == 5.0


@pytest.mark.long
def test_a_spent_budget_fails_the_check_and_says_so(tmp_path):
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--data", "sample",
         "--cpu-dry-run", "--quick", "--budget", "0", "--out", str(report_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and report["budget_s"] == 0.0
    assert all(step.get("not_run") for step in report["steps"])
