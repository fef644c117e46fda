"""Bounded resources: hostile files and oversized runs end in one line, in bounded memory.

Each hostile file is built here, small on disk (a gzip or zlib stream of zeros written in
chunks), and given to the real CLI in a child process whose peak memory is read with
`os.wait4`; the child must exit 2 with one `error:` line and no traceback.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from mnist_jax import config
from mnist_jax.config import from_dict
from mnist_jax.errors import MnistJaxError
from mnist_jax.records import checkpoint
from mnist_jax.training import memory
from tests.conftest import SMOKE, run_cli

SAMPLE = Path(__file__).resolve().parents[1] / "mnist_jax" / "sample"
MB = 1 << 20
CHILD_TIMEOUT_S = 120


# The child reports its own peak: ru_maxrss from wait4 is no good here, since Linux carries the
# parent's high-water mark (pytest's, hundreds of MB) into a child across fork and exec.
# VmHWM belongs to the child's own address space, which exec makes new.
REPORT_PEAK = """
import atexit, runpy, sys

def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("peak-rss-kb " + line.split()[1] + "\\n")

atexit.register(report)
sys.argv[0] = "mnist-jax"
runpy.run_module("mnist_jax", run_name="__main__")
"""


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """Run the CLI with ARGS in a child; return (exit code, stderr, the child's peak RSS)."""
    child = subprocess.Popen(
        [sys.executable, "-c", REPORT_PEAK, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
    )
    killer = threading.Timer(CHILD_TIMEOUT_S, child.kill)
    killer.start()
    try:
        stderr = child.stderr.read().decode()
        child.wait()
    finally:
        killer.cancel()
        child.stderr.close()
    peaks = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("peak-rss-kb")]
    assert peaks, stderr[-2000:]
    return child.returncode, stderr, peaks[-1] * 1024


def assert_one_line(code: int, stderr: str, *needles: str) -> str:
    """Exit 2, no traceback, and one `error:` line holding every needle."""
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def zeros_gzip(path: Path, head: bytes, zeros: int) -> None:
    """Write gzip of `head` then `zeros` zero bytes, streamed through zlib 1 MiB at a time."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip wrapper
    block = bytes(MB)
    with path.open("wb") as f:
        f.write(squeeze.compress(head))
        for _ in range(zeros // MB):
            f.write(squeeze.compress(block))
        f.write(squeeze.flush())


def idx_head(*shape: int) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def mnist_folder(tmp_path: Path, images: bytes | None = None, zeros: int = 0) -> Path:
    """The bundled sample's four files, the training images replaced by a hostile gzip."""
    folder = tmp_path / "data"
    folder.mkdir()
    for source in SAMPLE.iterdir():
        (folder / source.name).write_bytes(source.read_bytes())
    zeros_gzip(folder / "train-images-idx3-ubyte.gz", images, zeros)
    return folder


@pytest.mark.long
def test_a_gzip_inflating_far_past_its_honest_header_stops_at_the_header(tmp_path):
    # 60,000 images honestly declared (47 MB), then 1 GiB of zeros: a few MB on disk.
    folder = mnist_folder(tmp_path, idx_head(60_000, 28, 28), 1024 * MB)
    assert (folder / "train-images-idx3-ubyte.gz").stat().st_size < 3 * MB
    code, err, peak = run_child(["train", "--data-dir", str(folder), "--out", str(tmp_path / "r")])
    assert_one_line(code, err, "train-images-idx3-ubyte.gz", "(60000, 28, 28)", "more bytes")
    assert peak < 600 * MB  # the interpreter and NumPy, plus the 47 MB the header claims


@pytest.mark.long
def test_an_idx_header_claiming_billions_of_images_is_refused_before_allocating(tmp_path):
    folder = mnist_folder(tmp_path, idx_head(4_000_000_000, 28, 28), 0)
    code, err, peak = run_child(["train", "--data-dir", str(folder), "--out", str(tmp_path / "r")])
    assert_one_line(code, err, "(4000000000, 28, 28)", "more than this machine can hold")
    assert peak < 500 * MB


@pytest.mark.long
def test_a_raw_idx_file_longer_than_its_header_names_both_sizes(tmp_path):
    folder = mnist_folder(tmp_path, idx_head(60_000, 28, 28), 0)
    raw = folder / "train-images-idx3-ubyte"
    (folder / "train-images-idx3-ubyte.gz").unlink()
    raw.write_bytes(idx_head(2, 28, 28) + bytes(3 * 784))
    code, err, _ = run_child(["train", "--data-dir", str(folder), "--out", str(tmp_path / "r")])
    assert_one_line(code, err, str(raw), "header says (2, 28, 28) (1584 bytes)", "2368 bytes")


@pytest.fixture
def small_checkpoint(tmp_path) -> Path:
    cfg = from_dict({"hidden": [8]})
    params = [
        {"w": np.zeros((784, 8), np.float32), "b": np.zeros(8, np.float32)},
        {"w": np.zeros((8, 10), np.float32), "b": np.zeros(10, np.float32)},
    ]
    path = tmp_path / "run" / checkpoint.FILE_NAME
    path.parent.mkdir()
    checkpoint.save(path, params, [], cfg, epoch=1)
    return path


def npy_head(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    """A format 1.0 .npy header declaring `shape` of `dtype`, padded to 64 bytes."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


@pytest.mark.long
def test_a_npy_claiming_a_billion_images_is_refused_before_allocating(tmp_path, small_checkpoint):
    fake = tmp_path / "digits.npy"
    fake.write_bytes(npy_head((1_000_000_000, 28, 28)) + bytes(784))
    code, err, peak = run_child(["predict", str(small_checkpoint), str(fake)])
    assert_one_line(code, err, str(fake), "(1000000000, 28, 28)", "784 bytes")
    assert peak < 600 * MB


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height gray pixels, with a token of image data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(1000)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [30_000, 8_000])  # past Pillow's guard; past ours only
@pytest.mark.long
def test_a_huge_png_is_refused_from_its_header(tmp_path, small_checkpoint, side):
    pytest.importorskip("PIL")
    png = tmp_path / "big.png"
    png.write_bytes(png_header_only(side, side))
    code, err, peak = run_child(["predict", str(small_checkpoint), str(png)])
    assert_one_line(code, err, str(png), "pixels")
    assert peak < 600 * MB


@pytest.mark.long
def test_a_checkpoint_member_larger_than_its_zip_entry_is_refused(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("params/0/w.npy", npy_head((1_000_000, 100_000), "<f4") + bytes(64))
    code, err, peak = run_child(["eval", str(path)])
    assert_one_line(code, err, str(path), "params/0/w.npy", "array header says 400.0 GB")
    assert peak < 600 * MB


def deflated_zeros_member(path: Path, name: str, head: bytes, zeros: int) -> None:
    """Write a zip whose one deflated member is `head` then `zeros` zero bytes (a multiple of
    1 MB), in about a thousandth of that, without compressing gigabytes.

    A full flush after each block of zeros resets the compressor, so every block compresses
    to the same bytes: one block is compressed and its output repeated. Sizes and CRC are
    true, in a zip64 entry, so a reader that inflated the member would get every byte.
    """
    block = 1_000_000
    assert zeros % block == 0
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as zip stores it
    first = squeeze.compress(head) + squeeze.flush(zlib.Z_FULL_FLUSH)
    repeat = squeeze.compress(bytes(block)) + squeeze.flush(zlib.Z_FULL_FLUSH)
    last = squeeze.flush()
    crc, zero = zlib.crc32(head), bytes(block)
    for _ in range(zeros // block):
        crc = zlib.crc32(zero, crc)
    size, packed = len(head) + zeros, len(first) + len(repeat) * (zeros // block) + len(last)
    sizes = struct.pack("<HHQQ", 1, 16, size, packed)  # the zip64 extra field
    raw, far = name.encode(), 0xFFFFFFFF  # 32-bit sizes say: see the zip64 field
    with path.open("wb") as f:
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, far, far,
                            len(raw), len(sizes)) + raw + sizes)  # fmt: skip
        f.write(first)
        for _ in range(zeros // block):
            f.write(repeat)
        f.write(last)
        directory = f.tell()
        entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc, far,
                            far, len(raw), len(sizes), 0, 0, 0, 0, 0) + raw + sizes  # fmt: skip
        f.write(entry)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(entry), directory, 0))


@pytest.fixture(scope="module")
def hostile_checkpoint(tmp_path_factory) -> Path:
    """A 784-32-10 run's checkpoint whose first weight declares 30000x30000 float32 zeros."""
    folder = tmp_path_factory.mktemp("hostile")
    honest = folder / "honest.npz"
    cfg = from_dict({"hidden": [32], "input_size": 784, "num_classes": 10})
    params = [
        {"w": np.zeros((784, 32), np.float32), "b": np.zeros(32, np.float32)},
        {"w": np.zeros((32, 10), np.float32), "b": np.zeros(10, np.float32)},
    ]
    checkpoint.save(honest, params, [], cfg, epoch=1)
    path = folder / "run" / checkpoint.FILE_NAME
    path.parent.mkdir()
    deflated_zeros_member(path, "params/0/w.npy", npy_head((30_000, 30_000), "<f4"), 3_600_000_000)
    with zipfile.ZipFile(honest) as source, zipfile.ZipFile(path, "a") as archive:
        for name in source.namelist():
            if name != "params/0/w.npy":
                archive.writestr(name, source.read(name))
    return path


def test_the_hostile_checkpoint_really_declares_gigabytes_in_a_few_megabytes(hostile_checkpoint):
    assert hostile_checkpoint.stat().st_size < 5 * MB
    with zipfile.ZipFile(hostile_checkpoint) as archive:
        member = archive.getinfo("params/0/w.npy")
        assert member.file_size == 30_000 * 30_000 * 4 + 128
        with archive.open(member) as f:  # the start inflates as any zip reader sees it
            assert f.read(128 + 4 * MB)[128:] == bytes(4 * MB)


@pytest.mark.parametrize(
    "command", [["eval"], ["predict", "DIGIT"], ["serve", "--port", "0"], ["theta", "export"]]
)
@pytest.mark.long
def test_a_checkpoint_member_larger_than_its_config_is_refused_before_inflating(
    hostile_checkpoint, tmp_path, command
):
    digit = tmp_path / "digit.npy"
    np.save(digit, np.zeros((28, 28), np.uint8))
    args = [a.replace("DIGIT", str(digit)) for a in command]
    args.insert(len(command) if command[0] == "theta" else 1, str(hostile_checkpoint))
    if command[0] == "theta":
        args += ["--out", str(tmp_path / "thetas")]
    code, err, peak = run_child(args)
    assert_one_line(code, err, "layer 0 w has shape (30000, 30000)", "asks for (784, 32)")
    assert peak < 300 * MB


@pytest.mark.long
def test_a_csv_that_inflates_past_the_limit_is_refused(tmp_path):
    path = tmp_path / "train.csv.gz"
    zeros_gzip(path, b"label," + b"0," * 100, 64 * MB)
    env = {"MNIST_JAX_MAX_BYTES": str(12 * MB)}  # a CSV may then take 1 MB
    args = ["train", "--dataset", "kaggle-csv", "--data", str(path), "--dry-run"]
    code, err, peak = run_child([*args, "--out", str(tmp_path / "r")], env)
    assert_one_line(code, err, str(path), "inflates past 1.0 MB")
    assert peak < 600 * MB


@pytest.mark.long
def test_a_mat_element_inflating_past_its_declared_size_is_refused(tmp_path):
    pytest.importorskip("scipy")
    inner = zlib.compressobj(9)
    stream = inner.compress(struct.pack("<II", 14, 1000))
    block = bytes(MB)
    stream += b"".join(inner.compress(block) for _ in range(256)) + inner.flush()
    header = b"MATLAB 5.0 MAT-file".ljust(124) + struct.pack("<H", 0x0100) + b"IM"
    path = tmp_path / "mnist.mat"
    path.write_bytes(header + struct.pack("<II", 15, len(stream)) + stream)
    args = ["train", "--data", str(path), "--dry-run", "--out", str(tmp_path / "r")]
    code, err, peak = run_child(args)
    assert_one_line(code, err, str(path), "declares 1.0 kB but inflates to more")
    assert peak < 600 * MB


def test_a_huge_toml_is_refused_without_parsing(tmp_path):
    path = tmp_path / "big.toml"
    path.write_bytes(b"# " + b"x" * (config.MAX_TOML_BYTES + 10) + b"\n")
    result = run_cli(["train", "--config", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "larger than" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.long
def test_a_model_too_large_for_the_machine_stops_before_allocating(tmp_path):
    args = ["train", "--config", str(SMOKE), "--hidden", "3000000", "--out", str(tmp_path / "r")]
    code, err, peak = run_child(args)
    line = assert_one_line(code, err, "not enough memory", "reduce")
    assert "GB" in line
    assert peak < 800 * MB
    assert not (tmp_path / "r" / checkpoint.FILE_NAME).exists()


@pytest.mark.long
def test_dry_run_shows_the_memory_plan_whose_parts_follow_the_config(tmp_path):
    result = run_cli(
        ["train", "--config", str(SMOKE), "--dry-run", "--json", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)["memory"]
    params = json.loads(result.stdout)["num_params"] * 4  # float32
    assert plan["bytes"]["parameters"] == params
    assert plan["bytes"]["gradients and update"] == 2 * params
    assert plan["total_bytes"] == sum(plan["bytes"].values())
    assert plan["fits"] is (plan["total_bytes"] <= plan["available_bytes"])
    text = run_cli(["train", "--config", str(SMOKE), "--dry-run", "--out", str(tmp_path / "r")])
    assert "memory     about" in text.stderr + text.stdout


def test_a_sweep_plans_for_all_its_models():
    cfg = from_dict({"hidden": [256], "optimizer": "momentum"})
    sizes = {"train": 1000, "validation": 0, "test": 100}
    one, four = memory.estimate(cfg, sizes), memory.estimate(cfg, sizes, models=4)
    assert four["parameters"] == 4 * one["parameters"]
    assert four["optimizer state"] == one["parameters"] * 4  # one momentum buffer per model
    assert four["dataset"] == one["dataset"]  # the models share the data


def test_an_out_of_memory_during_training_is_one_line_that_says_how_to_resume(
    tmp_path, monkeypatch
):
    from jax.errors import JaxRuntimeError

    from mnist_jax import api

    def exhausted(*args, **kwargs):
        raise JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 GB\nmore detail")

    monkeypatch.setattr(api, "train", exhausted)
    result = run_cli(["train", "--config", str(SMOKE), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "out of memory" in line and "nothing to resume" in line


MEASURE = """
import json, sys
import jax
import mnist_jax
from mnist_jax import data
from mnist_jax.training import memory
from mnist_jax.config import from_dict
from mnist_jax.errors import MnistJaxError
config = from_dict(json.loads(sys.argv[1]))
splits = data.load(config, log=lambda _: None)
def status(field):  # kB in /proc/self/status: VmRSS now, VmHWM the peak of this process
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
plan = memory.check_run(config, splits, jax.devices()[0])
mnist_jax.train(config, splits=splits, log=lambda _: None)
after = status("VmHWM")
from mnist_jax.training import trainer
compiled = trainer.build(config, splits).compiled_epoch_bytes()  # after the measurement
print(json.dumps({"growth": after - before, "estimate": plan.total, "compiled": compiled}))
"""


@pytest.mark.long
def test_the_estimate_is_within_a_factor_of_two_of_the_measured_peak():
    # Two 4096-wide layers: 20 M parameters, so the run's own arrays (about 270 MB by the
    # estimate) dominate JAX's compile-time overhead (about 90 MB on its own).
    values = {
        "dataset": "sample", "hidden": [4096, 4096], "train_size": 512, "test_size": 500,
        "validation_size": 0,
        "epochs": 1, "batch_size": 64, "eval_batch_size": 250,
    }  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(values)],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.5 < figures["growth"] / figures["estimate"] < 2.0, figures
    # JAX's own count covers one epoch's program (no evaluation, no compiler working memory):
    # a lower bound of the run's peak growth, and not a loose one.
    assert 0.25 < figures["compiled"] / figures["growth"] <= 1.1, figures


class CountingTrainer:
    """Stands in for a Trainer whose compiled epoch needs `compiled` bytes."""

    def __init__(self, compiled: int):
        self.compiled, self.asked = compiled, 0

    def compiled_epoch_bytes(self) -> int:
        self.asked += 1
        return self.compiled


def test_jax_count_decides_when_the_estimate_comes_close_to_the_offer():
    parts = {"parameters": 400 * MB}
    far = memory.MemoryPlan(parts, 1, "cpu:0", offer=4000 * MB, source="test")
    untouched = CountingTrainer(10_000 * MB)
    assert memory.check_compiled(far, untouched) is far and untouched.asked == 0
    close = memory.MemoryPlan(parts, 1, "cpu:0", offer=600 * MB, source="test")
    assert memory.check_compiled(close, CountingTrainer(300 * MB)).compiled == 300 * MB
    with pytest.raises(MnistJaxError, match="JAX's compiled epoch alone needs 734.0 MB"):
        memory.check_compiled(close, CountingTrainer(700 * MB))
