"""The L-BFGS seed's weight files: `Theta1.txt`, `Theta2.txt`, ... to and from a checkpoint.

The seed system behind `configs/seed-lbfgs-100.toml` (784-100-10, sigmoid) keeps each layer as
one matrix Theta_k of shape (units, 1 + inputs): one row per unit of the layer, the bias in the
first column, then one weight per input, written as whitespace-separated text (NumPy's
`savetxt` defaults). In this project's params a layer is {"w": (inputs, units), "b": (units,)},
so Theta_k = [b[:, None], w.T]. Numbers are written as `%.18e`: 19 significant digits, more than
the 17 a float64 needs, so export then import gives back every bit.

`export_theta(run, out)` writes the files of a checkpoint; `import_theta(folder, config, out)`
makes a run folder (checkpoint.npz) from them, so a model moves back and forth between
mnist-jax and the seed's GUI. Both write atomically; reading is strict, and a bad file is one
line naming the file, the line and the problem.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax import interchange
from mnist_jax.config import Config
from mnist_jax.data import standardize
from mnist_jax.data.idx import read_bytes
from mnist_jax.errors import DataError
from mnist_jax.limits import check_claim
from mnist_jax.records import checkpoint

FORMAT = "%.18e"  # round-trips float64 exactly (17 significant digits suffice)
IMPORTED = "imported-theta"  # the dataset name an imported checkpoint records
Log = Callable[[str], None]


def theta_name(layer: int) -> str:
    """Return the file name of layer `layer` (0-based): Theta1.txt for the first."""
    return f"Theta{layer + 1}.txt"


def to_thetas(params: list[dict[str, Any]]) -> list[np.ndarray]:
    """Turn params [{"w": (in, out), "b": (out,)}] into float64 Thetas (out, 1 + in)."""
    return [
        np.concatenate(
            [np.asarray(p["b"], np.float64)[:, None], np.asarray(p["w"], np.float64).T], 1
        )
        for p in params
    ]


def from_thetas(thetas: list[np.ndarray], dtype: str = "float64") -> list[dict[str, np.ndarray]]:
    """Turn Thetas (out, 1 + in) into params [{"w": (in, out), "b": (out,)}] of `dtype`."""
    return [
        {
            "w": np.ascontiguousarray(t[:, 1:].T, dtype=dtype),
            "b": np.ascontiguousarray(t[:, 0], dtype=dtype),
        }
        for t in thetas
    ]


def encode_theta(theta: np.ndarray) -> bytes:
    """Return a Theta (units, 1 + inputs) as `savetxt` text: one row per line, `%.18e`."""
    buffer = io.BytesIO()
    np.savetxt(buffer, theta, fmt=FORMAT)
    return buffer.getvalue()


def parse_theta(raw: bytes, name: str) -> np.ndarray:
    """Parse Theta text into a (rows, columns) float64 array, strictly.

    Every non-empty line must hold the same number (at least 2) of whitespace-separated finite
    numbers; trailing blank lines are ignored, a blank line between rows is not. The first
    line's width times the number of lines is what the file declares: it is checked against
    the memory limit before the array is allocated, then filled one row at a time.

    Raises:
        DataError: one line naming the file, the line (and column) and what is wrong.
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{name}: not a text file of numbers (byte {e.start} is not ASCII)"
        ) from None
    lines = text.rstrip().splitlines()
    if not lines:
        raise DataError(f"{name}: empty file; expected one row of numbers per unit")
    width = first_width(raw)
    if width < 2:
        raise DataError(f"{name}: line 1 has {width} number; a row is a bias and weights")
    claim = len(lines) * width * 8
    check_claim(name, claim, f"{len(lines)} lines of {width} numbers make a float64 array")
    rows = np.empty((len(lines), width), np.float64)
    for number, line in enumerate(lines, start=1):
        cells = line.split()
        if not cells:
            raise DataError(f"{name}: line {number} is empty")
        if len(cells) != width:
            raise DataError(f"{name}: line {number} has {len(cells)} numbers, line 1 has {width}")
        try:
            row = [float(cell) for cell in cells]
        except ValueError:
            column = next(i for i, c in enumerate(cells, 1) if not _is_number(c))
            shown = cells[column - 1][:20]
            raise DataError(
                f"{name}: line {number}, column {column}: '{shown}' is not a number"
            ) from None
        if not all(math.isfinite(v) for v in row):
            column = next(i for i, v in enumerate(row, 1) if not math.isfinite(v))
            raise DataError(
                f"{name}: line {number}, column {column}: {cells[column - 1]} is not finite"
            )
        rows[number - 1] = row
    return rows


def first_width(raw: bytes) -> int:
    """The count of numbers on a Theta file's first line (the layer's 1 + inputs)."""
    return len(raw[: raw.find(b"\n") if b"\n" in raw else len(raw)].split())


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_thetas(folder: Path) -> list[np.ndarray]:
    """Read Theta1.txt, Theta2.txt, ... (as many as follow each other) from `folder`.

    Returns:
        One float64 Theta (units, 1 + inputs) per layer; each layer's inputs are the previous
        layer's units.

    Raises:
        DataError: no Theta1.txt, a malformed file, or layers whose sizes do not chain.
    """
    if not (folder / theta_name(0)).is_file():
        raise DataError(f"{folder}: no {theta_name(0)}; expected Theta1.txt, Theta2.txt, ...")
    thetas = []
    while (path := folder / theta_name(len(thetas))).is_file():
        raw = read_bytes(path)
        # The first line says how many inputs the layer takes: checked against the previous
        # layer's units before the rest is parsed (a narrower line is parse_theta's to name).
        if thetas and (width := first_width(raw)) >= 2 and width != thetas[-1].shape[0] + 1:
            previous = theta_name(len(thetas) - 1)
            raise DataError(
                f"{path}: has {width} columns but {previous} has {thetas[-1].shape[0]} "
                f"rows (units); a layer needs 1 + the previous layer's units columns"
            )
        thetas.append(parse_theta(raw, str(path)))
    return thetas


def write_thetas(folder: Path, params: list[dict[str, Any]]) -> list[Path]:
    """Write one Theta file per layer of `params` into `folder`, atomically; return the paths."""
    return [
        interchange.write_file(folder / theta_name(layer), encode_theta(theta))
        for layer, theta in enumerate(to_thetas(params))
    ]


def export_theta(run: str | Path, out: str | Path, log: Log = print) -> list[Path]:
    """Write a checkpoint's layers as Theta1.txt, Theta2.txt, ... in the folder `out`.

    A standardising model's first layer is folded (`standardize.fold`) so that the files take
    pixels times `input_scale`, as the seed's own predict feeds them.

    Args:
        run: a checkpoint.npz or the run folder holding it.
        out: the folder to write into (made if missing).
        log: told when the model is not the seed's kind (its GUI computes sigmoid units).

    Returns:
        The files written, Theta1.txt first.
    """
    ckpt = checkpoint.load(run)
    config = ckpt.config
    if (config.activation, config.output) != ("sigmoid", "sigmoid"):
        log(
            f"note: this model uses {config.activation} hidden units and {config.output} "
            "outputs; the seed's GUI computes sigmoid for both"
        )
    params = ckpt.params
    if config.input_norm == "standardize":
        # The seed feeds pixels times input_scale: the first layer takes the standardisation.
        params = standardize.fold(params, config)
        log(
            f"note: the input standardisation (mean {config.input_mean:.4g}, std "
            f"{config.input_std:.4g}) is folded into Theta1, which takes pixels x "
            f"{config.input_scale:.6g}"
        )
    return write_thetas(Path(out), params)


def import_theta(
    folder: str | Path, config: Config, out: str | Path, log: Log = print
) -> checkpoint.Checkpoint:
    """Make a run folder from Theta files: a checkpoint of the files' weights and `config`.

    The layer sizes come from the files (the config's `hidden`, `input_size` and `num_classes`
    are set to them, with a note when `hidden` changes) and the inputs are pixels times
    `input_scale`, as the seed feeds them (`input_norm = "scale"`); the rest of the config
    (activation, data, ...) is kept, so `mnist-jax eval` and `predict` use the run like a
    trained one. The optimiser state is freshly initialised and the epoch count is 0
    (`interchange.save_imported`).

    Returns:
        The checkpoint as written to `out`/checkpoint.npz.
    """
    thetas = read_thetas(Path(folder))
    hidden = tuple(t.shape[0] for t in thetas[:-1])
    if hidden != config.hidden:
        log(
            f"note: the Theta files have hidden layers {list(hidden)}; the config had "
            f"{list(config.hidden)}"
        )
    config = config.replace(  # Theta files take pixels times input_scale, never standardised
        hidden=hidden, input_size=thetas[0].shape[1] - 1, num_classes=thetas[-1].shape[0],
        input_norm="scale", input_mean=None, input_std=None,
    )  # fmt: skip
    if config.num_classes < 2:
        raise DataError(f"{Path(folder) / theta_name(len(thetas) - 1)}: one output unit; need 2+")
    params = from_thetas(thetas, config.dtype)
    return interchange.save_imported(out, params, config, dataset=IMPORTED, source=str(folder))
