"""A results row: one config trained with several seeds, summarised with the machine it ran on.

A seed fixes a run's initial weights, batch order and distortions, but another CPU rounds
differently, so across machines each seed is a new draw: a row's claim is the spread of its
seeds on the machine that ran them, and the row says which machine that was (CPU model, cores,
measured GEMM rate). `mnist-jax train --seeds 0-4` trains the seeds in turn and writes
`seeds.json`; `scripts/results_row.py` makes the same row (`make_row`) from run folders trained
apart (two at a time, say), and `markdown_cells` renders the README's cells from it, so no
figure is typed in.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from typing import Any

GEMM_SIZE = 1024  # large enough to reach the GEMM's rate on a CPU, about a second in all
COPY_BYTES = 1 << 24


def parse_seeds(text: str) -> list[int]:
    """Parse '0-4' or '0,1,2' (or a mix, '0-2,7') into distinct seeds, in the order given.

    Raises:
        ValueError: the text is not a list of non-negative integers and ranges.
    """
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        if not low.isdecimal() or (dash and not high.isdecimal()):
            raise ValueError(f"--seeds takes seeds and ranges such as 0-4 or 0,1,2, got {text!r}")
        seeds.extend(range(int(low), int(high if dash else low) + 1))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds takes distinct seeds, got {text!r}")
    return seeds


def machine(device: Any) -> dict[str, Any]:
    """The machine a row ran on: device, CPU model, cores, versions and its GEMM rate (GFLOP/s)."""
    from mnist_jax.tools import measure

    limits = measure.measure_limits(GEMM_SIZE, COPY_BYTES, device)
    return {
        **measure.machine_info(device),
        "cores_used": len(os.sched_getaffinity(0)),  # fewer than "cores" when pinned (taskset)
        "gemm_gflops": round(limits["peak_flops"] / 1e9, 1),
    }


def seed_figures(summary: dict[str, Any], out: str | None = None) -> dict[str, Any]:
    """One seed's figures from its run summary (`train --json`): errors in percent, seconds."""
    figures = {
        "seed": summary["config"]["seed"],
        "test_error": round(100 * (1 - summary["test_accuracy"]), 4),
        "test_loss": summary["test_loss"],
        "train_seconds": round(summary["train_seconds"], 1),
        "epochs": summary["epochs"],
    }
    if summary.get("validation_accuracy") is not None:
        figures["validation_error"] = round(100 * (1 - summary["validation_accuracy"]), 4)
    return {**figures, **({"out": out} if out else {})}


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1), lowest and highest of a row's figures."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": round(sd, 4),
        "min": min(values),
        "max": max(values),
    }


def make_row(
    summaries: Sequence[dict[str, Any]],
    host: dict[str, Any],
    command: str,
    outs: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The results row of one config's seeds.

    Args:
        summaries: each seed's run summary (`Result.to_dict()`, a run folder's summary.json),
            all of one config but for the seed.
        host: `machine(device)`, where the seeds ran.
        command: the command that trained them, for the reader to run again.
        outs: each seed's run folder, kept so the runs can form a committee.

    Returns:
        {"config", "dataset", "command", "machine", "seeds": [per-seed figures],
         "test_error": spread, "validation_error": spread or absent, "train_seconds": spread}
        with errors in percent.
    """
    if not summaries:
        raise ValueError("a row needs at least one seed")
    names = {s["config"]["name"] for s in summaries}
    if len(names) != 1:
        raise ValueError(f"a row holds one config's seeds, got {sorted(names)}")
    seeds = [seed_figures(s, o) for s, o in zip(summaries, outs or [None] * len(summaries))]
    row = {
        "config": names.pop(),
        "dataset": summaries[0]["dataset"],
        "command": command,
        "machine": host,
        "seeds": seeds,
        "test_error": spread([s["test_error"] for s in seeds]),
        "train_seconds": spread([s["train_seconds"] for s in seeds]),
    }
    if all("validation_error" in s for s in seeds):
        row["validation_error"] = spread([s["validation_error"] for s in seeds])
    return row


def row_lines(row: dict[str, Any]) -> list[str]:
    """The row for a person: one line a seed, then the mean and spread."""
    lines = [
        f"seed {s['seed']}: test error {s['test_error']:.2f}%"
        + (f", validation error {s['validation_error']:.2f}%" if "validation_error" in s else "")
        + f", {s['train_seconds']:.0f} s"
        for s in row["seeds"]
    ]
    error = row["test_error"]
    lines.append(
        f"{row['config']}: test error {error['mean']:.3f}% ± {error['sd']:.3f}% (mean ± sd of "
        f"{len(row['seeds'])} seeds) on {row['machine']['cpu']}, "
        f"{row['machine']['gemm_gflops']:.0f} GFLOP/s GEMM"
    )
    return lines


def markdown_cells(row: dict[str, Any]) -> dict[str, str]:
    """The README's cells for a row: test error, each seed's, the seconds and the machine."""
    error, seconds = row["test_error"], row["train_seconds"]
    host = row["machine"]
    return {
        "test error": f"**{error['mean']:.2f}% ± {error['sd']:.2f}%**",
        "seeds": ", ".join(f"{s['test_error']:.2f}" for s in row["seeds"]),
        "seconds": f"{seconds['min']:.0f}-{seconds['max']:.0f}",
        "machine": f"{host['cpu']}, {host.get('cores_used', host['cores'])} of {host['cores']} "
        f"cores, {host['gemm_gflops']:.0f} GFLOP/s",
    }
