"""Check JAX's gradients against hand-written NumPy backpropagation on a real MNIST batch.

`check_gradients` builds the config's model with the trainer's own initialisation, takes the
first training batch the trainer would see, and compares, for every parameter leaf, the
gradient `jax.grad` gives for the trainer's loss (`Trainer.loss_fn`) with the one
`mnist_jax.checks.reference.gradients` computes by the chain rule, layer by layer. Central finite
differences of the NumPy loss at a few coordinates per leaf say, independently of both, that
these really are the derivatives. The loss values are compared too.

How the error is measured. For a leaf with JAX gradient a and reference gradient b, the
relative error is normwise:

    rel(a, b) = max_i |a_i - b_i| / max(max_i |a_i|, max_i |b_i|, tiny)

with tiny the smallest positive float64. It is scale-free, so unscaled 0..255 pixels (which
make the first layer's gradient 255 times larger) change nothing; a leaf whose gradient is
exactly zero on both sides (dead ReLU units, the all-zero border pixels that make whole rows
of dW_1 vanish) scores 0, not 0/0. An entry-wise measure |a_i - b_i| / |b_i| would be the
wrong yardstick in float32: an entry such as (dW_1)_ij = sum over the batch of x_ni (dZ_1)_nj
adds terms of both signs and can cancel to almost nothing, yet keeps a rounding error of the
size of its terms (about 1e-7 of them in float32). On the default model's first sample
batch in float32 the worst entry-wise error of dW_1 is 1.4e-2 (and 0.04% of its entries
exceed 1e-4) while the normwise error is 3e-7. The normwise error bounds what matters for a
gradient step: no entry is off by more than `rel` times the leaf's largest.

Tolerances. In float64, JAX and the reference differ only by rounding (about 1e-16 per
operation, summed over at most a few thousand terms), so `rel` must be at most 1e-10. In
float32 the JAX gradient is compared with the reference computed in float64 from the very
same float32 parameters and inputs, so the error is JAX's float32 rounding alone: about
1e-7 to 1e-6 on real data, checked against 1e-4. Both assume full-precision products, so the
check always runs them at "highest" (`mnist_jax.devices.backend`): on recent NVIDIA GPUs
XLA's default float32 products use TF32, whose 10-bit mantissa alone would leave errors near 1e-3.

Finite differences are central, in float64, on the NumPy loss, at FD_POINTS coordinates
per leaf drawn among its nonzero entries. The step moves the layer's pre-activations by at
most 1e-5 (for weights it is divided by the largest input, 255 with unscaled pixels);
ReLU units whose pre-activation comes that close to zero in the batch are not drawn, since
there the difference straddles the kink. Truncation (order step^2) and rounding (order
1e-16 / step of the loss) leave errors of at most a few 1e-8 relative to the leaf's largest
gradient, so they are held to 1e-6: looser than the backprop comparison, yet ample to catch
a wrong derivative (a missing factor or a flipped sign scores 0.5 or more).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import architecture, data
from mnist_jax.checks import reference
from mnist_jax.config import Config
from mnist_jax.data import Splits
from mnist_jax.errors import MnistJaxError
from mnist_jax.keys import epoch_key, shuffle
from mnist_jax.training import step
from mnist_jax.training.trainer import Trainer, build, precision

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
FD_TOLERANCE = 1e-6
FD_STEP = 1e-5
FD_POINTS = 3  # coordinates per leaf checked by finite differences
TINY = np.finfo(np.float64).tiny

GradientFn = Callable[..., tuple[float, reference.Params]]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Normwise relative error max|a - b| / max(max|a|, max|b|, tiny) of two same-shape arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), TINY)
    return float(np.max(np.abs(a - b)) / scale)


def first_batch(trainer: Trainer, splits: Splits, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the first `batch` images of the first epoch's shuffle of the run's training split.

    Returns:
        (x (batch, 784) uint8, y (batch,) int32).
    """
    num_train = trainer.num_train
    if not 0 < batch <= num_train:
        raise MnistJaxError(
            f"--batch must be a positive integer no larger than the {num_train:,} training "
            f"images, got {batch}"
        )
    order = np.asarray(shuffle(epoch_key(trainer.keys, 0), num_train))
    take = order[:batch]
    return splits.train.x[take].reshape(batch, -1), splits.train.y[take].astype(np.int32)


def value_and_grad(trainer: Trainer) -> Callable:
    """The jitted (loss, grads) of the trainer's own loss: f(params, x (batch, 784) uint8, y)."""
    return jax.jit(jax.value_and_grad(trainer.loss_fn))


def jax_gradients(
    trainer: Trainer, params: Any, x: np.ndarray, y: np.ndarray
) -> tuple[float, list[dict[str, np.ndarray]], np.ndarray]:
    """Differentiate the trainer's own loss with JAX, under jit as in training.

    Returns:
        (loss, grads as NumPy arrays, the scaled inputs (batch, 784) the loss saw).
    """
    value, grads = value_and_grad(trainer)(params, trainer.put(x), trainer.put(y))
    scaled = step.scale_inputs(jnp.asarray(x), trainer.config)
    return float(value), jax.device_get(grads), np.asarray(scaled)


def finite_differences(
    loss_fn: Callable[[reference.Params], float],
    params: reference.Params,
    layer: int,
    name: str,
    coords: np.ndarray,
    step: float = FD_STEP,
) -> np.ndarray:
    """Central differences (L(p + h e_k) - L(p - h e_k)) / 2h at flat indices `coords` of a leaf."""
    values = []
    for k in coords:
        estimates = []
        for sign in (1.0, -1.0):
            leaf = params[layer][name].copy()
            leaf.flat[k] += sign * step
            moved = [dict(p) for p in params]
            moved[layer] = {**params[layer], name: leaf}
            estimates.append(loss_fn(moved))
        values.append((estimates[0] - estimates[1]) / (2.0 * step))
    return np.asarray(values)


def check_gradients(
    config: Config,
    *,
    batch: int = 100,
    dtype: str = "float64",
    seed: int | None = None,
    reference_gradients: GradientFn | None = None,
    log: Callable[[str], None] = print,
    placement: Any = None,
) -> dict[str, Any]:
    """Compare JAX's gradients of the config's loss with NumPy backpropagation.

    Args:
        config: the model (hidden, activation, output, l2, init, input_norm) and data to check.
        batch: images in the checked batch.
        dtype: "float64" (JAX's x64 mode, only inside this call) or "float32".
        seed: replaces the config's seed (init, data split, batch, finite-difference points).
        reference_gradients: the hand-written backprop to compare with; defaults to
            `mnist_jax.checks.reference.gradients` (a parameter so a test can pass a wrong one).
        log: receives the data loader's notes.
        placement: where JAX differentiates (`runtime.placement`); its default device if None.

    Returns:
        A JSON-ready report: one row per leaf {"layer", "param", "shape", "max_abs_error",
        "relative_error", "fd_relative_error", "ok"}, the loss values, the tolerances, the
        platform and matrix-product precision, and "passed" (every row and the loss within
        tolerance).
    """
    if dtype not in TOLERANCE:
        raise MnistJaxError(f"unknown dtype '{dtype}': choose float64 or float32")
    reference_gradients = reference_gradients or reference.gradients
    config = config.replace(
        dtype=dtype, matmul_precision="highest", **({} if seed is None else {"seed": seed})
    )
    splits = data.load(config, log)
    with precision(config):
        trainer = build(config, splits, placement)
        x, y = first_batch(trainer, splits, batch)
        num_train, dataset_name = trainer.num_train, splits.name
        params = trainer.init_state().params
        jax_loss, jax_grads, x_scaled = jax_gradients(trainer, params, x, y)
        # The reference works in float64 on exactly the values JAX saw (float32 ones widened).
        ref_params = [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in params]
    settings = {
        "activation": config.activation,
        "output": config.output,
        "l2": config.l2,
        "num_train": num_train,
    }
    ref_x = x_scaled.astype(np.float64)
    ref_loss, ref_grads = reference_gradients(ref_params, ref_x, y, **settings)

    def numpy_loss(p: reference.Params) -> float:
        return reference.loss(p, ref_x, y, **settings)

    _, cache = reference.forward(ref_params, ref_x, config.activation)
    tolerance = TOLERANCE[dtype]
    rows = []
    for index, (ours, theirs) in enumerate(zip(jax_grads, ref_grads)):
        for name in ("w", "b"):
            # Which coordinates to difference: a NumPy generator seeded from the config's seed
            # and the leaf, as this is the NumPy side of the check.
            rng = np.random.default_rng([config.seed, index, name == "b"])
            a, b = np.asarray(ours[name], np.float64), np.asarray(theirs[name], np.float64)
            rel = relative_error(a, b)
            fd_rel = _fd_check(
                numpy_loss, ref_params, cache, config.activation, index, name, b, rng
            )
            rows.append(
                {
                    "layer": index + 1,
                    "param": name,
                    "shape": list(b.shape),
                    "max_abs_error": float(np.max(np.abs(a - b))),
                    "relative_error": rel,
                    "fd_relative_error": fd_rel,
                    "ok": rel <= tolerance and fd_rel <= FD_TOLERANCE,
                }
            )
    loss_rel = relative_error(np.float64(jax_loss), np.float64(ref_loss))
    loss_ok = loss_rel <= tolerance
    return {
        "config": config.name,
        "architecture": "-".join(str(size) for size in architecture.layer_sizes(config)),
        "activation": config.activation,
        "output": config.output,
        "l2": config.l2,
        "dtype": dtype,
        "platform": trainer.policy.platform,
        "matmul_precision": trainer.policy.matmul_precision,
        "seed": config.seed,
        "batch": batch,
        "num_train": num_train,
        "dataset": dataset_name,
        "tolerance": tolerance,
        "fd_tolerance": FD_TOLERANCE,
        "fd_step": FD_STEP,
        "rows": rows,
        "loss": {"jax": jax_loss, "numpy": ref_loss, "relative_error": loss_rel, "ok": loss_ok},
        "passed": loss_ok and all(row["ok"] for row in rows),
    }


def _fd_check(
    loss_fn: Callable[[reference.Params], float],
    params: reference.Params,
    cache: reference.Cache,
    activation: str,
    index: int,
    name: str,
    grad: np.ndarray,
    rng: np.random.Generator,
) -> float:
    """Finite-difference `grad` (leaf `name` of layer `index`) at a few random coordinates.

    Returns:
        max |fd - grad| over the coordinates, relative to the leaf's largest |grad|.
    """
    inputs, z = cache[index]  # (batch, fan_in), (batch, fan_out)
    smooth = _smooth_units(z, activation, hidden=index < len(params) - 1)
    coords = _fd_coordinates(grad, rng, smooth)
    # A weight moves the layer's outputs by its step times the inputs: scale the step down by
    # the largest input (255 for unscaled pixels) so that the move stays at most FD_STEP.
    largest = float(np.max(np.abs(inputs))) if name == "w" else 1.0
    fd = finite_differences(loss_fn, params, index, name, coords, FD_STEP / max(1.0, largest))
    scale = max(float(np.max(np.abs(grad))), float(np.max(np.abs(fd))), TINY)
    return float(np.max(np.abs(fd - grad.flat[coords])) / scale)


def _smooth_units(z: np.ndarray, activation: str, hidden: bool) -> np.ndarray:
    """Mark the units (fan_out,) of a layer whose finite differences cross no ReLU kink.

    A step moves a unit's pre-activations z (batch, fan_out) by at most FD_STEP; where some
    |z| is closer to 0 than that, the difference quotient straddles the kink and means nothing.
    """
    if activation != "relu" or not hidden:
        return np.ones(z.shape[1], bool)
    return np.min(np.abs(z), axis=0) > 2 * FD_STEP


def _fd_coordinates(grad: np.ndarray, rng: np.random.Generator, smooth: np.ndarray) -> np.ndarray:
    """Draw up to FD_POINTS flat indices of a leaf among its nonzero, kink-free entries.

    Exact zeros (border pixels, dead units) are already settled by the backprop comparison;
    finite differences are spent where the derivative has something to say.
    """
    candidates = np.flatnonzero((grad != 0) & np.broadcast_to(smooth, grad.shape))
    if candidates.size == 0:
        candidates = np.arange(grad.size)
    return rng.choice(candidates, min(FD_POINTS, candidates.size), replace=False)


def format_report(report: dict[str, Any]) -> list[str]:
    """Render a `check_gradients` report as the lines of a table; failing rows say FAIL."""
    lines = [
        f"gradcheck {report['config']}: {report['architecture']} {report['activation']}"
        f" / {report['output']}, l2 {report['l2']:g}, {report['dtype']}, batch {report['batch']}"
        f" of {report['num_train']:,} {report['dataset']} training images (seed {report['seed']})",
        f"{'layer':>5}  {'param':<5}  {'shape':<10}  {'max |jax-numpy|':>15}  "
        f"{'rel. error':>10}  {'fin. diff.':>10}",
    ]
    for row in report["rows"]:
        shape = "x".join(str(n) for n in row["shape"])
        lines.append(
            f"{row['layer']:>5}  {row['param']:<5}  {shape:<10}  {row['max_abs_error']:>15.2e}  "
            f"{row['relative_error']:>10.2e}  {row['fd_relative_error']:>10.2e}  "
            f"{'ok' if row['ok'] else 'FAIL'}"
        )
    loss = report["loss"]
    lines.append(
        f"loss: jax {loss['jax']:.12g}  numpy {loss['numpy']:.12g}  "
        f"rel. error {loss['relative_error']:.2e}  {'ok' if loss['ok'] else 'FAIL'}"
    )
    lines.append(
        f"tolerance: rel. error <= {report['tolerance']:g} (max|jax-numpy| / largest |gradient| of"
        f" the leaf), finite differences <= {report['fd_tolerance']:g}"
    )
    lines.append("passed" if report["passed"] else "FAILED: the rows marked FAIL disagree")
    return lines
