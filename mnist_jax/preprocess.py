"""Read digit images and normalise them the way the MNIST digits were made. NumPy only.

MNIST's digits were scaled so that their bounding box fits a 20x20 square (keeping the
aspect ratio, anti-aliased), then placed in a 28x28 frame with their centre of mass at the
centre, white on black. `to_mnist` does the same to any grayscale image: it finds the
background from the border, inverts dark-on-light images, stretches the contrast, crops the
digit's bounding box, resizes it by area averaging and centres it by mass.

Readers: PGM (P2 and P5, a strict parser here) and `.npy` (no pickle) need nothing beyond
NumPy; PNG and JPEG need Pillow (`pip install 'mnist-jax[images]'`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mnist_jax.errors import DataError

BOX = 20  # the digit's bounding box is scaled to fit BOX x BOX
FRAME = 28  # inside a FRAME x FRAME image
INK = 0.1  # a pixel is part of the digit above this fraction of the full contrast
MIN_CONTRAST = 0.05  # below this the image is blank
PILLOW_HINT = "pip install 'mnist-jax[images]'"


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
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if raw[:2] in (b"P2", b"P5"):
        return [(str(path), parse_pgm(raw, str(path)))]
    if raw[:6] == b"\x93NUMPY":
        return read_npy(path)
    if raw[:8] == b"\x89PNG\r\n\x1a\n" or raw[:3] == b"\xff\xd8\xff":
        return [(str(path), read_with_pillow(path))]
    raise DataError(f"{path}: not a PNG, JPEG, PGM (P2/P5) or .npy file")


def parse_pgm(raw: bytes, where: str = "<bytes>") -> np.ndarray:
    """Parse a PGM file, plain (P2) or raw (P5), into (H, W) float64 in [0, 1].

    Strict: a header of magic, width, height and maxval (1..65535) separated by whitespace,
    comments ('#' to the end of the line) allowed only in the header; exactly width*height
    samples, none above maxval; nothing after them but whitespace in P2.
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
    if pos >= len(raw) or raw[pos : pos + 1] not in (b" ", b"\t", b"\n", b"\r", b"\v", b"\f"):
        raise DataError(f"{where}: PGM header must end with one whitespace character")
    body = raw[pos + 1 :]
    count = width * height
    if magic == b"P5":
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        if len(body) != count * dtype.itemsize:
            raise DataError(
                f"{where}: PGM raster holds {len(body)} bytes, {width}x{height} needs "
                f"{count * dtype.itemsize}"
            )
        values = np.frombuffer(body, dtype).astype(np.int64)
    else:
        parts = body.split()
        if len(parts) != count or not all(p.isdigit() for p in parts):
            raise DataError(f"{where}: PGM raster must be exactly {count} decimal samples")
        values = np.array([int(p) for p in parts], np.int64)
    if values.size and values.max() > maxval:
        raise DataError(f"{where}: PGM sample above maxval {maxval}")
    return (values / maxval).reshape(height, width)


def read_npy(path: Path) -> list[tuple[str, np.ndarray]]:
    """Read a .npy of shape (28, 28), (N, 28, 28) or (N, 784) into N images in [0, 1].

    Integer arrays are read as 0..255; float arrays as 0..1 when they stay within it,
    else as 0..255.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None
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


def read_with_pillow(path: Path) -> np.ndarray:
    """Read a PNG or JPEG with Pillow into (H, W) float64 in [0, 1], over white if transparent."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DataError(
            f"reading {path.suffix or 'PNG/JPEG'} files needs Pillow: {PILLOW_HINT}"
        ) from None
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)  # phone photos carry their rotation
            image = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            gray = Image.alpha_composite(white, image).convert("L")
            return np.asarray(gray, np.float64) / 255
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


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
    ink = np.clip((image - background) / contrast, 0, 1)
    rows = np.flatnonzero((ink > INK).any(axis=1))
    cols = np.flatnonzero((ink > INK).any(axis=0))
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
