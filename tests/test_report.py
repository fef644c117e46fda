import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_jax import api
from mnist_jax.checks import report
from mnist_jax.cli.app import app
from mnist_jax.data import mnist
from tests.trained_model import trained_smoke_model  # noqa: F401 (the smoke_model fixture)

runner = CliRunner()

# Three classes, six examples: true labels and predictions, counted by hand below.
LABELS = np.array([0, 0, 1, 2, 2, 2])
PREDICTED = np.array([0, 1, 1, 2, 0, 2])


def test_confusion_matrix_of_a_hand_counted_case():
    confusion = report.confusion_matrix(LABELS, PREDICTED, num_classes=3)
    expected = [
        [1, 1, 0],  # two 0s: one right, one read as 1
        [0, 1, 0],
        [1, 0, 2],  # three 2s: one read as 0
    ]
    np.testing.assert_array_equal(confusion, expected)
    np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(LABELS))


def test_precision_recall_f1_by_hand():
    stats = report.per_class(report.confusion_matrix(LABELS, PREDICTED, num_classes=3))
    # precision = hits / predicted as c: 1/2, 1/2, 2/2; recall = hits / truly c: 1/2, 1/1, 2/3
    np.testing.assert_allclose(stats["precision"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(stats["recall"], [0.5, 1.0, 2 / 3])
    # f1 = 2pr / (p + r)
    np.testing.assert_allclose(stats["f1"], [0.5, 2 / 3, 0.8])
    np.testing.assert_array_equal(stats["support"], [2, 1, 3])


def test_a_class_never_seen_nor_predicted_scores_zero_not_nan():
    stats = report.per_class(report.confusion_matrix([0, 1], [0, 0], num_classes=3))
    assert stats["precision"].tolist() == [0.5, 0.0, 0.0]
    assert stats["recall"].tolist() == [1.0, 0.0, 0.0]
    assert np.isfinite(stats["f1"]).all() and stats["f1"][2] == 0.0


def test_confident_mistakes_are_wrong_and_most_confident_first():
    labels = np.array([0, 1, 2, 1])
    probs = np.array(
        [
            [0.9, 0.1, 0.0],  # right
            [0.6, 0.4, 0.0],  # wrong, p 0.6
            [0.05, 0.9, 0.05],  # wrong, p 0.9
            [0.2, 0.7, 0.1],  # right
        ]
    )
    mistakes = report.confident_mistakes(labels, probs, count=5)
    assert [(m["index"], m["label"], m["predicted"]) for m in mistakes] == [(2, 2, 1), (1, 1, 0)]
    assert mistakes[0]["probability"] == pytest.approx(0.9)
    assert len(report.confident_mistakes(labels, probs, count=1)) == 1


@pytest.fixture(scope="module")
def test_report(smoke_model):
    return api.evaluate(smoke_model, "test", log=lambda _: None).to_dict(mistakes=7)


def test_report_agrees_with_training_and_with_itself(smoke_model, test_report):
    summary = json.loads((smoke_model / "summary.json").read_text())
    assert test_report["accuracy"] == summary["test_accuracy"]
    assert test_report["loss"] == summary["test_loss"]
    confusion = np.array(test_report["confusion"])
    assert confusion.shape == (10, 10)
    assert confusion.sum() == test_report["count"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(test_report["accuracy"])
    # rows are the true classes: their sums are the class counts of the test split
    np.testing.assert_array_equal(
        confusion.sum(axis=1), np.bincount(mnist.load_sample().test_labels, minlength=10)
    )


def test_report_mistakes_are_real_mistakes(test_report):
    labels = mnist.load_sample().test_labels
    mistakes = test_report["confident_mistakes"]
    assert len(mistakes) == 7
    for m in mistakes:
        assert m["label"] == labels[m["index"]] != m["predicted"]
        assert m["probability"] > 0.1  # the predicted class beats nine others
    probabilities = [m["probability"] for m in mistakes]
    assert probabilities == sorted(probabilities, reverse=True)


def test_eval_cli_prints_the_tables_and_json_carries_them(smoke_model):
    text = runner.invoke(app, ["eval", str(smoke_model), "--mistakes", "3"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert any(line.startswith("confusion matrix") for line in lines)
    assert any(line.split()[:3] == ["digit", "precision", "recall"] for line in lines)
    assert any(line.startswith("most confident mistakes") for line in lines)
    result = runner.invoke(app, ["eval", str(smoke_model), "--json", "--mistakes", "3"])
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.stdout)
    assert len(parsed["confusion"]) == 10 and len(parsed["per_class"]) == 10
    assert len(parsed["confident_mistakes"]) == 3
    # the matrix printed in the text is the one in the JSON
    header = next(i for i, line in enumerate(lines) if line.startswith("true\\pred"))
    printed = [[int(v) for v in line.split()[1:]] for line in lines[header + 1 : header + 11]]
    assert printed == parsed["confusion"]
