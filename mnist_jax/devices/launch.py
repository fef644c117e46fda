"""`mnist-jax launch -n N -- COMMAND ...`: a job of N processes on this machine.

For tests, and for one node with several GPUs: it picks a free port on 127.0.0.1, starts N
`mnist-jax COMMAND ...` processes told their place through `MNIST_JAX_COORDINATOR`,
`MNIST_JAX_NUM_PROCESSES` and `MNIST_JAX_PROCESS_ID` (`mnist_jax.devices.distributed`), and relays
their output: process 0's stdout as it is (the job's results, so `--json` still pipes), every other
line prefixed with `[i] `. Ctrl-C and SIGTERM are passed on to every process. When a process fails,
the others are stopped after a short grace. The exit code is the worst of the processes that ended
by themselves (a signal counts as 128 + its number).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from mnist_jax.devices.distributed import ENV
from mnist_jax.errors import MnistJaxError

GRACE_S = 2.0  # after one process fails, how long the others get to end by themselves
KILL_AFTER_S = 5.0  # after SIGTERM, how long before SIGKILL
MAX_PROCESSES = 64


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def exit_code(returncode: int) -> int:
    """A process's status as a shell reports it: a signal s becomes 128 + s."""
    return 128 - returncode if returncode < 0 else returncode


def launch(count: int, args: Sequence[str], *, port: int | None = None) -> int:
    """Run `mnist-jax ARGS` as `count` processes of one job; return the worst exit code.

    Args:
        count: processes to start (1 to 64).
        args: the command line after `mnist-jax`, e.g. ["train", "--config", "smoke"].
        port: the coordinator's port on 127.0.0.1; a free one when None.

    Raises:
        MnistJaxError: a count out of range, or no command.
    """
    if not 1 <= count <= MAX_PROCESSES:
        raise MnistJaxError(f"-n must be between 1 and {MAX_PROCESSES}, got {count}")
    if not args:
        raise MnistJaxError("give the command to run after --, e.g. launch -n 2 -- train")
    address = f"127.0.0.1:{port or free_port()}"
    children = [_start(i, count, address, args) for i in range(count)]
    relays = [
        threading.Thread(target=_relay, args=(stream, target, prefix), daemon=True)
        for i, child in enumerate(children)
        for stream, target, prefix in (
            (child.stdout, sys.stdout, "" if i == 0 else f"[{i}] "),
            (child.stderr, sys.stderr, f"[{i}] "),
        )
    ]
    for relay in relays:
        relay.start()
    stopped: set[int] = set()  # the processes this launcher ended; their codes do not count

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _wait(children, stopped)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for relay in relays:
            relay.join(timeout=5)
    codes = [exit_code(c.returncode) for i, c in enumerate(children) if i not in stopped]
    return max(codes, default=1)


def _start(index: int, count: int, address: str, args: Sequence[str]) -> subprocess.Popen:
    """Start process `index` of the job, in its own session so a terminal's Ctrl-C reaches it
    once, through the launcher."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.update({ENV["coordinator"]: address, ENV["num_processes"]: str(count)})
    env[ENV["process_id"]] = str(index)
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_jax", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait(children: list[subprocess.Popen], stopped: set[int]) -> None:
    """Wait for every process; once one fails, stop the rest after `GRACE_S` seconds."""
    failed_at = None
    while any(c.poll() is None for c in children):
        if failed_at is None and any(c.poll() not in (None, 0) for c in children):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
            for i, child in enumerate(children):
                if child.poll() is None:
                    stopped.add(i)
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=KILL_AFTER_S)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            return
        time.sleep(0.1)


def _relay(stream: IO[bytes], target: IO[str], prefix: str) -> None:
    """Copy a child's output to ours line by line, each line prefixed."""
    for raw in iter(stream.readline, b""):
        target.write(prefix + raw.decode(errors="replace"))
        target.flush()
    stream.close()
