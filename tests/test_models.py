"""The model builders give the 2016 architectures with their exact parameter counts."""

import numpy as np
import pytest

from stages.models import build_model, compile_model, one_hot
from stages.params import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")


def layer_summary(variant: str) -> list[tuple[str, tuple]]:
    model = build_model(PARAMS.model(variant))
    return [(layer.__class__.__name__, tuple(layer.output.shape[1:])) for layer in model.layers]


def test_small_model_acts_on_rows_and_has_9474_params() -> None:
    model = build_model(PARAMS.model("small"))
    assert model.count_params() == 9474
    assert [layer.count_params() for layer in model.layers] == [812, 812, 0, 7850]
    assert layer_summary("small") == [
        ("Dense", (28, 28)),
        ("Dense", (28, 28)),
        ("Flatten", (784,)),
        ("Dense", (10,)),
    ]


def test_wide_dropout_model_has_669706_params() -> None:
    assert build_model(PARAMS.model("wide_dropout")).count_params() == 669_706
    assert layer_summary("wide_dropout") == [
        ("Flatten", (784,)),
        ("Dense", (512,)),
        ("Dropout", (512,)),
        ("Dense", (512,)),
        ("Dropout", (512,)),
        ("Dense", (10,)),
    ]


def test_wide_model_is_the_same_without_dropout() -> None:
    assert build_model(PARAMS.model("wide")).count_params() == 669_706
    assert [name for name, _ in layer_summary("wide")] == ["Flatten", "Dense", "Dense", "Dense"]


def test_label_smoothing_and_weight_decay_reach_the_compiled_model() -> None:
    params = PARAMS.model("wide").model_copy(update={"label_smoothing": 0.1, "weight_decay": 0.05})
    model = build_model(params)
    compile_model(model, params, steps_per_epoch=10, steps_per_execution=1)
    assert model.loss.label_smoothing == 0.1
    assert model.optimizer.weight_decay == 0.05
    # Smoothed targets: 0.9 + 0.01 on the digit, 0.01 elsewhere; the loss sees exactly that.
    probabilities = np.full((1, 10), 0.1, dtype=np.float32)
    expected = -np.log(0.1)  # every class at 0.1: the cross-entropy of any target is -log 0.1
    assert float(model.loss(one_hot(np.array([3])), probabilities)) == pytest.approx(expected)
    assert one_hot(np.array([3, 0])).tolist()[0] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_no_weight_decay_leaves_the_optimizer_without_it() -> None:
    params = PARAMS.model("wide").model_copy(update={"weight_decay": 0.0})
    model = build_model(params)
    compile_model(model, params, steps_per_epoch=10, steps_per_execution=1)
    assert params.weight_decay == 0.0 and model.optimizer.weight_decay is None
