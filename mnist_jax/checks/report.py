"""What a model gets wrong: confusion matrix, per-class precision/recall/F1, worst mistakes.

It renders an `mnist_jax.checks.evaluation.Evaluation`'s labels and probabilities; everything here
is plain NumPy:

    confusion[t, p] = number of examples of true class t predicted as p
    precision[c]    = confusion[c, c] / column sum c   (0 when nothing was predicted c)
    recall[c]       = confusion[c, c] / row sum c      (0 when class c has no examples)
    f1[c]           = 2 precision recall / (precision + recall)   (0 when both are 0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

NUM_CLASSES = 10
MISTAKES = 10  # most confident mistakes listed by default


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Count (true, predicted) pairs: labels, predictions (N,) ints -> (C, C) int64."""
    pairs = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0 where the denominator is 0."""
    out = np.zeros(numerator.shape, np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of each class from a confusion matrix (C, C).

    Returns:
        {"precision", "recall", "f1"}: (C,) float64, and "support": (C,) int64 (row sums).
    """
    hits = np.diag(confusion).astype(np.float64)
    precision = _ratio(hits, confusion.sum(axis=0))
    recall = _ratio(hits, confusion.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": confusion.sum(axis=1)}


def confident_mistakes(
    labels: np.ndarray, probs: np.ndarray, count: int = MISTAKES
) -> list[dict[str, Any]]:
    """The `count` wrong predictions made with the highest probability, most confident first.

    Args:
        labels: (N,) true classes; probs: (N, C) probabilities.

    Returns:
        [{"index", "label", "predicted", "probability"}]; index is the position in the split.
    """
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:count]
    return [
        {
            "index": int(i),
            "label": int(labels[i]),
            "predicted": int(predicted[i]),
            "probability": float(probs[i, predicted[i]]),
        }
        for i in order
    ]


def summarize(labels: np.ndarray, probs: np.ndarray, mistakes: int = MISTAKES) -> dict[str, Any]:
    """The report of one split as plain JSON-ready values.

    Returns:
        {"confusion": (C, C) nested lists (rows = true class), "per_class": [{"class",
        "precision", "recall", "f1", "support"}], "macro_f1", "confident_mistakes"}.
    """
    confusion = confusion_matrix(labels, probs.argmax(axis=1), probs.shape[1])
    stats = per_class(confusion)
    rows = [
        {
            "class": c,
            "precision": float(stats["precision"][c]),
            "recall": float(stats["recall"][c]),
            "f1": float(stats["f1"][c]),
            "support": int(stats["support"][c]),
        }
        for c in range(len(confusion))
    ]
    return {
        "confusion": confusion.tolist(),
        "per_class": rows,
        "macro_f1": float(stats["f1"].mean()),
        "confident_mistakes": confident_mistakes(labels, probs, mistakes),
    }


def format_evaluation(result: dict[str, Any]) -> list[str]:
    """Render an `Evaluation.to_dict()`: the headline figures (a committee's, then each
    member's), then `format_report`'s tables."""
    figures = f"{result['split']} accuracy {result['accuracy']:.2%}  loss {result['loss']:.4f}"
    where = f"{result['count']:,} images of {result['dataset']}"
    if "members" not in result:
        return [f"{figures}  ({where}, epoch {result['epoch']})", "", *format_report(result)]
    members = [
        f"  member {i}  accuracy {m['accuracy']:.2%}  loss {m['loss']:.4f}  "
        f"(epoch {m['epoch']}, {m['checkpoint']})"
        for i, m in enumerate(result["members"])
    ]
    head = f"{figures}  ({where}, committee of {len(members)}, {result['rule']})"
    return [head, *members, "", *format_report(result)]


def format_report(report: dict[str, Any]) -> list[str]:
    """Render the confusion matrix, the per-class table and the mistakes as text lines."""
    confusion = np.asarray(report["confusion"])
    classes = range(len(confusion))
    cell = max(5, len(str(confusion.max())) + 1)
    lines = ["confusion matrix (rows: true digit, columns: predicted)"]
    lines.append("true\\pred" + "".join(f"{c:>{cell}}" for c in classes))
    for c in classes:
        lines.append(f"{c:>9}" + "".join(f"{v:>{cell}}" for v in confusion[c]))
    lines += ["", "digit  precision  recall      f1  support"]
    for row in report["per_class"]:
        lines.append(
            f"{row['class']:>5}  {row['precision']:>9.2%}  {row['recall']:>6.2%}  "
            f"{row['f1']:>6.2%}  {row['support']:>7,}"
        )
    lines.append(f"macro F1 {report['macro_f1']:.2%}")
    if report["confident_mistakes"]:
        lines += ["", "most confident mistakes", "index  true  predicted  probability"]
        for m in report["confident_mistakes"]:
            lines.append(
                f"{m['index']:>5}  {m['label']:>4}  {m['predicted']:>9}  {m['probability']:>11.2%}"
            )
    return lines
