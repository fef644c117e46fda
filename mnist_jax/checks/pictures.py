"""Pictures of a run for its trackers (TensorBoard): plain NumPy arrays, no plotting library.

Drawn once, at the end of a run, from its test `Evaluation`:

    confusion_matrix   (H, W, 3) uint8: rows are true classes, columns predicted ones; the
                       diagonal blue by recall, mistakes red by their share of the row; counts
                       written in the cells, class numbers along the top and the left
    mistakes           (H, W) uint8: the most confident wrong predictions, each image with
                       "true>predicted" written under it

`grid` tiles any images (the hook a run that distorts uses for its distorted samples). The
digits are a 3x5 pixel font, so the pictures need neither matplotlib nor Pillow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_jax.checks import report

# 3 columns x 5 rows per glyph, row by row ("1" = ink)
FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001010010010", "8": "111101111101111",
    "9": "111101111001111", ">": "100010001010100", " ": "000000000000000",
}  # fmt: skip
SCALE = 2  # font pixels per glyph pixel
MISTAKES = 48  # tiles in the mistakes picture
COLUMNS = 8


def text(line: str, scale: int = SCALE) -> np.ndarray:
    """Render digits (and ">") as a (5 * scale, width) bool mask, one blank column between."""
    glyphs = [np.array([c == "1" for c in FONT[ch]], bool).reshape(5, 3) for ch in line]
    gap = np.zeros((5, 1), bool)
    parts = [part for glyph in glyphs for part in (glyph, gap)][:-1] or [np.zeros((5, 0), bool)]
    return np.kron(np.concatenate(parts, axis=1), np.ones((scale, scale), bool))


def grid(images: np.ndarray, columns: int = COLUMNS, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W) uint8 images into one (rows * (H + pad), columns * (W + pad)) picture."""
    n, height, width = images.shape
    rows = -(-n // columns)
    out = np.zeros((rows * (height + pad), columns * (width + pad)), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (height + pad) : r * (height + pad) + height,
            c * (width + pad) : c * (width + pad) + width] = image  # fmt: skip
    return out


def confusion_image(confusion: np.ndarray) -> np.ndarray:
    """Draw a (C, C) confusion matrix of counts as an (H, W, 3) uint8 picture (see above)."""
    classes = len(confusion)
    widest = text(str(max(int(confusion.max()), classes - 1))).shape[1]
    cell = max(widest + 6, 5 * SCALE + 6)
    margin = text(str(classes - 1)).shape[1] + 10
    size = margin + classes * cell
    out = np.full((size, size, 3), 255, np.uint8)
    totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    share = confusion / totals  # of each true class's examples
    for (t, p), count in np.ndenumerate(confusion):
        top, left = margin + t * cell, margin + p * cell
        strength = share[t, p] if t == p else min(1.0, 4 * share[t, p])  # mistakes are few
        hue = np.array([40, 90, 200] if t == p else [210, 40, 40], np.float64)
        colour = 255 - strength * (255 - hue)
        out[top : top + cell - 1, left : left + cell - 1] = colour.astype(np.uint8)
        ink = 255 if strength > 0.5 else 0
        _write(out, str(int(count)), top + cell // 2, left + cell // 2, ink)
    for c in range(classes):
        middle = margin + c * cell + cell // 2
        _write(out, str(c), margin // 2, middle, 0)  # predicted, along the top
        _write(out, str(c), middle, margin // 2, 0)  # true, down the left
    return out


def mistakes_image(
    images: np.ndarray, labels: np.ndarray, probs: np.ndarray, count: int = MISTAKES
) -> np.ndarray | None:
    """The `count` most confident mistakes as one (H, W) uint8 picture, or None when none.

    Args:
        images: (N, H, W) uint8; labels: (N,) ints; probs: (N, C) probabilities.
    """
    wrong = report.confident_mistakes(labels, probs, count)
    if not wrong:
        return None
    captions = [text(f"{m['label']}>{m['predicted']}") for m in wrong]
    height, width = images.shape[1:]
    tile_w = max(width, max(c.shape[1] for c in captions))
    tiles = np.zeros((len(wrong), height + 5 * SCALE + 2, tile_w), np.uint8)
    for tile, m, caption in zip(tiles, wrong, captions):
        left = (tile_w - width) // 2
        tile[:height, left : left + width] = images[m["index"]]
        tile[height + 2 :, : caption.shape[1]][caption] = 255
    return grid(tiles)


def of_evaluation(evaluation: Any) -> dict[str, np.ndarray]:
    """The pictures of an `evaluation.Evaluation`: "confusion_matrix" and "mistakes"."""
    labels, probs = evaluation.labels, evaluation.probabilities
    confusion = report.confusion_matrix(labels, probs.argmax(axis=1), probs.shape[1])
    pictures = {"confusion_matrix": confusion_image(confusion)}
    wrong = mistakes_image(evaluation.images, labels, probs)
    if wrong is not None:
        pictures["mistakes"] = wrong
    return pictures


def _write(out: np.ndarray, line: str, middle_row: int, middle_col: int, ink: int) -> None:
    """Write `line` into `out` (H, W, 3) centred on (middle_row, middle_col)."""
    mask = text(line)
    top, left = middle_row - mask.shape[0] // 2, middle_col - mask.shape[1] // 2
    out[top : top + mask.shape[0], left : left + mask.shape[1]][mask] = ink
