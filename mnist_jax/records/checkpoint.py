"""Atomic, pickle-free checkpoints: parameters, optimiser state and the resolved config.

A checkpoint is one `.npz` file. Its arrays are named `params/<layer>/<w|b>` and
`opt/<leaf index>`; one more array, `meta`, holds UTF-8 JSON: the format version, the
config, the number of epochs done and the dataset's name. It is loaded with
`allow_pickle=False`, so a crafted file cannot run code, and written through a temporary
file, fsync and rename, so a crash never leaves a half-written checkpoint in its place.

Loading reads what the file declares before anything else: each member's `.npy` header, then
the metadata alone; the shapes and types the headers declare must be those of the model the
saved config describes (`check_declared`) before any other member is inflated, so a member
that claims far more than its model cannot take memory whatever it would inflate to.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnist_jax.architecture import layer_sizes, num_params, optimizer_buffers
from mnist_jax.config import Config, config_from_json
from mnist_jax.errors import CheckpointError, ConfigError, MnistJaxError, decoding
from mnist_jax.files import atomic_write_bytes
from mnist_jax.limits import check_claim, npy_header, size_text

FORMAT_VERSION = 1
FILE_NAME = "checkpoint.npz"
COMMITTEE_FILE = "committee.json"  # a committee folder's manifest (`records.committee`)


# The metadata (config, epoch, dataset, notes) is a few kB of JSON; far more is not a checkpoint.
MAX_META_BYTES = 16 << 20
# Room beyond `expected_bytes` for the small arrays a checkpoint may also carry (step counts).
EXTRA_BYTES = 1 << 20


class Header(NamedTuple):
    """What a member's `.npy` header declares."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


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
    if (Path(path) / COMMITTEE_FILE).is_file():
        raise CheckpointError(
            f"{path} is a committee of runs, and this takes one run's checkpoint: give one of "
            f"its members, e.g. {Path(path) / 'members' / '0'}"
        )
    path = resolve(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    headers = check_members(path)
    meta = headers.get("meta")
    if (
        meta is None
        or meta.dtype != np.uint8
        or len(meta.shape) != 1
        or meta.nbytes > MAX_META_BYTES
    ):
        raise CheckpointError(f"{path}: checkpoint has no valid metadata")
    with (
        decoding(str(path), "not a readable checkpoint", CheckpointError),
        np.load(path, allow_pickle=False) as npz,
    ):
        # The metadata alone first: its config says what every other member must be,
        # which is checked against their headers before any of them is inflated.
        info, epoch = _parse_meta(npz["meta"], path)
        config = _saved_config(info, path)
        check_declared(headers, config, str(path))
        _check_total(path, headers)  # the second line of defence: the memory limit
        arrays = {name: npz[name] for name in npz.files if name != "meta"}
    num_layers = len(config.hidden) + 1
    params = [
        {"w": arrays[f"params/{i}/w"], "b": arrays[f"params/{i}/b"]} for i in range(num_layers)
    ]
    opt_leaves = [arrays[f"opt/{i}"] for i in range(sum(k.startswith("opt/") for k in arrays))]
    return Checkpoint(params, opt_leaves, config, epoch, info)


def _parse_meta(meta: np.ndarray, path: Path) -> tuple[dict[str, Any], int]:
    """The metadata's JSON and its epoch count, checked for a format this version reads."""
    with decoding(str(path), "checkpoint has no valid metadata", CheckpointError):
        info = json.loads(meta.tobytes().decode())
        version = int(info["format_version"])
        epoch = int(info.get("epoch", 0))
    check_format(str(path), version, epoch, FORMAT_VERSION)
    return info, epoch


def check_format(where: str, version: int, epoch: int, newest: int) -> None:
    """Refuse a saved model from a newer mnist-jax (format past `newest`) or a negative epoch.

    Raises:
        CheckpointError: one line naming `where`.
    """
    if version > newest:
        raise CheckpointError(
            f"{where}: written by a newer mnist-jax (format {version}, this reads up to "
            f"{newest}); upgrade mnist-jax"
        )
    if epoch < 0:
        raise CheckpointError(f"{where}: it records a negative epoch count ({epoch})")


def _saved_config(info: dict[str, Any], path: Path) -> Config:
    invalid = "the saved config is invalid"
    try:
        with decoding(str(path), invalid, CheckpointError):
            return config_from_json(json.dumps(info["config"]))
    except ConfigError as e:
        raise CheckpointError(f"{path}: {invalid} ({e})") from None


def check_members(path: Path) -> dict[str, Header]:
    """Check what a checkpoint's zip directory and array headers declare before reading them.

    Each member's declared size must match its `.npy` header (shape x item size); reading a
    member then stops at its declared size, so a member that inflates further cannot grow past
    it. What the sizes must be is `check_declared`'s (the config's model) and `_check_total`'s
    (the memory limit).

    Returns:
        Each member's (shape, dtype) as its header declares them, by array name ("meta",
        "params/0/w", ...: the member's name without ".npy", as `np.load` names it).

    Raises:
        CheckpointError: an unreadable zip, or a member whose header disagrees with its size;
            one line naming the file and the figures.
    """
    headers = {}
    with (
        decoding(str(path), "not a readable checkpoint", CheckpointError),
        zipfile.ZipFile(path) as archive,
    ):
        for info in archive.infolist():
            shape, dtype, declared = _npy_header(archive, info)
            if declared != info.file_size:
                raise CheckpointError(
                    f"{path}: member {info.filename} declares {size_text(info.file_size)} "
                    f"in the zip directory but its array header says {size_text(declared)}"
                )
            headers[info.filename.removesuffix(".npy")] = Header(shape, dtype)
    return headers


def _check_total(path: Path, headers: dict[str, Header]) -> None:
    """Fail when the members together declare more than the memory limit allows."""
    try:
        check_claim(path, sum(h.nbytes for h in headers.values()), "checkpoint's arrays declare")
    except MnistJaxError as e:
        raise CheckpointError(str(e)) from None


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[Any, np.dtype, int]:
    """Return a zip member's .npy (shape, dtype) and the bytes it declares, header included."""
    with archive.open(info) as member:
        shape, dtype = npy_header(member)
        if dtype.hasobject:  # a pickle: never read
            raise ValueError(f"member {info.filename} holds Python objects")
        header = member.tell()
    return shape, dtype, header + math.prod(shape) * dtype.itemsize


def check_declared(headers: dict[str, Header], config: Config, where: str) -> None:
    """Check the members' declared shapes and types against the model their config describes.

    Run on the `.npy` headers alone, before any member is inflated: the parameters must have
    exactly the config's shapes and float type, the optimiser's arrays must be numbers, and
    everything besides the parameters together may not declare more than the config's
    optimiser keeps (`expected_bytes`), so a member that claims gigabytes in a small model's
    checkpoint is refused whatever it would inflate to.

    Raises:
        CheckpointError: one line naming the member, what it declares and what the config
            implies.
    """
    num_layers = len(config.hidden) + 1
    params = []
    for i in range(num_layers):
        layer = {}
        for key in ("w", "b"):
            if f"params/{i}/{key}" not in headers:
                raise CheckpointError(f"{where}: missing parameter array 'params/{i}/{key}'")
            layer[key] = headers[f"params/{i}/{key}"]
        params.append(layer)
    check_shapes(params, config, where)
    opt = [f"opt/{i}" for i in range(sum(name.startswith("opt/") for name in headers))]
    if missing := [name for name in opt if name not in headers]:
        raise CheckpointError(f"{where}: missing optimiser array '{missing[0]}'")
    check_dtypes(params, [headers[name] for name in opt], config, where)
    checked = {"meta", *(f"params/{i}/{key}" for i in range(num_layers) for key in ("w", "b"))}
    rest = {name: header.nbytes for name, header in headers.items() if name not in checked}
    allowed = expected_bytes(config) + EXTRA_BYTES
    if sum(rest.values()) > allowed:
        largest = max(rest, key=rest.get)
        raise CheckpointError(
            f"{where}: its arrays besides the parameters declare {size_text(sum(rest.values()))} "
            f"({largest}: {headers[largest].shape} {headers[largest].dtype}), more than a "
            f"{'-'.join(map(str, layer_sizes(config)))} {config.optimizer} model's checkpoint "
            f"holds ({size_text(allowed)})"
        )


def expected_bytes(config: Config) -> int:
    """The bytes of a checkpoint's arrays: the parameters plus the optimiser's state.

    The optimiser's scalars (step counts) are left to `EXTRA_BYTES`.
    """
    buffers = 1 + optimizer_buffers(config)
    return num_params(config) * buffers * np.dtype(config.dtype).itemsize


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
