"""The MNIST files: find, download, verify and read them; the bundled sample. NumPy only.

Search order for the four IDX files: an explicit folder (`--data-dir`), `$MNIST_JAX_DATA`, the
user cache (`$XDG_CACHE_HOME/mnist-jax`, else `~/.cache/mnist-jax`), then a download from the
public mirrors into that cache. Offline with nothing found, the bundled sample (a fixed,
class-stratified 10,000/2,000 subset of the real files) is used, and the run says so.

Checksums are taken over the *uncompressed* bytes, so any mirror's gzip wrapping is accepted.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import sys
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_jax.data.idx import file_name, find_file, gunzip_sha256, read_idx
from mnist_jax.errors import DataError
from mnist_jax.files import atomic_write_bytes, cache_dir

SPLITS = ("train", "t10k")
KINDS = ("images", "labels")
IMPORT_MANIFEST = "mnist-jax-import.json"  # marks a folder written by `data import`

# sha256 of the uncompressed files, as published with the canonical MNIST release.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
SAMPLE_DIR = Path(__file__).parents[1] / "sample"  # mnist_jax/sample
SAMPLE_SIZES = {"train": 10_000, "t10k": 2_000}
DOWNLOAD_TIMEOUT_S = 30.0
OTHER_DATA_HINT = "to train on another IDX dataset (Fashion-MNIST, KMNIST, your own) use --data"


MAX_FILE_BYTES = 16 + 60_000 * 28 * 28  # the largest of the four files, uncompressed
FULL_HINT = "run `mnist-jax data fetch` or set MNIST_JAX_DATA to get the full 60,000/10,000 set"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Raw images (N, rows, cols) uint8 and labels (N,) uint8 per split; MNIST's are (N, 28, 28)
    and 0..9, an own IDX dataset's (`mnist_jax.data.owndata`) are any size and class count."""

    name: str  # "mnist" or "mnist-sample" (or a file format's name)
    source: str  # where it was read from
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int = 10  # labels are 0..num_classes - 1


def check_images_labels(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    """Check that images are (N, 28, 28), labels (N,) in 0..9, and the counts agree."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{where}: images must have shape (N, 28, 28), got {images.shape}; not MNIST? "
            f"{OTHER_DATA_HINT} DIR"
        )
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,), got {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise DataError(
            f"{where}: labels must be 0..9, found {int(labels.max())}; not MNIST? "
            f"{OTHER_DATA_HINT} DIR"
        )


def read_split(folder: Path, split: str, checksums: dict[str, str] | None) -> tuple:
    """Read one split's images and labels from `folder`, verifying `checksums` if given.

    Structure is checked before checksums, so a broken file is reported by what is wrong with
    it (bad magic, wrong size, mismatched counts, labels out of range) rather than only by a
    checksum that differs.
    """
    paths, digests, arrays = [], [], []
    for kind in KINDS:
        name = file_name(split, kind)
        path = find_file(folder, name)
        if path is None:
            raise DataError(f"{folder}: missing {name}(.gz)")
        array, digest = read_idx(path, digest=checksums is not None)
        arrays.append(array)
        paths.append(path)
        digests.append(digest)
    check_images_labels(arrays[0], arrays[1], str(folder / split))
    if checksums is not None:
        for kind, path, digest in zip(KINDS, paths, digests):
            verify_checksum(path, digest, checksums[file_name(split, kind)])
    return arrays[0], arrays[1]


def verify_checksum(path: Path, actual: str, expected: str) -> None:
    """Check the sha256 of a file's uncompressed bytes (`actual`, hex) against `expected`."""
    if actual != expected:
        raise DataError(
            f"{path}: checksum mismatch: sha256 of the uncompressed bytes is {actual}, "
            f"expected {expected}; if this is a broken download delete it and run `mnist-jax "
            f"data fetch`; {OTHER_DATA_HINT} {path.parent}"
        )


def read_folder(folder: Path, name: str, checksums: dict[str, str] | None) -> Dataset:
    """Read the four IDX files in `folder` into a Dataset."""
    train = read_split(folder, "train", checksums)
    test = read_split(folder, "t10k", checksums)
    return Dataset(name, str(folder), train[0], train[1], test[0], test[1])


def read_manifest(folder: Path) -> dict | None:
    """Return the import manifest of `folder` ({"name", "format", "sha256": {file: hex}}) or None.

    `mnist-jax data import` writes IDX files that are not the canonical MNIST, with this
    manifest holding their own checksums; folders without one must hold canonical MNIST.
    """
    path = folder / IMPORT_MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable import manifest ({e})") from None
    sums = manifest.get("sha256") if isinstance(manifest, dict) else None
    if (
        not isinstance(sums, dict)
        or set(sums) != set(MNIST_SHA256)
        or not all(isinstance(v, str) for v in sums.values())
        or not isinstance(manifest.get("name"), str)
    ):
        raise DataError(f"{path}: not an import manifest; run `mnist-jax data import` again")
    return manifest


def read_data_dir(folder: Path) -> Dataset:
    """Read an explicit data folder: canonical MNIST, verified, or an imported set, verified
    against its own manifest."""
    manifest = read_manifest(folder)
    if manifest is None:
        return read_folder(folder, "mnist", MNIST_SHA256)
    return read_folder(folder, manifest["name"], manifest["sha256"])


def has_all_files(folder: Path) -> bool:
    """Return True if all four MNIST files (gzip or raw) are in `folder`."""
    return all(find_file(folder, n) is not None for n in MNIST_SHA256)


def load_sample() -> Dataset:
    """Return the bundled sample: 10,000 training and 2,000 test images of real MNIST."""
    return read_folder(SAMPLE_DIR, "mnist-sample", checksums=None)


def load_mnist(
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    mirrors: tuple[str, ...] = MIRRORS,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    log: Callable[[str], None] = print,
) -> Dataset:
    """Find the full MNIST set, downloading it if needed; fall back to the bundled sample.

    Args:
        data_dir: an explicit folder; it must hold the four files.
        download: try the public mirrors when nothing is found locally.
        mirrors, timeout: where and how long to try (see `fetch`).
        log: where to say which data is used (one line each).

    Returns:
        The full Dataset, or the sample when nothing could be found or fetched.

    Raises:
        DataError: an explicit folder lacks the files, or a file is malformed.
    """
    for folder, origin in (
        (data_dir, "--data-dir"),
        (os.environ.get("MNIST_JAX_DATA"), "MNIST_JAX_DATA"),
    ):
        if folder:
            folder = Path(folder)
            if not has_all_files(folder):
                raise DataError(f"{origin} {folder} does not hold the four MNIST IDX files")
            return read_data_dir(folder)
    cache = cache_dir()
    if has_all_files(cache):
        return read_folder(cache, "mnist", MNIST_SHA256)
    if download:
        try:
            fetch(cache, mirrors=mirrors, timeout=timeout, log=log)
            return read_folder(cache, "mnist", MNIST_SHA256)
        except DataError as e:
            log(f"could not download MNIST ({e})")
    log(f"using the bundled MNIST sample (10,000 train / 2,000 test images); {FULL_HINT}")
    return load_sample()


def fetch(
    folder: Path,
    *,
    mirrors: tuple[str, ...] = MIRRORS,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    log: Callable[[str], None] = print,
) -> None:
    """Download the missing MNIST files into `folder`, verified and written atomically.

    Each file is tried on each mirror in turn. A file is only ever renamed to its final name
    after its uncompressed sha256 matched, so an interrupted or corrupt download never leaves
    a file that looks complete.

    Raises:
        DataError: a file could not be fetched from any mirror.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in MNIST_SHA256.items():
        if find_file(folder, name) is not None:
            continue
        errors = []
        for mirror in mirrors:
            url = f"{mirror}{name}.gz"
            try:
                raw = _download(url, timeout, log)
                # Inflated as a stream, capped: a mirror cannot make it allocate without bound.
                actual = gunzip_sha256(raw, MAX_FILE_BYTES, url)
                if actual != expected:
                    raise DataError(f"checksum mismatch: expected {expected}, got {actual}")
                atomic_write_bytes(folder / f"{name}.gz", raw)
                break
            except (
                DataError, OSError, EOFError, ValueError, zlib.error, http.client.HTTPException
            ) as e:  # fmt: skip
                # URLError is an OSError; HTTPException covers a connection cut mid-body.
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
        else:
            raise DataError(f"could not fetch {name}: " + "; ".join(errors))


def _download(url: str, timeout: float, log: Callable[[str], None]) -> bytes:
    """Fetch `url` into memory, drawing a progress bar on stderr when it is a terminal."""
    log(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        chunks, done = [], 0
        while chunk := response.read(1 << 16):
            chunks.append(chunk)
            done += len(chunk)
            if done > MAX_FILE_BYTES:  # gzip never makes MNIST larger than it is
                raise DataError(f"download larger than any MNIST file ({done} bytes so far)")
            if total and sys.stderr.isatty():
                filled = 30 * done // total
                sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done / total:4.0%}")
        if total and sys.stderr.isatty():
            sys.stderr.write("\n")
    if total and done != total:
        raise DataError(f"download cut short: {done} of {total} bytes")
    return b"".join(chunks)


def stratified_indices(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Choose `count` indices keeping each class's share of `labels`, in ascending order.

    Class shares are rounded by the largest-remainder rule so the counts add up exactly;
    within each class the indices are drawn by NumPy's PCG64 generator seeded with `seed`.
    """
    classes, totals = np.unique(labels, return_counts=True)
    exact = totals * count / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(-(exact - quota), kind="stable")[: count - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def derive_sample(full: Dataset) -> Dataset:
    """Derive the bundled sample from the full set (see `scripts/make_sample.py`)."""
    train = stratified_indices(full.train_labels, SAMPLE_SIZES["train"])
    test = stratified_indices(full.test_labels, SAMPLE_SIZES["t10k"])
    return Dataset(
        "mnist-sample",
        full.source,
        full.train_images[train],
        full.train_labels[train],
        full.test_images[test],
        full.test_labels[test],
    )


def describe(data_dir: str | Path | None = None) -> dict:
    """Report where MNIST would be read from and whether each file's checksum matches."""
    candidates = [
        ("--data-dir", data_dir),
        ("MNIST_JAX_DATA", os.environ.get("MNIST_JAX_DATA")),
        ("cache", str(cache_dir())),
    ]
    report: dict = {"searched": [], "using": None, "files": {}}
    for origin, folder in candidates:
        if not folder:
            continue
        found = has_all_files(Path(folder))
        report["searched"].append({"origin": origin, "folder": str(folder), "complete": found})
        if found and report["using"] is None:
            report["using"] = str(folder)
    if report["using"] is None:
        report["using"] = f"bundled sample ({SAMPLE_DIR})"
        return report
    manifest = read_manifest(Path(report["using"]))
    if manifest is not None:
        report["imported"] = manifest["name"]
    for name, expected in (MNIST_SHA256 if manifest is None else manifest["sha256"]).items():
        path = find_file(Path(report["using"]), name)
        try:
            ok = read_idx(path, digest=True).sha256 == expected
        except DataError:
            ok = False
        report["files"][name] = {"path": str(path), "sha256_ok": ok}
    return report


def format_description(report: dict) -> list[str]:
    """Render `describe`'s report as lines for a person."""
    lines = [
        f"{s['origin']:<15} {s['folder']}  {'complete' if s['complete'] else 'missing files'}"
        for s in report["searched"]
    ]
    lines.append(f"using           {report['using']}")
    if "imported" in report:
        lines.append(f"  {report['imported']}: checked against its import manifest, not MNIST's")
    for name, info in report["files"].items():
        lines.append(f"  {name:<26} {'checksum ok' if info['sha256_ok'] else 'CHECKSUM MISMATCH'}")
    if not report["files"]:
        lines.append(f"  {FULL_HINT}")
    return lines
