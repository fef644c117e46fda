"""Joining a multi-process job: `jax.distributed` set up with a bounded, one-line failure.

A job of N processes (one per host, or several on one host) trains one data-parallel model:
each process drives its own devices, and JAX's collectives (gloo on CPUs, NCCL on GPUs) sum
the gradients. `join` connects this process to the others before JAX touches a device.

Where the settings come from, first found wins: the flags (`--coordinator HOST:PORT`,
`--num-processes N`, `--process-id I`), the environment (`MNIST_JAX_COORDINATOR`,
`MNIST_JAX_NUM_PROCESSES`, `MNIST_JAX_PROCESS_ID`), then `jax.distributed.initialize`'s own
detection of SLURM and Open MPI jobs (and of Kubernetes, once the number of processes is given).

`jax.distributed.initialize` waits for the coordinator and, when its timeout expires, aborts the
process from C++ (exit 134 and a stack dump Python cannot catch). So a process other than 0
first checks that the coordinator's port answers within `timeout` seconds and ends with one
error line if not. Process 0 hosts the coordinator and cannot check; if the others never come,
JAX's own timeout (the same `timeout`) ends it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mnist_jax.errors import MnistJaxError

ENV = {
    "coordinator": "MNIST_JAX_COORDINATOR",
    "num_processes": "MNIST_JAX_NUM_PROCESSES",
    "process_id": "MNIST_JAX_PROCESS_ID",
}
# Seconds to wait for the coordinator (MNIST_JAX_DISTRIBUTED_TIMEOUT changes it): with the
# start-up, an unreachable coordinator is reported within a minute.
DEFAULT_TIMEOUT_S = 45
TIMEOUT_ENV = "MNIST_JAX_DISTRIBUTED_TIMEOUT"
# Seconds without a heartbeat after which the coordinator declares a process dead and ends the
# others (JAX's default is 100): a killed process stops the job within this bound.
HEARTBEAT_TIMEOUT_S = 15


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a job; None values are left to JAX's cluster detection."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    @property
    def multi_process(self) -> bool:
        """True when any value is set, or when a SLURM or Open MPI job launched us."""
        given = (self.coordinator, self.num_processes, self.process_id)
        if any(v is not None for v in given):
            return self.num_processes != 1
        return detected_cluster() is not None


def settings(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> Cluster:
    """The job's settings: the flags, else the `MNIST_JAX_*` environment variables.

    Raises:
        MnistJaxError: a malformed address or number, or a process id out of range.
    """
    coordinator = coordinator or os.environ.get(ENV["coordinator"]) or None
    num_processes = _number(num_processes, "num_processes")
    process_id = _number(process_id, "process_id")
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise MnistJaxError(f"--coordinator must be HOST:PORT, got '{coordinator}'")
    if num_processes is not None and num_processes < 1:
        raise MnistJaxError(f"--num-processes must be at least 1, got {num_processes}")
    if process_id is not None and (
        process_id < 0 or (num_processes is not None and process_id >= num_processes)
    ):
        raise MnistJaxError(
            f"--process-id must be between 0 and {(num_processes or 1) - 1}, got {process_id}"
        )
    return Cluster(coordinator, num_processes, process_id)


def detected_cluster() -> str | None:
    """The launcher JAX can read a multi-process job from ("slurm", "openmpi"), or None."""
    if "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in os.environ:
        return "openmpi"
    return None


def join(cluster: Cluster, timeout: float | None = None) -> None:
    """Connect this process to the job's others; nothing happens for a single process.

    Call before anything asks JAX for a device. CPU devices talk through gloo.

    Args:
        cluster: the job's settings (`settings`).
        timeout: seconds to wait for the coordinator; `MNIST_JAX_DISTRIBUTED_TIMEOUT`, else
            `DEFAULT_TIMEOUT_S`, when None.

    Raises:
        MnistJaxError: the coordinator did not answer within `timeout` seconds.
    """
    import jax

    if not cluster.multi_process or jax.distributed.is_initialized():
        return
    if timeout is None:
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            timeout = float(text) if text else DEFAULT_TIMEOUT_S
        except ValueError:
            raise MnistJaxError(f"{TIMEOUT_ENV} must be seconds, got '{text}'") from None
    if cluster.process_id not in (None, 0) and cluster.coordinator is not None:
        wait_for_coordinator(cluster.coordinator, timeout)
    _native_output_to_stderr()
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            cluster.coordinator,
            cluster.num_processes,
            cluster.process_id,
            initialization_timeout=int(timeout),
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        )
    except (ValueError, RuntimeError) as e:  # settings JAX could not complete or use
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MnistJaxError(f"could not join the multi-process job: {first}") from None


def _native_output_to_stderr() -> None:
    """Send what native code prints on stdout (gloo's connection notes) to stderr.

    Python's `sys.stdout` keeps the real stdout, so results and `--json` stay clean.
    """
    try:
        if sys.stdout.fileno() != 1:
            return
    except (AttributeError, OSError, ValueError):  # a captured stdout has no descriptor
        return
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = open(real, "w", buffering=1, closefd=True)  # noqa: SIM115 (lives as long as us)


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Return once a TCP connection to `address` (HOST:PORT) opens; fail after `timeout` s."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise MnistJaxError(
                    f"the coordinator {address} did not answer within {timeout:g} s "
                    f"({e.strerror or e}); start process 0 first, or check --coordinator"
                ) from None
            time.sleep(0.25)


def process_index() -> int:
    """This process's id in the job (0 alone)."""
    import jax

    return jax.process_index()


def is_lead() -> bool:
    """True in process 0, the one that writes files and prints results."""
    return process_index() == 0


def agreed(should_stop: Callable[[], bool]) -> Callable[[], bool]:
    """Make a stop request seen by any process seen by all, at the same boundary.

    Every process polls at the same points of training; the poll becomes a tiny all-gather,
    so all stop after the same completed epoch instead of one waiting on the others forever.
    """
    import jax

    if jax.process_count() == 1:
        return should_stop

    def any_process() -> bool:
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array([should_stop()], np.int32))
        return bool(np.asarray(flags).any())

    return any_process


def share(count: int, index: int | None = None) -> range:
    """The indices of `count` items process `index` (default: this one) takes, contiguous."""
    import jax

    parts = jax.process_count()
    index = jax.process_index() if index is None else index
    size, extra = divmod(count, parts)
    start = index * size + min(index, extra)
    return range(start, start + size + (index < extra))


def gather_rows(rows: np.ndarray, count: int) -> np.ndarray:
    """Collect every process's `rows` (its `share(count)`, shape (share, F)) into (count, F).

    All processes must call it; each gets the whole table back, in item order.
    """
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return rows
    most = -(-count // jax.process_count())
    padded = np.full((most, rows.shape[1]), np.nan, rows.dtype)
    padded[: len(rows)] = rows
    gathered = np.asarray(multihost_utils.process_allgather(padded))  # (processes, most, F)
    return np.concatenate([gathered[p, : len(share(count, p))] for p in range(jax.process_count())])


def _number(value: int | None, name: str) -> Any:
    """A flag's value, else its environment variable as an int."""
    if value is not None:
        return value
    text = os.environ.get(ENV[name], "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise MnistJaxError(f"{ENV[name]} must be an integer, got '{text}'") from None
