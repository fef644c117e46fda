"""Convert between MNIST's IDX layout and the other formats: `data import` and `data export`.

Import reads a Kaggle CSV, one-hot CSV folder or .mat file (`mnist_jax.data.formats`) and writes
the four canonical gz IDX files into one folder, with a manifest (`mnist.IMPORT_MANIFEST`)
holding their own sha256s, so `--data-dir` reads them verified like canonical MNIST. Export
writes MNIST (or any Dataset) in one of those formats, e.g. a Kaggle-style train.csv drawn
from MNIST's training images, so the Kaggle seed system runs without Kaggle's file.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_jax import files
from mnist_jax.data import formats, idx, mnist
from mnist_jax.errors import ConfigError, DataError

KAGGLE_ROWS = 42_000  # rows of Kaggle's Digit Recognizer train.csv


def default_import_dir(fmt: str) -> Path:
    """Return where `data import` writes by default: <user cache>/imported-<format>."""
    return files.cache_dir() / f"imported-{fmt}"


def write_idx_folder(folder: Path, dataset: mnist.Dataset, fmt: str, source: str) -> list[Path]:
    """Write `dataset` as the four gz IDX files plus an import manifest in `folder`.

    Only the four canonical names and the manifest are written, each atomically, all inside
    `folder`. A folder holding MNIST files but no manifest (canonical MNIST, or anything not
    written here) is refused rather than overwritten.

    Returns:
        The paths written, manifest last.

    Raises:
        DataError: the folder holds foreign MNIST files or cannot be written.
    """
    if mnist.read_manifest(folder) is None and any(
        idx.find_file(folder, name) for name in mnist.MNIST_SHA256
    ):
        raise DataError(
            f"{folder} already holds MNIST files that `data import` did not write; "
            "import into an empty folder"
        )
    arrays = {
        idx.file_name("train", "images"): dataset.train_images,
        idx.file_name("train", "labels"): dataset.train_labels,
        idx.file_name("t10k", "images"): dataset.test_images,
        idx.file_name("t10k", "labels"): dataset.test_labels,
    }
    sums, written = {}, []
    try:
        for name, array in arrays.items():
            raw = idx.encode_idx(array)
            sums[name] = idx.sha256(raw)
            path = folder / f"{name}.gz"
            files.atomic_write_bytes(path, gzip.compress(raw, mtime=0))
            (folder / name).unlink(missing_ok=True)  # an older raw copy would not match
            written.append(path)
        manifest = {
            "name": f"imported-{fmt}",
            "format": fmt,
            "source": source,
            "train": len(dataset.train_labels),
            "test": len(dataset.test_labels),
            "sha256": sums,
        }
        path = folder / mnist.IMPORT_MANIFEST
        files.atomic_write_json(path, manifest)
    except OSError as e:
        raise DataError(f"cannot write to {folder}: {e.strerror or e}") from None
    return [*written, path]


def import_dataset(
    fmt: str,
    path: Path,
    folder: Path | None = None,
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    """Read `path` in format `fmt` and write it as an IDX folder that `--data-dir` reads.

    Args:
        fmt: "kaggle-csv", "onehot-csv" or "mat".
        path: the file (or, for onehot-csv, the folder) to read.
        folder: where to write; default `default_import_dir(fmt)`.
        seed: for Kaggle's file, picks the 1,000 dev rows that become the test split.
        log: receives one line saying what was written.

    Returns:
        The folder written.
    """
    dataset = formats.read(fmt, path, seed=seed)
    folder = folder or default_import_dir(fmt)
    write_idx_folder(folder, dataset, fmt, str(path))
    log(
        f"imported {len(dataset.train_labels):,} train and {len(dataset.test_labels):,} test "
        f"images from {path} into {folder}"
    )
    return folder


def export_dataset(
    fmt: str,
    out: Path,
    dataset: mnist.Dataset,
    *,
    seed: int = 0,
    rows: int = KAGGLE_ROWS,
) -> list[Path]:
    """Write `dataset` in format `fmt`; return the files written.

    Args:
        fmt: "kaggle-csv" (the file `out`: `rows` training images drawn by `seed`, in a
            seed-chosen order, under Kaggle's header), "onehot-csv" (four files in the folder
            `out`, both splits whole) or "mat" (the file `out`, both splits, train first).
        out: the file or folder to write.
        dataset: the images and labels, e.g. `mnist.load_mnist()`.
        seed: which training images a Kaggle file holds.
        rows: how many rows a Kaggle file holds.
    """
    if fmt == "kaggle-csv":
        available = len(dataset.train_labels)
        if not 0 < rows <= available:
            raise DataError(
                f"cannot draw {rows:,} rows from {available:,} training images of "
                f"{dataset.name}; pass --rows, or point --data-dir at the full MNIST"
            )
        chosen = np.random.default_rng(seed).permutation(available)[:rows]
        formats.write_kaggle_csv(out, dataset.train_images[chosen], dataset.train_labels[chosen])
        return [out]
    if fmt == "onehot-csv":
        return formats.write_onehot_csv(out, dataset)
    if fmt == "mat":
        formats.write_mat(out, dataset)
        return [out]
    raise ConfigError(f"unknown format '{fmt}': choose one of {', '.join(formats.FORMATS)}")


def export_command(
    fmt: str,
    out: Path,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    rows: int = KAGGLE_ROWS,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Load MNIST (as `train` would find it) and export it; see `export_dataset`."""
    if fmt not in formats.FORMATS:
        raise ConfigError(f"unknown format '{fmt}': choose one of {', '.join(formats.FORMATS)}")
    written = export_dataset(fmt, out, mnist.load_mnist(data_dir, log=log), seed=seed, rows=rows)
    for path in written:
        log(f"wrote {path}")
    return written
