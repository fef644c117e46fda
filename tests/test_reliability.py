"""Bad input, interrupted runs and untrusted files: one clear line, nothing lost, nothing run.

Each bad input goes through the real command line (typer's CliRunner, and a few through a
real subprocess) and must end in exit code 2 and one `error:` line naming what is wrong.
The kill-and-resume tests start `python -m mnist_jax train` for real, stop it (SIGKILL,
SIGINT) mid-run, resume it, and compare with a run that was never interrupted.
"""

from __future__ import annotations

import errno
import gzip
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mnist_jax import api, architecture, files
from mnist_jax.cli import run
from mnist_jax.cli.app import app
from mnist_jax.config import Config, load_config
from mnist_jax.data import idx, mnist
from mnist_jax.errors import CheckpointError, ConfigError, DataError, Interrupted
from mnist_jax.records import checkpoint, rundir
from tests.conftest import ROOT, SMOKE, run_cli

runner = CliRunner()


def assert_one_error_line(result, *fragments: str, trained: bool = False) -> str:
    """Check exit code 2, no traceback, and one `error:` line holding every fragment.

    The error is the only line on stderr, or with `trained` the last one (after the epochs).
    """
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert len(lines) == 1 or (trained and not any(x.startswith("error") for x in lines[:-1]))
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


# ----------------------------------------------------------------------------- bad data files

IMAGES = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
LABELS = np.array([1, 2, 3], np.uint8)
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"


def write_mnist_folder(folder: Path, compress: bool = True, **replace: bytes) -> Path:
    """Write four small, well-formed IDX files (gzipped), with some replaced by raw bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        TRAIN_IMAGES: IMAGES,
        TRAIN_LABELS: LABELS,
        "t10k-images-idx3-ubyte": IMAGES,
        "t10k-labels-idx1-ubyte": LABELS,
    }
    for name, array in arrays.items():
        raw = idx.encode_idx(array)
        path = folder / (f"{name}.gz" if compress else name)
        path.write_bytes(
            replace.get(name.replace("-", "_"), gzip.compress(raw) if compress else raw)
        )
    return folder


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def flip_middle(raw: bytes) -> bytes:
    middle = len(raw) // 2
    return raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1 :]


GOOD_IMAGES = idx.encode_idx(IMAGES)
BAD_DATA = {
    "truncated gzip": (TRAIN_IMAGES, gz(GOOD_IMAGES)[:-20], "corrupt or truncated gzip"),
    "corrupted gzip": (TRAIN_IMAGES, flip_middle(gz(GOOD_IMAGES)), "corrupt or truncated gzip"),
    "wrong IDX magic": (TRAIN_IMAGES, gz(b"\x01\x02" + GOOD_IMAGES[2:]), "not an IDX file"),
    "count disagrees with size": (TRAIN_IMAGES, gz(GOOD_IMAGES[:-784]), "header says (3, 28, 28)"),
    "images and labels differ": (
        TRAIN_LABELS,
        gz(idx.encode_idx(LABELS[:2])),
        "3 images but 2 labels",
    ),
    "label outside 0..9": (
        TRAIN_LABELS,
        gz(idx.encode_idx(np.array([1, 2, 10], np.uint8))),
        "labels must be 0..9, found 10",
    ),
    "empty file": (TRAIN_IMAGES, b"", "too short to be an IDX file"),
    "empty gzip member": (TRAIN_IMAGES, gz(b""), "too short to be an IDX file"),
}


def train_args(data_dir: Path, out: Path) -> list[str]:
    return [
        "train", "--config", str(SMOKE), "--dataset", "mnist", "--data-dir", str(data_dir),
        "--out", str(out), "--no-progress",
    ]  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_broken_data_file_is_one_line_naming_the_file(case, tmp_path):
    name, content, message = BAD_DATA[case]
    folder = write_mnist_folder(tmp_path / "data")
    (folder / f"{name}.gz").write_bytes(content)
    result = runner.invoke(app, train_args(folder, tmp_path / "run"))
    line = assert_one_error_line(result, message)
    assert str(folder) in line
    assert not (tmp_path / "run" / checkpoint.FILE_NAME).exists()


def test_checksum_mismatch_names_the_file_expected_and_actual(tmp_path):
    folder = write_mnist_folder(tmp_path / "data")  # well-formed, but not MNIST's bytes
    result = runner.invoke(app, train_args(folder, tmp_path / "run"))
    actual = idx.sha256(GOOD_IMAGES)
    assert_one_error_line(
        result, f"{TRAIN_IMAGES}.gz", "checksum mismatch", mnist.MNIST_SHA256[TRAIN_IMAGES], actual
    )


def test_a_directory_where_a_file_belongs_is_named(tmp_path):
    folder = write_mnist_folder(tmp_path / "data")
    (folder / f"{TRAIN_IMAGES}.gz").unlink()
    (folder / f"{TRAIN_IMAGES}.gz").mkdir()
    result = runner.invoke(app, train_args(folder, tmp_path / "run"))
    assert_one_error_line(result, f"{TRAIN_IMAGES}.gz", "is a directory")


def test_a_missing_file_is_named(tmp_path):
    folder = write_mnist_folder(tmp_path / "data")
    (folder / f"{TRAIN_LABELS}.gz").unlink()
    result = runner.invoke(app, train_args(folder, tmp_path / "run"))
    assert_one_error_line(result, "does not hold the four MNIST IDX files", str(folder))


def test_an_unreadable_file_is_named_simulated(tmp_path, monkeypatch):
    # Root reads through chmod 000, so the refusal the kernel would give is simulated here;
    # the test below checks the real permission bits where they take effect.
    folder = write_mnist_folder(tmp_path / "data")
    locked = folder / f"{TRAIN_IMAGES}.gz"
    real_open = Path.open

    def open_(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    result = runner.invoke(app, train_args(folder, tmp_path / "run"))
    assert_one_error_line(result, str(locked), "permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_named_for_real(tmp_path):
    folder = write_mnist_folder(tmp_path / "data")
    locked = folder / f"{TRAIN_IMAGES}.gz"
    locked.chmod(0)
    try:
        result = runner.invoke(app, train_args(folder, tmp_path / "run"))
    finally:
        locked.chmod(0o644)
    assert_one_error_line(result, str(locked), "permission denied")


# ----------------------------------------------------------------------------- bad config


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(f'dataset = "sample"\n{text}\n')
    return path


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("hiden = [3]", "unknown config key 'hiden'; did you mean 'hidden'?"),
        ("batchsize = 10", "unknown config key 'batchsize'; did you mean 'batch_size'?"),
        ("epoch = 3", "did you mean 'epochs'?"),
        ('lr = "fast"', "config key 'lr' must be a number, got 'fast'"),
        ('hidden = "64"', "config key 'hidden' must be a list of integers"),
        ("hidden = [true]", "config key 'hidden' must be a list of integers"),
        ("momentum = true", "config key 'momentum' must be a number"),
        ("epochs = 2.5", "config key 'epochs' must be an integer"),
        ("seed = 1979-05-27", "config key 'seed' must be an integer"),
        ("lr = nan", "lr must be a positive number, got nan"),
        ("lr = inf", "lr must be a positive number, got inf"),
        ("warmup_epochs = inf", "warmup_epochs must be zero or positive"),
        ("seed = 9223372036854775807\ninit_low = -inf", "init_low and init_high must be finite"),
        ('activation = "relu6"', "unknown activation 'relu6'"),
        ('optimizer = "adam"', "unknown optimizer 'adam'"),
        ("hidden = [16, 0]", "hidden sizes must be positive integers, got [16, 0]"),
        ("hidden = [-4]", "hidden sizes must be positive integers"),
        ("[model]\nhidden = [4]", "unknown config key 'model'"),
        ("lr = [", "is not valid TOML"),
    ],
)
def test_bad_config_file_is_one_line_naming_the_key(toml, message, tmp_path):
    path = write_toml(tmp_path, toml)
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / "o")])
    assert_one_error_line(result, message)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "0"], "lr must be a positive number, got 0.0"),
        (["--lr", "-0.5"], "lr must be a positive number"),
        (["--epochs", "0"], "epochs must be a positive number, got 0"),
        (["--epochs", "-3"], "epochs must be a positive number, got -3"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--batch-size", "-5"], "batch_size must be a positive integer"),
        (["--batch-size", "half"], "--batch-size must be an integer or 'full'"),
        (["--batch-size", "9168"], "batch_size 9168 is larger than the 9167 training images"),
        (["--hidden", "0"], "hidden sizes must be positive integers, got [0]"),
        (["--hidden", "64,-1"], "hidden sizes must be positive integers, got [64, -1]"),
        (["--hidden", "1.5"], "--hidden must be comma-separated integers"),
        (["--seed", "-1"], "seed must be between 0 and 2**63 - 1"),
        (["--seed", str(2**64)], "seed must be between 0 and 2**63 - 1"),
        (["--dataset", "mnits"], "'mnits' is not one of 'mnist', 'sample'"),
        (["--optimizer", "adam"], "'adam' is not one of 'sgd', 'momentum'"),
        (["--epochs", "ten"], "Invalid value for '--epochs'"),
        (["--no-such-flag"], "No such option: --no-such-flag"),
    ],
)
def test_bad_flag_is_one_line_naming_the_value(flags, message, tmp_path):
    result = run_cli(["train", "--config", str(SMOKE), *flags, "--out", str(tmp_path / "o")])
    assert_one_error_line(result, message)


# ----------------------------------------------------------------------------- bad checkpoints

SMOKE_CONFIG = load_config(SMOKE)  # hidden (32,)


def fake_params(config: Config, fill: float = 0.01) -> list[dict[str, np.ndarray]]:
    sizes = architecture.layer_sizes(config)
    return [
        {"w": np.full((a, b), fill, np.float32), "b": np.zeros(b, np.float32)}
        for a, b in zip(sizes[:-1], sizes[1:])
    ]


def save_fake(folder: Path, config: Config = SMOKE_CONFIG, epoch: int = 1) -> Path:
    checkpoint.save(folder, fake_params(config), [np.int32(0)], config, epoch, dataset="x")
    return folder / checkpoint.FILE_NAME


def rewrite_npz(path: Path, **arrays: np.ndarray) -> None:
    """Replace or add arrays in an .npz written by `checkpoint.save`."""
    with np.load(path, allow_pickle=False) as npz:
        kept = {name: npz[name] for name in npz.files}
    kept.update(arrays)
    np.savez(path, **kept)


def meta_of(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz["meta"].tobytes())


def as_meta(info: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(info).encode(), np.uint8)


def deep_meta(depth: int) -> np.ndarray:
    """Metadata JSON whose config is nested `depth` lists deep."""
    text = '{"format_version": 1, "epoch": 1, "config": ' + "[" * depth + "]" * depth + "}"
    return np.frombuffer(text.encode(), np.uint8)


def long_number_meta() -> np.ndarray:
    """Metadata JSON whose epoch is an integer of 5,000 digits."""
    return np.frombuffer(b'{"format_version": 1, "epoch": ' + b"7" * 5000 + b"}", np.uint8)


def test_resume_with_another_architecture_names_the_shape(tmp_path):
    save_fake(tmp_path / "run")
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "run"), "--hidden", "64"])
    assert_one_error_line(
        result, "--resume", "layer 0 w has shape (784, 32)", "the config asks for (784, 64)"
    )
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "run"), "--hidden", "32,8"])
    assert_one_error_line(result, "has 2 layers, the config asks for 3")


def test_eval_of_a_checkpoint_whose_config_disagrees_with_its_arrays(tmp_path):
    path = save_fake(tmp_path)
    info = meta_of(path)
    info["config"]["hidden"] = [64]
    rewrite_npz(path, meta=as_meta(info))
    assert_one_error_line(runner.invoke(app, ["eval", str(tmp_path)]), "(784, 32)", "(784, 64)")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable"),
        (lambda p: p.write_bytes(b""), "not a readable checkpoint"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)), "not a readable checkpoint"),
        (lambda p: rewrite_npz(p, meta=np.frombuffer(b"\xff\xfe", np.uint8)), "no valid meta"),
        (lambda p: rewrite_npz(p, meta=as_meta({"format_version": 99})), "newer mnist-jax"),
        (lambda p: rewrite_npz(p, meta=as_meta([1, 2])), "no valid metadata"),
        # what Python's json refuses with other errors than JSONDecodeError
        (lambda p: rewrite_npz(p, meta=deep_meta(100_000)), "no valid metadata (nested too deep"),
        (lambda p: rewrite_npz(p, meta=long_number_meta()), "no valid metadata (Exceeds the limit"),
        (
            lambda p: rewrite_npz(p, **{"params/0/w": np.zeros((784, 32), np.float64)}),
            "layer 0 w is float64, the config asks for float32",
        ),
        (
            lambda p: rewrite_npz(p, **{"params/1/b": np.array(["a"] * 10)}),
            "layer 1 b is <U1",
        ),
        (lambda p: rewrite_npz(p, **{"opt/0": np.array(["x"])}), "non-numeric type"),
    ],
)
def test_damaged_checkpoint_is_one_line(damage, message, tmp_path):
    path = save_fake(tmp_path / "run")
    damage(path)
    for args in (["eval", str(tmp_path / "run")], ["train", "--resume", str(tmp_path / "run")]):
        assert_one_error_line(runner.invoke(app, args), message)


def test_resume_with_an_optimiser_state_that_does_not_fit(tmp_path):
    config = SMOKE_CONFIG.replace(optimizer="momentum")
    params = fake_params(config)
    # SGD with momentum keeps one trace per parameter array, then a step count
    leaves = [params[0]["b"], params[0]["w"], params[1]["b"], params[1]["w"], np.int32(0)]
    checkpoint.save(tmp_path / "short", params, leaves[:2], config, 1)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "short")])
    assert_one_error_line(result, "optimiser state does not fit this config")
    leaves[1] = leaves[1].T
    checkpoint.save(tmp_path / "shape", params, leaves, config, 1)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "shape")])
    assert_one_error_line(result, "optimiser array 1 has shape (32, 784)", "needs (784, 32)")


def test_resume_with_a_config_file_is_refused(tmp_path):
    save_fake(tmp_path / "run")
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "run"), "-c", str(SMOKE)])
    assert_one_error_line(result, "drop --config")


def test_resume_of_a_folder_without_a_checkpoint_is_one_line(tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert_one_error_line(result, "checkpoint not found", str(tmp_path))


# ----------------------------------------------------------------------------- real terminals


def mnist_jax(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m mnist_jax ARGS` in a fresh process, as a person's shell would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mnist_jax", *args],
        capture_output=True, text=True, env=env, timeout=120, **kwargs,
    )  # fmt: skip


@pytest.mark.long
def test_no_traceback_reaches_a_real_terminal(tmp_path):
    folder = write_mnist_folder(tmp_path / "data")
    (folder / f"{TRAIN_IMAGES}.gz").write_bytes(gz(GOOD_IMAGES)[:-20])
    bad_toml = write_toml(tmp_path, "hiden = [3]")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / checkpoint.FILE_NAME).write_bytes(b"PK\x05\x06 truncated")
    for args, message in [
        (train_args(folder, tmp_path / "r1"), "corrupt or truncated gzip"),
        (["train", "--config", str(bad_toml), "--out", str(tmp_path / "r2")], "did you mean"),
        (["eval", str(tmp_path / "ckpt")], "not a readable checkpoint"),
    ]:
        done = mnist_jax(*args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


# ----------------------------------------------------------------------------- fuzzing
# Every parser either returns a valid value or raises one of the project's own errors; any
# other exception escaping is a bug. MNIST_JAX_FUZZ_EXAMPLES raises the count per test (the
# default keeps the suite fast); derandomised so a failure reproduces.

FUZZ = settings(
    max_examples=int(os.environ.get("MNIST_JAX_FUZZ_EXAMPLES", "100")),
    derandomize="MNIST_JAX_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SAMPLE = mnist.load_sample()
IDX_SEEDS = (
    idx.encode_idx(SAMPLE.train_images[:2]),  # (2, 28, 28)
    idx.encode_idx(SAMPLE.train_labels[:64]),  # (64,)
    idx.encode_idx(SAMPLE.test_images[0, :4]),  # (4, 28): valid IDX, not MNIST-shaped
)


@st.composite
def mutations(draw, seeds: tuple[bytes, ...]) -> bytes:
    """A seed with 1-4 edits: bit flips, truncations, insertions, biased to the header."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.one_of(st.integers(0, 24), st.integers(0, max(0, len(raw)))))
        edit = draw(st.sampled_from(("flip", "set", "truncate", "insert", "delete")))
        if edit in ("flip", "set") and pos < len(raw):
            raw[pos] = (
                raw[pos] ^ draw(st.integers(1, 255))
                if edit == "flip"
                else draw(st.sampled_from((0, 1, 2, 3, 8, 9, 0x0D, 0x1F, 0x8B, 255)))
            )
        elif edit == "truncate":
            del raw[pos:]
        elif edit == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif edit == "delete":
            del raw[pos : pos + draw(st.integers(1, 64))]
    return bytes(raw)


def idx_or_data_error(raw: bytes) -> None:
    try:
        array = idx.parse_idx(raw, "fuzz")
    except DataError:
        return
    assert array.dtype == np.uint8 and array.ndim == raw[3]
    assert array.size == len(raw) - 4 - 4 * raw[3]


@FUZZ
@given(st.one_of(mutations(IDX_SEEDS), st.binary(max_size=64)))
def test_fuzz_parse_idx(raw):
    idx_or_data_error(raw)


@FUZZ
@given(
    st.one_of(
        mutations(IDX_SEEDS).map(gz),  # a broken IDX file, gzip intact
        mutations(tuple(gz(seed) for seed in IDX_SEEDS)),  # the gzip stream itself broken
        st.binary(max_size=64).map(lambda b: b"\x1f\x8b" + b),
    )
)
def test_fuzz_read_gzip_then_parse(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "fuzz-idx.gz"
    path.write_bytes(raw)
    try:
        unpacked = idx.read_bytes(path)
    except DataError:
        return
    assert isinstance(unpacked, bytes)
    idx_or_data_error(unpacked)


def checkpoint_seed(config: Config) -> bytes:
    buffer = io.BytesIO()
    arrays = {"meta": as_meta({"format_version": 1, "config": config.to_dict(), "epoch": 2})}
    for i, layer in enumerate(fake_params(config)):
        arrays |= {f"params/{i}/w": layer["w"], f"params/{i}/b": layer["b"]}
    np.savez(buffer, **arrays, **{"opt/0": np.int32(3)})
    return buffer.getvalue()


CKPT_SEEDS = (checkpoint_seed(Config(hidden=(1,))), checkpoint_seed(Config(hidden=(2, 1))))


def checkpoint_or_error(path: Path) -> None:
    try:
        loaded = checkpoint.load(path)
    except CheckpointError:
        return
    checkpoint.check_shapes(loaded.params, loaded.config, "fuzz")
    assert loaded.epoch >= 0 and isinstance(loaded.config, Config)


@FUZZ
@given(mutations(CKPT_SEEDS))
def test_fuzz_checkpoint_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "fuzz-ckpt.npz"
    path.write_bytes(raw)
    checkpoint_or_error(path)


def json_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    json_containers,
    max_leaves=8,
)
CONFIG_KEYS = st.sampled_from(sorted(Config.__dataclass_fields__)) | st.text(max_size=10)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(("format_version", "config", "epoch", "train_seconds")), JSON),
    st.dictionaries(CONFIG_KEYS, JSON, max_size=4),
)
def test_fuzz_checkpoint_meta(tmp_path_factory, meta, config_changes):
    """Crafted metadata: any JSON in the known fields and in the saved config."""
    path = tmp_path_factory.getbasetemp() / "fuzz-meta.npz"
    path.write_bytes(CKPT_SEEDS[0])
    meta = {"format_version": 1, "config": Config(hidden=(1,)).to_dict(), **meta}
    if isinstance(meta["config"], dict):
        meta["config"] = {**meta["config"], **config_changes}
    rewrite_npz(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    checkpoint_or_error(path)


TOML_VALUES = st.sampled_from(
    (
        "1", "-1", "0", "0.5", "-0.0", "1e400", "nan", "-inf", "9223372036854775807",
        "99999999999999999999", "true", '"relu"', '"full"', '"sigmoid"', '""', "[]", "[1, 2]",
        "[0]", "[1.5]", '["a"]', "[[1]]", "{a = 1}", "1979-05-27", "07:32:00", '"\\u0000"',
    )
)  # fmt: skip


@st.composite
def toml_text(draw) -> str:
    """A few `key = value` lines (valid keys and near misses), tables, and raw noise."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        key = draw(CONFIG_KEYS.map(lambda k: re.sub(r"[^A-Za-z0-9_-]", "", k) or "x"))
        lines.append(f"{key} = {draw(TOML_VALUES | st.text(max_size=6))}")
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), f"[{draw(st.text(max_size=5))}]")
    text = "\n".join(lines)
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.text(max_size=8)) + text[pos:]
    return text


@FUZZ
@given(st.one_of(toml_text(), st.text(max_size=40)), st.booleans())
def test_fuzz_load_config(tmp_path_factory, text, as_bytes):
    path = tmp_path_factory.getbasetemp() / "fuzz.toml"
    if as_bytes:
        path.write_bytes(text.encode("utf-8", "surrogatepass")[::-1])  # also invalid UTF-8
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path)
    except ConfigError:
        return
    assert isinstance(config, Config) and config == Config().replace(**config.to_dict())


# ----------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_checkpoint_write_keeps_the_previous_one(failing, tmp_path, monkeypatch):
    save_fake(tmp_path, epoch=1)
    before = (tmp_path / checkpoint.FILE_NAME).read_bytes()

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        save_fake(tmp_path, epoch=2)
    monkeypatch.undo()
    assert (tmp_path / checkpoint.FILE_NAME).read_bytes() == before
    assert checkpoint.load(tmp_path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.FILE_NAME]


# ----------------------------------------------------------------------------- kill and resume

RESUME_TOML = """
name = "resume"
dataset = "sample"
hidden = [256, 256]
epochs = 5
batch_size = 32
lr = 1.0  # the default 1.4 is tuned for one hidden layer at batch 128; this net diverges there
"""


@pytest.fixture(scope="module")
def resume_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "resume.toml"
    path.write_text(RESUME_TOML)
    return path


@pytest.fixture(scope="module")
def uninterrupted(resume_config) -> Path:
    """The reference: the same config trained start to finish without a break."""
    out = resume_config.parent / "uninterrupted"
    args = ["train", "--config", str(resume_config), "--out", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@contextmanager
def training(config: Path, out: Path):
    """Start `mnist-jax train` in the background; yield (process, stderr file); always reap."""
    err = out.parent / f"{out.name}.stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_jax", "train", "--config", str(config), "--out",
             str(out), "--no-progress"],
            stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        try:
            yield proc, err
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)


def wait_until(condition, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.005)


def metrics_without_seconds(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "examples_per_second")} for r in records
    ]


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Bitwise-equal parameters and optimiser state; equal losses, accuracies and summary."""
    a, b = checkpoint.load(resumed), checkpoint.load(reference)
    assert a.epoch == b.epoch
    for layer_a, layer_b in zip(a.params, b.params, strict=True):
        for name in ("w", "b"):
            assert layer_a[name].tobytes() == layer_b[name].tobytes()
    for leaf_a, leaf_b in zip(a.opt_leaves, b.opt_leaves, strict=True):
        assert leaf_a.tobytes() == leaf_b.tobytes()
    assert metrics_without_seconds(resumed) == metrics_without_seconds(reference)
    summaries = [json.loads((out / "summary.json").read_text()) for out in (resumed, reference)]
    for key in ("test_accuracy", "test_loss", "validation_accuracy", "train_loss", "epochs"):
        assert summaries[0][key] == summaries[1][key]


def resume(out: Path) -> None:
    """Finish an interrupted run (in this process: the interruption itself was real)."""
    result = runner.invoke(app, ["train", "--resume", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output


@pytest.mark.long
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(resume_config, uninterrupted):
    out = resume_config.parent / "killed"
    with training(resume_config, out) as (proc, _):
        wait_until((out / checkpoint.FILE_NAME).exists, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    saved = checkpoint.load(out).epoch
    assert 1 <= saved < 5
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 5, "train_lo')  # what a kill during the metrics append leaves
    stale = out / f".{checkpoint.FILE_NAME}.x1y2.tmp"  # ... and one during a checkpoint write
    stale.write_bytes(b"PK half written")
    resume(out)
    assert not stale.exists()
    assert_same_run(out, uninterrupted)


@pytest.mark.long
def test_ctrl_c_stops_at_an_epoch_boundary_and_resumes_to_the_same_run(
    resume_config, uninterrupted
):
    out = resume_config.parent / "interrupted"
    with training(resume_config, out) as (proc, err):
        wait_until((out / checkpoint.FILE_NAME).exists, proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 130
    stopped = checkpoint.load(out).epoch
    last = err.read_text().strip().splitlines()[-1]
    assert last == (
        f"error: stopped after epoch {stopped} of 5; continue with: mnist-jax train --resume {out}"
    )
    assert [r["epoch"] for r in metrics_without_seconds(out)] == list(range(1, stopped + 1))
    assert not (out / "summary.json").exists()
    resume(out)
    assert_same_run(out, uninterrupted)


@pytest.mark.long
def test_a_second_ctrl_c_ends_the_run_at_once_leaving_a_good_checkpoint(resume_config):
    out = resume_config.parent / "twice"
    with training(resume_config, out) as (proc, err):
        wait_until((out / checkpoint.FILE_NAME).exists, proc)
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: "Ctrl-C again" in err.read_text(), proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    # Killed by the signal itself, unless the epoch happened to end between the two presses
    # (the test below pins the second press without that race).
    assert proc.returncode in (-signal.SIGINT, 130)
    saved = checkpoint.load(out)
    assert 1 <= saved.epoch < 5
    assert all(np.isfinite(a).all() for layer in saved.params for a in layer.values())


# Waits for Ctrl-C the way a run does, with nothing to finish: a stop request is printed, and
# only a process that survives a second Ctrl-C reaches the last line (after 20 s, on its own).
INTERRUPTIBLE = """
import time
from mnist_jax.cli import run
with run.stop_on_interrupt() as should_stop:
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("stop requested" if should_stop() else "never asked to stop", flush=True)
    time.sleep(20)
    print("survived the second Ctrl-C", flush=True)
"""


@pytest.mark.long
def test_the_second_ctrl_c_ends_the_process_by_the_signal_whatever_it_is_doing():
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == "stop requested\n"  # the first press only asks
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the second Ctrl-C did not end the process")
        assert proc.returncode == -signal.SIGINT
        assert proc.stdout.read() == ""
        assert "press Ctrl-C again to quit at once" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.long
def test_a_stop_inside_an_epoch_drops_the_partial_epoch(tmp_path):
    config = load_config(SMOKE).replace(train_size=3000, validation_size=500)
    calls = []  # (steps done, steps per epoch) as the progress bar would see them

    def stop_midway_through_epoch_2() -> bool:
        epochs_done = sum(done == total for done, total in calls)
        done, total = calls[-1]
        return epochs_done == 1 and total > done >= total // 2

    quiet = {"log": lambda _: None, "progress": lambda *step: calls.append(step)}
    with pytest.raises(Interrupted, match="stopped during epoch 2 of 2"):
        api.train(config, tmp_path / "stopped", should_stop=stop_midway_through_epoch_2, **quiet)
    stopped = tmp_path / "stopped"
    assert calls[-1][0] < calls[-1][1]  # it did stop inside the epoch
    assert checkpoint.load(stopped).epoch == 1  # and the partial second epoch is not saved
    assert [r["epoch"] for r in metrics_without_seconds(stopped)] == [1]
    api.train(config, stopped, resume=checkpoint.load(stopped), **quiet)
    api.train(config, tmp_path / "whole", **quiet)
    assert_same_run(stopped, tmp_path / "whole")


# ----------------------------------------------------------------------------- divergence


@pytest.mark.long
def test_divergence_exits_2_and_keeps_the_last_finite_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--config", str(SMOKE), "--no-progress"]
    result = runner.invoke(app, [*args, "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    good = (out / checkpoint.FILE_NAME).read_bytes()
    resume = ["train", "--resume", str(out), "--epochs", "3", "--lr", "1e30"]
    result = runner.invoke(app, resume)
    assert_one_error_line(
        result, "diverged at epoch 2", "--lr 1e+29", f"{out} keeps epoch 1", trained=True
    )
    assert (out / checkpoint.FILE_NAME).read_bytes() == good
    kept = checkpoint.load(out)
    assert kept.epoch == 1
    assert all(np.isfinite(a).all() for layer in kept.params for a in layer.values())
    result = runner.invoke(app, [*resume, "--json"])  # the same facts, as one JSON document
    assert result.exit_code == 2
    facts = json.loads(result.stdout)
    assert facts["status"] == "diverged" and facts["epoch"] == 2 and facts["kept_epoch"] == 1
    assert facts["suggested_lr"] == 1e29 and facts["error"] in result.stderr
    assert (out / checkpoint.FILE_NAME).read_bytes() == good

    fresh = tmp_path / "fresh"
    result = runner.invoke(app, [*args, "--out", str(fresh), "--lr", "1e30"])
    assert_one_error_line(result, "diverged at epoch 1", "nothing was saved", trained=True)
    assert not (fresh / checkpoint.FILE_NAME).exists()  # nothing non-finite is ever saved


# ----------------------------------------------------------------------------- full disk


def test_the_advice_after_an_early_stop_depends_on_a_saved_epoch(tmp_path):
    assert (
        rundir.how_to_continue(tmp_path) == "no epoch was completed, so there is nothing to resume"
    )
    save_fake(tmp_path)
    assert rundir.how_to_continue(tmp_path) == f"continue with: mnist-jax train --resume {tmp_path}"


def test_too_little_free_space_is_reported_before_training(tmp_path, monkeypatch):
    usage = run.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(run.shutil, "disk_usage", lambda _: usage._replace(free=100_000))
    result = runner.invoke(app, ["train", "--config", str(SMOKE), "--out", str(tmp_path / "o")])
    assert_one_error_line(result, "not enough free space", "0.1 MB free")
    assert not (tmp_path / "o" / checkpoint.FILE_NAME).exists()


def test_an_unwritable_run_folder_is_reported_before_training(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        result = runner.invoke(app, ["train", "--config", str(SMOKE), "--out", str(out)])
        assert_one_error_line(result, f"cannot write to the run folder {out}")

    def read_only(self, content):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_bytes", read_only)  # root ignores chmod; simulate
    result = runner.invoke(app, ["train", "--config", str(SMOKE), "--out", str(tmp_path / "o")])
    assert_one_error_line(result, "cannot write to the run folder", "Read-only file system")


def test_a_disk_filling_up_mid_run_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_fsync = os.fsync
    checkpoint_writes = []

    def fsync(fd: int) -> None:
        if f".{checkpoint.FILE_NAME}." in os.readlink(f"/proc/self/fd/{fd}"):
            checkpoint_writes.append(fd)
            if len(checkpoint_writes) >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    result = runner.invoke(app, ["train", "--config", str(SMOKE), "--out", str(out)])
    assert_one_error_line(result, "No space left on device", f"--resume {out}", trained=True)
    assert checkpoint.load(out).epoch == 1
    assert not list(out.glob(".*.tmp"))


# ----------------------------------------------------------------------------- downloads


@contextmanager
def http_mirror(handler_body):
    """Serve `handler_body(handler)` on 127.0.0.1 for the block's duration, then stop."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            handler_body(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def cut_short(requests: list[str], source: Path | None):
    """A mirror that promises the whole file (Content-Length) but sends half and hangs up."""

    def serve(handler):
        requests.append(handler.path)
        name = handler.path.rsplit("/", 1)[-1]
        body = (source / name).read_bytes() if source else gz(GOOD_IMAGES)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return serve


def test_a_download_cut_short_leaves_nothing_that_looks_complete(tmp_path):
    requests = []
    with (
        http_mirror(cut_short(requests, None)) as url,
        pytest.raises(DataError, match="download cut short") as info,
    ):
        mnist.fetch(tmp_path / "cache", mirrors=(url,), timeout=5, log=lambda _: None)
    assert requests and "train-images-idx3-ubyte.gz" in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.long  # full MNIST: `make test-long`, after the main suite
def test_a_download_cut_short_continues_with_the_next_mirror(tmp_path, full_mnist):
    requests = []
    with http_mirror(cut_short(requests, full_mnist)) as url:
        good = full_mnist.resolve().as_uri() + "/"
        mnist.fetch(tmp_path / "cache", mirrors=(url, good), timeout=5, log=lambda _: None)
    assert len(requests) == 4  # each file was tried on the broken mirror first
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == sorted(f"{name}.gz" for name in mnist.MNIST_SHA256)
    mnist.read_folder(tmp_path / "cache", "mnist", mnist.MNIST_SHA256)  # verified complete


# ----------------------------------------------------------------------------- untrusted files


def test_the_package_never_unpickles_or_evaluates_code():
    forbidden = re.compile(
        r"allow_pickle\s*=\s*True|\b(import|from)\s+(c?pickle|marshal|shelve|dill)\b"
        r"|\bpickle\.|\b(eval|exec|__import__)\("
    )
    sources = sorted((ROOT / "mnist_jax").rglob("*.py"))
    assert len(sources) >= 8
    for path in sources:
        text = path.read_text()
        assert not forbidden.search(text), f"{path}: {forbidden.search(text).group()}"
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, f"{path}: {call}"


def pickled(marker: Path) -> bytes:
    """An .npy member holding an object array whose unpickling would create `marker`."""

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    np.save(buffer, np.array([Exploit()], dtype=object), allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("member", ["meta.npy", "params/0/w.npy", "params/1/b.npy"])
def test_a_crafted_pickle_in_any_member_is_never_executed(member, tmp_path):
    marker = tmp_path / "pwned"
    path = save_fake(tmp_path / "run")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = pickled(marker)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    for args in (["eval", str(tmp_path / "run")], ["train", "--resume", str(tmp_path / "run")]):
        assert_one_error_line(runner.invoke(app, args), "not a readable checkpoint")
    assert not marker.exists()


def test_archive_member_paths_never_reach_the_disk(tmp_path):
    path = save_fake(tmp_path / "run")
    member = io.BytesIO()
    np.save(member, np.arange(3))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("../../escaped.npy", member.getvalue())
        archive.writestr("/tmp/absolute.npy", member.getvalue())
    before = sorted(str(p) for p in tmp_path.parent.rglob("*"))
    assert checkpoint.load(path).epoch == 1  # unknown members are read into memory and ignored
    assert sorted(str(p) for p in tmp_path.parent.rglob("*")) == before
    assert not Path("/tmp/absolute.npy").exists()


@pytest.mark.long  # full MNIST: `make test-long`, after the main suite
def test_a_mirror_cannot_steer_where_a_download_is_written(tmp_path, full_mnist):
    def serve(handler):
        name = handler.path.rsplit("/", 1)[-1]
        body = (full_mnist / name).read_bytes()
        handler.send_response(200)
        handler.send_header("Content-Disposition", 'attachment; filename="../../escaped.gz"')
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    target = tmp_path / "a" / "cache"
    with http_mirror(serve) as url:
        mnist.fetch(target, mirrors=(url + "x/../../y/%2e%2e/",), timeout=10, log=lambda _: None)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f"a/cache/{name}.gz" for name in mnist.MNIST_SHA256)
