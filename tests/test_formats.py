"""The Kaggle CSV, one-hot CSV and .mat readers and writers, `data import` and `data export`."""

import contextlib
import gzip
import json
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mnist_jax import data
from mnist_jax.cli import app as cli
from mnist_jax.config import Config
from mnist_jax.data import convert, formats, mnist
from mnist_jax.errors import DataError, MnistJaxError
from tests.conftest import run_cli

SAMPLE = mnist.load_sample()


def small_dataset(train: int = 12, test: int = 5) -> mnist.Dataset:
    """A few real images of the bundled sample."""
    return mnist.Dataset(
        "small",
        "sample",
        SAMPLE.train_images[:train],
        SAMPLE.train_labels[:train],
        SAMPLE.test_images[:test],
        SAMPLE.test_labels[:test],
    )


@pytest.fixture
def format_files(tmp_path):
    """Each format written from a few real sample images: {"kaggle-csv": file, ...}."""
    small = small_dataset()
    kaggle = tmp_path / "train.csv"
    formats.write_kaggle_csv(kaggle, small.train_images, small.train_labels)
    onehot = tmp_path / "onehot"
    formats.write_onehot_csv(onehot, small)
    files = {"dataset": small, "kaggle-csv": kaggle, "onehot-csv": onehot}
    if _has_scipy():
        files["mat"] = tmp_path / "mnist-original.mat"
        formats.write_mat(files["mat"], small)
    return files


def _has_scipy() -> bool:
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        return False
    return True


def assert_same(a: mnist.Dataset, b: mnist.Dataset) -> None:
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert getattr(b, field).dtype == np.uint8


# ----------------------------------------------------------------------------- round trips


def test_kaggle_csv_round_trip_and_header(format_files):
    small = format_files["dataset"]
    raw = format_files["kaggle-csv"].read_bytes()
    assert raw.startswith(b"label,pixel0,pixel1,")
    assert raw.count(b"\n") == len(small.train_labels) + 1
    images, labels = formats.parse_kaggle_csv(raw, "train.csv")
    np.testing.assert_array_equal(images, small.train_images)
    np.testing.assert_array_equal(labels, small.train_labels)


def test_kaggle_dev_rows_become_the_test_split_chosen_by_seed(format_files):
    small = format_files["dataset"]
    first = formats.read_kaggle_csv(format_files["kaggle-csv"], seed=0, dev_rows=4)
    assert len(first.test_labels) == 4 and len(first.train_labels) == 8
    # Every row lands in exactly one split.
    rows = np.concatenate([first.train_images, first.test_images]).reshape(12, -1)
    original = small.train_images.reshape(12, -1)
    assert sorted(map(bytes, rows)) == sorted(map(bytes, original))
    other = formats.read_kaggle_csv(format_files["kaggle-csv"], seed=1, dev_rows=4)
    assert not np.array_equal(first.test_images, other.test_images)
    with pytest.raises(DataError, match="need more than the 12 dev rows"):
        formats.read_kaggle_csv(format_files["kaggle-csv"], dev_rows=12)


def test_onehot_csv_round_trip(format_files):
    read = formats.read_onehot_csv(format_files["onehot-csv"])
    assert_same(format_files["dataset"], read)
    labels = (format_files["onehot-csv"] / "test_label.csv").read_text().splitlines()
    assert labels[0].count("1") == 1 and len(labels[0].split(",")) == 10


def test_mat_round_trip_in_the_original_layout(format_files):
    pytest.importorskip("scipy")
    import scipy.io

    small = format_files["dataset"]
    assert_same(small, formats.read_mat(format_files["mat"]))
    raw = scipy.io.loadmat(format_files["mat"])
    assert raw["data"].shape == (784, 17) and raw["label"].shape == (1, 17)
    np.testing.assert_array_equal(raw["data"][:, 0].reshape(28, 28), small.train_images[0])


def test_mat_without_train_count_splits_60000_of_70000_and_rejects_other_sizes(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "bare.mat"
    scipy_io.savemat(path, {"data": np.zeros((784, 3), np.uint8), "label": np.zeros((1, 3))})
    with pytest.raises(DataError, match="cannot tell train from test"):
        formats.read_mat(path)
    assert formats._mat_train_count(None, 70_000, "x") == 60_000


def test_float_formatted_cells_are_accepted(tmp_path):
    # np.savetxt's default format, as a notebook might have written the files.
    table = np.eye(10)[[3, 1]]
    raw = "\n".join(",".join(f"{v:.18e}" for v in row) for row in table).encode()
    np.testing.assert_array_equal(formats.parse_onehot_labels(raw, "l.csv"), [3, 1])
    crlf = b"0,1,0,0,0,0,0,0,0,0\r\n1,0,0,0,0,0,0,0,0,0\r\n\r\n"
    np.testing.assert_array_equal(formats.parse_onehot_labels(crlf, "l.csv"), [1, 0])


# ----------------------------------------------------------------------------- bad input

ROW = ",".join(["7"] + ["0"] * 784)
HEAD = formats.KAGGLE_HEADER.decode() + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        (HEAD, "no data rows"),
        ("label,a,b\n" + ROW, "line 1 must be the header"),
        (ROW, "line 1 must be the header"),
        (HEAD + ROW + "\n" + ROW[:-2], "line 3 has 784 columns, expected 785"),
        (HEAD + ROW + "\n" + ROW + ",0", "line 3 has 786 columns"),
        (HEAD + ROW.replace(",0", ",x", 1), "line 2, column 2: 'x' is not a number"),
        (HEAD + ROW.replace(",0", ",", 1), "line 2, column 2: '' is not a number"),
        (HEAD + ROW + "\n\n" + ROW, "line 3 is empty"),
        (HEAD + ROW.replace(",0", ",256", 1), "line 2, column 2: pixel 256 is not a whole number"),
        (HEAD + ROW.replace(",0", ",-1", 1), "line 2, column 2: pixel -1"),
        (HEAD + ROW.replace(",0", ",0.5", 1), "pixel 0.5"),
        (HEAD + ROW.replace(",0", ",nan", 1), "pixel nan"),
        (HEAD + "10" + ROW[1:], "line 2, column 1: label 10 is not a whole number in 0..9"),
    ],
)
def test_malformed_kaggle_csv_names_file_line_and_problem(tmp_path, text, message):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        formats.read_kaggle_csv(path, dev_rows=0)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0,1,0,0,0,0,0,0,0,1", "line 2 is not one-hot"),
        ("0,2,0,0,0,0,0,0,0,0", "line 2 is not one-hot"),
        ("0,0,0,0,0,0,0,0,0,0", "line 2 is not one-hot"),
        ("0,0.5,0.5,0,0,0,0,0,0,0", "line 2 is not one-hot"),
        ("0,1,0", "line 2 has 3 columns, expected 10"),
    ],
)
def test_labels_that_are_not_one_hot_are_rejected(row, message):
    with pytest.raises(DataError, match=message):
        formats.parse_onehot_labels(b"1,0,0,0,0,0,0,0,0,0\n" + row.encode(), "train_label.csv")


def test_onehot_folder_problems_name_the_file(format_files):
    folder = format_files["onehot-csv"]
    lines = (folder / "test_label.csv").read_text().splitlines()
    (folder / "test_label.csv").write_text("\n".join(lines[:-1]))
    with pytest.raises(DataError, match="test_X.csv has 5 rows but test_label.csv 4"):
        formats.read_onehot_csv(folder)
    (folder / "train_X.csv").unlink()
    with pytest.raises(DataError, match="train_X.csv: file not found"):
        formats.read_onehot_csv(folder)
    with pytest.raises(DataError, match="not a folder"):
        formats.read_onehot_csv(folder / "test_label.csv")


def test_mat_problems_and_missing_scipy(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "m.mat"
    scipy_io.savemat(path, {"data": np.zeros((700, 3), np.uint8), "label": np.zeros((1, 3))})
    with pytest.raises(DataError, match=r"'data' must be \(784, N\)"):
        formats.read_mat(path)
    scipy_io.savemat(path, {"pixels": np.zeros((784, 3), np.uint8)})
    with pytest.raises(DataError, match="no numeric variable 'data'"):
        formats.read_mat(path)
    path.write_bytes(b"MATLAB 5.0 but not really")
    with pytest.raises(DataError, match="not a readable MATLAB v5 file"):
        formats.read_mat(path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if SciPy were not installed
    with pytest.raises(MnistJaxError, match=r"pip install 'mnist-jax\[mat\]'"):
        formats.read_mat(path)


@pytest.mark.parametrize("fmt", ["onehot-csv", "mat"])
def test_config_dataset_reads_its_data_path(format_files, fmt):
    if fmt not in format_files:
        pytest.skip("SciPy (the mat extra) is not installed")
    config = Config(dataset=fmt, data_path=str(format_files[fmt]))
    assert_same(format_files["dataset"], data.read_dataset(config))


def test_load_needs_a_data_path():
    with pytest.raises(MnistJaxError, match='dataset "kaggle-csv" needs data_path'):
        data.read_dataset(Config(dataset="kaggle-csv"))


# ----------------------------------------------------------------------------- fuzzing

VALID_KAGGLE = formats.KAGGLE_HEADER + b"\n" + ROW.encode() + b"\n" + ROW.encode() + b"\n"
VALID_LABELS = b"0,0,1,0,0,0,0,0,0,0\n1,0,0,0,0,0,0,0,0,0\n"


def mutate(raw: bytes, position: int, replacement: bytes, cut: bool) -> bytes:
    """Replace (or cut away) bytes at `position`: a small edit of a valid file."""
    position %= len(raw) + 1
    return raw[:position] if cut else raw[:position] + replacement + raw[position + 1 :]


fuzz_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        mutate,
        st.sampled_from([VALID_KAGGLE, VALID_LABELS]),
        st.integers(0, 10_000),
        st.sampled_from([b"", b",", b"\n", b"9", b"-", b".", b"e", b"\x00", b"\xff", b"\r"]),
        st.booleans(),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=fuzz_bytes)
def test_csv_parsers_either_parse_valid_arrays_or_raise_data_error(raw):
    with contextlib.suppress(DataError):
        images, labels = formats.parse_kaggle_csv(raw, "f.csv")
        assert images.dtype == np.uint8 and images.shape == (len(labels), 28, 28)
        assert labels.dtype == np.uint8 and labels.max() <= 9
    with contextlib.suppress(DataError):
        labels = formats.parse_onehot_labels(raw, "f.csv")
        assert labels.dtype == np.uint8 and labels.max() <= 9
    with contextlib.suppress(DataError):
        assert formats.parse_pixel_rows(raw, "f.csv").dtype == np.uint8


@pytest.fixture(scope="module")
def valid_mat() -> bytes:
    pytest.importorskip("scipy")
    return formats.encode_mat(small_dataset(3, 2))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, 100_000), replacement=st.binary(max_size=4), cut=st.booleans())
def test_mat_parser_either_parses_or_raises_data_error(valid_mat, position, replacement, cut):
    raw = mutate(valid_mat, position, replacement, cut)
    try:
        dataset = formats.parse_mat(raw, "m.mat")
    except DataError:
        return
    mnist.check_images_labels(dataset.train_images, dataset.train_labels, "mutated")
    assert dataset.test_images.dtype == np.uint8


# ----------------------------------------------------------------------------- import/export


def test_import_writes_verified_idx_that_data_dir_reads(format_files, tmp_path):
    folder = tmp_path / "imported"
    written = convert.write_idx_folder(folder, format_files["dataset"], "mat", "somewhere")
    assert sorted(p.name for p in written) == sorted(
        [f"{n}.gz" for n in mnist.MNIST_SHA256] + [mnist.IMPORT_MANIFEST]
    )
    assert all(p.parent == folder for p in written)
    dataset = mnist.load_mnist(folder, download=False)
    assert dataset.name == "imported-mat"
    assert_same(format_files["dataset"], dataset)
    # The manifest's checksums are enforced: a changed file is caught.
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="checksum mismatch"):
        mnist.load_mnist(folder, download=False)


def test_import_refuses_a_folder_of_foreign_mnist_files(format_files, tmp_path):
    folder = tmp_path / "canonical"
    convert.write_idx_folder(folder, format_files["dataset"], "mat", "x")
    (folder / mnist.IMPORT_MANIFEST).unlink()
    # Without the manifest the folder counts as canonical MNIST: strictly verified ...
    with pytest.raises(DataError, match="checksum mismatch"):
        mnist.load_mnist(folder, download=False)
    # ... and never overwritten by an import.
    with pytest.raises(DataError, match="did not write"):
        convert.import_dataset("onehot-csv", format_files["onehot-csv"], folder, log=print)


@pytest.mark.option("data import", "--format")
@pytest.mark.option("data import", "--data-dir")
@pytest.mark.parametrize("fmt", ["onehot-csv", "mat"])
def test_import_command_from_each_format(format_files, tmp_path, fmt):
    if fmt not in format_files:
        pytest.skip("SciPy (the mat extra) is not installed")
    folder = tmp_path / f"idx-{fmt}"
    args = ["data", "import", str(format_files[fmt]), "--format", fmt, "--data-dir", str(folder)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / mnist.IMPORT_MANIFEST).read_text())
    assert manifest["format"] == fmt and manifest["train"] == 12 and manifest["test"] == 5
    assert_same(format_files["dataset"], mnist.load_mnist(folder, download=False))


def test_kaggle_import_keeps_1000_dev_rows_as_test(tmp_path):
    path = tmp_path / "train.csv"
    formats.write_kaggle_csv(path, SAMPLE.train_images[:1010], SAMPLE.train_labels[:1010])
    folder = convert.import_dataset("kaggle-csv", path, tmp_path / "idx", seed=2, log=print)
    dataset = mnist.load_mnist(folder, download=False)
    assert (len(dataset.train_labels), len(dataset.test_labels)) == (10, 1000)
    assert_same(formats.read_kaggle_csv(path, seed=2), dataset)
    result = CliRunner().invoke(cli.app, ["data", "import", str(tmp_path / "no.csv"),
                                          "--format", "kaggle-csv"])  # fmt: skip
    assert result.exit_code == 2
    assert "no.csv: file not found" in result.output and "data export" in result.output


def test_export_kaggle_csv_draws_rows_by_seed(tmp_path):
    small = small_dataset(train=40)
    paths = convert.export_dataset("kaggle-csv", tmp_path / "k.csv", small, seed=5, rows=30)
    images, labels = formats.parse_kaggle_csv(paths[0].read_bytes(), "k.csv")
    chosen = np.random.default_rng(5).permutation(40)[:30]
    np.testing.assert_array_equal(images, small.train_images[chosen])
    np.testing.assert_array_equal(labels, small.train_labels[chosen])
    with pytest.raises(DataError, match="cannot draw 41 rows from 40"):
        convert.export_dataset("kaggle-csv", tmp_path / "k.csv", small, rows=41)


def test_export_command_bad_format_is_one_error_line(tmp_path):
    result = run_cli(["data", "export", "--format", "xlsx", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "'xlsx' is not one of 'kaggle-csv', 'onehot-csv', 'mat'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- --data PATH


def test_data_path_format_is_told_from_the_file(format_files, tmp_path):
    expected = {"kaggle-csv": "kaggle-csv", "onehot-csv": "onehot-csv", "mat": "mat"}
    for key, fmt in expected.items():
        if key in format_files:
            assert data.detect_format(format_files[key])[0] == fmt
    idx_folder = tmp_path / "idx"
    convert.write_idx_folder(idx_folder, small_dataset(), "kaggle-csv", "test")
    assert data.detect_format(idx_folder)[0] == "idx"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir() or p, "cannot tell the data format"),
        (lambda p: (p.write_text("1,2,3\n4,5,6\n"), p)[1], "cannot tell the data format"),
        (lambda p: p, "data file not found"),
    ],
    ids=["empty folder", "headerless csv", "missing"],
)
def test_a_data_path_whose_format_cannot_be_told_is_one_error_line(tmp_path, make, message):
    path = make(tmp_path / "thing")
    result = run_cli(["train", "--data", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert message in result.stderr and str(path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.long
def test_seed_kaggle_config_trains_on_a_kaggle_csv_given_with_data(tmp_path):
    csv = tmp_path / "train.csv"
    formats.write_kaggle_csv(csv, SAMPLE.train_images[:1400], SAMPLE.train_labels[:1400])
    result = run_cli(
        [
            "train", "-c", "configs/seed-kaggle-10.toml", "--data", str(csv), "--epochs", "20",
            "--out", str(tmp_path / "run"), "--json",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "kaggle-csv"
    assert summary["config"]["data_path"] == str(csv)
    assert summary["epochs"] == 20
