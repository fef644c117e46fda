"""Distortions of training images, on the device: pure functions of a key and a batch.

A `Distortion` draws a displacement field for a batch of images: for every output pixel, the
offset (dy, dx) in pixels from which it is read. Fields add (`chain`), so affine and elastic
distortions together cost one resampling, as optax's `chain` composes updates. `apply` reads
every image once at its displaced coordinates, bilinearly, with zeros (MNIST's background)
outside the image.

The two kinds follow the papers whose MLP rows mnist-jax reproduces:

- **elastic** (Simard, Steinkraus and Platt, ICDAR 2003): a uniform(-1, 1) displacement per
  pixel and axis, smoothed by a Gaussian of standard deviation `sigma` pixels and scaled by
  `alpha` pixels, drawn in the smooth basis that holds its variance. Simard's values, alpha
  34 and sigma 4, are the defaults.
- **affine**: a random rotation of up to `rotate` degrees, scaling of each axis by up to
  `scale`, a horizontal shear of up to `shear` and a shift of up to `shift` pixels per axis,
  about the image's centre, each drawn uniformly. Cireşan et al. (Neural Computation 2010)
  rotated by up to 15 degrees and scaled by up to 15%; those are the defaults, with shears of
  up to 15% and shifts of up to 2 pixels.

Every function takes images of any size (batch, height, width) and uses nothing but JAX, so
the jitted epoch distorts each batch on whatever device trains.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import keys
from mnist_jax.config import Config
from mnist_jax.errors import ConfigError

Field = Callable[[jax.Array, int, tuple[int, int]], jax.Array]
BatchDistorter = Callable[[jax.Array, jax.Array], jax.Array]  # (key, x (batch, pixels)) -> x


class Distortion(NamedTuple):
    """A random displacement field: field(key, batch, (height, width)) -> (batch, 2, h, w).

    Channel 0 is the offset along rows (dy), channel 1 along columns (dx), in pixels.
    """

    field: Field


def elastic(alpha: float = 34.0, sigma: float = 4.0) -> Distortion:
    """Simard et al.'s elastic distortion: smoothed random offsets, scaled by `alpha` pixels.

    Simard draws U uniform(-1, 1) per pixel and axis and smooths it with a Gaussian of
    standard deviation `sigma` pixels: alpha * G_h U G_w^T, each row of G summing to one.
    Such a field is smooth: for sigma 4 on 28x28 images, 10x10 of the blur's singular
    components hold all but 2e-7 of its variance. So the field is drawn in that basis:
    alpha * P_h Z P_w^T with P = (left singular vectors * singular values) of G, kept while
    they matter (`smooth_basis`), and Z a (r_h, r_w) Gaussian of variance 1/3, the variance
    of uniform(-1, 1). That is the covariance of Simard's field to within 1e-6, at a tenth of
    the random numbers and one matrix product: on a CPU the blur was the distortion's
    largest cost. The offset at pixel (i, j) has standard deviation `elastic_std`.

    Args:
        alpha: the field's scale in pixels (0: no displacement).
        sigma: the smoothing's standard deviation in pixels (> 0).
    """

    def field(key: jax.Array, batch: int, shape: tuple[int, int]) -> jax.Array:
        basis_h, basis_w = (smooth_basis(n, sigma) for n in shape)  # (n, r) each
        ranks = (basis_h.shape[1], basis_w.shape[1])
        # (r_h r_w, h w): the field of each basis coefficient, flattened
        spread = jnp.asarray(np.kron(basis_h, basis_w).T, jnp.float32)
        z = jax.random.normal(key, (batch * 2, ranks[0] * ranks[1])) * math.sqrt(1 / 3)
        return (alpha * (z @ spread)).reshape(batch, 2, *shape)

    return Distortion(field)


def affine(
    rotate: float = 15.0, scale: float = 0.15, shear: float = 0.15, shift: float = 2.0
) -> Distortion:
    """A random affine map about the image's centre, each parameter drawn uniformly.

    The image is scaled by (1 + s_y, 1 + s_x) with s in [-scale, scale], sheared by x += h y
    with h in [-shear, shear], rotated by an angle in [-rotate, rotate] degrees and moved by
    (t_y, t_x) with t in [-shift, shift] pixels; the field reads each output pixel from where
    that map sends it back from (the inverse map), so a content shift of t is an offset of -t.

    Args:
        rotate: largest rotation in degrees.
        scale: largest relative change of each axis's size (below 1).
        shear: largest horizontal shear factor.
        shift: largest shift in pixels, per axis.
    """

    def field(key: jax.Array, batch: int, shape: tuple[int, int]) -> jax.Array:
        u = jax.random.uniform(key, (batch, 6), minval=-1.0, maxval=1.0)  # (batch, 6)
        angle = u[:, 0] * math.radians(rotate)
        cos, sin, zero, one = jnp.cos(angle), jnp.sin(angle), jnp.zeros(batch), jnp.ones(batch)
        rotation = _matrices(cos, sin, -sin, cos)  # (batch, 2, 2), on (y, x)
        shearing = _matrices(one, zero, shear * u[:, 1], one)
        scaling = _matrices(1.0 + scale * u[:, 2], zero, zero, 1.0 + scale * u[:, 3])
        forward = rotation @ shearing @ scaling
        a, b, c, d = forward[:, 0, 0], forward[:, 0, 1], forward[:, 1, 0], forward[:, 1, 1]
        inverse = _matrices(d, -b, -c, a) / (a * d - b * c)[:, None, None]  # (batch, 2, 2)
        y, x = centred_grid(shape)  # (h, w) each, about the centre
        my = y - shift * u[:, 4, None, None]  # (batch, h, w): the shift undone
        mx = x - shift * u[:, 5, None, None]
        at = lambda i, j: inverse[:, i, j, None, None]  # noqa: E731  (batch, 1, 1)
        # 2x2 products written out: XLA's CPU runs a batch of tiny matrix products slowly
        return jnp.stack([at(0, 0) * my + at(0, 1) * mx - y, at(1, 0) * my + at(1, 1) * mx - x], 1)

    return Distortion(field)


def _matrices(a: jax.Array, b: jax.Array, c: jax.Array, d: jax.Array) -> jax.Array:
    """Stack per-image entries (batch,) into 2x2 matrices [[a, b], [c, d]], (batch, 2, 2)."""
    return jnp.stack([jnp.stack([a, b], -1), jnp.stack([c, d], -1)], -2)


def chain(*distortions: Distortion) -> Distortion:
    """The sum of several distortions' fields, each drawn from its own key."""

    def field(key: jax.Array, batch: int, shape: tuple[int, int]) -> jax.Array:
        parts = jax.random.split(key, len(distortions))
        return sum(d.field(k, batch, shape) for d, k in zip(distortions, parts))

    return Distortion(field)


def apply(distortion: Distortion, key: jax.Array, images: jax.Array) -> jax.Array:
    """Distort a batch: images (batch, h, w) of any real type -> float32 (batch, h, w).

    Each output pixel is read bilinearly at its displaced position; outside the image reads
    zero. A zero field returns the images exactly (as float32).
    """
    batch, h, w = images.shape
    offsets = distortion.field(key, batch, (h, w))  # (batch, 2, h, w)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return bilinear(images.astype(jnp.float32), rows + offsets[:, 0], cols + offsets[:, 1])


def bilinear(images: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
    """Read images (batch, h, w) at real positions y, x (batch, h, w); zero outside.

    The images are padded by one zero pixel on every side, so each read is four gathers
    from the padded image with no bounds checks (positions past the pad read zero through
    the mask); as exact as `jax.scipy.ndimage.map_coordinates(order=1)`, and twice as fast
    on a CPU.
    """
    batch, h, w = images.shape
    y0, x0 = jnp.floor(y), jnp.floor(x)
    fy, fx = y - y0, x - x0  # (batch, h, w) weights of the lower-right neighbours
    inside = (y0 >= -1) & (y0 <= h - 1) & (x0 >= -1) & (x0 <= w - 1)
    row = jnp.clip(y0, -1, h - 1).astype(jnp.int32) + 1  # in the padded image
    col = jnp.clip(x0, -1, w - 1).astype(jnp.int32) + 1
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1))).reshape(batch, -1)
    corner = (row * (w + 2) + col).reshape(batch, -1)  # (batch, h w) upper-left neighbour

    def read(offset: int) -> jax.Array:
        return jnp.take_along_axis(padded, corner + offset, axis=1).reshape(batch, h, w)

    top = read(0) * (1 - fx) + read(1) * fx
    bottom = read(w + 2) * (1 - fx) + read(w + 3) * fx
    return jnp.where(inside, top * (1 - fy) + bottom * fy, 0.0)


def from_config(config: Config) -> Distortion | None:
    """The distortion `config.augment` asks for, with the config's parameters; None for none."""
    parts = []
    if config.augment in ("affine", "both"):
        rotate, scale = config.affine_rotate, config.affine_scale
        parts.append(affine(rotate, scale, config.affine_shear, config.affine_shift))
    if config.augment in ("elastic", "both"):
        parts.append(elastic(config.elastic_alpha, config.elastic_sigma))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else chain(*parts)


def describe(config: Config) -> str:
    """One line naming the config's distortions and their strengths."""
    parts = []
    if config.augment in ("affine", "both"):
        parts.append(
            f"affine (rotation up to {config.affine_rotate:g} degrees, scale and shear up to "
            f"{config.affine_scale:.0%} and {config.affine_shear:.0%}, shift up to "
            f"{config.affine_shift:g} px)"
        )
    if config.augment in ("elastic", "both"):
        parts.append(f"elastic (alpha {config.elastic_alpha:g}, sigma {config.elastic_sigma:g})")
    return " + ".join(parts or ["none"]) + ", every training image afresh each epoch"


def batch_distorter(config: Config, image_shape: tuple[int, ...]) -> BatchDistorter | None:
    """The epoch's distortion of flattened batches, or None when `config.augment` is "none".

    The returned call takes (key, x (batch, pixels)) and returns float32 (batch, pixels).

    Raises:
        ConfigError: a distortion asked of data that is not made of 2-D images.
    """
    distortion = from_config(config)
    if distortion is None:
        return None
    if len(image_shape) != 2:
        raise ConfigError(
            f'augment = "{config.augment}" distorts 2-D images, and this data\'s examples have '
            f'shape {tuple(image_shape)}; set augment = "none"'
        )
    shape = (int(image_shape[0]), int(image_shape[1]))

    def distort_flat(key: jax.Array, x: jax.Array) -> jax.Array:
        return apply(distortion, key, x.reshape(x.shape[0], *shape)).reshape(x.shape)

    return distort_flat


SAMPLES = (6, 5)  # training images shown, distorted copies of each


def samples(config: Config, images: np.ndarray, copies: int = SAMPLES[1]) -> np.ndarray:
    """Images (n, h, w) beside distorted copies, as a run of `config` draws them.

    Returns float32 (n, 1 + copies, h, w): column 0 the images as stored, column c the copy
    distorted with the key of the first batch of epoch c (1-based) of the config's seed, so
    the pictures show the run's own kind and strength of distortion.

    Raises:
        ConfigError: the config distorts nothing (augment = "none").
    """
    distortion = from_config(config)
    if distortion is None:
        raise ConfigError('this run distorts nothing (augment = "none")')
    run_keys = keys.root_keys(config.seed)
    draw = jax.jit(partial(apply, distortion))
    copy_keys = [keys.distortion_key(keys.epoch_key(run_keys, c), 0) for c in range(copies)]
    copied = [np.asarray(draw(k, jnp.asarray(images))) for k in copy_keys]
    return np.stack([np.asarray(images, np.float32), *copied], axis=1)


def gaussian_rows(n: int, sigma: float) -> np.ndarray:
    """A (n, n) float32 Gaussian blur along one axis; each row sums to one."""
    offsets = np.arange(n)[:, None] - np.arange(n)[None, :]
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.cache
def smooth_basis(n: int, sigma: float) -> np.ndarray:
    """The columns (n, r) that span a Gaussian blur's output: G = P Q with Q orthonormal.

    P is G's left singular vectors times its singular values, kept until the rest hold under
    1e-7 of G's energy (sum of squared singular values).
    """
    left, values, _ = np.linalg.svd(gaussian_rows(n, sigma).astype(np.float64))
    energy = np.cumsum(values**2) / np.sum(values**2)
    rank = int(np.searchsorted(energy, 1 - 1e-7) + 1)
    return (left[:, :rank] * values[:rank]).astype(np.float32)


def elastic_std(alpha: float, sigma: float, shape: tuple[int, int]) -> np.ndarray:
    """Simard's field's standard deviation (h, w) at each pixel, per axis.

    alpha * sqrt(1/3 * sum_k G_h[i, k]^2 * sum_l G_w[j, l]^2): uniform(-1, 1) noise has
    variance 1/3, and a blur's output at a pixel is the row-weighted sum of its inputs.
    """
    g_h, g_w = (gaussian_rows(n, sigma).astype(np.float64) for n in shape)
    return alpha * np.sqrt(np.outer((g_h**2).sum(axis=1), (g_w**2).sum(axis=1)) / 3)


def centred_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x), each (h, w) float32, relative to the image's centre."""
    h, w = shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return (rows - (h - 1) / 2).astype(np.float32), (cols - (w - 1) / 2).astype(np.float32)
