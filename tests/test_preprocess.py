from pathlib import Path

import numpy as np
import pytest

from mnist_jax.data import imagefile, mnist, preprocess
from mnist_jax.errors import DataError


def pgm_p5(image: np.ndarray) -> bytes:
    """A raw PGM of a uint8 image, with a comment in the header."""
    height, width = image.shape
    return f"P5\n# a test digit\n{width} {height}\n255\n".encode() + image.tobytes()


def pgm_p2(image: np.ndarray) -> bytes:
    height, width = image.shape
    rows = "\n".join(" ".join(str(v) for v in row) for row in image)
    return f"P2 {width} {height} 255\n{rows}\n".encode()


def on_paper(digit: np.ndarray) -> np.ndarray:
    """A 28x28 MNIST digit scaled up 3x, dark on light, off-centre on a 150x130 page."""
    page = np.full((150, 130), 255, np.uint8)
    page[10:94, 40:124] = 255 - np.kron(digit, np.ones((3, 3), np.uint8))
    return page


def drawn(digit: np.ndarray) -> np.ndarray:
    """A 28x28 MNIST digit as a user draws it: dark on white, upscaled to 168x168 (bilinear)."""
    from PIL import Image

    return np.asarray(Image.fromarray(255 - digit).resize((168, 168), Image.Resampling.BILINEAR))


# What `user_files` writes; the lossy ones come back close to the picture, the others exact.
USER_FORMATS = (
    "png8", "png16", "tiff8", "tiff16", "tiff-float", "tiff-float-wide", "bmp", "gif", "webp",
    "webp-lossy", "jpeg", "jpeg-cmyk", "palette", "alpha",
)  # fmt: skip
LOSSY = ("webp-lossy", "jpeg", "jpeg-cmyk")


def user_files(paper: np.ndarray, folder: Path, stem: str) -> dict[str, Path]:
    """Save one picture (H, W) uint8, dark on white, with Pillow in each of USER_FORMATS."""
    from PIL import Image

    gray = Image.fromarray(paper)
    sixteen = Image.fromarray(paper.astype(np.uint16) * 257)  # mode I;16, as scanners write
    floats = paper.astype(np.float32)
    # A palette in shuffled order: reading the indices as gray levels would scramble the digit.
    order = np.random.default_rng(0).permutation(256).astype(np.uint8)  # index of each level
    palette = Image.fromarray(order[paper])
    palette.putpalette(np.repeat(np.argsort(order), 3).astype(np.uint8).tobytes())
    # Black ink on a transparent page, its opacity the ink's darkness, as drawing apps export.
    ink = np.zeros((*paper.shape, 4), np.uint8)
    ink[..., 3] = 255 - paper
    pictures = {
        "png8": (gray, "png", {}),
        "png16": (sixteen, "png", {}),
        "tiff8": (gray, "tif", {}),
        "tiff16": (sixteen, "tif", {}),
        "tiff-float": (Image.fromarray(floats / 255), "tif", {}),  # in [0, 1]
        "tiff-float-wide": (Image.fromarray(floats * 4 - 100), "tif", {}),  # -100..920
        "bmp": (gray.convert("RGB"), "bmp", {}),
        # two frames: the second, blank, must not be the one read
        "gif": (gray, "gif", {"save_all": True, "append_images": [Image.new("L", gray.size, 255)]}),
        "webp": (gray, "webp", {"lossless": True}),
        "webp-lossy": (gray, "webp", {"quality": 90}),
        "jpeg": (gray.convert("RGB"), "jpg", {"quality": 95}),  # a colour photo's JPEG
        "jpeg-cmyk": (gray.convert("CMYK"), "jpg", {"quality": 95}),
        "palette": (palette, "png", {}),
        "alpha": (Image.fromarray(ink, "RGBA"), "png", {}),
    }
    assert tuple(pictures) == USER_FORMATS
    paths = {}
    for name, (picture, suffix, options) in pictures.items():
        paths[name] = folder / f"{stem}-{name}.{suffix}"
        picture.save(paths[name], **options)
    return paths


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    return mnist.load_sample().test_images[0]


def test_area_resize_averages_blocks_and_keeps_constants():
    image = np.arange(36, dtype=float).reshape(6, 6)
    halved = preprocess.area_resize(image, (3, 3))
    np.testing.assert_allclose(halved, image.reshape(3, 2, 3, 2).mean(axis=(1, 3)))
    np.testing.assert_allclose(preprocess.area_resize(np.full((7, 5), 0.3), (3, 4)), 0.3)
    # a fractional shrink keeps the mean (each output pixel averages the area it covers)
    uneven = preprocess.area_resize(image, (4, 4))
    assert uneven.mean() == pytest.approx(image.mean())


def test_a_digit_on_paper_comes_back_like_the_original(digit, tmp_path):
    paper = on_paper(digit)
    (tmp_path / "d.pgm").write_bytes(pgm_p5(paper))
    (tmp_path / "d2.pgm").write_bytes(pgm_p2(paper))
    for name in ("d.pgm", "d2.pgm"):
        [(_, image)] = preprocess.read_images(tmp_path / name)
        np.testing.assert_allclose(image, paper / 255)
        restored = preprocess.to_mnist(image)
        assert restored.shape == (28, 28) and restored.dtype == np.uint8
        assert correlation(restored, digit) > 0.8


def test_png_and_jpeg_read_with_pillow(digit, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    paper = on_paper(digit)
    rgb = np.stack([paper] * 3, axis=-1)
    image_module.fromarray(rgb).save(tmp_path / "d.png")
    image_module.fromarray(paper).save(tmp_path / "d.jpg", quality=90)
    [(_, png)] = preprocess.read_images(tmp_path / "d.png")
    np.testing.assert_allclose(png, paper / 255)
    [(_, jpeg)] = preprocess.read_images(tmp_path / "d.jpg")
    assert correlation(preprocess.to_mnist(png), digit) > 0.8
    assert correlation(preprocess.to_mnist(jpeg), digit) > 0.8


def test_transparent_png_is_read_over_white(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    rgba = np.zeros((40, 40, 4), np.uint8)  # transparent everywhere...
    rgba[10:30, 18:22] = (0, 0, 0, 255)  # ...but an opaque black bar
    image_module.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    [(_, image)] = preprocess.read_images(tmp_path / "t.png")
    assert image[0, 0] == 1.0 and image[20, 20] == 0.0


def test_polarity_does_not_matter(digit):
    light_on_dark = preprocess.to_mnist(digit / 255)
    dark_on_light = preprocess.to_mnist(1 - digit / 255)
    np.testing.assert_array_equal(light_on_dark, dark_on_light)


def test_digit_is_fitted_to_20_pixels_and_centred_by_mass():
    bar = np.zeros((200, 100))
    bar[20:180, 45:55] = 1.0  # a tall thin stroke far bigger than MNIST
    out = preprocess.to_mnist(bar).astype(float)
    rows = np.flatnonzero(out.any(axis=1))
    assert rows[-1] - rows[0] + 1 == 20
    mass = out / out.sum()
    assert abs(np.arange(28) @ mass.sum(axis=1) - 14) <= 0.5
    assert abs(np.arange(28) @ mass.sum(axis=0) - 14) <= 0.5


def test_npy_shapes(tmp_path, digit):
    np.save(tmp_path / "one.npy", digit)
    np.save(tmp_path / "many.npy", np.stack([digit, digit, digit]))
    np.save(tmp_path / "flat.npy", np.stack([digit, digit]).reshape(2, 784) / 255.0)
    assert len(preprocess.read_images(tmp_path / "one.npy")) == 1
    many = preprocess.read_images(tmp_path / "many.npy")
    assert [name for name, _ in many] == [f"{tmp_path / 'many.npy'}[{i}]" for i in range(3)]
    [(_, first), _] = preprocess.read_images(tmp_path / "flat.npy")
    np.testing.assert_allclose(first, digit / 255)


def test_blank_image_is_a_data_error():
    with pytest.raises(DataError, match="blank"):
        preprocess.to_mnist(np.full((30, 30), 0.8))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"P5\n2 2\n255\n\x00\x01\x02", "needs 4"),  # truncated raster
        (b"P5\n2 2\n255\n\x00\x01\x02\x03\x04", "needs 4"),  # trailing bytes
        (b"P5\n2 2\n0\n\x00\x00\x00\x00", "maxval"),
        (b"P5\n2 2\n", "header"),  # no maxval
        (b"P5 2 x 255\n", "header"),
        (b"P2\n2 2\n9\n1 2 3", "exactly 4"),
        (b"P2\n2 2\n9\n1 2 3 10", "above maxval"),
        (b"P2\n2 2\n9\n1 2 # no\n 3 4", "exactly 4"),  # no comments inside the raster
        (b"P2 1001 1000 255\n0", r"plain PGM \(P2\) header says 1001x1000 .* than the 1,000,000"),
        (b"GIF89a....", "not a readable GIF image"),  # a GIF's signature, then nothing
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "not a readable PNG image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0", "not a PNG, JPEG, TIFF, BMP, GIF, WebP, PGM"),
        (b"", "not a PNG"),
    ],
)
def test_malformed_files_are_data_errors(tmp_path, content, message):
    path = tmp_path / "bad.pgm"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        preprocess.read_images(path)


def test_bad_npy_files_are_data_errors(tmp_path):
    np.save(tmp_path / "shape.npy", np.zeros((3, 3)))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "range.npy", np.full((28, 28), 300.0))
    for name, message in (("shape", "expected"), ("objects", "npy"), ("range", "0..255")):
        with pytest.raises(DataError, match=message):
            preprocess.read_images(tmp_path / f"{name}.npy")
    with pytest.raises(DataError, match="cannot read"):
        preprocess.read_images(tmp_path / "missing.png")


def test_pgm_with_16_bit_samples():
    raw = b"P5 2 1 1000\n" + np.array([0, 1000], ">u2").tobytes()
    np.testing.assert_allclose(preprocess.parse_pgm(raw), [[0.0, 1.0]])


def test_every_format_reads_back_the_pictures_pixels(digit, tmp_path):
    paper = drawn(digit)
    files = user_files(paper, tmp_path, "d")
    for name, path in files.items():
        [(_, image)] = preprocess.read_images(path)
        assert image.shape == paper.shape, name
        expected = paper / 255
        if name == "tiff-float-wide":  # outside [0, 1]: its own minimum and maximum
            expected = (paper - paper.min()) / (paper.max() - paper.min())
        if name in LOSSY:
            assert np.abs(image - expected).mean() < 0.01, name
        else:
            np.testing.assert_allclose(image, expected, atol=1e-6, err_msg=name)


def test_sixteen_bit_and_float_samples_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    levels = np.array([[0, 1000, 30000, 65535]], np.uint16)
    Image.fromarray(levels).save(tmp_path / "wide.png")
    [(_, image)] = preprocess.read_images(tmp_path / "wide.png")
    np.testing.assert_allclose(image, levels / 65535)
    floats = np.array([[0.0, 0.25, 1.0]], np.float32)
    Image.fromarray(floats).save(tmp_path / "unit.tif")
    [(_, image)] = preprocess.read_images(tmp_path / "unit.tif")
    np.testing.assert_allclose(image, floats)  # [0, 1] is taken as it is
    Image.fromarray(floats * 2 + 1).save(tmp_path / "wide.tif")  # 1..3: its own range
    [(_, image)] = preprocess.read_images(tmp_path / "wide.tif")
    np.testing.assert_allclose(image, [[0.0, 0.25, 1.0]])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([[0.0, np.nan]], np.float32), "not finite"),
        (np.array([[0, 70000]], np.int32), "outside 0..65535"),
    ],
)
def test_samples_outside_their_range_are_one_line(tmp_path, values, message):
    from PIL import Image

    Image.fromarray(values).save(tmp_path / "bad.tif")
    with pytest.raises(DataError, match=message):
        preprocess.read_images(tmp_path / "bad.tif")


def test_pixel_count_is_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    Image.new("L", (300, 200), 255).save(tmp_path / "big.webp")
    monkeypatch.setattr(imagefile, "pillow_gray", lambda *_: pytest.fail("decoded"))
    refused = pytest.raises(DataError, match=r"300x200 \(60,000 pixels\), more than the 59,999")
    with (tmp_path / "big.webp").open("rb") as stream, refused:
        preprocess.read_picture(stream, "big.webp", max_pixels=59_999)
