"""Pictures read with Pillow: reduced as they are read, refused from the header when they
would take too much memory, oriented, and decoded only by openers the installed Pillow has."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mnist_jax.data import imagefile, preprocess
from mnist_jax.errors import DataError


def encoded(image, suffix: str, **options) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format=suffix, **options)
    buffer.seek(0)
    return buffer


def drawn_digit(width: int, height: int):
    """A stroke and a ring drawn dark on white at any size, as a large photo of a digit."""
    from PIL import ImageDraw

    picture = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(picture)
    draw.line((width * 0.3, height * 0.2, width * 0.55, height * 0.8), fill=0, width=width // 25)
    box = (width * 0.5, height * 0.3, width * 0.7, height * 0.6)
    draw.ellipse(box, outline=0, width=width // 40)
    return picture


def damaged_pictures() -> dict[str, bytes]:
    """Pictures that once escaped as a traceback or printed more than one line, by fault."""
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    png = encoded(noise, "png").getvalue()
    start = png.index(b"IDAT") - 4
    length = struct.unpack(">I", png[start : start + 4])[0]
    data = png[start + 8 : start + 8 + length]
    second = bytearray(chunk(b"IDAT", data[length // 2 :]))
    second[4:8] = b"\x00\x01\x02\x03"  # a chunk after the first IDAT with a broken type
    png = png[:start] + chunk(b"IDAT", data[: length // 2]) + second + png[start + 12 + length :]
    jpeg = encoded(noise, "jpeg").getvalue()
    lzw = bytearray(encoded(noise, "tiff", compression="tiff_lzw").getvalue())
    truncated = bytes(lzw[: len(lzw) // 2])
    lzw[200:400] = bytes(b ^ 0x5A for b in lzw[200:400])
    return {
        "png-broken-chunk": png,  # Pillow raised SyntaxError
        "jpeg-first-20-bytes": jpeg[:20],  # KeyError: 'MPO' in Pillow 13
        "jpeg-ffd8ffd9": b"\xff\xd8\xff\xd9",
        "tiff-truncated-lzw": truncated,  # Pillow warned of corrupt EXIF data
        "tiff-corrupt-strip": bytes(lzw),  # libtiff printed its own message
    }


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, colour: int) -> bytes:
    """A PNG of a header and no pixel data: Pillow opens it, decoding it would fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("size", "factor"),
    [((28, 28), 1), ((1024, 1024), 1), ((1025, 1024), 2), ((5000, 5000), 5), ((100_000, 3), 1)],
)
def test_the_reduction_is_the_smallest_whole_factor_within_the_budget(size, factor):
    assert imagefile.reduction(*size) == factor
    width, height = size
    assert -(-width // factor) * -(-height // factor) <= imagefile.REDUCED_PIXELS


def test_box_means_are_pillows_reduce_partial_edges_included():
    levels = np.random.default_rng(0).integers(0, 256, (23, 17), dtype=np.uint8)
    ours = imagefile.box_mean(levels.astype(np.float64), 4)
    pillows = np.asarray(Image.fromarray(levels).reduce(4), np.float64)
    assert ours.shape == pillows.shape == (6, 5)
    np.testing.assert_allclose(ours, pillows, atol=0.5)  # Pillow rounds to whole levels


@pytest.mark.parametrize("suffix", ["png", "jpeg"])
def test_a_large_picture_is_read_reduced_to_the_same_digit(suffix):
    picture = drawn_digit(2000, 1500)  # 3 million pixels: averaged over 2x2 boxes
    image = preprocess.read_picture(encoded(picture, suffix), "big")
    assert image.shape == (750, 1000) and image.size <= imagefile.REDUCED_PIXELS
    digit = preprocess.to_mnist(image)
    full = preprocess.to_mnist(np.asarray(picture) / 255)
    difference = np.abs(digit.astype(int) - full)
    assert difference.mean() < 1 and difference.max() <= 16  # of 255 gray levels


def test_a_large_jpeg_is_decoded_reduced_by_libjpeg(monkeypatch):
    seen = []
    monkeypatch.setattr(imagefile, "pillow_gray", lambda image, *_: seen.append(image) or None)
    imagefile.read_with_pillow(encoded(drawn_digit(2400, 2400), "jpeg"), "big", ("JPEG",))
    assert seen[0].size == (1200, 1200) and seen[0].mode == "L"  # draft: half size, gray


class Decoding(BaseException):
    """Raised where the pixels would be decoded (not an Exception: passes the boundary)."""


def reach_decoding(*_) -> None:
    raise Decoding


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (png_header(5000, 5000, 2), "decoding this 5000x5000 RGB PNG picture takes 100.0 MB"),
        (png_header(4000, 4000, 2), None),  # 64 MB: within the budget
        (png_header(5000, 5000, 0), None),  # gray: 25 MB
        (png_header(5001, 5000, 0), "more than the 25,000,000 read"),
    ],
)
def test_what_decoding_takes_is_checked_from_the_header(header, message, monkeypatch):
    monkeypatch.setattr(imagefile, "pillow_gray", reach_decoding)
    refused = pytest.raises(DataError, match=message) if message else pytest.raises(Decoding)
    with refused:
        imagefile.read_with_pillow(io.BytesIO(header), "x.png", ("PNG",))


def test_webp_and_progressive_jpeg_count_what_their_decoders_keep():
    webp = Image.open(encoded(Image.new("RGB", (100, 50)), "webp"))
    assert imagefile.decode_bytes(webp) == 100 * 50 * 4 * 4
    progressive = Image.open(encoded(Image.new("RGB", (160, 80)), "jpeg", progressive=True))
    assert imagefile.jpeg_coefficient_bytes(progressive) == 160 * 80 * 3  # 4:2:0, 2 bytes each
    baseline = Image.open(encoded(Image.new("RGB", (160, 80)), "jpeg"))
    assert imagefile.jpeg_coefficient_bytes(baseline) == 0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_exif_orientation_is_applied_as_pillow_applies_it(orientation):
    from PIL import ImageOps

    levels = np.random.default_rng(orientation).integers(0, 256, (7, 11), dtype=np.uint8)
    exif = Image.Exif()
    exif[imagefile.ORIENTATION] = orientation
    stream = encoded(Image.fromarray(levels), "png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(stream))) / 255
    stream.seek(0)
    np.testing.assert_array_equal(preprocess.read_picture(stream, "x.png"), expected)


def test_only_openers_the_installed_pillow_registers_are_asked_for():
    Image.init()
    assert imagefile.openers(("JPEG", "MPO")) == [f for f in ("JPEG", "MPO") if f in Image.OPEN]
    assert imagefile.openers(("JPEG", "NO-SUCH-FORMAT")) == ["JPEG"]


@pytest.mark.parametrize("name", sorted(damaged_pictures()))
def test_a_damaged_picture_is_one_line(name):
    suffix = name.split("-")[0]
    with pytest.raises(DataError, match=rf"^x: not a readable {suffix.upper()} image \(") as e:
        preprocess.read_picture(io.BytesIO(damaged_pictures()[name]), "x")
    assert "\n" not in str(e.value)


def test_pillows_warnings_become_part_of_the_line_and_are_never_printed(recwarn):
    """A truncated LZW TIFF makes Pillow warn of corrupt EXIF data before it fails."""
    raw = damaged_pictures()["tiff-truncated-lzw"]
    with pytest.raises(DataError, match="Corrupt EXIF data"):
        preprocess.read_picture(io.BytesIO(raw), "x.tif")
    assert len(recwarn) == 0
