"""Your own dataset: any four IDX files in MNIST's layout, and a model fitted to their shape.

Fashion-MNIST, KMNIST or a folder of your own digits ship as MNIST does: `train-images-idx3-ubyte`,
`train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (gzipped or raw).
`read_idx_folder` reads such a folder without MNIST's checksums: only its structure is checked
(magic, dimensions, sizes, images and labels agreeing), and the image size and the number of
classes come from the files. `fit_config` then writes them into the run's config, so the network
is built to fit and every checkpoint records the sizes it was trained for.

Why the choice is explicit (`dataset = "idx"`, or `--data DIR`) and not inferred from a
checksum mismatch: a corrupt or truncated MNIST download must stay an error, never quietly
become "your own dataset". Only `dataset = "mnist"` (with `--data-dir`, `$MNIST_JAX_DATA` or the
cache) promises MNIST, so only it demands MNIST's checksums.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mnist_jax.config import Config
from mnist_jax.data import mnist
from mnist_jax.data.idx import file_name, find_file, parse_idx, read_bytes
from mnist_jax.errors import DataError

FILES = tuple(file_name(split, kind) for split in mnist.SPLITS for kind in mnist.KINDS)


def read_idx_folder(folder: str | Path) -> mnist.Dataset:
    """Read the four IDX files of `folder` as a dataset of any image size and class count.

    A folder written by `mnist-jax data import` is verified against its own manifest, as
    `--data-dir` does; any other folder is checked for structure only.

    Args:
        folder: a folder holding the four files, `.gz` or raw.

    Returns:
        A Dataset named "idx:<folder name>": images (N, rows, cols) uint8, labels (N,) uint8
        in 0..num_classes - 1, where num_classes is one more than the largest training label.

    Raises:
        DataError: a file is missing or malformed, or the four files disagree (one line).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; an IDX dataset is a folder of {', '.join(FILES)}")
    manifest = mnist.read_manifest(folder)
    if manifest is not None:
        return mnist.read_folder(folder, manifest["name"], manifest["sha256"])
    arrays = {}
    for name in FILES:
        path = find_file(folder, name)
        if path is None:
            raise DataError(
                f"{folder}: missing {name}(.gz); an IDX dataset needs {', '.join(FILES)}"
            )
        arrays[name] = parse_idx(read_bytes(path), str(path))
    train_x, train_y, test_x, test_y = (arrays[name] for name in FILES)
    num_classes = check_agree(folder, train_x, train_y, test_x, test_y)
    return mnist.Dataset(
        f"idx:{folder.name}", str(folder), train_x, train_y, test_x, test_y, num_classes
    )


def check_agree(
    folder: Path, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> int:
    """Check that the four arrays make one dataset; return its number of classes.

    Images must be (N, rows, cols) with the same rows and cols in both splits, labels (N,) with
    one per image, at least two classes in training, and no test label above the largest
    training label (a class the model could never be built to predict).
    """
    images_train, labels_train, images_test, labels_test = FILES
    for name, array, ndim in (
        (images_train, train_x, 3), (labels_train, train_y, 1),
        (images_test, test_x, 3), (labels_test, test_y, 1),
    ):  # fmt: skip
        if array.ndim != ndim or len(array) == 0:
            what = "(N, rows, cols) images" if ndim == 3 else "(N,) labels"
            raise DataError(f"{folder}: {name} must hold {what}, N > 0; it has shape {array.shape}")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"{folder}: {images_train} holds {_size(train_x)} images but {images_test} "
            f"holds {_size(test_x)} images"
        )
    for images, labels, names in (
        (train_x, train_y, (images_train, labels_train)),
        (test_x, test_y, (images_test, labels_test)),
    ):
        if len(images) != len(labels):
            raise DataError(
                f"{folder}: {names[0]} holds {len(images)} images but {names[1]} "
                f"{len(labels)} labels"
            )
    top = int(train_y.max())
    if top < 1:
        raise DataError(
            f"{folder}: {labels_train} has only label 0; a classifier needs two classes"
        )
    if int(test_y.max()) > top:
        raise DataError(
            f"{folder}: {labels_test} has label {int(test_y.max())} but {labels_train} "
            f"only goes up to {top}"
        )
    return top + 1


def _size(images: np.ndarray) -> str:
    return "x".join(str(d) for d in images.shape[1:])


def fit_config(config: Config, image_shape: tuple[int, ...], num_classes: int, name: str) -> Config:
    """Return `config` with `input_size` and `num_classes` read from the data.

    Args:
        config: the run's config; a size it already states (a checkpoint's) must match.
        image_shape: one image's shape, e.g. (28, 28).
        num_classes: the number of classes of the data.
        name: the dataset's name, for the error message.

    Raises:
        DataError: the config was built for other sizes (e.g. a checkpoint evaluated on
            another dataset).
    """
    input_size = math.prod(image_shape)
    for key, value, what in (
        (
            "input_size",
            input_size,
            f"{'x'.join(map(str, image_shape))} images ({input_size} pixels)",
        ),
        ("num_classes", num_classes, f"{num_classes} classes"),
    ):
        stated = getattr(config, key)
        if stated is not None and stated != value:
            raise DataError(
                f"the data ({name}) has {what} but the model was built for {key} = {stated}; "
                "evaluate it on the data it was trained on"
            )
    if config.input_size == input_size and config.num_classes == num_classes:
        return config
    return config.replace(input_size=input_size, num_classes=num_classes)
