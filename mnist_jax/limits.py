"""How much a file may claim: the host's available memory, and the one check every reader makes.

Every reader compares what a file's header declares (an IDX shape, a `.npy` shape, a zip
member's size, an image's pixel count) with the file's size and with `limit()` *before* it
allocates, so a hostile or broken file ends in one line naming the file, what it claims and
what was found, and peak memory stays near the size of the data it honestly claims to be.
NumPy only; nothing here imports JAX.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_jax.errors import DataError

# Share of the available host memory one file's decoded data may take: the rest is for the
# copies a reader and the run make of it (float conversions, device copies).
SHARE = 0.5
ENV_LIMIT = "MNIST_JAX_MAX_BYTES"  # an explicit cap in bytes, e.g. for a shared machine


def available_host_bytes() -> int:
    """Return the host memory available to a new allocation, in bytes.

    Linux's MemAvailable (free memory plus what the page cache can give back); elsewhere the
    free physical pages.
    """
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # no way to tell: only the file-size checks apply


def limit() -> int:
    """The most bytes one file's decoded data may claim: half the available memory, or less
    when `MNIST_JAX_MAX_BYTES` says so."""
    cap = int(available_host_bytes() * SHARE)
    explicit = os.environ.get(ENV_LIMIT)
    if explicit:
        try:
            cap = min(cap, int(explicit))
        except ValueError:
            raise DataError(f"{ENV_LIMIT}={explicit!r} is not a whole number of bytes") from None
    return cap


def size_text(count: int) -> str:
    """Render a byte count for a person: '47.0 MB', '1.5 TB'."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count} bytes"


def check_claim(path: Path | str, claimed: int, what: str, cap: int | None = None) -> None:
    """Fail, before allocating, if a file claims more bytes than the machine can hold.

    Args:
        path: the file, for the message.
        claimed: the bytes its header declares once decoded.
        what: what declares it, e.g. "IDX header says (60000, 28, 28)".
        cap: the limit; `limit()` when None.

    Raises:
        DataError: one line naming the file, the claim and the limit.
    """
    cap = limit() if cap is None else cap
    if claimed > cap:
        raise DataError(
            f"{path}: {what} ({size_text(claimed)}), more than this machine can hold for one "
            f"file (limit {size_text(cap)}: half the available memory, or ${ENV_LIMIT})"
        )


def file_size(path: Path) -> int:
    """Return a file's size in bytes; a missing or unreadable file is one DataError line."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Read a .npy header (format 1.0 or 2.0) from `stream`: (shape, dtype); the stream is
    left at the first data byte.

    Raises:
        ValueError: not a .npy header, or another version.
    """
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return shape, dtype
