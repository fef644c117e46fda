"""Check mnist-jax on an NVIDIA GPU with one command, and write one JSON report.

    python scripts/gpu_check.py --data /path/to/mnist            # or: make gpu-check DATA=...
    python scripts/gpu_check.py --data /path/to/mnist --cpu-dry-run --quick   # no GPU needed

It uses the JAX already installed when that JAX sees a GPU (GPU machines are often offline
with JAX and CUDA preinstalled); only when it does not, and `nvidia-smi` finds a GPU, does it
make `.venv-gpu` and install `mnist-jax[cuda12,dev]` (or `--cuda 13`) there. Then, each step
a separate process on the GPU backend (`--device gpu`):

1. the test suite (tests marked `gpu` run; they are skipped on the CPU);
2. `gradcheck` in float64 and float32 on every seed config;
3. the default training (test accuracy and seconds), a second seed of it, the committee of
   the two (`mnist-jax committee`) and its `eval`;
4. one epoch of the largest config, `ciresan-2010`, its images distorted on the device;
5. the benchmark, with PyTorch on CUDA when torch is installed.

`--quick` is the check for a GPU lent for minutes: a few test files (`QUICK_TESTS`, among
them the CUDA export and the GPU-marked tests), `gradcheck` on one seed config in both dtypes,
one epoch of the default training and of a second seed and their committee's `eval`, one
distorted epoch of `ciresan-2010` and `bench --quick`,
all within a time budget
(`QUICK_BUDGET_S`, 4.5 minutes of steps; `--budget` sets another): a step still running when
the budget is spent is stopped, and the steps after it are recorded as not run.

`--cpu-dry-run` runs the same steps on the CPU (`--device cpu`), installing nothing, so the
script itself is exercised on a machine without a GPU. It has no time budget unless `--budget`
gives one: the quick budget is a GPU's, and a CPU takes what it takes, so a slow or busy machine
still runs every step. A failing step is recorded and the others still run; the exit code is 1
if any step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED_CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("seed-*.toml"))
SAMPLE = Path("sample")  # `--data sample`: the bundled 10,000/2,000 subset, for a dry run
PROBE = "import json, jax; print(json.dumps([d.platform for d in jax.devices()]))"
TAIL = 2000  # characters of a step's output kept in the report
# --quick: the tests that say most about a GPU in the least time, and its budget for all steps.
QUICK_TESTS = [
    "tests/test_backend.py",
    "tests/test_export.py",
    "tests/test_keys.py",
    "tests/test_memory.py",
]
QUICK_BUDGET_S = 270.0


def probe(python: str) -> list[str] | None:
    """The platforms JAX sees under `python`, or None when JAX does not import there."""
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def find_python(dry_run: bool, cuda: str, log) -> tuple[str, dict[str, Any]]:
    """Pick the interpreter to run on: this one if its JAX fits, else a new `.venv-gpu`."""
    platforms = probe(sys.executable)
    record: dict[str, Any] = {"python": sys.executable, "platforms": platforms, "installed": None}
    if dry_run or (platforms and "gpu" in platforms):
        return sys.executable, record
    if shutil.which("nvidia-smi") is None:
        raise SystemExit("gpu-check: no GPU here (no nvidia-smi); try --cpu-dry-run")
    venv = ROOT / ".venv-gpu"
    python = str(venv / "bin" / "python")
    extra = f".[cuda{cuda},dev]"
    log(f"gpu-check: JAX here sees {platforms or 'nothing'}; installing '{extra}' into {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-e", extra], cwd=ROOT, check=True)
    record.update(python=python, platforms=probe(python), installed=extra)
    return python, record


def run_step(
    name: str, args: list[str], env: dict[str, str], log, timeout: float | None = None
) -> dict[str, Any]:
    """Run one step; keep its exit code, seconds, and its JSON (or the tail of its output).

    A step still running after `timeout` seconds is stopped: its exit code is None and
    "timed_out" is True. A `timeout` of 0 or less does not start it ("not_run").
    """
    step: dict[str, Any] = {"name": name, "command": args, "exit_code": None, "seconds": 0.0}
    if timeout is not None and timeout <= 0:
        log(f"gpu-check: {name}: not run, the time budget is spent")
        return {**step, "not_run": "the time budget is spent"}
    log(f"gpu-check: {name}: {' '.join(args)}")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, cwd=ROOT, env=env, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or b""
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        log(f"gpu-check: {name}: stopped after {timeout:.0f} s (the time budget)")
        return {**step, "seconds": round(time.perf_counter() - started, 2), "timed_out": True,
                "output": text[-TAIL:]}  # fmt: skip
    step.update(exit_code=done.returncode, seconds=round(time.perf_counter() - started, 2))
    try:
        step["result"] = json.loads(done.stdout)
    except json.JSONDecodeError:
        step["output"] = (done.stdout + done.stderr)[-TAIL:]
    if done.returncode != 0 and "output" not in step:
        step["output"] = done.stderr[-TAIL:]
    log(f"gpu-check: {name}: exit {done.returncode} in {step['seconds']} s")
    return step


def steps(python: str, options: argparse.Namespace, out: Path) -> list[tuple[str, list[str]]]:
    """The (name, command) of every step, on `--device gpu` (or cpu for a dry run)."""
    device = ["--device", "cpu" if options.cpu_dry_run else "gpu"]
    cli = [python, "-m", "mnist_jax"]
    data = ["--dataset", "sample"] if options.data == SAMPLE else ["--data", str(options.data)]
    tests = options.tests or (QUICK_TESTS if options.quick else ["tests"])
    todo = [("tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests])]
    for config in SEED_CONFIGS[:1] if options.quick else SEED_CONFIGS:
        for dtype in ("float64", "float32"):
            todo.append(
                (
                    f"gradcheck {Path(config).stem} {dtype}",
                    [
                        *cli,
                        "gradcheck",
                        "--config",
                        config,
                        *data,
                        "--dtype",
                        dtype,
                        *device,
                        "--json",
                    ],
                )  # fmt: skip
            )
    epochs = ["--epochs", "1"] if options.quick else []
    train_out = ["--out", str(out / "train-default"), "--no-progress"]
    todo.append(
        (
            "train default",
            [
                *cli,
                "train",
                "--config",
                "configs/default.toml",
                *data,
                *device,
                *epochs,
                *train_out,
                "--json",
            ],
        )  # fmt: skip
    )
    # A committee of two runs of the default (the one above and a second seed), evaluated.
    second = ["--out", str(out / "train-default-seed1"), "--no-progress", "--json"]
    seed1 = [*cli, "train", "--config", "configs/default.toml", "--seed", "1"]
    todo.append(("train default seed 1", [*seed1, *data, *device, *epochs, *second]))
    members = [str(out / "train-default"), str(out / "train-default-seed1")]
    todo.append(("committee", [*cli, "committee", *members, "--out", str(out / "committee")]))
    todo.append(
        ("eval committee", [*cli, "eval", str(out / "committee"), *data, *device, "--json"])
    )
    # One distorted epoch of the largest config (about 4 TFLOP on full MNIST): what a GPU
    # runtime gives the network of Ciresan et al. 2010, distortions computed on the device.
    largest = ["--config", "configs/ciresan-2010.toml", "--epochs", "1"]
    largest_out = ["--out", str(out / "train-ciresan-2010"), "--no-progress", "--json"]
    todo.append(
        ("train ciresan-2010 epoch", [*cli, "train", *largest, *data, *device, *largest_out])
    )
    quick = ["--quick", "--repeats", "1"] if options.quick else []
    todo.append(("bench", [*cli, "bench", *data, *device, *quick, "--json"]))
    return todo


def summary(step: dict[str, Any]) -> dict[str, Any]:
    """The few figures of a step worth reading first: passed, accuracy, seconds."""
    result = step.get("result")
    if not isinstance(result, dict):
        return {}
    if "passed" in result:
        return {"passed": result["passed"], "precision": result.get("matmul_precision")}
    if "members" in result:  # a committee's eval
        return {
            "accuracy": result["accuracy"],
            "members": [m["accuracy"] for m in result["members"]],
        }
    if "test_accuracy" in result:
        return {k: result.get(k) for k in ("test_accuracy", "train_seconds", "device")}
    if "workloads" in result:
        return {
            w["name"]: {r["peer"]: r["median_s"] for r in w["rows"]} for w in result["workloads"]
        }
    return {}


def write_json(path: Path, value: Any) -> None:
    """Write `value` as JSON atomically: a temporary file beside `path`, then a rename.

    (The project's own helper needs mnist_jax importable, which this launcher may not have.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def default_budget(options: argparse.Namespace) -> float | None:
    """Seconds for all steps when `--budget` is not given: the GPU's quick budget, else none.

    The quick budget measures a GPU; on the CPU (`--cpu-dry-run`) the steps take what the
    machine gives them, and the dry run is there to prove that each step runs, not how fast.
    """
    return QUICK_BUDGET_S if options.quick and not options.cpu_dry_run else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="folder of the MNIST IDX files, or 'sample'"
    )
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"), help="the report")
    parser.add_argument("--cuda", choices=("12", "13"), default="12", help="CUDA wheels to use")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run every step on the CPU")
    parser.add_argument(
        "--quick", action="store_true", help="a few minutes in all: fewer tests, shorter steps"
    )
    parser.add_argument(
        "--budget",
        type=float,
        help=f"seconds for all steps (--quick on a GPU: {QUICK_BUDGET_S:.0f}; "
        "--cpu-dry-run: none unless given)",
    )
    parser.add_argument(
        "--tests", nargs="*", help="pytest paths to run (default: tests; --quick: QUICK_TESTS)"
    )
    options = parser.parse_args(argv)
    budget = default_budget(options) if options.budget is None else options.budget
    if options.data != SAMPLE and not options.data.is_dir():
        parser.error(f"--data {options.data}: not a folder (give the folder of the IDX files)")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    python, environment = find_python(options.cpu_dry_run, options.cuda, log)
    env = dict(os.environ)
    if options.data != SAMPLE:
        env["MNIST_JAX_DATA"] = str(options.data.resolve())  # the full-data tests run too
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if options.cpu_dry_run:
        env["JAX_PLATFORMS"] = "cpu"
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        todo = steps(python, options, Path(scratch))
        deadline = None if budget is None else time.perf_counter() + budget
        results = []
        for name, args in todo:
            left = None if deadline is None else deadline - time.perf_counter()
            results.append(run_step(name, args, env, log, left))
    report = {
        "mode": "cpu-dry-run" if options.cpu_dry_run else "gpu",
        "quick": options.quick,
        "budget_s": budget,
        "environment": environment,
        "passed": all(s["exit_code"] == 0 for s in results),
        "summary": {s["name"]: summary(s) for s in results},
        "steps": results,
    }
    write_json(options.out, report)
    log(f"gpu-check: {'passed' if report['passed'] else 'FAILED'}; report in {options.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
