"""The launcher's exit code: the worst of its processes, whichever process that is.

The processes here are a tiny shell script standing in for the Python interpreter that
`launch` starts: each exits with the code given for its `MNIST_JAX_PROCESS_ID`, so a job whose
processes end differently costs milliseconds, not a JAX start per process.
"""

import stat
import sys

import pytest

from mnist_jax.devices import launch

SCRIPT = """#!/bin/sh
# stands in for `python -m mnist_jax ARGS`: process i exits with the i-th of the codes
echo "$MNIST_JAX_PROCESS_ID/$MNIST_JAX_NUM_PROCESSES $*" > "{folder}/ran-$MNIST_JAX_PROCESS_ID"
set -- {codes}
shift "$MNIST_JAX_PROCESS_ID"
exit "$1"
"""


def fake_interpreter(folder, codes: list[int]):
    script = folder / "python"
    script.write_text(SCRIPT.format(folder=folder, codes=" ".join(map(str, codes))))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.parametrize(
    "codes",
    [[0, 3], [3, 0], [0, 1, 4, 0]],  # process 0 succeeds, another fails; and the other way
)
def test_the_launcher_returns_the_worst_exit_code_of_its_processes(tmp_path, monkeypatch, codes):
    monkeypatch.setattr(sys, "executable", str(fake_interpreter(tmp_path, codes)))
    assert launch.launch(len(codes), ["train", "--epochs", "1"]) == max(codes)
    for i in range(len(codes)):  # every process ran, told its place and the command
        ran = (tmp_path / f"ran-{i}").read_text().split()
        assert ran == [f"{i}/{len(codes)}", "-m", "mnist_jax", "train", "--epochs", "1"]
