"""One way in for data: `load(config)` reads the configured source and returns its splits.

The source is the full MNIST set (found, cached or downloaded; the bundled sample offline),
the bundled sample, an IDX folder, or a Kaggle CSV, one-hot CSV folder or `.mat` file
(`mnist_jax.data.formats`); with `dataset = "auto"` the format is told from `data_path` itself.
The training images are then cut to the config's subsets and validation split, chosen by the
run's data key, all on the host in NumPy; `mnist_jax.training.trainer` moves the splits to
the devices.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from mnist_jax.config import Config
from mnist_jax.data import formats, mnist, owndata
from mnist_jax.data.idx import find_file
from mnist_jax.data.mnist import Dataset
from mnist_jax.errors import DataError
from mnist_jax.keys import root_keys

Log = Callable[[str], None]


class Split(NamedTuple):
    """One split on the host: images (N, rows, cols) uint8 (MNIST: 28x28) and labels (N,) uint8."""

    x: np.ndarray
    y: np.ndarray


class Splits(NamedTuple):
    """A run's data on the host, split as the config asks."""

    name: str  # dataset name recorded in the outputs ("mnist", "mnist-sample", a format)
    train: Split
    validation: Split  # may hold zero images
    test: Split
    image_shape: tuple[int, ...] = (28, 28)  # one image's shape, read from the data
    num_classes: int = 10  # labels are 0..num_classes - 1


def detect_format(path: str | Path) -> tuple[str, Path]:
    """Tell a data path's format from the file itself.

    Returns:
        (dataset, path): "idx" for a folder of IDX files, "onehot-csv" for a folder of the
        four one-hot CSV files, "kaggle-csv" for a CSV whose header starts with `label`,
        "mat" for a MATLAB file.

    Raises:
        DataError: the path does not exist or its format cannot be told.
    """
    path = Path(path)
    if path.is_dir():
        if any(find_file(path, name) for name in mnist.MNIST_SHA256):
            return "idx", path
        if any((path / name).exists() for pair in formats.ONEHOT_FILES.values() for name in pair):
            return "onehot-csv", path
        raise DataError(
            f"{path}: cannot tell the data format: the folder holds neither the four IDX files "
            "(train-images-idx3-ubyte...) nor the one-hot CSV files (train_X.csv...)"
        )
    if not path.exists():
        raise DataError(f"{path}: data file not found")
    with path.open("rb") as f:
        head = f.read(128)
    if head.startswith(b"MATLAB") or path.suffix.lower() == ".mat":
        return "mat", path
    if head.lstrip(b"\xef\xbb\xbf").lower().startswith(b"label"):
        return "kaggle-csv", path
    raise DataError(
        f"{path}: cannot tell the data format: expected an IDX or one-hot CSV folder, a Kaggle "
        "CSV (header 'label,pixel0,...') or a .mat file"
    )


def read_dataset(config: Config, log: Log = print) -> Dataset:
    """Read the raw dataset the config names (full MNIST, the sample, a folder or a file)."""
    dataset, data_path = config.dataset, config.data_path
    if dataset == "auto":
        if data_path is None:
            raise DataError('dataset "auto" needs data_path (or --data PATH)')
        dataset, data_path = detect_format(data_path)
    if dataset == "idx":
        folder = data_path or config.data_dir
        if folder is None:
            raise DataError('dataset "idx" needs the folder: data_path or data_dir (or --data DIR)')
        return owndata.read_idx_folder(folder)
    if dataset == "sample":
        return mnist.load_sample()
    if dataset == "mnist":
        return mnist.load_mnist(config.data_dir, log=log)
    path = formats.need_path(dataset, data_path)
    return formats.read(dataset, path, seed=config.split_seed, kaggle_split=config.kaggle_split)


def split(config: Config, dataset: Dataset, key: jax.Array) -> Splits:
    """Apply the config's subsets and validation split, chosen by `key`, on the host."""
    subset_key, split_key, test_key = jax.random.split(key, 3)
    train_x, train_y = dataset.train_images, dataset.train_labels
    test_x, test_y = dataset.test_images, dataset.test_labels
    if config.train_size is not None:
        train_x, train_y = _subset(train_x, train_y, config.train_size, subset_key, "train_size")
    if config.test_size is not None:
        test_x, test_y = _subset(test_x, test_y, config.test_size, test_key, "test_size")
    val_size = len(train_x) // 12 if config.validation_size is None else config.validation_size
    order = np.asarray(jax.random.permutation(split_key, len(train_x)))
    train_x, train_y, val_x, val_y = split_train(train_x, train_y, val_size, order)
    return Splits(
        dataset.name, Split(train_x, train_y), Split(val_x, val_y), Split(test_x, test_y),
        dataset.train_images.shape[1:], dataset.num_classes,
    )  # fmt: skip


def load(config: Config, log: Log = print) -> Splits:
    """Read the config's data and split it with the data key of `config.split_seed`."""
    splits = split(config, read_dataset(config, log), root_keys(config.split_seed).data)
    if not config.full_batch and config.batch_size > len(splits.train.x):
        raise DataError(
            f"batch_size {config.batch_size} is larger than the "
            f"{len(splits.train.x)} training images"
        )
    return splits


def _subset(x: np.ndarray, y: np.ndarray, size: int, key: jax.Array, name: str):
    if size > len(x):
        raise DataError(f"{name} {size} is larger than the {len(x)} images available")
    keep = np.sort(np.asarray(jax.random.permutation(key, len(x)))[:size])
    return x[keep], y[keep]


def split_train(
    images: np.ndarray, labels: np.ndarray, validation_size: int, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split a training set in two by a permutation `order` of its indices.

    Returns:
        (train_images, train_labels, validation_images, validation_labels); the validation
        set is the first `validation_size` indices of `order`, the rest stay in training in
        their original order.
    """
    if validation_size >= len(images):
        raise DataError(
            f"validation_size {validation_size} leaves no training images (of {len(images)})"
        )
    held_out = np.zeros(len(images), dtype=bool)
    held_out[order[:validation_size]] = True
    val_idx = order[:validation_size]
    return images[~held_out], labels[~held_out], images[val_idx], labels[val_idx]
