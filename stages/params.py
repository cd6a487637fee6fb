"""Read params.yaml once and validate it into typed objects."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stages.errors import StageError

PARAMS_FILE = Path("params.yaml")
MNIST_TRAIN_SIZE = 60_000

SOURCES = ("auto", "url", "mirror")
LAYOUTS = ("rows", "flat")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "selu")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine")


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
        """The variant called `name`, or a ParamsError listing the known ones."""
        if name not in self.models:
            raise ParamsError("models", name, f"one of the variants {sorted(self.models)}")
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


def _integer(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    in_range = maximum is None or (isinstance(value, int) and value <= maximum)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or not in_range:
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise ParamsError(key, value, f"an integer >= {minimum}{bound}")
    return value


def _number(value: Any, key: str, low: float, high: float, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamsError(key, value, allowed)
    if not (math.isfinite(value) and low <= value < high):
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
        return isinstance(units, int) and not isinstance(units, bool) and units > 0

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
            section["validation_size"], "split.validation_size", 1, MNIST_TRAIN_SIZE - 1
        ),
        seed=_integer(section["seed"], "split.seed", 0),
    )


def _train(raw: Any) -> TrainParams:
    section = _section(
        raw, "train", ("seed", "steps_per_execution", "validation_batch_size", "threads")
    )
    return TrainParams(
        seed=_integer(section["seed"], "train.seed", 0),
        steps_per_execution=_integer(
            section["steps_per_execution"], "train.steps_per_execution", 1
        ),
        validation_batch_size=_integer(
            section["validation_batch_size"], "train.validation_batch_size", 1
        ),
        threads=_integer(section["threads"], "train.threads", 0),
    )


def _model(name: str, raw: Any) -> ModelParams:
    key = f"models.{name}"
    section = _section(raw, key, tuple(f for f in ModelParams.__dataclass_fields__ if f != "name"))
    return ModelParams(
        name=name,
        layout=_choice(section["layout"], f"{key}.layout", LAYOUTS),
        hidden_units=_hidden_units(section["hidden_units"], f"{key}.hidden_units"),
        activation=_choice(section["activation"], f"{key}.activation", ACTIVATIONS),
        dropout=_number(section["dropout"], f"{key}.dropout", 0.0, 1.0, "a number in [0, 1)"),
        optimizer=_choice(section["optimizer"], f"{key}.optimizer", OPTIMIZERS),
        learning_rate=_number(
            section["learning_rate"], f"{key}.learning_rate", 1e-12, math.inf, "a number > 0"
        ),
        lr_schedule=_choice(section["lr_schedule"], f"{key}.lr_schedule", SCHEDULES),
        batch_size=_integer(section["batch_size"], f"{key}.batch_size", 1),
        epochs=_integer(section["epochs"], f"{key}.epochs", 1),
    )


def _models(raw: Any) -> dict[str, ModelParams]:
    if not isinstance(raw, dict) or not raw:
        raise ParamsError("models", raw, "a non-empty mapping of variant name to settings")
    return {str(name): _model(str(name), settings) for name, settings in raw.items()}


def _report(raw: Any) -> ReportParams:
    section = _section(raw, "report", ("reference_accuracy",))
    references = section["reference_accuracy"]
    if not isinstance(references, dict):
        raise ParamsError(
            "report.reference_accuracy", references, "a mapping of variant to accuracy"
        )
    return ReportParams(
        reference_accuracy={
            str(name): _number(
                value, f"report.reference_accuracy.{name}", 0.0, 1.0000001, "an accuracy in [0, 1]"
            )
            for name, value in references.items()
        }
    )


def parse_params(raw: Any) -> Params:
    """Validate the parsed YAML document into Params."""
    section = _section(raw, "", ("fetch", "split", "train", "models", "report"))
    return Params(
        fetch=_fetch(section["fetch"]),
        split=_split(section["split"]),
        train=_train(section["train"]),
        models=_models(section["models"]),
        report=_report(section["report"]),
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
