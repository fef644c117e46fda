"""Run seed configs over several seeds and print mean and spread of their accuracies.

    MNIST_JAX_DATA=/path/to/mnist python scripts/seed_results.py configs/seed-lbfgs-100.toml \
        --seeds 0,1,2 --out results.json [--set input_scale=0.00392156862745098]

Each run's summary and loss curve go into the JSON file; the table goes to stdout. Seconds are
wall-clock training time and depend on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import mnist_jax
from mnist_jax.config import load_config


def run_seeds(config_path: str, seeds: list[int], changes: dict) -> list[dict]:
    """Train the config once per seed; return each run's summary plus its per-epoch losses."""
    results = []
    for seed in seeds:
        config = load_config(config_path, {**changes, "seed": seed})
        result = mnist_jax.train(config, log=lambda _: None)
        summary = {**result.to_dict(), "losses": [r["train_loss"] for r in result.history]}
        results.append(summary)
        print(
            f"{config.name} seed {seed}: test {summary['test_accuracy']:.2%} "
            f"train {summary['train_accuracy']:.2%} {summary['train_seconds']:.1f} s",
            flush=True,
        )
    return results


def spread(values: list[float]) -> str:
    """Format mean +- half the range, in percent."""
    mean = statistics.fmean(values)
    half = (max(values) - min(values)) / 2
    return f"{mean:.2%} ± {half:.2%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], help="key=value (a number)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    changes = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    report = {}
    for path in args.configs:
        runs = run_seeds(path, seeds, changes)
        report[path] = runs
        print(
            f"{path}: test {spread([r['test_accuracy'] for r in runs])}  "
            f"train {spread([r['train_accuracy'] for r in runs])}  "
            f"{statistics.fmean(r['train_seconds'] for r in runs):.1f} s",
            flush=True,
        )
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
