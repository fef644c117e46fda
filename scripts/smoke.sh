#!/usr/bin/env bash
# The smoke set for an installed mnist-jax: run every main command of the `mnist-jax` in
# VENV_BIN from an empty folder outside the checkout, so only what the wheel ships is used
# (bundled configs by name, the bundled sample, the static page).
#
#   scripts/smoke.sh VENV_BIN      e.g. scripts/smoke.sh /tmp/venv-3.10/bin
#
# Any failing step stops the script with a non-zero exit code.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 VENV_BIN" >&2; exit 2; }
bin="$(cd "$1" && pwd)"
mj="$bin/mnist-jax"
py="$bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# Keep the user's caches out of it; no full MNIST files: everything runs on the bundled sample.
export XDG_CACHE_HOME="$work/cache"
unset MNIST_JAX_DATA

step() { echo "--- smoke ($("$py" -c 'import platform; print(platform.python_version())')): $*"; }

step "the package is imported from the install, not from a checkout"
"$py" - "$bin" <<'EOF'
import sys
from pathlib import Path

import mnist_jax

where = Path(mnist_jax.__file__).resolve()
prefix = Path(sys.argv[1]).resolve().parent
assert prefix in where.parents, f"mnist_jax imported from {where}, not from {prefix}"
EOF

step "mnist-jax --version"
version="$("$py" -c 'from importlib.metadata import version; print(version("mnist-jax"))')"
[ "$("$mj" --version)" = "mnist-jax $version" ]

step "mnist-jax --help, train --help"
"$mj" --help >help.txt
grep -q configs help.txt
"$mj" train --help >help.txt
grep -q -- --config help.txt

step "mnist-jax configs"
"$mj" configs | tee configs.txt
grep -q '^seed-lbfgs-100 ' configs.txt
grep -q '^smoke ' configs.txt

step "mnist-jax train -c seed-lbfgs-100 --dry-run"
"$mj" train -c seed-lbfgs-100 --dry-run --dataset sample | tee plan.txt
grep -q "seed-lbfgs-100" plan.txt

step "a bad config name ends in one error line and exit code 2"
set +e
"$mj" train -c no-such-config 2>err.txt
code=$?
set -e
[ "$code" = 2 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q "bundled configs: " err.txt

step "mnist-jax train: one epoch on the bundled sample"
"$mj" train -c smoke --epochs 1 --out run --no-progress
[ -f run/checkpoint.npz ]

step "mnist-jax train: L-BFGS in float64 (seed-lbfgs-100), three iterations on the sample"
"$mj" train -c seed-lbfgs-100 --dataset sample --epochs 3 --out lbfgs --no-progress
[ -f lbfgs/checkpoint.npz ]

step "mnist-jax eval"
"$mj" eval run | tee eval.txt
grep -q "test accuracy" eval.txt

step "mnist-jax gradcheck on the sample, a small batch"
"$mj" gradcheck -c smoke --batch 8

step "mnist-jax predict on a small .npy"
"$py" -c '
import numpy as np
digits = np.zeros((3, 28, 28), np.uint8)  # three drawn strokes: a bar, a dash, a ring
digits[0, 4:24, 13:15] = 255
digits[1, 13:15, 6:22] = 255
digits[2, 6:22, 8:20] = 255
digits[2, 9:19, 11:17] = 0
np.save("digits.npy", digits)
'
"$mj" predict run digits.npy --json >predictions.json
"$py" - <<'EOF'
import json

rows = json.load(open("predictions.json"))
assert len(rows) == 3, rows
for row in rows:
    assert len(row["probabilities"]) == 10 and abs(sum(row["probabilities"]) - 1) < 1e-3, row
EOF

echo "--- smoke: all steps passed"
