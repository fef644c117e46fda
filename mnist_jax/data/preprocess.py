"""Read digit images and normalise them the way the MNIST digits were made. NumPy only.

MNIST's digits were scaled so that their bounding box fits a 20x20 square (keeping the
aspect ratio, anti-aliased), then placed in a 28x28 frame with their centre of mass at the
centre, white on black. `to_mnist` does the same to any grayscale image: it finds the
background from the border, inverts dark-on-light images, stretches the contrast, crops the
digit's bounding box, resizes it by area averaging and centres it by mass.

Readers: PGM (P2 and P5, a strict parser here) and `.npy` (no pickle) need nothing beyond
NumPy; PNG, JPEG, TIFF, BMP, GIF and WebP need Pillow (`pip install 'mnist-jax[images]'`). A
file's first bytes say which of these it is, and Pillow is handed that one decoder only, so no
other (some of Pillow's run outside programs) ever sees the file (`imagefile`). 16-bit and
floating-point pictures are scaled by their own range, never clipped (`imagefile.pillow_gray`).
A picture larger than `imagefile.REDUCED_PIXELS` is averaged down by a whole factor as it is
read, so memory follows the 28x28 digit, not the picture.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_jax.data.imagefile import (
    MAX_PIXELS,
    check_pixels,
    read_with_pillow,
    reduced,
    reduction,
)
from mnist_jax.errors import DataError, decoding
from mnist_jax.limits import check_claim, file_size, npy_header

BOX = 20  # the digit's bounding box is scaled to fit BOX x BOX
FRAME = 28  # inside a FRAME x FRAME image
INK = 0.1  # a pixel is part of the digit above this fraction of the full contrast
MIN_CONTRAST = 0.05  # below this the image is blank
PGM_SAMPLE_TEXT = 16  # a plain PGM sample takes at most this many characters with its spacing
PGM_HEADER_BYTES = 1 << 16  # a PGM header, its comments included, takes at most this many
# Plain PGM (P2) is text, parsed sample by sample: larger pictures belong in raw PGM or PNG.
PLAIN_PGM_PIXELS = 1_000_000
FORMATS = "PNG, JPEG, TIFF, BMP, GIF, WebP, PGM (P2/P5) or .npy"  # what `read_images` reads
# Pillow's decoders by a file's first bytes (a WebP file is a RIFF container of type WEBP);
# a JPEG with several pictures, as some cameras write, is MPO in the Pillows that open it.
PILLOW_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ("PNG",)),
    (b"\xff\xd8\xff", ("JPEG", "MPO")),
    (b"II*\x00", ("TIFF",)),
    (b"MM\x00*", ("TIFF",)),
    (b"II+\x00", ("TIFF",)),  # BigTIFF
    (b"MM\x00+", ("TIFF",)),
    (b"BM", ("BMP",)),
    (b"GIF87a", ("GIF",)),
    (b"GIF89a", ("GIF",)),
)


# ----------------------------------------------------------------------------- readers


def read_images(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Read one file into grayscale images with values in [0, 1].

    Returns:
        [(name, image (H, W) float64)]: one image, or N named "file[i]" for a .npy of N.

    Raises:
        DataError: missing, unreadable or malformed file, or an unsupported format.
    """
    path = Path(path)
    try:
        stream = path.open("rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    with stream:
        try:
            is_npy = stream.read(6) == b"\x93NUMPY"
            stream.seek(0)
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror or e}") from None
        if not is_npy:
            return [(str(path), read_picture(stream, str(path)))]
    return read_npy(path)


def read_picture(stream: BinaryIO, where: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one picture (PGM, or a format Pillow reads) from a seekable binary stream.

    Args:
        stream: the file's bytes, at its start: an open file or `io.BytesIO`.
        where: a name for error messages.
        max_pixels: the largest width x height read, checked from the header.

    Returns:
        (H, W) float64 in [0, 1], over white where the picture is transparent; averaged over
        whole boxes (`imagefile.reduction`) when the picture is larger than
        `imagefile.REDUCED_PIXELS`.

    Raises:
        DataError: one line for a format not read here, a header claiming too many pixels
            or too much memory to decode, or a file that does not decode.
    """
    try:
        head = stream.read(12)
        size = stream.seek(0, 2)
        stream.seek(0)
    except OSError as e:
        raise DataError(f"cannot read {where}: {e.strerror or e}") from None
    if head[:2] in (b"P2", b"P5"):
        # A PGM's header gives its size: at most max_pixels samples of at most 2 bytes (P5)
        # or PLAIN_PGM_PIXELS of PGM_SAMPLE_TEXT characters (P2), so a longer file is refused
        # before reading.
        most = max_pixels * 2 if head[:2] == b"P5" else PLAIN_PGM_PIXELS * PGM_SAMPLE_TEXT
        check_claim(where, size, f"holds {size} bytes of PGM", PGM_HEADER_BYTES + most)
        return parse_pgm(stream.read(), where, max_pixels=max_pixels)
    formats = next((f for sig, f in PILLOW_SIGNATURES if head.startswith(sig)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        formats = ("WEBP",)
    if formats is None:
        raise DataError(f"{where}: not a {FORMATS} file")
    return read_with_pillow(stream, where, formats, max_pixels=max_pixels)


def parse_pgm(raw: bytes, where: str = "<bytes>", *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Parse a PGM file, plain (P2) or raw (P5), into (H, W) float64 in [0, 1].

    Strict: a header of magic, width, height and maxval (1..65535) separated by whitespace,
    comments ('#' to the end of the line) allowed only in the header; exactly width*height
    samples, none above maxval; nothing after them but whitespace in P2. A picture over
    `imagefile.REDUCED_PIXELS` comes back averaged over `imagefile.reduction` boxes.
    """
    magic = raw[:2]
    fields: list[int] = []
    pos = 2
    token = re.compile(rb"(?:\s+|#[^\r\n]*)*(\d+)")
    while len(fields) < 3:
        m = token.match(raw, pos)
        if m is None or m.start(1) == pos:  # fields need a separator
            raise DataError(f"{where}: malformed PGM header")
        fields.append(int(m.group(1)))
        pos = m.end()
    width, height, maxval = fields
    if width < 1 or height < 1 or not 1 <= maxval <= 65535:
        raise DataError(f"{where}: PGM header has invalid size {width}x{height} or maxval {maxval}")
    plain = magic != b"P5"
    if plain:
        check_pixels(where, width, height, "plain PGM (P2)", min(max_pixels, PLAIN_PGM_PIXELS))
    else:
        check_pixels(where, width, height, "PGM", max_pixels)
    if pos >= len(raw) or raw[pos : pos + 1] not in (b" ", b"\t", b"\n", b"\r", b"\v", b"\f"):
        raise DataError(f"{where}: PGM header must end with one whitespace character")
    body = memoryview(raw)[pos + 1 :]  # not copied
    count = width * height
    if not plain:
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        if len(body) != count * dtype.itemsize:
            raise DataError(
                f"{where}: PGM raster holds {len(body)} bytes, {width}x{height} needs "
                f"{count * dtype.itemsize}"
            )
        values = np.frombuffer(body, dtype).reshape(height, width)
    else:
        if len(body) > count * PGM_SAMPLE_TEXT:  # checked before splitting it into samples
            raise DataError(
                f"{where}: PGM header says {width}x{height} but the raster holds {len(body)} "
                f"bytes of text, more than {count} samples take"
            )
        parts = bytes(body).split()
        if len(parts) != count or not all(p.isdigit() for p in parts):
            raise DataError(f"{where}: PGM raster must be exactly {count} decimal samples")
        values = np.array([int(p) for p in parts], np.int64).reshape(height, width)
    if values.max() > maxval:
        raise DataError(f"{where}: PGM sample above maxval {maxval}")
    factor = reduction(width, height)
    return reduced(lambda top, bottom: values[top:bottom] / maxval, height, width, factor)


def read_npy(path: Path) -> list[tuple[str, np.ndarray]]:
    """Read a .npy of shape (28, 28), (N, 28, 28) or (N, 784) into N images in [0, 1].

    Integer arrays are read as 0..255; float arrays as 0..1 when they stay within it,
    else as 0..255. The header's shape is checked against the file's size and the memory
    limit before the array is read.
    """
    check_npy_header(path)
    with decoding(str(path), "not a readable .npy array"):
        array = np.load(path, allow_pickle=False)
    if array.ndim == 2 and array.shape == (FRAME, FRAME):
        array = array[None]
    elif array.ndim == 2 and array.shape[1] == FRAME * FRAME:
        array = array.reshape(-1, FRAME, FRAME)
    elif not (array.ndim == 3 and array.shape[1:] == (FRAME, FRAME)):
        raise DataError(
            f"{path}: array of shape {array.shape}; expected (28, 28), (N, 28, 28) or (N, 784)"
        )
    if len(array) == 0:
        raise DataError(f"{path}: holds no images")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{path}: array of {array.dtype}; expected integers or floats")
    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise DataError(f"{path}: pixel values must lie in 0..255 (or 0..1 for floats)")
    if np.issubdtype(array.dtype, np.integer) or high > 1:
        values = values / 255
    return [(f"{path}[{i}]", image) for i, image in enumerate(values)]


def check_npy_header(path: Path) -> None:
    """Check a .npy header's claim (shape x item size) against its file and the memory limit.

    Raises:
        DataError: an unreadable header, a file longer or shorter than the header says, or
            a claim (with the float64 copy the images become) beyond the limit.
    """
    size = file_size(path)
    with decoding(str(path), "not a readable .npy array"), path.open("rb") as f:
        shape, dtype = npy_header(f)
        offset = f.tell()
    count = math.prod(shape)
    if dtype.hasobject:
        raise DataError(f"{path}: .npy array of Python objects; expected integers or floats")
    if count * dtype.itemsize != size - offset:
        raise DataError(
            f"{path}: .npy header says {shape} of {dtype} ({count * dtype.itemsize} bytes) but "
            f"the file holds {size - offset} bytes of data"
        )
    check_claim(path, count * (dtype.itemsize + 8), f".npy header says {shape} of {dtype}")


# ----------------------------------------------------------------------------- normalising


def area_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize (H, W) to `shape` by area averaging: each output pixel is the mean of the input
    area it covers (fractional overlaps weighted), which anti-aliases when shrinking."""
    return (
        _area_weights(shape[0], image.shape[0]) @ image @ _area_weights(shape[1], image.shape[1]).T
    )


def _area_weights(out: int, size: int) -> np.ndarray:
    """(out, size) matrix: overlap of input cell j with output cell i, rows summing to 1."""
    edges = np.linspace(0, size, out + 1)  # output cell i covers [edges[i], edges[i+1])
    lo = np.maximum(edges[:-1, None], np.arange(size)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, size + 1)[None, :])
    overlap = np.clip(hi - lo, 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def to_mnist(image: np.ndarray, where: str = "image") -> np.ndarray:
    """Normalise one grayscale image like an MNIST digit.

    Args:
        image: (H, W) floats in [0, 1], either polarity, any size.
        where: a name for error messages.

    Returns:
        (28, 28) uint8, white digit on black, its bounding box fitted to 20x20 and its
        centre of mass at the centre of the frame.

    Raises:
        DataError: the image has no contrast (no digit to find).
    """
    image = np.asarray(image, np.float64)
    if image.ndim != 2 or min(image.shape) < 1:
        raise DataError(f"{where}: expected a 2-D grayscale image, got shape {image.shape}")
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    background = float(np.median(border))
    if background > 0.5:  # dark digit on a light background, like paper: make it light on dark
        image, background = 1 - image, 1 - background
    contrast = float(image.max()) - background
    if contrast < MIN_CONTRAST:
        raise DataError(f"{where}: the image is blank (no digit found)")
    ink = image - background  # in place from here on: one (H, W) float copy at a time
    ink /= contrast
    np.clip(ink, 0, 1, out=ink)
    inked = ink > INK
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    del inked
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = area_resize(digit, size)
    frame = np.zeros((FRAME, FRAME))
    top = _offset(digit.sum(axis=1), size[0])
    left = _offset(digit.sum(axis=0), size[1])
    frame[top : top + size[0], left : left + size[1]] = digit
    return np.round(frame * 255).astype(np.uint8)


def _offset(mass: np.ndarray, length: int) -> int:
    """Where to place a strip of `length` pixels so its centre of mass lands mid-frame."""
    # Pixel-index coordinates; MNIST's centres of mass sit at (14, 14) in these.
    centre = float(np.arange(length) @ mass / mass.sum())
    return int(np.clip(round(FRAME / 2 - centre), 0, FRAME - length))
