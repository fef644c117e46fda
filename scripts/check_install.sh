#!/usr/bin/env bash
# Check mnist-jax as users get it: build the wheel once, install it (not editable) into fresh
# virtual environments and run scripts/smoke.sh from a folder outside the checkout:
#   1. the oldest and the newest supported Python, with the newest dependencies pip picks;
#   2. the oldest Python with every dependency at the lowest version pyproject.toml allows
#      (pinned by scripts/lowest_requirements.py), the images and safetensors extras included;
#      there the tests of the file readers run too (every format, the decoder boundary, the fuzz).
# Building and installing must print no warning. Any failure exits non-zero.
#
#   scripts/check_install.sh            Pythons from pyenv (3.11.7 and 3.13.0)
#   OLDEST_PYTHON=... NEWEST_PYTHON=... scripts/check_install.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
OLDEST_PYTHON="${OLDEST_PYTHON:-$pyenv_root/versions/3.11.7/bin/python}"
NEWEST_PYTHON="${NEWEST_PYTHON:-$pyenv_root/versions/3.13.0/bin/python}"
for python in "$OLDEST_PYTHON" "$NEWEST_PYTHON"; do
    [ -x "$python" ] || { echo "error: no Python at $python (install it with pyenv)" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Run a pip command, show its output, and fail if it printed a warning. Lines saying that one of
# the machine's configured extra package indexes is missing are about the machine, not the
# project: they are left out.
pip_without_warnings() {
    local log="$work/pip.log"
    "$@" 2>&1 | { grep -v "Location '.*' is ignored: it is neither a file" || true; } | tee "$log"
    if grep -i "warning" "$log"; then
        echo "error: the command above printed a warning: $*" >&2
        exit 1
    fi
}

# Make a fresh virtual environment at $2 with Python $1 and a current pip.
fresh_venv() {
    "$1" -m venv "$2"
    pip_without_warnings "$2/bin/python" -m pip install --quiet --upgrade pip
}

echo "=== build the wheel (newest Python)"
fresh_venv "$NEWEST_PYTHON" "$work/build"
# Build from a copy of the tracked files, so no stale build/ folder or local file leaks in.
mkdir "$work/src"
git -C "$root" ls-files -z --cached --others --exclude-standard \
    | (cd "$root" && xargs -0 cp --parents -t "$work/src")
pip_without_warnings "$work/build/bin/pip" wheel --no-deps --quiet "$work/src" -w "$work/dist"
wheel="$(ls "$work"/dist/mnist_jax-*.whl)"

for python in "$OLDEST_PYTHON" "$NEWEST_PYTHON"; do
    echo "=== install the wheel into a fresh venv: $("$python" --version)"
    venv="$work/venv-$(basename "$(dirname "$(dirname "$python")")")"
    fresh_venv "$python" "$venv"
    pip_without_warnings "$venv/bin/pip" install --quiet "$wheel"
    bash "$root/scripts/smoke.sh" "$venv/bin"
done

echo "=== the lowest declared dependency versions: $("$OLDEST_PYTHON" --version)"
"$work/build/bin/python" "$root/scripts/lowest_requirements.py" "$root/pyproject.toml" \
    --extra images --extra safetensors | tee "$work/lowest.txt"
fresh_venv "$OLDEST_PYTHON" "$work/venv-lowest"
pip_without_warnings "$work/venv-lowest/bin/pip" install --quiet "$wheel" -r "$work/lowest.txt"
"$work/venv-lowest/bin/pip" list 2>/dev/null | grep -iE "^(jax|jaxlib|optax|numpy|typer|rich|click|pillow|safetensors) "
bash "$root/scripts/smoke.sh" "$work/venv-lowest/bin"
echo "=== the file readers' tests with the lowest Pillow and safetensors the extras allow"
pip_without_warnings "$work/venv-lowest/bin/pip" install --quiet pytest hypothesis
(cd "$root" && "$work/venv-lowest/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_imagefile.py tests/test_decoders.py)
echo "=== install checks passed"
