"""Readers and writers for the other files MNIST comes in: Kaggle CSV, one-hot CSV, MATLAB .mat.

- "kaggle-csv": Kaggle's Digit Recognizer `train.csv`: a header `label,pixel0,...,pixel783`,
  then one image per row. Kaggle ships no labelled test set, so a dev set is held out and
  returned as the Dataset's test split. Split "shuffled": the rows are shuffled by the config's
  seed and the first `KAGGLE_DEV_ROWS` (1,000) are the dev set, the rest train. Split
  "notebook": the Kaggle notebook's fixed split, no shuffle: row 0 is in neither set, rows
  1..999 are the dev set, rows 1,000.. train (row numbers count data rows from 0).
- "onehot-csv": a folder holding `train_X.csv` and `test_X.csv` (784 pixel columns, one image
  per row, no header) and `train_label.csv` and `test_label.csv` (10 one-hot columns).
- "mat": `mnist-original.mat` (MATLAB v5): `data` (784, N) uint8, one flattened image per
  column, and `label` (1, N); the first 60,000 images train and the last 10,000 test (a
  `train_count` scalar, written by `write_mat`, overrides that split). Needs SciPy.

Every reader validates strictly: a bad cell, row or shape is a `DataError` naming the file,
the line and the problem. CSV cells may be written as integers or floats (`1`, `1.0`,
`1e+00`); NumPy's C tokenizer reads them (Kaggle's 42,000 rows in a few seconds). Writers are
the exact inverses (integers), written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mnist_jax.data.idx import read_bytes
from mnist_jax.data.matfile import check_mat
from mnist_jax.data.mnist import Dataset
from mnist_jax.errors import ConfigError, DataError, MnistJaxError
from mnist_jax.files import atomic_write_bytes
from mnist_jax.limits import limit

FORMATS = ("kaggle-csv", "onehot-csv", "mat")
PIXELS = 28 * 28
CLASSES = 10
KAGGLE_HEADER = ",".join(["label", *(f"pixel{i}" for i in range(PIXELS))]).encode()
KAGGLE_DEV_ROWS = 1_000
ONEHOT_FILES = {
    "train": ("train_X.csv", "train_label.csv"),
    "test": ("test_X.csv", "test_label.csv"),
}
MAT_TRAIN = 60_000  # mnist-original.mat: the first 60,000 of its 70,000 images train
MAT_INSTALL = "pip install 'mnist-jax[mat]'"
_COMMA, _NEWLINE = ord(","), ord("\n")
# Peak memory while parsing, as a multiple of the file's bytes: a CSV cell of 2 bytes becomes
# a float64 and its rounded copy; a .mat's uint8 pixels become float64 and their checks.
CSV_EXPANSION = 12
MAT_EXPANSION = 20


# ----------------------------------------------------------------------------- dispatch


def need_path(dataset: str, path: str | None) -> Path:
    """Return the data path a file format needs, or say that it is missing."""
    if path is None:
        raise ConfigError(f'dataset "{dataset}" needs data_path (the file or folder), or --data')
    return Path(path)


def read(fmt: str, path: Path, *, seed: int = 0, kaggle_split: str = "shuffled") -> Dataset:
    """Read `path` in format `fmt` (one of FORMATS) into a Dataset."""
    if fmt == "kaggle-csv":
        return read_kaggle_csv(path, seed=seed, split=kaggle_split)
    if fmt == "onehot-csv":
        return read_onehot_csv(path)
    if fmt == "mat":
        return read_mat(path)
    raise ConfigError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------- CSV


def parse_csv(raw: bytes, name: str, *, columns: int, first_line: int = 1) -> np.ndarray:
    """Parse comma-separated numbers into a (rows, columns) float64 array.

    NumPy's C tokenizer (`np.loadtxt`) reads the bulk; when it refuses a file, a line-by-line
    pass finds the first bad line and cell for the message.

    Args:
        raw: the file's bytes without any header; `\\r\\n` or `\\n` line ends, trailing blank
            lines ignored.
        name: the file's name for error messages.
        columns: the number of cells every row must have.
        first_line: the file's line number of the first row of `raw` (2 after a header).

    Raises:
        DataError: no rows, an empty line or cell, a row with another number of cells, or a
            cell that is not a number; the message names the line (and column).
    """
    text = raw.replace(b"\r\n", b"\n").rstrip(b"\n")
    if not text.strip():
        raise DataError(f"{name}: no data rows")
    lines = text.count(b"\n") + 1
    try:
        table = np.loadtxt(
            io.BytesIO(text),
            delimiter=",",
            dtype=np.float64,
            ndmin=2,
            comments=None,
            quotechar=None,
            encoding="latin-1",  # every byte decodes; bad cells fail as numbers, not as text
        )
    except (ValueError, OverflowError):
        table = None
    # loadtxt skips blank lines; a short table means some were, and line numbers would shift.
    if table is None or table.shape != (lines, columns):
        _raise_first_problem(text, name, columns, first_line)
    return table


def _raise_first_problem(text: bytes, name: str, columns: int, first_line: int) -> None:
    """Scan `text` line by line and raise a DataError for the first line that is wrong."""
    for i, line in enumerate(text.split(b"\n")):
        where = f"{name}: line {first_line + i}"
        if not line.strip():
            raise DataError(f"{where} is empty")
        cells = line.split(b",")
        if len(cells) != columns:
            raise DataError(f"{where} has {len(cells)} columns, expected {columns}")
        for column, cell in enumerate(cells, start=1):
            try:
                float(cell)
            except ValueError:
                shown = cell[:20].decode("utf-8", "backslashreplace")
                raise DataError(f"{where}, column {column}: '{shown}' is not a number") from None
    raise DataError(f"{name}: cannot be read as comma-separated numbers")


def check_whole(
    values: np.ndarray, name: str, high: int, what: str, *, first_line: int = 1, column0: int = 0
) -> np.ndarray:
    """Return `values` (rows, cols) as uint8 after checking each is a whole number in 0..high."""
    ok = np.isfinite(values) & (values >= 0) & (values <= high) & (values == np.round(values))
    if not np.all(ok):
        row, col = (int(i[0]) for i in np.nonzero(~ok))
        raise DataError(
            f"{name}: line {first_line + row}, column {column0 + col + 1}: {what} "
            f"{values[row, col]:g} is not a whole number in 0..{high}"
        )
    return values.astype(np.uint8)


def encode_csv(table: np.ndarray, header: bytes | None = None) -> bytes:
    """Write a (rows, cols) table of integers 0..255 as CSV bytes (the inverse of parse_csv)."""
    table = np.asarray(table, dtype=np.uint8)
    # Each value becomes up to 4 bytes "ddd," padded with zero bytes, then the padding goes.
    width = 4
    lut = np.zeros((256, width), np.uint8)
    lut_end = np.zeros((256, width), np.uint8)
    for v in range(256):
        digits = np.frombuffer(str(v).encode(), np.uint8)
        lut[v, : len(digits)] = lut_end[v, : len(digits)] = digits
        lut[v, len(digits)], lut_end[v, len(digits)] = _COMMA, _NEWLINE
    cells = lut[table]  # (rows, cols, 4)
    cells[:, -1] = lut_end[table[:, -1]]
    flat = cells.reshape(-1)
    body = flat[flat != 0].tobytes()
    return body if header is None else header + b"\n" + body


def _read(path: Path, hint: str = "", expansion: int = CSV_EXPANSION) -> bytes:
    """Read a data file (gzip or raw), capped so that parsing it fits in memory."""
    if not path.exists():
        raise DataError(f"{path}: file not found{hint}")
    raw = read_bytes(path, max_bytes=limit() // expansion)
    if not raw.strip():
        raise DataError(f"{path}: empty file")
    return raw


# ----------------------------------------------------------------------------- Kaggle


def parse_kaggle_csv(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse Kaggle's train.csv bytes into images (N, 28, 28) uint8 and labels (N,) uint8."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark some editors add
    if not raw.strip():
        raise DataError(f"{name}: empty file")
    header, _, body = raw.partition(b"\n")
    if header.rstrip(b"\r") != KAGGLE_HEADER:
        shown = header[:40].decode("utf-8", "backslashreplace")
        raise DataError(
            f"{name}: line 1 must be the header 'label,pixel0,...,pixel783', got '{shown}...'"
        )
    table = parse_csv(body, name, columns=1 + PIXELS, first_line=2)
    labels = check_whole(table[:, :1], name, 9, "label", first_line=2)[:, 0]
    images = check_whole(table[:, 1:], name, 255, "pixel", first_line=2, column0=1)
    return images.reshape(-1, 28, 28), labels


def read_kaggle_csv(
    path: Path, *, seed: int = 0, dev_rows: int = KAGGLE_DEV_ROWS, split: str = "shuffled"
) -> Dataset:
    """Read Kaggle's train.csv and hold out a dev set, returned as the test split.

    Args:
        path: the CSV file.
        seed: "shuffled" only: the seed of the row shuffle.
        dev_rows: "shuffled": the first `dev_rows` shuffled rows are the dev set; "notebook":
            rows 1..dev_rows - 1 are the dev set, rows dev_rows.. train and row 0 is unused,
            exactly as the Kaggle notebook slices its unshuffled array.
        split: "shuffled" or "notebook".

    Returns:
        A Dataset named "kaggle-csv": shuffled: N - dev_rows training and dev_rows test images;
        notebook: N - dev_rows training and dev_rows - 1 test images, in file order.
    """
    hint = (
        "; download Kaggle's Digit Recognizer train.csv, or draw one from MNIST with "
        "`mnist-jax data export --format kaggle-csv --out PATH`"
    )
    images, labels = parse_kaggle_csv(_read(path, hint), str(path))
    if len(labels) <= dev_rows:
        raise DataError(f"{path}: {len(labels)} rows; need more than the {dev_rows} dev rows")
    if split == "notebook":
        dev, rest = np.arange(1, dev_rows), np.arange(dev_rows, len(labels))
    else:
        order = np.random.default_rng(seed).permutation(len(labels))
        dev, rest = order[:dev_rows], np.sort(order[dev_rows:])
    return Dataset("kaggle-csv", str(path), images[rest], labels[rest], images[dev], labels[dev])


def write_kaggle_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N, 28, 28) and labels (N,) as Kaggle's train.csv, atomically."""
    table = np.concatenate([labels.reshape(-1, 1), images.reshape(len(images), -1)], axis=1)
    atomic_write_bytes(path, encode_csv(table, KAGGLE_HEADER))


# ----------------------------------------------------------------------------- one-hot CSV


def parse_onehot_labels(raw: bytes, name: str) -> np.ndarray:
    """Parse one-hot label rows (N, 10) into labels (N,) uint8; each row must be one-hot."""
    table = parse_csv(raw, name, columns=CLASSES)
    onehot = (table == 0) | (table == 1)
    ok = np.all(onehot, axis=1) & (table.sum(axis=1, where=onehot) == 1)
    if not np.all(ok):
        row = int(np.argmin(ok))
        shown = ",".join(f"{v:g}" for v in table[row])
        raise DataError(f"{name}: line {row + 1} is not one-hot (one 1, nine 0s): {shown}")
    return np.argmax(table, axis=1).astype(np.uint8)


def parse_pixel_rows(raw: bytes, name: str) -> np.ndarray:
    """Parse headerless rows of 784 pixels into images (N, 28, 28) uint8."""
    table = parse_csv(raw, name, columns=PIXELS)
    return check_whole(table, name, 255, "pixel").reshape(-1, 28, 28)


def read_onehot_csv(folder: Path) -> Dataset:
    """Read train_X.csv, train_label.csv, test_X.csv and test_label.csv from `folder`."""
    if not folder.is_dir():
        names = ", ".join(n for pair in ONEHOT_FILES.values() for n in pair)
        raise DataError(f"{folder}: not a folder; onehot-csv reads a folder holding {names}")
    arrays = []
    for images_name, labels_name in ONEHOT_FILES.values():
        images = parse_pixel_rows(_read(folder / images_name), str(folder / images_name))
        labels = parse_onehot_labels(_read(folder / labels_name), str(folder / labels_name))
        if len(images) != len(labels):
            raise DataError(
                f"{folder}: {images_name} has {len(images)} rows but {labels_name} {len(labels)}"
            )
        arrays += [images, labels]
    return Dataset("onehot-csv", str(folder), *arrays)


def write_onehot_csv(folder: Path, dataset: Dataset) -> list[Path]:
    """Write a Dataset as the four one-hot CSV files in `folder`, atomically; return them."""
    written = []
    for (images_name, labels_name), images, labels in (
        (ONEHOT_FILES["train"], dataset.train_images, dataset.train_labels),
        (ONEHOT_FILES["test"], dataset.test_images, dataset.test_labels),
    ):
        onehot = np.eye(CLASSES, dtype=np.uint8)[labels]
        atomic_write_bytes(folder / images_name, encode_csv(images.reshape(len(images), -1)))
        atomic_write_bytes(folder / labels_name, encode_csv(onehot))
        written += [folder / images_name, folder / labels_name]
    return written


# ----------------------------------------------------------------------------- MATLAB


def _scipy_io():
    try:
        import scipy.io
    except ImportError:
        raise MnistJaxError(f"reading and writing .mat files needs SciPy: {MAT_INSTALL}") from None
    return scipy.io


def parse_mat(raw: bytes, name: str) -> Dataset:
    """Parse the bytes of mnist-original.mat (see the module docstring) into a Dataset."""
    sio = _scipy_io()
    check_mat(raw, name, limit() // MAT_EXPANSION)
    try:
        # loadmat never unpickles or runs code; read only the named numeric variables.
        contents = sio.loadmat(
            io.BytesIO(raw),
            variable_names=("data", "label", "train_count"),
            mat_dtype=False,
            squeeze_me=False,
            struct_as_record=True,
            simplify_cells=False,
            verify_compressed_data_integrity=True,
        )
    except Exception as e:  # noqa: BLE001 - any failure of the third-party parser is bad input
        raise DataError(
            f"{name}: not a readable MATLAB v5 file ({type(e).__name__}: {e})"
        ) from None
    arrays = {}
    for key in ("data", "label"):
        value = contents.get(key)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "uif":
            raise DataError(f"{name}: no numeric variable '{key}'")
        arrays[key] = value
    pixels, labels = arrays["data"], arrays["label"]
    if pixels.ndim != 2 or pixels.shape[0] != PIXELS:
        raise DataError(f"{name}: 'data' must be (784, N), got {pixels.shape}")
    count = pixels.shape[1]
    if labels.size != count or labels.ndim > 2 or (labels.ndim == 2 and 1 not in labels.shape):
        raise DataError(f"{name}: 'label' must be (1, {count}), got {labels.shape}")
    images = check_whole(pixels.T.astype(np.float64), name, 255, "pixel").reshape(-1, 28, 28)
    labels = check_whole(labels.reshape(-1, 1).astype(np.float64), name, 9, "label")[:, 0]
    train = _mat_train_count(contents.get("train_count"), count, name)
    return Dataset("mat", name, images[:train], labels[:train], images[train:], labels[train:])


def _mat_train_count(value: object, count: int, name: str) -> int:
    """How many leading images train: `train_count` if stored, else 60,000 of 70,000."""
    if value is None:
        if count != MAT_TRAIN + 10_000:
            raise DataError(
                f"{name}: {count} images and no 'train_count'; cannot tell train from test "
                f"(mnist-original.mat has 70,000: 60,000 train, 10,000 test)"
            )
        return MAT_TRAIN
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1 or flat.dtype.kind not in "uif" or not 0 < flat[0] < count:
        raise DataError(f"{name}: 'train_count' must be one number between 1 and {count - 1}")
    return int(flat[0])


def read_mat(path: Path) -> Dataset:
    """Read mnist-original.mat (needs the `mat` extra: SciPy)."""
    _scipy_io()  # say what to install before reading a large file
    return parse_mat(_read(path, expansion=MAT_EXPANSION), str(path))


def encode_mat(dataset: Dataset) -> bytes:
    """Return .mat bytes holding `dataset` in mnist-original.mat's layout, plus train_count."""
    sio = _scipy_io()
    images = np.concatenate([dataset.train_images, dataset.test_images])
    labels = np.concatenate([dataset.train_labels, dataset.test_labels])
    buffer = io.BytesIO()
    sio.savemat(
        buffer,
        {
            "data": np.ascontiguousarray(images.reshape(len(images), -1).T),  # (784, N) uint8
            "label": labels.astype(np.float64)[None, :],  # (1, N), as the original stores it
            "train_count": np.array([[len(dataset.train_labels)]], np.float64),
        },
        do_compression=True,
    )
    return buffer.getvalue()


def write_mat(path: Path, dataset: Dataset) -> None:
    """Write `dataset` as a .mat file, atomically."""
    atomic_write_bytes(path, encode_mat(dataset))
