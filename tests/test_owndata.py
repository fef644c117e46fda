"""Your own IDX dataset: read without MNIST's checksums, sizes from the files, a model to fit."""

import gzip
import json

import numpy as np
import pytest
from conftest import run_cli

from mnist_jax import architecture
from mnist_jax.config import Config
from mnist_jax.data import idx, mnist, owndata
from mnist_jax.errors import DataError
from mnist_jax.records import checkpoint

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = owndata.FILES


def strokes(count: int, size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw `count` images (count, size, size) uint8 of one line each; its angle is the class.

    Class c is a stroke at angle pi * c / classes through a point near the centre, of random
    length, shift and brightness, on a faintly noisy background.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    angle = np.pi * labels / classes + rng.normal(0, 0.05, count)
    centre = size / 2 + rng.uniform(-size / 10, size / 10, (count, 2))
    half = rng.uniform(0.25, 0.45, count) * size
    t = np.linspace(-1, 1, 4 * size)  # (points,)
    rows = centre[:, :1] + np.sin(angle)[:, None] * half[:, None] * t  # (count, points)
    cols = centre[:, 1:] + np.cos(angle)[:, None] * half[:, None] * t
    images = rng.integers(0, 40, (count, size, size)).astype(np.uint8)
    r = np.clip(np.round(rows).astype(int), 0, size - 1)
    c = np.clip(np.round(cols).astype(int), 0, size - 1)
    which = np.repeat(np.arange(count), t.size)
    images[which, r.ravel(), c.ravel()] = np.repeat(rng.integers(180, 256, count), t.size)
    return images, labels.astype(np.uint8)


def write_idx(folder, train, test, gz=True):
    """Write (images, labels) pairs as the four IDX files of `folder`; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(owndata.FILES, (*train, *test)):
        raw = idx.encode_idx(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
        else:
            (folder / name).write_bytes(raw)
    return folder


def stroke_folder(folder, size, classes, train=600, test=200):
    return write_idx(
        folder, strokes(train, size, classes, seed=1), strokes(test, size, classes, seed=2)
    )


def one_error_line(result, *parts):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


TRAIN_ARGS = ["--hidden", "64", "--epochs", "8", "--batch-size", "32", "--lr", "0.3", "--json"]


@pytest.mark.parametrize(("size", "classes"), [(28, 10), (16, 3)])
@pytest.mark.long
def test_an_idx_dataset_that_is_not_mnist_trains_and_evaluates_from_the_cli(
    tmp_path, size, classes
):
    folder = stroke_folder(tmp_path / "strokes", size, classes)
    run = tmp_path / "run"
    result = run_cli(["train", "--data", str(folder), "--out", str(run), *TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "idx:strokes"
    # The network was built from the data, and the checkpoint says so for eval and predict.
    saved = checkpoint.load(run).config
    assert (saved.input_size, saved.num_classes) == (size * size, classes)
    assert architecture.layer_sizes(saved) == (size * size, 64, classes)
    # Far above chance (1 / classes): the images, labels and sizes all reached the model.
    assert summary["test_accuracy"] > 0.5 + 0.5 / classes
    evaluated = run_cli(["eval", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["count"] == 200
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert np.asarray(report["confusion"]).shape == (classes, classes)


@pytest.mark.long
def test_a_model_of_other_sized_images_cannot_read_image_files(tmp_path):
    folder = stroke_folder(tmp_path / "small", 16, 3, train=64, test=16)
    run = tmp_path / "run"
    args = ["--hidden", "8", "--epochs", "1", "--batch-size", "16"]
    assert run_cli(["train", "--data", str(folder), "--out", str(run), *args]).exit_code == 0
    image = tmp_path / "digit.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    one_error_line(run_cli(["predict", str(run), str(image)]), "256 pixels", "28x28")
    # Evaluating it on data of another size is one line too, not a shape error from JAX.
    other = stroke_folder(tmp_path / "other", 28, 3, train=64, test=16)
    one_error_line(run_cli(["eval", str(run), "--data", str(other)]), "28x28", "input_size")


def _disagreeing(case):
    train_x, train_y = strokes(20, 12, 3, seed=1)
    test_x, test_y = strokes(10, 12, 3, seed=2)
    if case == "counts":
        train_y = train_y[:-1]
    elif case == "sizes":
        test_x = strokes(10, 14, 3, seed=2)[0]
    elif case == "classes":
        test_y = test_y.copy()
        test_y[0] = 7
    elif case == "dims":
        train_y = train_y.reshape(4, 5)
    elif case == "one class":
        train_y = np.zeros_like(train_y)
    return (train_x, train_y), (test_x, test_y)


DISAGREE = {
    "counts": (TRAIN_IMAGES, "20 images", "19 labels"),
    "sizes": (TRAIN_IMAGES, "12x12", "14x14"),
    "classes": (TEST_LABELS, "label 7", "up to 2"),
    "dims": (TRAIN_LABELS, "(N,) labels", "(4, 5)"),
    "one class": (TRAIN_LABELS, "only label 0"),
}


@pytest.mark.parametrize("case", sorted(DISAGREE))
def test_four_files_that_disagree_are_one_error_line(tmp_path, case):
    folder = write_idx(tmp_path / "bad", *_disagreeing(case), gz=False)
    result = run_cli(["train", "--data", str(folder), "--out", str(tmp_path / "run")])
    one_error_line(result, str(folder), *DISAGREE[case])
    assert not (tmp_path / "run" / checkpoint.FILE_NAME).exists()


def test_a_missing_file_names_all_four(tmp_path):
    folder = write_idx(tmp_path / "three", *_disagreeing("none"))
    (folder / f"{TEST_LABELS}.gz").unlink()
    with pytest.raises(DataError, match=f"missing {TEST_LABELS}") as info:
        owndata.read_idx_folder(folder)
    assert all(name in str(info.value) for name in owndata.FILES)


def test_an_idx_folder_reads_without_mnist_checksums_but_mnist_demands_them(tmp_path):
    folder = stroke_folder(tmp_path / "mine", 28, 10, train=20, test=10)
    dataset = owndata.read_idx_folder(folder)
    assert dataset.train_images.shape == (20, 28, 28) and dataset.num_classes == 10
    result = run_cli(["train", "--data-dir", str(folder), "--out", str(tmp_path / "run")])
    actual = idx.sha256(idx.encode_idx(dataset.train_images))
    # What differed (which file, which sums) and what to do for another dataset.
    one_error_line(
        result, f"{TRAIN_IMAGES}.gz", "checksum mismatch", actual, mnist.MNIST_SHA256[TRAIN_IMAGES],
        f"use --data {folder}", "Fashion-MNIST",
    )  # fmt: skip


def test_mnist_of_another_shape_says_how_to_train_on_it(tmp_path):
    folder = write_idx(tmp_path / "mine", *_disagreeing("none"))
    with pytest.raises(DataError, match=r"\(N, 28, 28\), got \(20, 12, 12\); not MNIST\? to train"):
        mnist.load_mnist(folder, download=False)


def test_the_dataset_option_idx_reads_data_dir_too(tmp_path):
    from mnist_jax import data

    folder = write_idx(tmp_path / "mine", *_disagreeing("none"))
    splits = data.load(Config(dataset="idx", data_dir=str(folder), validation_size=2, batch_size=4))
    assert splits.image_shape == (12, 12) and splits.num_classes == 3
    with pytest.raises(DataError, match="needs the folder"):
        data.load(Config(dataset="idx"))


def test_fit_config_fills_the_sizes_once_and_then_holds_them():
    fitted = owndata.fit_config(Config(), (16, 16), 3, "x")
    assert (fitted.input_size, fitted.num_classes) == (256, 3)
    assert owndata.fit_config(fitted, (16, 16), 3, "x") is fitted
    with pytest.raises(DataError, match="num_classes = 3"):
        owndata.fit_config(fitted, (16, 16), 10, "x")
