"""evaluate: metrics by hand on a small fixed example; the stage reads the test split and
its outputs are a deterministic function of the model and that split."""

import csv
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from stages.evaluation import classification_metrics
from stages.models import scale
from tests.conftest import output_bytes, rerun_outputs

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


EVALUATE_OUTPUTS = [
    "metrics/small.json",
    "plots/small/predictions.csv",
    "plots/small/accuracy.png",
    "plots/small/misclassified.png",
]


def evaluated(project: Path, overrides: dict | None = None) -> dict[str, bytes]:
    return rerun_outputs(project, ["evaluate", "small"], EVALUATE_OUTPUTS, overrides)


def test_evaluate_is_a_deterministic_function_of_the_model_and_the_test_split(
    tiny_copy: Path,
) -> None:
    first = output_bytes(tiny_copy, EVALUATE_OUTPUTS)  # written by the pipeline's `dvc repro`
    assert evaluated(tiny_copy) == first
    (tiny_copy / "models" / "wide.keras").write_bytes(b"another variant's model")  # not read
    assert evaluated(tiny_copy, {"train.seed": 7, "split.seed": 7}) == first

    path = tiny_copy / "models" / "small.keras"
    model = keras.models.load_model(path, safe_mode=True)
    bias = model.layers[-1].bias
    bias.assign(bias + np.eye(10, dtype=np.float32)[0])  # digit 0 a little more likely
    model.save(path)
    changed = evaluated(tiny_copy)
    assert changed["metrics/small.json"] != first["metrics/small.json"]


def test_evaluate_scores_the_model_on_the_test_split(tiny_project: Path) -> None:
    """The predictions are the model's on data/split/test.npz, and the metrics count them."""
    with np.load(tiny_project / "data" / "split" / "test.npz") as test:
        images, labels = test["x"], test["y"]
    with (tiny_project / "plots" / "small" / "predictions.csv").open() as stream:
        rows = [(int(row["actual"]), int(row["predicted"])) for row in csv.DictReader(stream)]
    actual, predicted = np.array(rows).T
    np.testing.assert_array_equal(actual, labels)
    model = keras.models.load_model(tiny_project / "models" / "small.keras", safe_mode=True)
    expected = model.predict(scale(images), batch_size=1000, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(predicted, expected)
    metrics = json.loads((tiny_project / "metrics" / "small.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(np.mean(actual == predicted))
