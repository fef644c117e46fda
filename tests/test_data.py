import gzip

import numpy as np
import pytest

from mnist_jax import data, files
from mnist_jax.config import Config
from mnist_jax.data import idx, mnist
from mnist_jax.errors import ConfigError, DataError


def test_idx_round_trip():
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    parsed = idx.parse_idx(idx.encode_idx(array))
    assert parsed.shape == (2, 28, 28)
    np.testing.assert_array_equal(parsed, array)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: b"\x01" + raw[1:], "not an IDX file"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "unsupported IDX element type"),
        (lambda raw: raw[:3] + b"\x00" + raw[4:], "zero dimensions"),
        (lambda raw: raw[:6], "truncated IDX header"),
        (lambda raw: raw[:-1], "header says"),
        (lambda raw: raw + b"\x00", "header says"),
        (lambda raw: b"", "too short"),
    ],
)
def test_malformed_idx_is_one_named_error(mutate, message):
    raw = idx.encode_idx(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=message) as info:
        idx.parse_idx(mutate(raw), "bad-file")
    assert "bad-file" in str(info.value)


def test_gzip_is_read_transparently_and_corruption_is_reported(tmp_path):
    raw = idx.encode_idx(np.ones((4,), np.uint8))
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(raw))
    assert idx.read_bytes(good) == raw
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(gzip.compress(raw)[:-6])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        idx.read_bytes(truncated)


def write_folder(folder, train_images, train_labels, test_images, test_labels):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in {
        "train-images-idx3-ubyte": train_images,
        "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": test_images,
        "t10k-labels-idx1-ubyte": test_labels,
    }.items():
        (folder / name).write_bytes(idx.encode_idx(array))
    return folder


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    labels = np.array([1, 2, 3], np.uint8)
    folder = write_folder(tmp_path / "fake", images, labels, images, labels)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        mnist.read_folder(folder, "mnist", mnist.MNIST_SHA256)
    assert "train-images-idx3-ubyte" in str(info.value)
    assert mnist.MNIST_SHA256["train-images-idx3-ubyte"] in str(info.value)


def test_inconsistent_images_and_labels_are_rejected(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    folder = write_folder(
        tmp_path / "a", images, np.array([1, 2], np.uint8), images, np.zeros(3, np.uint8)
    )
    with pytest.raises(DataError, match="3 images but 2 labels"):
        mnist.read_folder(folder, "x", None)
    folder = write_folder(
        tmp_path / "b", images, np.array([1, 2, 12], np.uint8), images, np.zeros(3, np.uint8)
    )
    with pytest.raises(DataError, match="labels must be 0..9"):
        mnist.read_folder(folder, "x", None)


def test_bundled_sample_is_real_mnist_shaped_and_stratified():
    sample = mnist.load_sample()
    assert sample.name == "mnist-sample"
    assert sample.train_images.shape == (10_000, 28, 28)
    assert sample.test_images.shape == (2_000, 28, 28)
    assert sample.train_images.dtype == np.uint8
    counts = np.bincount(sample.train_labels, minlength=10)
    assert counts.sum() == 10_000 and counts.min() > 850 and counts.max() < 1_150
    assert sum(p.stat().st_size for p in mnist.SAMPLE_DIR.glob("*.gz")) <= 2.5e6


@pytest.mark.long  # full MNIST: `make test-long`, after the main suite
def test_shipped_sample_equals_its_derivation_from_the_full_files(full_mnist):
    derived = mnist.derive_sample(mnist.read_folder(full_mnist, "mnist", mnist.MNIST_SHA256))
    shipped = mnist.load_sample()
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(shipped, field), getattr(derived, field))


def test_stratified_indices_keep_class_shares():
    labels = np.repeat(np.arange(10), np.arange(1, 11) * 100).astype(np.uint8)  # 5,500 labels
    chosen = mnist.stratified_indices(labels, 1_000, seed=3)
    assert len(chosen) == 1_000 and len(np.unique(chosen)) == 1_000
    assert np.all(np.diff(chosen) > 0)
    share = np.bincount(labels[chosen], minlength=10) / 1_000
    expected = np.bincount(labels, minlength=10) / len(labels)
    assert np.abs(share - expected).max() <= 1 / 1_000


def test_split_is_disjoint_and_complete():
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1)
    labels = np.arange(20, dtype=np.uint8) % 10
    order = np.random.default_rng(0).permutation(20)
    tx, ty, vx, vy = data.split_train(images, labels, 5, order)
    assert len(tx) == 15 and len(vx) == 5
    assert sorted(np.concatenate([tx, vx]).ravel().tolist()) == list(range(20))
    with pytest.raises(DataError, match="leaves no training images"):
        data.split_train(images, labels, 20, order)


def _held_out(config):
    """The validation images and labels that `config` rebuilds from the bundled sample."""
    splits = data.load(config, log=lambda _: None)
    return splits.validation.x, splits.validation.y


def test_a_shared_data_seed_holds_out_the_same_images_whatever_the_seed():
    base = Config(dataset="sample", validation_size=500)
    own = [_held_out(base.replace(seed=s)) for s in (0, 1)]
    shared = [_held_out(base.replace(seed=s, data_seed=7)) for s in (0, 1)]
    assert not np.array_equal(own[0][0], own[1][0])  # each seed draws its own split
    np.testing.assert_array_equal(shared[0][0], shared[1][0])
    np.testing.assert_array_equal(shared[0][1], shared[1][1])
    # data_seed 7 is the split that seed 7 draws on its own
    np.testing.assert_array_equal(shared[0][0], _held_out(base.replace(seed=7))[0])


@pytest.mark.parametrize("value", [-1, 2**63])
def test_a_data_seed_out_of_range_is_one_named_error(value):
    with pytest.raises(ConfigError, match="data_seed must be between 0 and 2"):
        Config(data_seed=value)


def test_explicit_folder_without_files_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not hold the four MNIST IDX files"):
        mnist.load_mnist(tmp_path)


def test_offline_falls_back_to_the_sample_and_says_so(monkeypatch):
    monkeypatch.delenv("MNIST_JAX_DATA", raising=False)
    lines = []
    dataset = mnist.load_mnist(mirrors=("http://127.0.0.1:9/",), timeout=2.0, log=lines.append)
    assert dataset.name == "mnist-sample"
    assert any("bundled MNIST sample" in line and "mnist-jax data fetch" in line for line in lines)
    assert not any(p.name.endswith(".gz") for p in files.cache_dir().glob("*"))


@pytest.mark.long  # full MNIST: `make test-long`, after the main suite
def test_download_tries_mirrors_in_turn_and_verifies(tmp_path, full_mnist):
    broken = tmp_path / "broken-mirror"
    broken.mkdir()
    for name in mnist.MNIST_SHA256:  # a complete-looking but wrong file on the first mirror
        (broken / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    target = tmp_path / "cache"
    mnist.fetch(
        target,
        mirrors=(broken.as_uri() + "/", full_mnist.resolve().as_uri() + "/"),
        log=lambda _: None,
    )
    dataset = mnist.read_folder(target, "mnist", mnist.MNIST_SHA256)
    assert dataset.train_images.shape == (60_000, 28, 28)
    assert not list(target.glob(".*.tmp"))


def test_failed_download_leaves_nothing_that_looks_complete(tmp_path):
    broken = tmp_path / "mirror"
    broken.mkdir()
    for name in mnist.MNIST_SHA256:
        (broken / f"{name}.gz").write_bytes(b"\x1f\x8b not really gzip")
    target = tmp_path / "cache"
    with pytest.raises(DataError, match="could not fetch"):
        mnist.fetch(target, mirrors=(broken.as_uri() + "/",), log=lambda _: None)
    assert list(target.iterdir()) == []
