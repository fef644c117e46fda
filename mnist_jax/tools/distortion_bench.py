"""The benchmark's augment workload: what distorting every training image costs an epoch.

One run times, side by side on the same images, the trainer's epoch without distortions
(``mnist-jax``, the reference of every ratio), with affine and elastic distortions together
(``mnist-jax+both``) and with elastic ones alone (``mnist-jax+elastic``), then an epoch's worth
of distortions alone, without training: mnist-jax's (``distort-only``), the same fields read by
`jax.scipy.ndimage.map_coordinates` instead of `distort.bilinear` (``map-coordinates``), and
`dm_pix.elastic_deformation` (``dm-pix``, when installed), the JAX ecosystem's elastic
distortion, with the same alpha and sigma. Ratios are time / the undistorted epoch's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from mnist_jax.config import Config
from mnist_jax.tools import peers
from mnist_jax.tools.measure import row, time_runs
from mnist_jax.training import distort

Distorter = Callable[[jax.Array, jax.Array], jax.Array]  # (key, images (b, h, w)) -> images
# dm-pix takes ~40x longer than the trainer's epoch: its row times this many batches and
# scales the time to the epoch's, as its note says.
SLOW_PEER_BATCHES = 16


def augment_rows(
    config: Config,
    x: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, ...],
    repeats: int,
    device: jax.Device,
) -> list[dict[str, Any]]:
    """Time the undistorted, distorted and distortion-only epochs of `config` on (x, y).

    x is (N, pixels) uint8 of images of `image_shape` (h, w); y (N,) int32.
    """
    rows = []
    for name, augment in (("mnist-jax", "none"), ("mnist-jax+both", "both"),
                          ("mnist-jax+elastic", "elastic")):  # fmt: skip
        compile_s, prepare, run, _, _ = peers.jax_epoch(
            config.replace(augment=augment), x, y, device, image_shape
        )
        rows.append(row(name, time_runs(prepare, run, repeats), compile_s, note=augment))
    both = distort.from_config(config.replace(augment="both"))
    alone: list[tuple[str, Distorter | None, str]] = [
        ("distort-only", lambda k, im: distort.apply(both, k, im), "both, no training"),
        ("map-coordinates", read_with_map_coordinates(both), "both, no training"),
        ("dm-pix", dm_pix_elastic(config), "elastic, no training"),
    ]
    images = jax.device_put(x.reshape(len(x), *image_shape), device)
    steps = len(x) // config.batch_size
    for name, distorter, note in alone:
        if distorter is None:
            rows.append(row(name, None, note="dm-pix not installed: pip install 'mnist-jax[pix]'"))
            continue
        timed = min(steps, SLOW_PEER_BATCHES) if name == "dm-pix" else steps
        epoch = distortion_epoch(distorter, config.batch_size, timed)
        times = [t * steps / timed for t in time_runs(lambda: images, epoch, repeats)]
        if timed < steps:
            note += f"; {timed} batches timed, scaled to the epoch's {steps}"
        rows.append(row(name, times, note=note))
    return rows


def distortion_epoch(distorter: Distorter, batch: int, steps: int) -> Callable[[Any], None]:
    """A timed call that distorts `steps` batches of `batch` images and waits for them.

    The batches are contiguous slices of the device images (b, h, w); each output is summed,
    so nothing is optimised away, and the sum is all that leaves the loop.
    """

    @jax.jit
    def epoch(images: jax.Array) -> jax.Array:
        key = jax.random.key(0)

        def body(total, i):
            chunk = jax.lax.dynamic_slice_in_dim(images, i * batch, batch)
            return total + jnp.sum(distorter(jax.random.fold_in(key, i), chunk)), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), jnp.arange(steps))
        return total

    return lambda images: jax.block_until_ready(epoch(images))


def read_with_map_coordinates(distortion: distort.Distortion) -> Distorter:
    """mnist-jax's fields, read by `jax.scipy.ndimage.map_coordinates` (order 1, zeros)."""

    def run(key: jax.Array, images: jax.Array) -> jax.Array:
        batch, h, w = images.shape
        offsets = distortion.field(key, batch, (h, w))
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        read = lambda im, dy, dx: map_coordinates(  # noqa: E731
            im, [rows + dy, cols + dx], order=1, mode="constant", cval=0.0
        )
        return jax.vmap(read)(images.astype(jnp.float32), offsets[:, 0], offsets[:, 1])

    return run


def dm_pix_elastic(config: Config) -> Distorter | None:
    """`dm_pix.elastic_deformation` on each image, with the config's alpha and sigma."""
    try:
        import dm_pix
    except ImportError:
        return None

    def run(key: jax.Array, images: jax.Array) -> jax.Array:
        keys = jax.random.split(key, images.shape[0])
        one = lambda k, im: dm_pix.elastic_deformation(  # noqa: E731
            k, im[..., None], config.elastic_alpha, config.elastic_sigma, mode="constant"
        )[..., 0]
        return jax.vmap(one)(keys, images.astype(jnp.float32))

    return run
