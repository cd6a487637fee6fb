"""The model builders give the 2016 architectures with their exact parameter counts."""

from stages.models import build_model
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
