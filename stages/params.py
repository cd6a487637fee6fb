"""Read params.yaml once and validate it into frozen pydantic models.

Unknown keys are refused, nothing is coerced (a quoted "0.1" is not a number), and every
error names its key, its value and what is allowed. `python -m stages.params` writes the
JSON Schema that params.yaml points editors at.
"""

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema
from ruamel.yaml import YAMLError

from stages.errors import StageError
from stages.files import parse_yaml, write_text
from stages.mnist import IMAGE_SHAPE, NUM_CLASSES, TRAIN_CLASS_COUNTS

PARAMS_FILE = Path("params.yaml")
SCHEMA_FILE = Path("params.schema.json")

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Rate = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FetchParams(Section):
    source: Literal["auto", "url", "mirror"] = Field(
        description="auto: the url, and the mirror on a network failure; mirror: the package index"
    )
    url: Annotated[str, Field(min_length=1)]
    sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]


class SplitParams(Section):
    validation_size: Annotated[int, Field(ge=NUM_CLASSES, le=sum(TRAIN_CLASS_COUNTS) - NUM_CLASSES)]
    seed: NonNegativeInt


class TrainParams(Section):
    seed: NonNegativeInt
    steps_per_execution: PositiveInt = Field(description="batches per call into TensorFlow")
    validation_batch_size: PositiveInt
    threads: NonNegativeInt = Field(description="TensorFlow threads per process; 0: all cores")
    strategy: Literal["default", "mirrored", "multi_worker"]

    @model_validator(mode="after")
    def one_step_under_distribution(self) -> "TrainParams":
        if self.strategy != "default" and self.steps_per_execution != 1:
            raise ParamsError(
                "train.steps_per_execution",
                self.steps_per_execution,
                f"1 under train.strategy {self.strategy!r}: Keras 3 fails to run several steps "
                "per call under tf.distribute (keras-team/keras#19246)",
            )
        return self


CONV_KEYS = ("conv_filters", "kernel_size", "pooling", "batch_norm")


class ModelParams(Section):
    name: SkipJsonSchema[str] = Field(description="the key under `models`, set by Params")
    layout: Literal["rows", "flat", "conv"] = Field(
        description="rows: Dense on each 28-pixel row, then Flatten; flat: Flatten first; "
        "conv: convolution blocks, then Flatten"
    )
    conv_filters: list[PositiveInt] = Field(
        default=[], description="layout conv: one block (Conv2D, activation, pooling) per entry"
    )
    kernel_size: Annotated[int, Field(ge=1, le=IMAGE_SHAPE[0])] = Field(
        default=3, description="layout conv: the convolutions' square kernel, unpadded"
    )
    pooling: Literal["max", "average", "none"] = Field(
        default="max", description="layout conv: 2x2 pooling after each convolution"
    )
    batch_norm: bool = Field(
        default=False, description="layout conv: BatchNormalization before each activation"
    )
    augment_shift: Annotated[float, Field(ge=0, le=0.25, allow_inf_nan=False)] = Field(
        default=0.0, description="training only: random shift up to this fraction of the image"
    )
    augment_rotation: Annotated[float, Field(ge=0, le=45, allow_inf_nan=False)] = Field(
        default=0.0, description="training only: random rotation up to this many degrees"
    )
    hidden_units: Annotated[list[PositiveInt], Field(min_length=1)]
    activation: Literal["relu", "tanh", "sigmoid", "elu", "gelu", "selu"]
    dropout: Rate = Field(description="after each hidden layer")
    optimizer: Literal["adam", "rmsprop", "sgd"]
    learning_rate: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    lr_schedule: Literal["constant", "cosine"] = Field(
        description="cosine: decay to zero over all epochs"
    )
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        description="decoupled: each step shrinks the weights by weight_decay * rate"
    )
    label_smoothing: Rate = Field(description="targets 1 - s on the digit, s / 10 on every class")
    batch_size: PositiveInt
    epochs: PositiveInt
    checkpoint: Literal["best", "last"] = Field(
        description="the epoch saved as the model: best validation accuracy, or the last (as "
        "2016 reported)"
    )

    @model_validator(mode="after")
    def convolution_keys_fit_the_layout(self) -> "ModelParams":
        key = f"models.{self.name}"
        if self.layout != "conv":
            for field in CONV_KEYS:
                if field in self.model_fields_set:
                    value = getattr(self, field)
                    raise ParamsError(f"{key}.{field}", value, "no such key unless layout is conv")
            return self
        if not self.conv_filters:
            raise ParamsError(f"{key}.conv_filters", self.conv_filters, "at least 1 item(s)")
        sizes = feature_map_sizes(self.conv_filters, self.kernel_size, self.pooling)
        if sizes[-1] == 0:
            raise ParamsError(
                f"{key}.conv_filters",
                self.conv_filters,
                f"fewer blocks, a smaller kernel_size or pooling 'none': with kernel_size "
                f"{self.kernel_size} and pooling {self.pooling!r} the 28-pixel image shrinks to "
                f"{' -> '.join(map(str, sizes))}",
            )
        return self


def feature_map_sizes(filters: list[int], kernel_size: int, pooling: str) -> list[int]:
    """The image's side after each convolution block: unpadded kernels, 2x2 pooling."""
    sizes = [IMAGE_SHAPE[0]]
    for _ in filters:
        side = sizes[-1] - kernel_size + 1
        sizes.append(max(side // 2 if pooling != "none" else side, 0))
        if sizes[-1] == 0:
            break
    return sizes


class ReportParams(Section):
    reference_accuracy: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        description="test accuracy that each variant is compared with (the 2016 figures)"
    )
    seeds: Annotated[list[NonNegativeInt], Field(min_length=2)] = Field(
        description="the seed study's train.seed values; the study refuses the sweep's and "
        "train.seed"
    )
    recipe_2016: dict[str, dict[str, Any]] = Field(
        description="per variant, the models.<variant> keys that 2016's recipe sets"
    )

    @model_validator(mode="after")
    def seeds_are_distinct(self) -> "ReportParams":
        repeated = sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1})
        if repeated:
            raise ParamsError("report.seeds", self.seeds, f"distinct seeds ({repeated} repeat)")
        return self


class Params(Section):
    fetch: FetchParams
    split: SplitParams
    train: TrainParams
    models: Annotated[dict[str, ModelParams], Field(min_length=1)]
    report: ReportParams

    @model_validator(mode="before")
    @classmethod
    def name_each_variant(cls, raw: Any) -> Any:
        """Give each variant its key as its name: the only field that params.yaml does not set."""
        models = raw.get("models") if isinstance(raw, dict) else None
        if not isinstance(models, dict):
            return raw
        named = {}
        for name, settings in models.items():
            if isinstance(settings, dict) and "name" in settings:
                raise ParamsError(f"models.{name}.name", settings["name"], "no such key")
            named[name] = (
                {"name": str(name), **settings} if isinstance(settings, dict) else settings
            )
        return {**raw, "models": named}

    @model_validator(mode="after")
    def report_names_variants(self) -> "Params":
        for key in ("reference_accuracy", "recipe_2016"):
            for name, value in getattr(self.report, key).items():
                if name not in self.models:
                    known = f"a variant of `models` {sorted(self.models)}"
                    raise ParamsError(f"report.{key}.{name}", value, known)
        for name in self.report.recipe_2016:
            self.with_2016_recipe(name)
        return self

    def with_2016_recipe(self, variant: str) -> "ModelParams":
        """The variant with the keys that report.recipe_2016 sets for it."""
        overrides = self.report.recipe_2016[variant]
        try:
            settings = self.models[variant].model_dump(exclude_unset=True)
            return ModelParams.model_validate(settings | overrides)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            value = overrides.get(key, overrides)
            raise ParamsError(
                f"report.recipe_2016.{variant}.{key}", value, allowed(first)
            ) from None

    def model(self, name: str) -> ModelParams:
        """The variant called `name`, or an error listing the known ones."""
        if name not in self.models:
            raise StageError(
                f"unknown variant {name!r}: params.yaml's models are {sorted(self.models)}",
                "pass one of them, or add the variant under `models` in params.yaml",
            )
        return self.models[name]


class ParamsError(StageError):
    """A params.yaml value that is missing or not allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(
            f"params.yaml: {key} = {value!r} is not allowed: expected {allowed}",
            "fix the value in params.yaml (or your -S override) and run again",
        )


def allowed(error: dict[str, Any]) -> str:
    """Pydantic's message for one error, phrased as what the key expects."""
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "a value (the key is missing)"
    if kind == "extra_forbidden":
        return "no such key (check its spelling)"
    if kind in ("model_type", "dict_type"):
        return "a mapping"
    if kind == "too_short":
        return f"at least {error['ctx']['min_length']} item(s)"
    return message.removeprefix("Input should be ").removeprefix("Value error, ")


def params_error(error: ValidationError, raw: dict[str, Any]) -> StageError:
    """The first validation error as a ParamsError, or a ParamsError raised by a validator.

    An error in a list item names the whole list: `hidden_units = [512, 0]`, not `.1 = 0`.
    """
    first = error.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ParamsError):
        return cause
    location = list(first["loc"])
    if any(isinstance(part, int) for part in location):
        location = location[: next(i for i, p in enumerate(location) if isinstance(p, int))]
        value = raw
        for part in location:
            value = value[part]
        return ParamsError(".".join(location), value, f"a list of items {allowed(first)}")
    value = None if first["type"] == "missing" else first["input"]
    return ParamsError(".".join(str(part) for part in location), value, allowed(first))


def parse_params(raw: Any) -> Params:
    """Validate the parsed YAML document into Params."""
    if not isinstance(raw, dict):
        raise ParamsError("the document", raw, "a mapping")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise params_error(error, raw) from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; every bad value fails here, before any work."""
    try:
        raw = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path} not found", "run from the project root") from None
    except YAMLError as error:
        cause = str(error).replace("\n", " ")
        raise StageError(f"{path} is not valid YAML: {cause}", "fix its syntax") from None
    return parse_params(raw)


def schema_text() -> str:
    """The JSON Schema of params.yaml, generated from the models above."""
    schema = Params.model_json_schema()
    schema["title"] = "params.yaml of the MNIST DVC pipeline"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    write_text(SCHEMA_FILE, schema_text())
    print(f"wrote {SCHEMA_FILE}")


if __name__ == "__main__":
    main()
