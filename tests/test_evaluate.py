"""evaluate's metrics against values computed by hand on a small fixed example."""

import math

import numpy as np
import pytest

from stages.evaluation import classification_metrics

# Five digits of classes 0, 0, 1, 1, 2; the model predicts 0, 1, 1, 1, 0.
ACTUAL = np.array([0, 0, 1, 1, 2])
PROBABILITIES = np.full((5, 10), 0.02)
for row, (digit, p) in enumerate([(0, 0.82), (1, 0.62), (1, 0.82), (1, 0.42), (0, 0.62)]):
    PROBABILITIES[row, digit] = p
PROBABILITIES[3, 3] = 0.40  # row 3: digit 1 at 0.42 just ahead of digit 3 at 0.40
PROBABILITIES /= PROBABILITIES.sum(axis=1, keepdims=True)


def test_accuracy_precision_recall_and_f1_by_hand() -> None:
    assert PROBABILITIES.argmax(axis=1).tolist() == [0, 1, 1, 1, 0]
    metrics = classification_metrics(ACTUAL, PROBABILITIES)
    assert metrics["test"]["accuracy"] == pytest.approx(3 / 5)
    # Class 0: predicted at rows 0 and 4, right at row 0; actual at rows 0 and 1.
    # Class 1: predicted at rows 1, 2, 3, right at 2 and 3; actual at rows 2 and 3.
    # Class 2: never predicted (precision 0 by convention), actual at row 4.
    precision, recall, f1 = (metrics["per_class"][k] for k in ("precision", "recall", "f1"))
    assert precision[:3] == pytest.approx([1 / 2, 2 / 3, 0])
    assert recall[:3] == pytest.approx([1 / 2, 1, 0])
    assert f1[:3] == pytest.approx([1 / 2, 4 / 5, 0])
    assert precision[3:] == recall[3:] == f1[3:] == [0.0] * 7
    assert metrics["macro"]["precision"] == pytest.approx((1 / 2 + 2 / 3) / 10)
    assert metrics["macro"]["recall"] == pytest.approx((1 / 2 + 1) / 10)
    assert metrics["macro"]["f1"] == pytest.approx((1 / 2 + 4 / 5) / 10)


def test_log_loss_is_the_mean_negative_log_probability_of_the_true_digit() -> None:
    metrics = classification_metrics(ACTUAL, PROBABILITIES)
    true_probabilities = PROBABILITIES[np.arange(5), ACTUAL]
    expected = -sum(math.log(p) for p in true_probabilities) / 5
    assert metrics["test"]["loss"] == pytest.approx(expected)
