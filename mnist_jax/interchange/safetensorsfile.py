"""A checkpoint's weights as a safetensors file, and a run folder made from one.

A safetensors file is 8 bytes (a little-endian u64: the header's length), a JSON header, then
the tensors' bytes back to back. mnist-jax writes the params pytree under its own names,
`layers.0.w` (in, out), `layers.0.b` (out,), `layers.1.w`, ..., in the model's float type (F32
or F64, bit for bit), and the header's `__metadata__` (string values only, as the format asks)
holds what makes them a model:

    format          "mnist-jax"
    format_version  "1"
    config          the run's whole config as JSON (activation, output, the input
                    standardisation's mean and std, layer sizes, seed, data, ...)
    epoch           epochs trained, e.g. "10"
    dataset         the data it was trained on, e.g. "mnist"

Writing uses the safetensors package (the `safetensors` extra). Reading does not: the file is
checked against its own metadata before anything is allocated, the way checkpoints are
(`checkpoint.check_declared`): the header length against a cap and the file's size, then every
tensor's dtype, shape and byte range against the layer sizes and float type the config
describes (`architecture.layer_sizes`) and against the bytes the file holds. A file that fails is
one line naming it and the figures; only then are the weights read, with NumPy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnist_jax import architecture, interchange
from mnist_jax.config import Config, config_from_json
from mnist_jax.errors import CheckpointError, ConfigError, decoding
from mnist_jax.limits import check_claim, file_size, size_text
from mnist_jax.records import checkpoint, committee

FORMAT, FORMAT_VERSION = "mnist-jax", 1
IMPORTED = "imported-safetensors"  # the dataset name recorded when the file names none
DTYPES = {"float32": "F32", "float64": "F64"}  # the config's float type -> safetensors'
LENGTH_BYTES = 8  # the u64 in front of the header
# The header is the config (a few kB of JSON) and one line per tensor; far more is not ours.
MAX_HEADER_BYTES = checkpoint.MAX_META_BYTES
Log = Callable[[str], None]


class Declared(NamedTuple):
    """What the header declares for one tensor: type, shape, and its bytes in the data."""

    dtype: str  # "F32", "F64", ...
    shape: tuple[int, ...]
    begin: int
    end: int


def tensor_name(layer: int, key: str) -> str:
    """The name of a parameter in the file: layers.<layer>.<w|b>."""
    return f"layers.{layer}.{key}"


def expected_tensors(config: Config) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape for the config's MLP, first layer first, w before b."""
    sizes = architecture.layer_sizes(config)
    expected = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        expected[tensor_name(i, "w")] = (fan_in, fan_out)
        expected[tensor_name(i, "b")] = (fan_out,)
    return expected


def metadata(ckpt: checkpoint.Checkpoint) -> dict[str, str]:
    """The header's `__metadata__` of a checkpoint: every value a string."""
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(ckpt.config.to_dict()),
        "epoch": str(ckpt.epoch),
        "dataset": str(ckpt.meta.get("dataset", IMPORTED)),
    }


def encode(ckpt: checkpoint.Checkpoint) -> bytes:
    """Return a checkpoint's params and config as the bytes of a safetensors file."""
    writer = interchange.require("safetensors.numpy", "safetensors", "safetensors export")
    tensors = {
        tensor_name(i, key): np.ascontiguousarray(layer[key])
        for i, layer in enumerate(ckpt.params)
        for key in ("w", "b")
    }
    return writer.save(tensors, metadata=metadata(ckpt))


def export_safetensors(run: str | Path, out: str | Path, log: Log = print) -> Path:
    """Write a checkpoint's weights and config as a safetensors file, atomically.

    Args:
        run: a checkpoint.npz or the run folder holding it (not a committee: one line).
        out: the file to write (replaced whole when it exists).
        log: unused; the same signature as the other exporters.

    Returns:
        The path written.
    """
    interchange.require("safetensors.numpy", "safetensors", "safetensors export")
    if committee.is_committee(run):
        raise CheckpointError(
            f"{run} is a committee; a safetensors file holds one run's weights: export the "
            f"committee with --format onnx, or each member ({Path(run) / 'members' / '0'}, ...)"
        )
    return interchange.write_file(Path(out), encode(checkpoint.load(run)))


def read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """Read and parse a safetensors file's JSON header, its length checked first.

    Returns:
        (the header as a dict, the offset of the first data byte, the file's size).

    Raises:
        CheckpointError: too short, a header length over the cap or past the end, or a header
            that is not a JSON object.
    """
    size = file_size(path)
    if size < LENGTH_BYTES:
        raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors file")
    with path.open("rb") as f:
        length = int.from_bytes(f.read(LENGTH_BYTES), "little")
        if length > MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{path}: its header length says {size_text(length)}, more than a model's header "
                f"may be ({size_text(MAX_HEADER_BYTES)}); not a mnist-jax safetensors file"
            )
        if LENGTH_BYTES + length > size:
            raise CheckpointError(
                f"{path}: its header length says {size_text(length)}, but the file holds "
                f"{size_text(size - LENGTH_BYTES)} after it (truncated?)"
            )
        raw = f.read(length)
    with decoding(str(path), "the header is not JSON", CheckpointError):
        header = json.loads(raw.decode("utf-8"))
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is not a JSON object")
    return header, LENGTH_BYTES + length, size


def check_metadata(header: dict[str, Any], where: str) -> tuple[Config, dict[str, Any]]:
    """Return the config and the rest of `__metadata__` (epoch as an int), checked.

    Raises:
        CheckpointError: no mnist-jax metadata, a newer format, an invalid config or epoch.
    """
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(
            f"{where}: no __metadata__ of strings; mnist-jax reads the files "
            "`mnist-jax export --format safetensors` writes"
        )
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{where}: its metadata has no mnist-jax config (format {meta.get('format')!r}); "
            "mnist-jax reads the files `mnist-jax export --format safetensors` writes"
        )
    try:
        version, epoch = int(meta.get("format_version", "1")), int(meta.get("epoch", "0"))
    except ValueError:
        raise CheckpointError(f"{where}: format_version and epoch must be whole numbers") from None
    checkpoint.check_format(where, version, epoch, FORMAT_VERSION)
    invalid = "the config in its metadata is invalid"
    try:
        with decoding(where, invalid, CheckpointError):
            config = config_from_json(meta["config"])
    except ConfigError as e:
        raise CheckpointError(f"{where}: {invalid} ({e})") from None
    return config, {"epoch": epoch, "dataset": meta.get("dataset", IMPORTED)}


def check_tensors(
    header: dict[str, Any], config: Config, data_bytes: int, where: str
) -> dict[str, Declared]:
    """Check every tensor the header declares against the config's model and the data's size.

    The names must be exactly the config's parameters (`expected_tensors`), each of the
    config's float type and shape; their byte ranges must hold exactly that many bytes and
    tile the `data_bytes` after the header, in some order, without a gap or an overlap (as the
    format asks). Nothing is read or allocated here.

    Returns:
        Each tensor's declaration, by name.

    Raises:
        CheckpointError: one line naming the tensor, what it declares and what was expected.
    """
    expected = expected_tensors(config)
    arch = "-".join(map(str, architecture.layer_sizes(config)))
    names = [name for name in header if name != "__metadata__"]
    if extra := [name for name in names if name not in expected]:
        raise CheckpointError(
            f"{where}: tensor {extra[0]!r} is not a parameter of its config's {arch} model"
        )
    if missing := [name for name in expected if name not in header]:
        raise CheckpointError(f"{where}: missing tensor {missing[0]!r} of its {arch} model")
    dtype = DTYPES[config.dtype]
    declared = {}
    for name, shape in expected.items():
        entry = _declared(header[name], name, where)
        if entry.dtype != dtype:
            raise CheckpointError(
                f"{where}: {name} is {entry.dtype}, its config asks for {dtype} ({config.dtype})"
            )
        if entry.shape != shape:
            raise CheckpointError(
                f"{where}: {name} has shape {entry.shape}, its config's {arch} model asks for "
                f"{shape}"
            )
        nbytes = math.prod(shape) * np.dtype(config.dtype).itemsize
        if entry.end - entry.begin != nbytes:
            raise CheckpointError(
                f"{where}: {name} spans bytes {entry.begin}..{entry.end}, but {shape} "
                f"{config.dtype} takes {nbytes}"
            )
        declared[name] = entry
    position = 0
    for name, entry in sorted(declared.items(), key=lambda item: item[1].begin):
        if entry.begin != position:
            raise CheckpointError(
                f"{where}: {name} starts at data byte {entry.begin}, expected {position} "
                "(tensors must follow each other without gaps or overlaps)"
            )
        position = entry.end
    if position != data_bytes:
        raise CheckpointError(
            f"{where}: its tensors take {size_text(position)} but the file holds "
            f"{size_text(data_bytes)} after the header (truncated, or bytes left over)"
        )
    return declared


def _declared(entry: Any, name: str, where: str) -> Declared:
    """One tensor's header entry as a Declared, its fields' types checked."""
    try:
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not (
            isinstance(dtype, str)
            and isinstance(shape, list)
            and all(type(d) is int and d >= 0 for d in shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]
        ):
            raise TypeError
    except (TypeError, KeyError):
        raise CheckpointError(
            f"{where}: {name}'s entry is not {{dtype, shape, data_offsets: [begin, end]}}"
        ) from None
    return Declared(dtype, tuple(shape), offsets[0], offsets[1])


def read_safetensors(path: str | Path) -> tuple[list[dict[str, np.ndarray]], Config, dict]:
    """Read a safetensors file written by `export_safetensors`, checked before it is read.

    Returns:
        (params [{"w": (in, out), "b": (out,)}] in the config's float type, the config, the
        rest of the metadata: {"epoch": int, "dataset": str}).

    Raises:
        CheckpointError (or DataError for the memory limit): one line; nothing is allocated
            beyond the header before the checks pass.
    """
    path = Path(path)
    header, start, size = read_header(path)
    config, meta = check_metadata(header, str(path))
    declared = check_tensors(header, config, size - start, str(path))
    check_claim(path, size - start, "its tensors declare")
    dtype = np.dtype(config.dtype).newbyteorder("<")  # safetensors is little-endian
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(size - start)
    if len(data) != size - start:
        raise CheckpointError(f"{path}: the file shrank while it was read")
    params = []
    for i in range(len(config.hidden) + 1):
        layer = {}
        for key in ("w", "b"):
            entry = declared[tensor_name(i, key)]
            values = np.frombuffer(data, dtype, math.prod(entry.shape), entry.begin)
            if not np.isfinite(values).all():
                raise CheckpointError(f"{path}: {tensor_name(i, key)} holds nan or inf values")
            layer[key] = values.reshape(entry.shape).astype(config.dtype)
        params.append(layer)
    return params, config, meta


def import_safetensors(path: str | Path, out: str | Path) -> checkpoint.Checkpoint:
    """Make a run folder (checkpoint.npz) from a safetensors file, for eval, predict, serve.

    The config, epoch count and dataset name come from the file's metadata, so `mnist-jax
    eval` rebuilds the same data split and reports what the original run did; the optimiser
    state is fresh (`interchange.save_imported`).

    Returns:
        The checkpoint as written to `out`/checkpoint.npz.
    """
    params, config, meta = read_safetensors(path)
    return interchange.save_imported(
        out, params, config, meta["epoch"], dataset=meta["dataset"], source=str(path)
    )
