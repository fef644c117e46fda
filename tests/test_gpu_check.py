"""scripts/gpu_check.py: its CPU dry run runs every step and writes one JSON report."""

import json
import subprocess
import sys

from conftest import ROOT


def test_cpu_dry_run_runs_every_step_and_writes_one_report(tmp_path):
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--data", "sample",
         "--cpu-dry-run", "--quick", "--out", str(report_path),
         "--tests", "tests/test_backend.py::test_precision_per_platform"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["mode"] == "cpu-dry-run" and report["passed"] is True
    names = [step["name"] for step in report["steps"]]
    seeds = sorted(p.stem for p in (ROOT / "configs").glob("seed-*.toml"))
    assert names == [
        "tests",
        *(f"gradcheck {s} {d}" for s in seeds for d in ("float64", "float32")),
        "train default",
        "bench",
    ]
    assert all(step["exit_code"] == 0 for step in report["steps"])
    for name, figures in report["summary"].items():
        if name.startswith("gradcheck"):
            assert figures == {"passed": True, "precision": "highest"}
    assert 0.0 < report["summary"]["train default"]["test_accuracy"] <= 1.0
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
