"""The IDX file format of the MNIST files: parse, encode, and read (gzip or raw) as a stream.

An IDX file is 2 zero bytes, a type code, the number of dimensions, each dimension as a
big-endian uint32, then the elements in C order.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from mnist_jax.errors import DataError, decoding
from mnist_jax.limits import ENV_LIMIT, check_claim, file_size, limit, size_text

# IDX element types: code -> NumPy dtype. MNIST uses only 0x08 (unsigned byte).
_IDX_TYPES = {0x08: np.dtype(np.uint8)}
_CHUNK = 1 << 20  # inflate and read in pieces of 1 MiB


def file_name(split: str, kind: str) -> str:
    """Return the canonical uncompressed name, e.g. 'train-images-idx3-ubyte'."""
    return f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"


def parse_header(head: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read an IDX header: (element type, shape, header length in bytes).

    Args:
        head: at least the file's first 4 bytes; the whole header (4 + 4 * ndim bytes) when
            it is that long, else the shape is checked as truncated.
        name: the file's name, used in error messages.

    Raises:
        DataError: bad magic, unknown type, zero dimensions, or a truncated header.
    """
    if len(head) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(head)} bytes)")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{name}: not an IDX file (magic bytes {head[:4].hex()})")
    dtype = _IDX_TYPES.get(head[2])
    if dtype is None:
        raise DataError(f"{name}: unsupported IDX element type 0x{head[2]:02x}")
    ndim = head[3]
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    return dtype, shape, header


def _body_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * dtype.itemsize  # Python ints: no overflow


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file into an array.

    Args:
        raw: the whole file: 2 zero bytes, a type code, the number of dimensions, each
            dimension as a big-endian uint32, then the elements.
        name: the file's name, used in error messages.

    Returns:
        An array of the header's shape and type (uint8 for MNIST).

    Raises:
        DataError: bad magic, unknown type, or a size that disagrees with the header.
    """
    dtype, shape, header = parse_header(raw[:1024], name)
    expected = header + _body_bytes(dtype, shape)
    if len(raw) != expected:
        raise DataError(
            f"{name}: header says {shape} ({expected} bytes) but the file has {len(raw)} bytes"
        )
    try:
        return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    except ValueError:  # more dimensions, or a larger extent, than NumPy can hold
        raise DataError(f"{name}: IDX header shape {shape} is too large") from None


class IdxRead(NamedTuple):
    """An IDX file read by `read_idx`: its array and, when asked, the sha256 of its
    uncompressed bytes (header included)."""

    array: np.ndarray
    sha256: str | None


def read_idx(path: Path, *, max_bytes: int | None = None, digest: bool = False) -> IdxRead:
    """Read an IDX file (raw or gzip) as a stream, checking its header before allocating.

    The header's shape is compared with the file's size (raw files) and with `max_bytes`
    before the array is allocated; gzip data is inflated straight into the array, and one
    byte more is asked for, so a stream that inflates past its header is caught after at
    most the header's size of work. The checksum is computed on the same stream.

    Args:
        path: the file (`name` or `name.gz`).
        max_bytes: the most bytes the header may declare; `limits.limit()` when None.
        digest: also return the sha256 of the uncompressed bytes.

    Returns:
        IdxRead(array of the header's shape and type, hex sha256 or None).

    Raises:
        DataError: one line naming the file, what its header claims and what was found.
    """
    size = file_size(path)
    with decoding(str(path), "not a readable IDX file"), _open(path) as (stream, compressed):
        hasher = hashlib.sha256() if digest else None
        head = _read_exactly(stream, 4, path)
        head += _read_exactly(stream, 4 * head[3], path) if len(head) == 4 else b""
        dtype, shape, header = parse_header(head, str(path))
        body = _body_bytes(dtype, shape)
        found = f"the file has {size} bytes" + (" compressed" if compressed else "")
        if not compressed and size != header + body:
            raise DataError(f"{path}: header says {shape} ({header + body} bytes) but {found}")
        check_claim(path, body, f"IDX header says {shape}", max_bytes)
        array = np.empty(body // dtype.itemsize, dtype)
        done = _read_into(stream, memoryview(array).cast("B"), path)
        if done != body or (compressed and _guarded_read(stream, 1, path)):
            got = f"{done} bytes" if done != body else "more bytes"
            raise DataError(
                f"{path}: header says {shape} ({header + body} bytes) but the data holds {got} "
                f"after the header"
            )
        if hasher is not None:
            hasher.update(head)
            hasher.update(memoryview(array).cast("B"))
    return IdxRead(array.reshape(shape), None if hasher is None else hasher.hexdigest())


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[BinaryIO, bool]]:
    """Open `path` for reading, un-gzipping it as a stream when it starts with gzip's magic."""
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            if not compressed:
                yield raw, False
                return
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream, True
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise DataError(f"{path}: not readable (permission denied)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def _guarded_read(stream: BinaryIO, count: int, path: Path) -> bytes:
    """`stream.read(count)`, with gzip's failures as one DataError line."""
    try:
        return stream.read(count)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None


def _read_exactly(stream: BinaryIO, count: int, path: Path) -> bytes:
    """Read up to `count` bytes (fewer only at the end of the stream)."""
    chunks, left = [], count
    while left and (chunk := _guarded_read(stream, min(left, _CHUNK), path)):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_into(stream: BinaryIO, buffer: memoryview, path: Path) -> int:
    """Fill `buffer` from `stream` in chunks; return the bytes read (fewer at its end)."""
    done = 0
    while done < len(buffer):
        try:
            count = stream.readinto(buffer[done : done + _CHUNK])
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
        if not count:
            break
        done += count
    return done


def read_bytes(path: Path, *, max_bytes: int | None = None) -> bytes:
    """Read a file, un-gzipping it as a stream, capped at `max_bytes` (`limits.limit()`).

    Raises:
        DataError: missing, unreadable, corrupt gzip, or longer than the cap; one line.
    """
    cap = limit() if max_bytes is None else max_bytes
    size = file_size(path)
    with _open(path) as (stream, compressed):
        if not compressed:
            check_claim(path, size, f"holds {size} bytes", cap)
        raw = _read_exactly(stream, cap + 1, path)
    if len(raw) > cap:
        raise DataError(
            f"{path}: inflates past {size_text(cap)}, the most this file may take here "
            f"(a share of the available memory, or ${ENV_LIMIT})"
        )
    return raw


def sha256(raw: bytes) -> str:
    """Return the hex sha256 of `raw`."""
    return hashlib.sha256(raw).hexdigest()


def gunzip_sha256(raw: bytes, max_bytes: int, name: str) -> str:
    """Return the sha256 of gzip data `raw` inflated as a stream, at most `max_bytes` of it.

    Raises:
        DataError: corrupt gzip, or data that inflates past `max_bytes`.
    """
    hasher, total = hashlib.sha256(), 0
    with gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") as stream:
        while chunk := _guarded_read(stream, _CHUNK, Path(name)):
            total += len(chunk)
            if total > max_bytes:
                raise DataError(f"{name}: inflates past {max_bytes} bytes")
            hasher.update(chunk)
    return hasher.hexdigest()


def find_file(folder: Path, name: str) -> Path | None:
    """Return `folder/name.gz` or `folder/name` (either accepted), or None."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.exists():
            return candidate
    return None


def encode_idx(array: np.ndarray) -> bytes:
    """Return the uncompressed IDX bytes of a uint8 array (the inverse of `parse_idx`)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
