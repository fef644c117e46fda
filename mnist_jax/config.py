"""The one typed configuration object: defaults < TOML file < command-line flags.

A `Config` is frozen and validated when it is built, so every later stage can trust it. TOML
files in `configs/` hold only what differs from the defaults below; the CLI's flags win over
the file. The resolved config is saved with every checkpoint and summary.

The files in `configs/` ship inside the package too (as `mnist_jax/configs/`), so an installed
copy takes them by name: `--config seed-lbfgs-100`. A path that exists always wins over a name.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

# The choices a Config's fields take, and the checks it passes when built, live in
# config_checks; the choices are importable from here too, as before.
from mnist_jax.config_checks import (  # noqa: F401
    ACTIVATIONS,
    AUGMENTS,
    BIAS_INITS,
    DATASETS,
    DTYPES,
    INITS,
    INPUT_NORMS,
    KAGGLE_SPLITS,
    OPTIMIZERS,
    OUTPUTS,
    PRECISIONS,
    SCHEDULES,
    TRICKS,
    validate,
)
from mnist_jax.errors import ConfigError, decoding


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run. The defaults are the strong default recipe.

    Data:
        dataset: "mnist" (full set: found, cached or downloaded; the bundled sample offline),
            "sample" (the bundled 10,000/2,000 subset), "auto" (the format of `data_path` is
            told from the file: an IDX folder, a Kaggle or one-hot CSV, a .mat file), "idx"
            (your own dataset: any four IDX files in MNIST's layout, at `data_path`, else
            `data_dir`; structure checked, no MNIST checksum), or a file format read from
            `data_path` ("kaggle-csv", "onehot-csv", "mat"). An IDX folder given as
            `data_path` is read as "idx"; only "mnist" demands MNIST's checksums.
        data_dir: folder holding the four MNIST IDX files; overrides the search path.
        kaggle_split: how a Kaggle CSV is split: "shuffled" (rows shuffled by `split_seed`, the
            first 1,000 are the dev set) or "notebook" (the Kaggle notebook's fixed split: row 0
            unused, rows 1..999 dev, rows 1,000.. train, no shuffle).
        data_path: file or folder of the data (`--data`).
        validation_size: images held out of the training set for validation; None means one
            twelfth of them (5,000 of MNIST's 60,000), 0 means no validation set.
        data_seed: the seed that draws the data: which images are held out for validation,
            the `train_size`/`test_size` subsets and a Kaggle CSV's shuffle. None means `seed`.
            Runs given one data_seed hold out the same images whatever their `seed`, so a
            committee of them can be judged on its validation split.
        train_size, test_size: keep a seed-chosen subset of this many images (None: all).
        input_norm: how pixels (0..255) become inputs, inside the jitted code (see
            `mnist_jax.data.standardize`): "standardize" ((pixel - input_mean) / input_std *
            input_spread, by the training split's statistics) or "scale" (pixel * input_scale,
            as the seed configs and checkpoints written before standardisation do).
        input_mean, input_std: the training split's mean and standard deviation over all
            pixels (grey levels; std floored at 1); None means "measure them": filled in when
            a standardising run's data is loaded and saved with every checkpoint.
        input_spread: the standard deviation standardised inputs are given (mean 0).
        input_scale: pixels are multiplied by this when input_norm = "scale".
        input_size, num_classes: pixels per image and number of classes; None means "read
            from the data" (784 and 10 for MNIST). Filled in when a run's data is loaded and
            saved with every checkpoint, so evaluation rebuilds the same network.
    Model:
        hidden: widths of the hidden layers, input to output.
        activation: hidden activation, one of relu, sigmoid, tanh.
        output: "softmax" (cross-entropy over classes) or "sigmoid" (per-class binary
            cross-entropy summed over the classes).
        init: weight initialiser: he, glorot, uniform (init_low, init_high), normal (init_std).
        bias_init: "zeros", or "drawn" from the same distribution as the weights.
        l2: L2 penalty l2 / (2 m) * sum of squared weights (biases excluded), m = the number
            of training images, as in the textbook regularised cost.
    Optimisation:
        optimizer: "sgd" (plain gradient descent, mini-batch or full-batch when batch_size =
            "full": `optax.sgd(lr)`), "momentum" (heavy-ball: `optax.sgd(lr, momentum)`),
            "nesterov" (`optax.sgd(lr, momentum, nesterov=True)`) or "lbfgs" (full-batch
            `optax.lbfgs`; a zoom line search picks each step, so lr and the schedule are unused).
        lr: the (peak) step size; momentum: the momentum coefficient of "momentum" and
            "nesterov" (unused by "sgd"); schedule: "constant" or "cosine" decay to zero over
            all steps (`optax.warmup_cosine_decay_schedule`), after `warmup_epochs` of linear
            warm-up.
        epochs: passes over the training set (iterations when full-batch).
        batch_size: examples per step, or "full".
        eval_every: evaluate on the validation set every this many epochs (and at the end).
        dtype: "float32", or "float64" (enables JAX's x64 mode for the run).
    Distortions of the training images (`mnist_jax.training.distort`; validation, test and
    inference always see the images as they are):
        augment: "none", "affine", "elastic" or "both"; a fresh distortion of every training
            image in every epoch, drawn inside the compiled epoch from the run's keys.
        affine_rotate, affine_scale, affine_shear, affine_shift: the largest rotation (degrees),
            relative change of each axis's size, horizontal shear factor and shift (pixels per
            axis); each image's values are drawn uniformly within them. Rotation and scale
            follow Cireşan et al. 2010 (15 degrees, 15%).
        elastic_alpha, elastic_sigma: the elastic field's scale and Gaussian smoothing, in
            pixels; Simard et al. 2003's 34 and 4.
    Backend (`mnist_jax.devices.backend`; neither changes the maths beyond float rounding):
        matmul_precision: "auto" (full float32 on every platform: "default" on the CPU,
            "highest" elsewhere and for float64), or XLA's "default", "high" or "highest".
        cpu_tricks: "auto" (on for the CPU only, where they were measured), "on" or "off".
    """

    name: str = "default"
    seed: int = 0
    dataset: str = "mnist"
    data_dir: str | None = None
    data_path: str | None = None
    kaggle_split: str = "shuffled"
    validation_size: int | None = None
    data_seed: int | None = None
    train_size: int | None = None
    test_size: int | None = None
    input_norm: str = "standardize"
    input_mean: float | None = None
    input_std: float | None = None
    input_spread: float = 0.3
    input_scale: float = 1.0 / 255.0
    input_size: int | None = None
    num_classes: int | None = None
    hidden: tuple[int, ...] = (800,)
    activation: str = "relu"
    output: str = "softmax"
    init: str = "he"
    init_low: float = -0.5
    init_high: float = 0.5
    init_std: float = 1.0
    bias_init: str = "zeros"
    l2: float = 0.0
    optimizer: str = "sgd"
    lr: float = 1.4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    epochs: int = 10
    batch_size: int | Literal["full"] = 128
    eval_every: int = 1
    eval_batch_size: int = 1000
    dtype: str = "float32"
    augment: str = "none"
    affine_rotate: float = 15.0
    affine_scale: float = 0.15
    affine_shear: float = 0.15
    affine_shift: float = 2.0
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0
    matmul_precision: str = "auto"
    cpu_tricks: str = "auto"

    def __post_init__(self) -> None:
        validate(self)

    @property
    def split_seed(self) -> int:
        """The seed that draws the data splits: `data_seed`, else the run's `seed`."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def full_batch(self) -> bool:
        """True when every step sees the whole training set."""
        return self.batch_size == "full"

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain JSON-ready values."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    def replace(self, **changes: Any) -> Config:
        """Return a validated copy with `changes` applied (values are coerced like TOML's)."""
        return from_dict({**self.to_dict(), **changes})


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Resolve a config: defaults, then the TOML file at `path`, then `overrides` (flags).

    Args:
        path: a TOML file holding only what differs from the defaults, the name of a bundled
            config (see `bundled_configs`), or None.
        overrides: values from the command line; keys whose value is None are ignored.

    Returns:
        The validated, frozen `Config`.

    Raises:
        ConfigError: the file is missing or unreadable, or a key or value is invalid.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_toml(resolve_config_path(path)))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(values)


def bundled_configs_dir() -> Path:
    """Return the folder of the bundled TOML configs.

    An installed wheel holds them in `mnist_jax/configs/`; a checkout (or an editable install)
    keeps them in the top-level `configs/` beside the package.
    """
    installed = Path(__file__).parent / "configs"
    return installed if installed.is_dir() else Path(__file__).parents[1] / "configs"


def bundled_configs() -> dict[str, str]:
    """Return the bundled configs, name -> description (the file's first comment line).

    Returns:
        A dict sorted by name; the name is the file's stem, taken by `--config NAME`.
    """
    found = {}
    for path in sorted(bundled_configs_dir().glob("*.toml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        comments = (line.lstrip("#").strip() for line in lines if line.startswith("#"))
        found[path.stem] = next(comments, "")
    return found


def format_bundled_configs() -> list[str]:
    """Return one line per bundled config: the name, padded, then its description."""
    found = bundled_configs()
    width = max(map(len, found), default=0)
    return [f"{name:<{width}}  {about}".rstrip() for name, about in found.items()]


def resolve_config_path(path: str | Path) -> Path:
    """Turn `--config`'s value into a file: a path that exists wins, else a bundled name.

    Args:
        path: a TOML file's path, or a bundled config's name without ".toml".

    Returns:
        The path of the TOML file to read.

    Raises:
        ConfigError: neither a file nor a bundled name; the line lists the bundled names.
    """
    path = Path(path)
    if path.exists():
        return path
    names = bundled_configs()
    if path.name in names and path.name == str(path):
        return bundled_configs_dir() / f"{path.name}.toml"
    hint = f"; for the bundled one use --config {path.stem}" if path.stem in names else ""
    raise ConfigError(f"config file not found: {path} (bundled configs: {', '.join(names)}){hint}")


MAX_TOML_BYTES = 1 << 20


def read_toml(path: Path) -> dict[str, Any]:
    """Read a config file into a dict; the file's problems become one ConfigError line."""
    try:
        with path.open("rb") as f:
            # A config is a few hundred bytes; one byte past the cap means it is something else.
            text = f.read(MAX_TOML_BYTES + 1)
        if len(text) > MAX_TOML_BYTES:
            raise ConfigError(
                f"config file {path} is larger than {MAX_TOML_BYTES:,} bytes; is it a config?"
            )
        return tomllib.loads(text.decode())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a TOML file: {path}") from None
    except PermissionError:
        raise ConfigError(f"config file is not readable (permission denied): {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def from_dict(values: dict[str, Any]) -> Config:
    """Build a Config from plain values (TOML, JSON or flags), checking names and types."""
    kwargs = {}
    for key, value in values.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        kwargs[key] = _coerce(key, value)
    return Config(**kwargs)


def config_from_json(text: str) -> Config:
    """Rebuild a Config saved by `Config.to_dict` as JSON."""
    with decoding("saved config", "not valid JSON", ConfigError):
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ConfigError("saved config is not a JSON object")
    return from_dict(_upgrade(values))


def _upgrade(values: dict[str, Any]) -> dict[str, Any]:
    """Read a config saved by an older mnist-jax.

    One saved before standardisation (no `input_norm`) scaled its pixels by `input_scale`;
    one saved by mnist-jax 0.1.0 carried `momentum` and `nesterov` for SGD.
    """
    values = dict(values)
    values.setdefault("input_norm", "scale")
    if "nesterov" not in values:
        return values
    nesterov, momentum = values.pop("nesterov"), values.get("momentum")
    if values.get("optimizer", "sgd") == "sgd" and momentum:
        values["optimizer"] = "nesterov" if nesterov else "momentum"
    elif not momentum:
        values.pop("momentum", None)
    return values


_HINTS = typing.get_type_hints(Config)


def _coerce(key: str, value: Any) -> Any:
    """Check `value` against the field's annotation, converting lists and ints where exact."""
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"config key '{key}' must not be empty")
    for kind in allowed:
        if kind is type(None):
            continue
        if typing.get_origin(kind) is Literal:
            if value in typing.get_args(kind):
                return value
            continue
        if kind is bool:
            if isinstance(value, bool):
                return value
            continue
        if kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            continue
        if kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            continue
        if kind is str:
            if isinstance(value, str):
                return value
            continue
        if typing.get_origin(kind) is tuple:
            if isinstance(value, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                return tuple(value)
            continue
    raise ConfigError(f"config key '{key}' must be {_describe(allowed)}, got {value!r}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _describe(allowed: tuple[Any, ...]) -> str:
    names = []
    for kind in allowed:
        if kind is type(None):
            continue
        if typing.get_origin(kind) is Literal:
            names.extend(repr(v) for v in typing.get_args(kind))
        elif typing.get_origin(kind) is tuple:
            names.append("a list of integers")
        else:
            names.append(
                {int: "an integer", float: "a number", str: "a string"}.get(kind, "a boolean")
            )
    return " or ".join(names)
