"""params.yaml is validated into typed objects; a bad value fails early and names its key."""

import json
import re

import pytest

from stages.errors import StageError
from stages.params import SCHEMA_FILE, ParamsError, load_params, parse_params, schema_text
from tests.conftest import REPO, repo_params, set_key, yaml_text


def test_repo_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert set(params.models) == {"small", "wide_dropout", "wide", "cnn"}
    small = params.model("small")
    assert small.hidden_units == [28, 28]
    assert (small.batch_size, small.epochs, small.layout) == (64, 120, "rows")
    assert params.model("wide_dropout").dropout == 0.2
    assert params.model("wide").dropout == 0.0
    assert params.model("cnn").layout == "conv"
    for variant in ("small", "wide_dropout", "wide"):
        model = params.model(variant)
        assert model.augment_shift == model.augment_rotation == 0, "2016 variants: no augmentation"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("models.small.epochs", 0),
        ("models.small.epochs", 2.5),
        ("models.small.epochs", "ten"),
        ("models.small.batch_size", -1),
        ("models.wide.dropout", 1.0),
        ("models.wide.dropout", -0.1),
        ("models.wide.optimizer", "adamw2"),
        ("models.wide.activation", "swish2"),
        ("models.wide.learning_rate", 0),
        ("models.wide.hidden_units", []),
        ("models.wide.hidden_units", [512, 0]),
        ("models.wide.layout", "columns"),
        ("models.wide.weight_decay", -0.01),
        ("models.wide.weight_decay", "0.1"),
        ("models.wide.label_smoothing", 1.0),
        ("models.wide.label_smoothing", -0.1),
        ("models.wide.conv_filters", [32]),
        ("models.wide.batch_norm", False),
        ("models.wide.augment_shift", 0.3),
        ("models.wide.augment_rotation", -5),
        ("models.cnn.conv_filters", []),
        ("models.cnn.conv_filters", [32, 0]),
        ("models.cnn.conv_filters", [32, 64, 64, 64]),
        ("models.cnn.conv_filters", "32"),
        ("models.cnn.kernel_size", 0),
        ("models.cnn.kernel_size", 29),
        ("models.cnn.kernel_size", 3.0),
        ("models.cnn.pooling", "min"),
        ("models.cnn.batch_norm", "yes"),
        ("models.cnn.augment_shift", -0.05),
        ("models.cnn.augment_rotation", 90),
        ("models.cnn.augment_rotation", float("nan")),
        ("split.validation_size", 0),
        ("split.validation_size", 5),
        ("split.validation_size", 59991),
        ("split.validation_size", 60000),
        ("fetch.source", "ftp"),
        ("train.steps_per_execution", 0),
        ("train.strategy", "horovod"),
        ("models.small.checkpoint", "first"),
        ("report.seeds", [4]),
        ("report.seeds", [4, -1]),
    ],
)
def test_bad_value_names_key_and_value(key: str, value: object) -> None:
    raw = repo_params()
    set_key(raw, key, value)
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert key in str(error.value)
    assert repr(value) in str(error.value)
    assert "expected" in str(error.value)


@pytest.mark.parametrize("strategy", ["mirrored", "multi_worker"])
def test_strategies_need_one_step_per_execution(strategy: str) -> None:
    raw = repo_params()
    raw["train"]["strategy"] = strategy
    with pytest.raises(ParamsError, match=r"train\.steps_per_execution = 128 .*keras#19246"):
        parse_params(raw)
    raw["train"]["steps_per_execution"] = 1
    assert parse_params(raw).train.strategy == strategy


def test_typo_in_model_entry_is_refused() -> None:
    raw = repo_params()
    raw["models"]["small"]["epoch"] = 5
    with pytest.raises(ParamsError, match=r"models\.small\.epoch = 5"):
        parse_params(raw)


def test_model_entry_must_be_a_mapping() -> None:
    raw = repo_params()
    raw["models"]["small"] = [1, 2]
    with pytest.raises(ParamsError, match=r"models\.small = \[1, 2\].*a mapping"):
        parse_params(raw)


def test_missing_key_is_named() -> None:
    raw = repo_params()
    del raw["models"]["wide"]["epochs"]
    with pytest.raises(ParamsError, match=r"models\.wide\.epochs.*missing"):
        parse_params(raw)


def test_unknown_variant_lists_known_ones() -> None:
    params = parse_params(repo_params())
    with pytest.raises(StageError, match=r"'tiny'.*\['cnn', 'small', 'wide', 'wide_dropout'\]"):
        params.model("tiny")


def test_reference_for_an_unknown_variant_is_refused() -> None:
    raw = repo_params()
    raw["report"]["reference_accuracy"]["wide-dropout"] = 0.98
    with pytest.raises(ParamsError, match=r"report\.reference_accuracy\.wide-dropout = 0\.98"):
        parse_params(raw)


def test_study_seeds_are_distinct() -> None:
    raw = repo_params()
    raw["report"]["seeds"] = [4, 5]
    assert parse_params(raw).report.seeds == [4, 5]
    raw["report"]["seeds"] = [4, 4]
    with pytest.raises(ParamsError, match=r"report\.seeds = \[4, 4\].*distinct seeds \(\[4\]"):
        parse_params(raw)


def test_2016_recipe_sets_keys_of_its_variant() -> None:
    params = parse_params(repo_params())
    wide = params.with_2016_recipe("wide")
    assert (wide.optimizer, wide.lr_schedule, wide.checkpoint) == ("rmsprop", "constant", "last")
    assert (wide.weight_decay, wide.label_smoothing, wide.batch_size) == (0.0, 0.0, 128)
    assert wide.hidden_units == params.model("wide").hidden_units  # the architecture stays
    assert params.model("wide").checkpoint == "best"  # the variant itself is unchanged
    assert "cnn" not in params.report.recipe_2016  # cnn is not 2016's


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("optimizer", "adagrad", "'adam', 'rmsprop' or 'sgd'"),
        ("epochs", 0, "greater than or equal to 1"),
        ("epoch", 20, "no such key"),
    ],
)
def test_bad_2016_recipe_names_its_key(key: str, value: object, fragment: str) -> None:
    raw = repo_params()
    raw["report"]["recipe_2016"]["wide"][key] = value
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    message = str(error.value)
    assert f"report.recipe_2016.wide.{key} = {value!r}" in message and fragment in message


def test_2016_recipe_for_an_unknown_variant_is_refused() -> None:
    raw = repo_params()
    raw["report"]["recipe_2016"]["tiny"] = {"epochs": 1}
    with pytest.raises(ParamsError, match=r"report\.recipe_2016\.tiny = \{'epochs': 1\}"):
        parse_params(raw)


def test_new_variant_needs_only_params(tmp_path) -> None:
    raw = repo_params()
    raw["models"]["medium"] = dict(raw["models"]["wide"], hidden_units=[128, 128])
    path = tmp_path / "params.yaml"
    path.write_text(yaml_text(raw))
    assert load_params(path).model("medium").hidden_units == [128, 128]


def test_missing_and_invalid_yaml(tmp_path) -> None:
    with pytest.raises(StageError, match="not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed\n")
    with pytest.raises(StageError, match="not valid YAML"):
        load_params(broken)


def test_committed_schema_matches_the_models() -> None:
    assert (REPO / SCHEMA_FILE).read_text() == schema_text()
    first_line = (REPO / "params.yaml").read_text().splitlines()[0]
    assert first_line == f"# yaml-language-server: $schema={SCHEMA_FILE}"


def test_schema_accepts_the_repo_params_and_refuses_a_typo() -> None:
    schema = json.loads(schema_text())
    variant = schema["$defs"]["ModelParams"]
    assert variant["additionalProperties"] is False
    assert "name" not in variant["properties"]
    assert set(variant["required"]) == set(repo_params()["models"]["wide"])


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("1e-05", 1e-05),  # how DVC's `-S ...=0.00001` writes it back: a float in YAML 1.2
        ("1.0e-05", 1e-05),
        ("0.0001", 1e-04),
    ],
)
def test_params_are_read_as_yaml_1_2_as_dvc_writes_them(tmp_path, written, read) -> None:
    text = (REPO / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("learning_rate: 0.001\n", f"learning_rate: {written}\n", 1))
    assert load_params(path).model("small").learning_rate == read


@pytest.mark.parametrize("written", ["'1e-05'", '"0.1"', "yes"])
def test_a_quoted_number_or_a_yaml_1_1_boolean_is_still_refused(tmp_path, written) -> None:
    text = (REPO / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("batch_norm: false", f"batch_norm: {written}", 1))
    key = "models.cnn.batch_norm"
    with pytest.raises(ParamsError, match=re.escape(f"{key} = ")):
        load_params(path)
    path.write_text(text.replace("learning_rate: 0.001\n", f"learning_rate: {written}\n", 1))
    with pytest.raises(ParamsError, match=re.escape("models.small.learning_rate = ")):
        load_params(path)
