"""Atomic, pickle-free checkpoints: parameters, optimiser state and the resolved config.

A checkpoint is one `.npz` file. Its arrays are named `params/<layer>/<w|b>` and
`opt/<leaf index>`; one more array, `meta`, holds UTF-8 JSON: the format version, the
config, the number of epochs done and the dataset's name. It is loaded with
`allow_pickle=False`, so a crafted file cannot run code, and written through a temporary
file, fsync and rename, so a crash never leaves a half-written checkpoint in its place.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnist_jax.config import Config, config_from_json
from mnist_jax.errors import CheckpointError, ConfigError, MnistJaxError
from mnist_jax.files import atomic_write_bytes
from mnist_jax.limits import check_claim, npy_header, size_text

FORMAT_VERSION = 1
FILE_NAME = "checkpoint.npz"


class Checkpoint(NamedTuple):
    """What a checkpoint holds, as NumPy arrays and plain values."""

    params: list[dict[str, np.ndarray]]  # one {"w": (in, out), "b": (out,)} per layer
    opt_leaves: list[np.ndarray]  # the optimiser state's leaves, in tree order
    config: Config
    epoch: int  # epochs completed
    meta: dict[str, Any]  # everything else recorded (dataset, format version, ...)


def save(
    path: Path,
    params: list[dict[str, Any]],
    opt_leaves: list[Any],
    config: Config,
    epoch: int,
    **meta: Any,
) -> None:
    """Write a checkpoint to `path` atomically (a folder gets `checkpoint.npz` inside)."""
    arrays = {}
    for i, layer in enumerate(params):
        arrays[f"params/{i}/w"] = np.asarray(layer["w"])
        arrays[f"params/{i}/b"] = np.asarray(layer["b"])
    for i, leaf in enumerate(opt_leaves):
        arrays[f"opt/{i}"] = np.asarray(leaf)
    info = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "epoch": epoch, **meta}
    arrays["meta"] = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(resolve(path), buffer.getvalue())


def resolve(path: str | Path) -> Path:
    """Accept a checkpoint file or a run folder holding one."""
    path = Path(path)
    return path / FILE_NAME if path.is_dir() or path.suffix != ".npz" else path


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint without executing anything from it.

    Raises:
        CheckpointError: missing, truncated, not a checkpoint, or from a newer format.
    """
    path = resolve(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    check_members(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    try:
        info = json.loads(arrays.pop("meta").tobytes().decode())
        version = int(info["format_version"])
        epoch = int(info.get("epoch", 0))
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, AttributeError, OverflowError):
        raise CheckpointError(f"{path}: checkpoint has no valid metadata") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer mnist-jax (format {version}, this reads up to "
            f"{FORMAT_VERSION}); upgrade mnist-jax"
        )
    if epoch < 0:
        raise CheckpointError(f"{path}: checkpoint records a negative epoch count ({epoch})")
    try:
        config = config_from_json(json.dumps(info["config"]))
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"{path}: the saved config is invalid ({e})") from None
    num_layers = len(config.hidden) + 1
    try:
        params = [
            {"w": arrays[f"params/{i}/w"], "b": arrays[f"params/{i}/b"]} for i in range(num_layers)
        ]
    except KeyError as e:
        raise CheckpointError(f"{path}: missing parameter array {e}") from None
    try:
        opt_leaves = [arrays[f"opt/{i}"] for i in range(sum(k.startswith("opt/") for k in arrays))]
    except KeyError as e:
        raise CheckpointError(f"{path}: missing optimiser array {e}") from None
    check_shapes(params, config, str(path))
    check_dtypes(params, opt_leaves, config, str(path))
    return Checkpoint(params, opt_leaves, config, epoch, info)


MNIST_INPUT, MNIST_CLASSES = 784, 10  # what a config that leaves the sizes to the data assumes


def check_members(path: Path) -> None:
    """Check what a checkpoint's zip directory and array headers declare before reading them.

    Each member's declared size must match its `.npy` header (shape x item size), and their
    sum must fit the memory limit; reading a member then stops at its declared size, so a
    member that inflates further cannot grow past it.

    Raises:
        CheckpointError: an unreadable zip, a member whose header disagrees with its size, or
            a total beyond the limit; one line naming the file and the figures.
    """
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                declared = _npy_bytes(archive, info)
                if declared != info.file_size:
                    raise CheckpointError(
                        f"{path}: member {info.filename} declares {size_text(info.file_size)} "
                        f"in the zip directory but its array header says {size_text(declared)}"
                    )
                total += info.file_size
    except (
        OSError, ValueError, SyntaxError, zipfile.BadZipFile, EOFError, zlib.error,
        NotImplementedError, RuntimeError,  # an unknown compression method; encryption
    ) as e:  # fmt: skip
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    try:
        check_claim(path, total, "checkpoint's arrays declare")
    except MnistJaxError as e:
        raise CheckpointError(str(e)) from None


def _npy_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """Return the bytes a zip member's .npy header declares, header included."""
    with archive.open(info) as member:
        shape, dtype = npy_header(member)
        if dtype.hasobject:  # a pickle: never read
            raise ValueError(f"member {info.filename} holds Python objects")
        header = member.tell()
    return header + math.prod(shape) * dtype.itemsize


def layer_sizes(config: Config) -> tuple[int, ...]:
    """Return (input_size, *hidden, num_classes): the widths of every layer of the config's MLP.

    A config whose sizes are still None (not yet fitted to its data) gets MNIST's 784 and 10.
    """
    return (
        config.input_size or MNIST_INPUT,
        *config.hidden,
        config.num_classes or MNIST_CLASSES,
    )


def check_shapes(params: list[dict[str, np.ndarray]], config: Config, where: str) -> None:
    """Check that `params` has exactly the shapes the config's architecture asks for."""
    sizes = layer_sizes(config)
    if len(params) != len(sizes) - 1:
        raise CheckpointError(
            f"{where}: has {len(params)} layers, the config asks for {len(sizes) - 1}"
        )
    for i, (layer, fan_in, fan_out) in enumerate(zip(params, sizes[:-1], sizes[1:])):
        for key, shape in (("w", (fan_in, fan_out)), ("b", (fan_out,))):
            if layer[key].shape != shape:
                raise CheckpointError(
                    f"{where}: layer {i} {key} has shape {layer[key].shape}, "
                    f"the config asks for {shape}"
                )


def check_dtypes(
    params: list[dict[str, np.ndarray]], opt_leaves: list[np.ndarray], config: Config, where: str
) -> None:
    """Check that parameters are in the config's float type and optimiser leaves are numbers."""
    for i, layer in enumerate(params):
        for key in ("w", "b"):
            if layer[key].dtype != np.dtype(config.dtype):
                raise CheckpointError(
                    f"{where}: layer {i} {key} is {layer[key].dtype}, the config asks for "
                    f"{config.dtype}"
                )
    for i, leaf in enumerate(opt_leaves):
        if leaf.dtype.kind not in "biuf":
            raise CheckpointError(f"{where}: optimiser array {i} has non-numeric type {leaf.dtype}")
