"""Every reader of a user's file, fed mutated valid files: a right reading or one line.

Valid files of every format the readers take (PNG, JPEG, TIFF, BMP, GIF, WebP, PGM, `.npy`,
safetensors, checkpoints, IDX) get bit flips, truncations, insertions and deletions
(`tests.test_reliability.mutations`); the reader `mnist-jax` uses for the format must return a
value that keeps its contract, or raise the project's own error in one line naming the file,
and print nothing (no Python warning, no libtiff message on the process's stderr). The main
suite draws a few cases per format; the long group many (MNIST_JAX_FUZZ_EXAMPLES raises it).
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from mnist_jax.architecture import layer_sizes
from mnist_jax.config import Config
from mnist_jax.data import idx, imagefile, preprocess
from mnist_jax.errors import MnistJaxError
from mnist_jax.interchange import safetensorsfile
from mnist_jax.records import checkpoint
from tests.test_reliability import CKPT_SEEDS, IDX_SEEDS, mutations


def stroke() -> np.ndarray:
    """(24, 20) uint8: a dark slanted stroke on white, a small written 1."""
    picture = np.full((24, 20), 255, np.uint8)
    for row in range(4, 20):
        picture[row, 12 - row // 3 : 15 - row // 3] = 0
    return picture


def saved(image, suffix: str, **options) -> bytes:
    """The bytes of a Pillow image saved as `suffix`."""
    buffer = io.BytesIO()
    image.save(buffer, format=suffix, **options)
    return buffer.getvalue()


def picture_seeds() -> dict[str, tuple[bytes, ...]]:
    """Small valid pictures, several modes and codecs per format."""
    from PIL import Image

    gray = Image.fromarray(stroke())
    alpha = gray.convert("RGBA")
    alpha.putalpha(Image.fromarray(255 - stroke()))
    wide = Image.fromarray(stroke().astype(np.uint16) * 257)
    floats = Image.fromarray(stroke().astype(np.float32) / 255)
    return {
        "png": (saved(gray, "png"), saved(alpha, "png"), saved(wide, "png"),
                saved(gray.convert("P"), "png"), saved(gray, "png", interlace=1)),
        "jpeg": (saved(gray.convert("RGB"), "jpeg"), saved(gray, "jpeg", progressive=True),
                 saved(gray.convert("CMYK"), "jpeg")),
        "tiff": (saved(gray, "tiff"), saved(gray, "tiff", compression="tiff_lzw"),
                 saved(floats, "tiff"), saved(gray.convert("RGB"), "tiff", compression="jpeg"),
                 saved(wide, "tiff", compression="tiff_deflate")),
        "bmp": (saved(gray.convert("RGB"), "bmp"), saved(gray, "bmp")),
        "gif": (saved(gray, "gif"),
                saved(gray, "gif", save_all=True, append_images=[Image.new("L", (20, 24))])),
        "webp": (saved(gray, "webp", lossless=True), saved(alpha, "webp", quality=80)),
        "pgm": (b"P5 20 24 255\n" + stroke().tobytes(),
                b"P2 20 24 255\n" + " ".join(map(str, stroke().ravel())).encode()),
    }  # fmt: skip


def npy_seeds() -> tuple[bytes, ...]:
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    buffers = []
    for array in (np.stack([digit, digit.T]), digit / np.float32(255), digit.reshape(1, 784)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        buffers.append(buffer.getvalue())
    return tuple(buffers)


def safetensors_seeds() -> tuple[bytes, ...]:
    seeds = []
    for config in (Config(hidden=(2,)), Config(hidden=(3, 2), dtype="float64")):
        sizes = layer_sizes(config)
        params = [
            {"w": np.full((a, b), 0.01, config.dtype), "b": np.zeros(b, config.dtype)}
            for a, b in zip(sizes[:-1], sizes[1:])
        ]
        seeds.append(safetensorsfile.encode(checkpoint.Checkpoint(params, [], config, 2, {})))
    return tuple(seeds)


SEEDS = {
    **picture_seeds(),
    "npy": npy_seeds(),
    "safetensors": safetensors_seeds(),
    "checkpoint": CKPT_SEEDS,
    "idx": IDX_SEEDS + tuple(gzip.compress(seed, mtime=0) for seed in IDX_SEEDS),
}
SUFFIX = {"jpeg": "jpg", "tiff": "tif", "checkpoint": "npz"}


def fuzz(examples: int):
    """Hypothesis settings for `examples` cases a format; derandomised unless the count is
    set, so that a failure in the suite reproduces."""
    return settings(
        max_examples=int(os.environ.get("MNIST_JAX_FUZZ_EXAMPLES", examples)),
        derandomize="MNIST_JAX_FUZZ_EXAMPLES" not in os.environ,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def read(kind: str, path: Path) -> None:
    """Read `path` with the reader `mnist-jax` uses for `kind`; check what comes back."""
    if kind == "checkpoint":
        loaded = checkpoint.load(path)
        checkpoint.check_shapes(loaded.params, loaded.config, str(path))
        assert loaded.epoch >= 0
    elif kind == "safetensors":
        params, config, meta = safetensorsfile.read_safetensors(path)
        checkpoint.check_shapes(params, config, str(path))
        assert all(np.isfinite(layer[k]).all() for layer in params for k in ("w", "b"))
        assert isinstance(meta["epoch"], int) and meta["epoch"] >= 0
    elif kind == "idx":
        array = idx.read_idx(path).array
        assert array.dtype == np.uint8 and array.ndim >= 1
    elif kind == "npy":
        for _, image in preprocess.read_images(path):
            assert image.shape == (28, 28) and 0 <= image.min() <= image.max() <= 1
    else:  # a picture, as `predict` reads it (`serve` reads the same from its body)
        [(_, image)] = preprocess.read_images(path)
        assert image.ndim == 2 and image.dtype == np.float64
        assert 0 < image.size <= imagefile.REDUCED_PIXELS
        assert np.isfinite(image).all() and 0 <= image.min() <= image.max() <= 1
        digit = preprocess.to_mnist(image, str(path))
        assert digit.shape == (28, 28) and digit.dtype == np.uint8


def right_or_one_line(kind: str, raw: bytes, folder: Path, capfd) -> None:
    """Write `raw` as a file of `kind`: it reads right or fails in one line naming it, and
    nothing is printed either way."""
    path = folder / f"fuzz.{SUFFIX.get(kind, kind)}"
    path.write_bytes(raw)
    capfd.readouterr()
    try:
        read(kind, path)
    except MnistJaxError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
    assert capfd.readouterr() == ("", ""), kind


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_each_seed_reads_right(kind, tmp_path, capfd):
    """The files the fuzzing starts from are themselves read, silently."""
    for seed in SEEDS[kind]:
        path = tmp_path / f"seed.{SUFFIX.get(kind, kind)}"
        path.write_bytes(seed)
        read(kind, path)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("kind", sorted(SEEDS))
@pytest.mark.parametrize("examples", [25, pytest.param(2000, marks=pytest.mark.long)])
def test_mutated_files_read_right_or_fail_in_one_line(kind, examples, tmp_path_factory, capfd):
    """25 cases a format in the suite, 2,000 in the long group (minutes)."""

    @fuzz(examples)
    @given(mutations(SEEDS[kind]))
    def case(raw: bytes) -> None:
        right_or_one_line(kind, raw, tmp_path_factory.getbasetemp(), capfd)

    case()
