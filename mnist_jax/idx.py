"""The IDX file format of the MNIST files: parse, encode, and read (gzip or raw) as bytes.

An IDX file is 2 zero bytes, a type code, the number of dimensions, each dimension as a
big-endian uint32, then the elements in C order.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

from mnist_jax.errors import DataError

# IDX element types: code -> NumPy dtype. MNIST uses only 0x08 (unsigned byte).
_IDX_TYPES = {0x08: np.dtype(np.uint8)}


def file_name(split: str, kind: str) -> str:
    """Return the canonical uncompressed name, e.g. 'train-images-idx3-ubyte'."""
    return f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"


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
    if len(raw) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (magic bytes {raw[:4].hex()})")
    dtype = _IDX_TYPES.get(raw[2])
    if dtype is None:
        raise DataError(f"{name}: unsupported IDX element type 0x{raw[2]:02x}")
    ndim = raw[3]
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != expected:
        raise DataError(
            f"{name}: header says {shape} ({expected} bytes) but the file has {len(raw)} bytes"
        )
    try:
        return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    except ValueError:  # more dimensions, or a larger extent, than NumPy can hold
        raise DataError(f"{name}: IDX header shape ({ndim} dimensions) is too large") from None


def read_bytes(path: Path) -> bytes:
    """Read a file, transparently un-gzipping it; any failure is one DataError line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise DataError(f"{path}: not readable (permission denied)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def sha256(raw: bytes) -> str:
    """Return the hex sha256 of `raw`."""
    return hashlib.sha256(raw).hexdigest()


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
