"""What a Config may hold: the choices of its string fields and the checks it passes when built.

`Config.__post_init__` calls `validate`, so a config that exists can be trusted: each value
that cannot work is rejected with one line naming the key, and a misspelt choice gets the
closest one suggested. The choices are re-exported by `mnist_jax.config`.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING

from mnist_jax.errors import ConfigError

if TYPE_CHECKING:  # for the annotations only: mnist_jax.config imports this module
    from mnist_jax.config import Config

ACTIVATIONS = ("relu", "sigmoid", "tanh")
OUTPUTS = ("softmax", "sigmoid")
INITS = ("he", "glorot", "uniform", "normal")
BIAS_INITS = ("zeros", "drawn")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "lbfgs")
SCHEDULES = ("constant", "cosine")
DTYPES = ("float32", "float64")
# matrix products; see mnist_jax.devices.backend
PRECISIONS = ("auto", "default", "high", "highest")
TRICKS = ("auto", "on", "off")  # the CPU-tuned kernels; see mnist_jax.devices.backend
DATASETS = ("mnist", "sample", "auto", "idx", "kaggle-csv", "onehot-csv", "mat")
KAGGLE_SPLITS = ("shuffled", "notebook")
INPUT_NORMS = ("standardize", "scale")  # see mnist_jax.data.standardize
AUGMENTS = ("none", "affine", "elastic", "both")  # see mnist_jax.training.distort


def _choice(cfg: Config, key: str, options: tuple[str, ...]) -> None:
    value = getattr(cfg, key)
    if value not in options:
        close = difflib.get_close_matches(value, options, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown {key} '{value}': choose one of {', '.join(options)}{hint}")


def _positive(cfg: Config, key: str) -> None:
    value = getattr(cfg, key)
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{key} must be a positive number, got {value}")


def validate(cfg: Config) -> None:
    """Reject every value that cannot work, with a message naming the key."""
    for key, options in [
        ("activation", ACTIVATIONS),
        ("output", OUTPUTS),
        ("init", INITS),
        ("bias_init", BIAS_INITS),
        ("optimizer", OPTIMIZERS),
        ("schedule", SCHEDULES),
        ("dtype", DTYPES),
        ("matmul_precision", PRECISIONS),
        ("cpu_tricks", TRICKS),
        ("dataset", DATASETS),
        ("kaggle_split", KAGGLE_SPLITS),
        ("input_norm", INPUT_NORMS),
        ("augment", AUGMENTS),
    ]:
        _choice(cfg, key, options)
    for key in (
        "lr",
        "epochs",
        "eval_every",
        "eval_batch_size",
        "input_scale",
        "input_spread",
        "init_std",
    ):
        _positive(cfg, key)
    if cfg.input_std is not None:
        _positive(cfg, "input_std")
    if cfg.input_mean is not None and not 0 <= cfg.input_mean <= 255:
        raise ConfigError(f"input_mean must be a grey level in 0..255, got {cfg.input_mean}")
    if cfg.batch_size != "full" and cfg.batch_size <= 0:
        raise ConfigError(f'batch_size must be a positive integer or "full", got {cfg.batch_size}')
    if any(h <= 0 for h in cfg.hidden):
        raise ConfigError(f"hidden sizes must be positive integers, got {list(cfg.hidden)}")
    if not 0.0 < cfg.momentum < 1.0:
        raise ConfigError(f"momentum must be in (0, 1), got {cfg.momentum}")
    if cfg.l2 < 0 or not math.isfinite(cfg.l2):
        raise ConfigError(f"l2 must be zero or positive, got {cfg.l2}")
    if not 0 <= cfg.warmup_epochs < math.inf:
        raise ConfigError(f"warmup_epochs must be zero or positive, got {cfg.warmup_epochs}")
    if not (math.isfinite(cfg.init_low) and math.isfinite(cfg.init_high)):
        raise ConfigError(
            f"init_low and init_high must be finite, got {cfg.init_low}, {cfg.init_high}"
        )
    if cfg.init_low >= cfg.init_high:
        raise ConfigError(f"init_low ({cfg.init_low}) must be below init_high ({cfg.init_high})")
    for key, low in (("input_size", 1), ("num_classes", 2)):
        value = getattr(cfg, key)
        if value is not None and value < low:
            raise ConfigError(f"{key} must be at least {low}, got {value}")
    for key in ("validation_size", "train_size", "test_size"):
        value = getattr(cfg, key)
        if value is not None and value < 0:
            raise ConfigError(f"{key} must be zero or positive, got {value}")
    _validate_distortions(cfg)
    if cfg.optimizer == "lbfgs" and not cfg.full_batch:
        raise ConfigError('optimizer "lbfgs" needs batch_size = "full"')
    for key in ("seed", "data_seed"):
        value = getattr(cfg, key)
        if value is not None and not 0 <= value < 2**63:  # JAX's keys take a 64-bit signed seed
            raise ConfigError(f"{key} must be between 0 and 2**63 - 1, got {value}")


def _validate_distortions(cfg: Config) -> None:
    """Reject distortion strengths that are negative or cannot form an image."""
    for key in ("affine_rotate", "affine_scale", "affine_shear", "affine_shift", "elastic_alpha"):
        value = getattr(cfg, key)
        if not 0 <= value < math.inf:
            raise ConfigError(f"{key} must be zero or a positive number, got {value}")
    if cfg.affine_scale >= 1:
        raise ConfigError(f"affine_scale must be below 1 (a fraction), got {cfg.affine_scale}")
    _positive(cfg, "elastic_sigma")
    if cfg.augment != "none" and cfg.full_batch:
        raise ConfigError(
            f'augment = "{cfg.augment}" distorts mini-batches; it needs a numeric batch_size, '
            'not "full"'
        )
