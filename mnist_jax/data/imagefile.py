"""Decode a picture file with Pillow into a small grayscale array, in bounded memory.

A digit needs 28x28 pixels, so a large picture is never turned into floats at full size:

- The header's size is checked before anything is decoded: at most `max_pixels`, and at most
  DECODE_BYTES for what Pillow holds while it decodes (`decode_bytes`: the picture in its own
  mode, 1 byte a pixel for gray and palette pictures, 2 for 16-bit, 4 for colour and floating
  point; plus what a decoder keeps besides: a compressed TIFF's strip or tile, a progressive
  JPEG's coefficients, a run-length BMP's copies, WebP's four copies).
- A JPEG is decoded reduced and as gray by libjpeg itself (`draft`), when it is large.
- The decoded picture becomes gray levels a strip of rows at a time, each strip averaged over
  whole `factor` x `factor` boxes (`reduction`), so the floats made hold at most
  REDUCED_PIXELS whatever the picture's size; its EXIF orientation is applied to the result.

Pillow is given only the decoders the file's first bytes name that the installed Pillow
registers (`openers`); whatever it raises is one DataError line (`errors.decoding`), its
warnings are never printed, and libtiff's messages, which it writes straight to the
process's stderr, are switched off (`quiet_libtiff`).
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mnist_jax.errors import DataError, decoding
from mnist_jax.limits import check_claim, size_text

PILLOW_HINT = "pip install 'mnist-jax[images]'"
# The largest picture read (a 6000 x 4000 photo is 24 million), checked from the header.
MAX_PIXELS = 25_000_000
# What Pillow may hold while it decodes one picture: a 25-megapixel gray picture, or a
# 16-megapixel colour one, fits (`decode_bytes`).
DECODE_BYTES = 64_000_000
# A larger picture is averaged down by a whole factor as it is read, to at most this many
# pixels: a digit that spans a fiftieth of a 5000-pixel side still spans 20 pixels.
REDUCED_PIXELS = 1 << 20
STRIP_PIXELS = 1 << 18  # pixels turned into floats at once
SIXTEEN_BITS = 65535  # the range of a 16-bit sample
ORIENTATION = 0x0112  # the EXIF tag
# Pillow's transposes for each EXIF orientation, on an array (H, W).
TRANSPOSES: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a),
}


def read_with_pillow(
    stream: BinaryIO, where: str, formats: tuple[str, ...], *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode a picture with Pillow's decoder for `formats` into gray levels.

    Args:
        stream: the file's bytes, at its start.
        where: a name for error messages.
        formats: Pillow's names of the decoders to try, e.g. ("JPEG", "MPO").
        max_pixels: the largest width x height read, checked from the header.

    Returns:
        (H, W) float64 in [0, 1], over white where the picture is transparent, averaged over
        `reduction` boxes when the picture holds more than REDUCED_PIXELS.

    Raises:
        DataError: one line for a picture too large, or one that does not decode.
    """
    image_module = pillow(formats[0])
    kind = formats[0]
    with decoding(where, f"not a readable {kind} image"):
        opened = open_header(image_module, stream, where, openers(formats))
        with opened:
            width, height = opened.size
            picture = f"{width}x{height} {opened.mode} {opened.format or kind}"
            check_pixels(where, width, height, opened.format or kind, max_pixels)
            coefficients = jpeg_coefficient_bytes(opened)  # at full size, before `draft`
            factor = reduction(width, height)
            if factor > 1 and opened.format in ("JPEG", "MPO"):
                opened.draft("L", (-(-width // factor), -(-height // factor)))
                factor = reduction(*opened.size)
            check_decode(where, picture, decode_bytes(opened) + coefficients)
            gray = pillow_gray(opened, where, factor)
            transpose = TRANSPOSES.get(opened.getexif().get(ORIENTATION))
    return transpose(gray) if transpose else gray


def pillow(kind: str) -> Any:
    """Pillow's Image module, libtiff quieted; one line saying how to install it if missing."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"reading {kind} files needs Pillow: {PILLOW_HINT}") from None
    quiet_libtiff()
    return Image


def openers(formats: tuple[str, ...]) -> list[str]:
    """The names in `formats` the installed Pillow can open (MPO is not one in Pillow 13)."""
    from PIL import Image

    Image.init()
    return [name for name in formats if name in Image.OPEN]


def open_header(image_module: Any, stream: BinaryIO, where: str, formats: list[str]) -> Any:
    """Open a picture with Pillow (which reads its header, nothing more).

    Raises:
        DataError: no decoder for it, or a header claiming more pixels than Pillow's own
            decompression-bomb guard allows.
        OSError: "bad header", a header Pillow does not take (for `decoding` to report, with
            what Pillow warned of).
    """
    if not formats:
        raise DataError(f"{where}: this Pillow cannot open these pictures; upgrade Pillow")
    try:
        return image_module.open(stream, formats=formats)
    except image_module.DecompressionBombError as e:
        raise DataError(f"{where}: image header claims too many pixels ({e})") from None
    except image_module.UnidentifiedImageError:  # its message names the stream, not the file
        raise OSError("bad header") from None


def check_pixels(
    path: Path | str, width: int, height: int, kind: str, max_pixels: int = MAX_PIXELS
) -> None:
    """Refuse a picture with no pixels or more than `max_pixels`, before decoding it."""
    pixels = width * height
    if width < 1 or height < 1:
        raise DataError(f"{path}: {kind} header says {width}x{height}, a picture with no pixels")
    if pixels > max_pixels:
        raise DataError(
            f"{path}: {kind} header says {width}x{height} ({pixels:,} pixels), more than the "
            f"{max_pixels:,} read; scale the picture down"
        )


def mode_bytes(mode: str) -> int:
    """Bytes a pixel of `mode` takes in Pillow's memory."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def decode_bytes(image: Any) -> int:
    """The bytes Pillow holds while it decodes `image`, from its header (measured with Pillow
    10 and 13; `docs/reliability.md`), a progressive JPEG's coefficients aside.

    The picture in its mode at its size (after `draft`), and besides: WebP's decoder keeps
    three more copies; a compressed TIFF, one strip or tile (libtiff's buffer); a run-length
    BMP, two copies (decoded in Python).
    """
    width, height = image.size
    held = width * height * mode_bytes(image.mode)
    if image.format == "WEBP":
        return held * 4
    if image.format == "BMP" and image.info.get("compression") in (1, 2):  # RLE8, RLE4
        return held * 3
    if image.format == "TIFF" and image.tag_v2.get(259, 1) != 1:  # compressed: libtiff's
        tile = image.tag_v2.get(322), image.tag_v2.get(323)
        area = tile[0] * tile[1] if all(tile) else width * image.tag_v2.get(278, height)
        return held + min(area, 1 << 40) * 4
    return held


def jpeg_coefficient_bytes(image: Any) -> int:
    """What libjpeg keeps of a progressive JPEG whatever `draft` asks: 2 bytes for each DCT
    coefficient of every component at full size (3 bytes a pixel for 4:2:0 colour); 0 for
    any other picture."""
    if image.format not in ("JPEG", "MPO") or not image.info.get("progressive"):
        return 0
    layers = getattr(image, "layer", None) or [(0, 1, 1, 0)] * len(image.getbands())
    most = max(h for _, h, _, _ in layers) * max(v for _, _, v, _ in layers)
    share = sum(h * v for _, h, v, _ in layers) / max(1, most)
    return int(image.size[0] * image.size[1] * share) * 2


def check_decode(where: str, picture: str, held: int) -> None:
    """Refuse a picture (described as "WxH MODE FORMAT") whose decoding would hold `held`
    bytes, more than DECODE_BYTES or the memory limit, before decoding it."""
    if held > DECODE_BYTES:
        raise DataError(
            f"{where}: decoding this {picture} picture takes {size_text(held)}, more than the "
            f"{size_text(DECODE_BYTES)} a picture may take; scale it down, or save it as 8-bit "
            "gray PNG"
        )
    check_claim(where, held, f"decoding this {picture} picture takes")


def reduction(width: int, height: int, budget: int = REDUCED_PIXELS) -> int:
    """The smallest whole factor that brings width x height within `budget` pixels."""
    factor = max(1, math.isqrt(width * height // budget))
    while -(-width // factor) * -(-height // factor) > budget:
        factor += 1
    return factor


def box_mean(block: np.ndarray, factor: int) -> np.ndarray:
    """Average (H, W) over factor x factor boxes; the last row and column of boxes may be
    partial (averaged over the pixels they hold, as Pillow's `reduce` does)."""
    if factor == 1:
        return block
    rows, cols = np.arange(0, block.shape[0], factor), np.arange(0, block.shape[1], factor)
    sums = np.add.reduceat(np.add.reduceat(block, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(rows, append=block.shape[0]), np.diff(cols, append=block.shape[1]))
    return sums / counts


def reduced(
    strip: Callable[[int, int], np.ndarray], height: int, width: int, factor: int
) -> np.ndarray:
    """Assemble `box_mean(strip(top, bottom), factor)` over strips of rows, each a whole
    number of boxes high: (ceil(H / factor), ceil(W / factor)) float64."""
    rows = max(1, STRIP_PIXELS // (width * factor)) * factor
    tops = range(0, height, rows)
    return np.concatenate([box_mean(strip(top, min(height, top + rows)), factor) for top in tops])


def pillow_gray(image: Any, where: str = "image", factor: int = 1) -> np.ndarray:
    """Turn a Pillow image of any mode into (H, W) float64 in [0, 1], scaled, never clipped,
    averaged over `factor` x `factor` boxes; a strip of rows at a time.

    - 16-bit samples (modes "I;16*", and "I", in which older Pillows open 16-bit PNGs) are
      divided by 65535, their own range; mode "I" values outside 0..65535 are refused.
    - Floating-point samples (mode "F", float TIFFs) are taken as they are when they lie in
      [0, 1], else mapped linearly from their own minimum and maximum onto [0, 1].
    - Every other mode (1-bit, 8-bit gray, palette, RGB, CMYK, with or without alpha) is
      composited over white and turned into 8-bit luma by Pillow, then divided by 255.

    Raises:
        DataError: samples outside their type's range, or not finite.
    """
    from PIL import Image

    width, height = image.size
    span = [math.inf, -math.inf]  # mode F's lowest and highest sample

    def strip(top: int, bottom: int) -> np.ndarray:
        part = image.crop((0, top, width, bottom))
        if image.mode.startswith("I;16") or image.mode == "I":
            values = np.asarray(part).astype(np.float64)
            if values.min() < 0 or values.max() > SIXTEEN_BITS:
                raise DataError(
                    f"{where}: 32-bit integer samples outside 0..{SIXTEEN_BITS}; save the "
                    "picture with 8 or 16 bits per sample"
                )
            return values / SIXTEEN_BITS
        if image.mode == "F":
            values = np.asarray(part).astype(np.float64)
            if not np.isfinite(values).all():
                raise DataError(f"{where}: floating-point samples that are not finite (NaN or inf)")
            span[:] = min(span[0], values.min()), max(span[1], values.max())
            return values
        rgba = part.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"), np.float64) / 255

    values = reduced(strip, height, width, factor)
    low, high = span
    if image.mode != "F" or (low >= 0 and high <= 1):
        return values
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


_quieted = False


def quiet_libtiff() -> None:
    """Switch off libtiff's error and warning messages, once per process.

    libtiff prints them on the process's stderr itself, past Python; Pillow raises its own
    error for the same fault, which becomes the one line. The library is the copy Pillow has
    loaded (found in /proc/self/maps, or beside Pillow on macOS); where none is found, nothing
    changes.
    """
    global _quieted
    if _quieted:
        return
    _quieted = True
    path = loaded_library("libtiff")
    if path is None:
        return
    try:  # RTLD_NOLOAD: only the copy already loaded, never another
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except (OSError, AttributeError):
        return
    for name in ("Error", "Warning"):
        for suffix in ("", "Ext"):
            setter = getattr(lib, f"TIFFSet{name}Handler{suffix}", None)
            if setter is not None:
                setter.argtypes, setter.restype = [ctypes.c_void_p], ctypes.c_void_p
                setter(None)


def loaded_library(stem: str) -> str | None:
    """The path of the shared library named `stem...` this process has loaded, if known."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if Path(path).name.split(".")[0].split("-")[0] == stem:  # libtiff-20b7e810.so.6
                    return path
    except OSError:
        pass
    import PIL

    beside = sorted(Path(PIL.__file__).parent.glob(f".dylibs/{stem}*.dylib"))
    return str(beside[0]) if beside else None
