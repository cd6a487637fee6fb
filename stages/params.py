"""Read params.yaml once and validate it into typed objects."""

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from stages.data import NUM_CLASSES, TRAIN_CLASS_COUNTS
from stages.errors import StageError

PARAMS_FILE = Path("params.yaml")

SOURCES = ("auto", "url", "mirror")
LAYOUTS = ("rows", "flat")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "selu")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")


class ParamsError(StageError):
    """A params.yaml value that is missing or not allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(
            f"params.yaml: {key} = {value!r} is not allowed: expected {allowed}",
            "fix the value in params.yaml (or your -S override) and run again",
        )


@dataclass(frozen=True)
class FetchParams:
    source: str
    url: str
    sha256: str


@dataclass(frozen=True)
class SplitParams:
    validation_size: int
    seed: int


@dataclass(frozen=True)
class TrainParams:
    seed: int
    steps_per_execution: int
    validation_batch_size: int
    threads: int
    strategy: str


@dataclass(frozen=True)
class ModelParams:
    name: str
    layout: str
    hidden_units: tuple[int, ...]
    activation: str
    dropout: float
    optimizer: str
    learning_rate: float
    lr_schedule: str
    batch_size: int
    epochs: int


@dataclass(frozen=True)
class ReportParams:
    reference_accuracy: dict[str, float]


@dataclass(frozen=True)
class Params:
    fetch: FetchParams
    split: SplitParams
    train: TrainParams
    models: dict[str, ModelParams]
    report: ReportParams

    def model(self, name: str) -> ModelParams:
        """The variant called `name`, or an error listing the known ones."""
        if name not in self.models:
            raise StageError(
                f"unknown variant {name!r}: params.yaml's models are {sorted(self.models)}",
                "pass one of them, or add the variant under `models` in params.yaml",
            )
        return self.models[name]


def _section(raw: Any, key: str, allowed_keys: tuple[str, ...]) -> dict[str, Any]:
    """The mapping at `key`, refusing keys that are not in `allowed_keys`."""
    if not isinstance(raw, dict):
        raise ParamsError(key or "the document", raw, "a mapping")
    prefix = f"{key}." if key else ""
    for name in raw:
        if name not in allowed_keys:
            raise ParamsError(f"{prefix}{name}", raw[name], f"only the keys {list(allowed_keys)}")
    for name in allowed_keys:
        if name not in raw:
            raise ParamsError(f"{prefix}{name}", None, "a value (the key is missing)")
    return raw


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    bound = f" and <= {maximum}" if maximum is not None else ""
    if not _is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        raise ParamsError(key, value, f"an integer >= {minimum}{bound}")
    return value


def _number(value: Any, key: str, allowed: str, in_range: Callable[[float], bool]) -> float:
    """A finite int or float for which `in_range` holds; `allowed` describes the range."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not (numeric and math.isfinite(value) and in_range(value)):
        raise ParamsError(key, value, allowed)
    return float(value)


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParamsError(key, value, f"one of {list(choices)}")
    return value


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ParamsError(key, value, "a non-empty string")
    return value


def _hidden_units(value: Any, key: str) -> tuple[int, ...]:
    def positive(units: Any) -> bool:
        return _is_integer(units) and units > 0

    if not isinstance(value, list) or not value or not all(map(positive, value)):
        raise ParamsError(key, value, "a non-empty list of positive integers")
    return tuple(value)


def _fetch(raw: Any) -> FetchParams:
    section = _section(raw, "fetch", ("source", "url", "sha256"))
    return FetchParams(
        source=_choice(section["source"], "fetch.source", SOURCES),
        url=_string(section["url"], "fetch.url"),
        sha256=_string(section["sha256"], "fetch.sha256"),
    )


def _split(raw: Any) -> SplitParams:
    section = _section(raw, "split", ("validation_size", "seed"))
    return SplitParams(
        validation_size=_integer(
            section["validation_size"],
            "split.validation_size",
            NUM_CLASSES,
            sum(TRAIN_CLASS_COUNTS) - NUM_CLASSES,
        ),
        seed=_integer(section["seed"], "split.seed", 0),
    )


def _train(raw: Any) -> TrainParams:
    section = _section(
        raw,
        "train",
        ("seed", "steps_per_execution", "validation_batch_size", "threads", "strategy"),
    )
    strategy = _choice(section["strategy"], "train.strategy", STRATEGIES)
    steps_per_execution = _integer(section["steps_per_execution"], "train.steps_per_execution", 1)
    if strategy != "default" and steps_per_execution != 1:
        raise ParamsError(
            "train.steps_per_execution",
            steps_per_execution,
            f"1 under train.strategy {strategy!r}: Keras 3 fails to run several steps per "
            "call under tf.distribute (keras-team/keras#19246)",
        )
    return TrainParams(
        seed=_integer(section["seed"], "train.seed", 0),
        steps_per_execution=steps_per_execution,
        validation_batch_size=_integer(
            section["validation_batch_size"], "train.validation_batch_size", 1
        ),
        threads=_integer(section["threads"], "train.threads", 0),
        strategy=strategy,
    )


def _model(name: str, raw: Any) -> ModelParams:
    key = f"models.{name}"
    section = _section(raw, key, tuple(f.name for f in fields(ModelParams) if f.name != "name"))
    return ModelParams(
        name=name,
        layout=_choice(section["layout"], f"{key}.layout", LAYOUTS),
        hidden_units=_hidden_units(section["hidden_units"], f"{key}.hidden_units"),
        activation=_choice(section["activation"], f"{key}.activation", ACTIVATIONS),
        dropout=_number(
            section["dropout"], f"{key}.dropout", "a number in [0, 1)", lambda v: 0 <= v < 1
        ),
        optimizer=_choice(section["optimizer"], f"{key}.optimizer", OPTIMIZERS),
        learning_rate=_number(
            section["learning_rate"], f"{key}.learning_rate", "a number > 0", lambda v: v > 0
        ),
        lr_schedule=_choice(section["lr_schedule"], f"{key}.lr_schedule", SCHEDULES),
        batch_size=_integer(section["batch_size"], f"{key}.batch_size", 1),
        epochs=_integer(section["epochs"], f"{key}.epochs", 1),
    )


def _models(raw: Any) -> dict[str, ModelParams]:
    if not isinstance(raw, dict) or not raw:
        raise ParamsError("models", raw, "a non-empty mapping of variant name to settings")
    return {str(name): _model(str(name), settings) for name, settings in raw.items()}


def _report(raw: Any, variants: dict[str, ModelParams]) -> ReportParams:
    section = _section(raw, "report", ("reference_accuracy",))
    references = section["reference_accuracy"]
    key = "report.reference_accuracy"
    if not isinstance(references, dict):
        raise ParamsError(key, references, "a mapping of variant to accuracy")
    for name, value in references.items():
        if name not in variants:
            raise ParamsError(f"{key}.{name}", value, f"a variant of `models` {sorted(variants)}")
    return ReportParams(
        reference_accuracy={
            name: _number(value, f"{key}.{name}", "an accuracy in [0, 1]", lambda v: 0 <= v <= 1)
            for name, value in references.items()
        }
    )


def parse_params(raw: Any) -> Params:
    """Validate the parsed YAML document into Params."""
    section = _section(raw, "", ("fetch", "split", "train", "models", "report"))
    models = _models(section["models"])
    return Params(
        fetch=_fetch(section["fetch"]),
        split=_split(section["split"]),
        train=_train(section["train"]),
        models=models,
        report=_report(section["report"], models),
    )


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; every bad value fails here, before any work."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path} not found", "run from the project root") from None
    except yaml.YAMLError as error:
        cause = str(error).replace("\n", " ")
        raise StageError(f"{path} is not valid YAML: {cause}", "fix its syntax") from None
    return parse_params(raw)
