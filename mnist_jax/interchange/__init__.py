"""What the interchange formats share: Theta text, ONNX and safetensors files.

Each format writes the same params pytree ([{"w": (in, out), "b": (out,)}] per layer) and the
same config as a checkpoint holds (`theta.py`, `onnxfile.py`, `safetensorsfile.py`). Here are
the pieces they have in common: the optional package a format needs, one atomic write whose
failure is one line, and the run folder an imported model becomes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import numpy as np

from mnist_jax.config import Config
from mnist_jax.errors import DataError, MnistJaxError
from mnist_jax.files import atomic_write_bytes
from mnist_jax.records import checkpoint


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or fail in one line naming the extra that installs it.

    Args:
        module: e.g. "onnx" or "safetensors.numpy" (the message names the package).
        extra: the mnist-jax extra that brings it, e.g. "onnx".
        purpose: what needs it, e.g. "ONNX export".
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MnistJaxError(
            f"{purpose} needs the {module.split('.')[0]} package: pip install 'mnist-jax[{extra}]'"
        ) from None


def write_file(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (an existing file is replaced whole); return `path`.

    Raises:
        DataError: the file cannot be written (a folder in its place, no permission, a full
            disk), in one line; nothing is left under `path`.
    """
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def save_imported(
    out: str | Path, params: list[dict[str, np.ndarray]], config: Config, epoch: int = 0, **meta
) -> checkpoint.Checkpoint:
    """Make a run folder from imported weights: a checkpoint of `params` and `config`.

    The optimiser state is freshly initialised (a file of weights carries none), so
    `mnist-jax eval`, `predict` and `serve` use the run like a trained one, and `train
    --resume` continues it from `epoch`.

    Returns:
        The checkpoint as written to `out`/checkpoint.npz.

    Raises:
        DataError: the run folder cannot be written (one line).
    """
    from mnist_jax.training import optim
    from mnist_jax.training.trainer import precision

    with precision(config):
        opt_state = optim.make_optimizer(config, 1).init(params)
        leaves: list[Any] = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(opt_state)]
    try:
        checkpoint.save(Path(out), params, leaves, config, epoch, **meta)
    except OSError as e:
        raise DataError(f"cannot write the run folder {out}: {e.strerror or e}") from None
    return checkpoint.load(out)
