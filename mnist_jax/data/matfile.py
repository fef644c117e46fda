"""What a MATLAB v5 file declares, checked before SciPy reads it.

A v5 file is a 128-byte header, then data elements, each an 8-byte tag (type, byte count)
and its bytes. A compressed element (type 15) holds a zlib stream of one element whose own
tag declares its inflated size. `check_mat` walks the top-level elements, inflates each
compressed one as a stream without keeping it, and refuses a file whose elements run past
its end, whose compressed data inflates past what its tag declares, or whose declared total
exceeds the cap; SciPy then never reads more than the declared sizes.
"""

from __future__ import annotations

import struct
import zlib

from mnist_jax.errors import DataError
from mnist_jax.limits import check_claim, size_text

HEADER = 128
COMPRESSED = 15
_CHUNK = 1 << 20


def check_mat(raw: bytes, name: str, cap: int) -> None:
    """Check every top-level element of the .mat bytes `raw` against the file and `cap`.

    Args:
        raw: the whole file.
        name: the file's name, for messages.
        cap: the most bytes its elements may declare in all.

    Raises:
        DataError: one line naming the file, what an element claims and what was found.
    """
    if len(raw) < HEADER:
        raise DataError(f"{name}: not a readable MATLAB v5 file (only {len(raw)} bytes)")
    order = "<" if raw[126:128] == b"IM" else ">"
    pos, total = HEADER, 0
    while pos + 8 <= len(raw):
        kind, count = struct.unpack_from(f"{order}II", raw, pos)
        body = raw[pos + 8 : pos + 8 + count]
        if len(body) != count:
            raise DataError(
                f"{name}: element at byte {pos} declares {count} bytes but the file holds "
                f"{len(body)} after it"
            )
        total += _inflated_size(body, name, pos, order) if kind == COMPRESSED else count
        check_claim(name, total, "its variables declare", cap)
        pos += 8 + count if kind == COMPRESSED else 8 + -(-count // 8) * 8  # 8-byte aligned


def _inflated_size(body: bytes, name: str, pos: int, order: str) -> int:
    """Inflate a compressed element's stream, counting; it must end at its declared size."""
    inflate = zlib.decompressobj()
    try:
        head = inflate.decompress(body, 8)
        if len(head) < 8:
            raise DataError(f"{name}: compressed element at byte {pos} holds no element tag")
        declared = 8 + struct.unpack_from(f"{order}II", head)[1]
        seen, rest = len(head), inflate.unconsumed_tail
        while rest and seen <= declared:
            seen += len(inflate.decompress(rest, _CHUNK))
            rest = inflate.unconsumed_tail
        if seen <= declared:
            seen += len(inflate.flush())
    except zlib.error as e:
        raise DataError(f"{name}: compressed element at byte {pos} is corrupt ({e})") from None
    if seen > declared:
        raise DataError(
            f"{name}: compressed element at byte {pos} declares {size_text(declared)} but "
            "inflates to more"
        )
    return declared
