"""Make a results row (the JSON of `mnist-jax train --seeds`) from seed runs trained apart.

    python scripts/results_row.py runs/elastic-800-s0 runs/elastic-800-s1 ... \
        --command "mnist-jax train -c configs/elastic-800.toml --seed S" --out row.json

`train --seeds 0-4` trains the seeds in turn in one process. On a machine with two cores, two
runs pinned to one core each (`taskset -c 0 mnist-jax train ... --seed 0 --out DIR`) finish
the same seeds sooner; this script reads their run folders' summary.json, measures the
machine it runs on (run it on the machine that trained them) and writes the same row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mnist_jax.devices import runtime
from mnist_jax.files import atomic_write_json
from mnist_jax.tools import results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, one per seed")
    parser.add_argument("--command", required=True, help="the command that trained each seed")
    parser.add_argument("--out", type=Path, required=True, help="the row's JSON file")
    options = parser.parse_args(argv)
    summaries = []
    for folder in options.runs:
        try:
            summaries.append(json.loads((folder / "summary.json").read_text()))
        except (OSError, ValueError) as e:
            parser.error(f"{folder}: no readable summary.json ({e})")
    row = results.make_row(
        summaries,
        results.machine(runtime.select_device("auto")),
        options.command,
        [str(folder) for folder in options.runs],
    )
    atomic_write_json(options.out, row)
    for line in results.row_lines(row):
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
