"""The train stage's code path on real MNIST: what it saves, and what must not change weights."""

import csv
from pathlib import Path

import keras
import numpy as np
import pytest

from stages.environment import environment
from stages.models import build_model, learning_rate, one_hot, scale
from stages.params import load_params
from stages.training import fit_variant, training_batches, training_record
from tests.conftest import REPO, TINY_SETTINGS, run_stage, write_params

PARAMS = load_params(REPO / "params.yaml")
SAMPLES = 2048


@pytest.fixture(scope="module")
def data(split_project: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first 2,048 training and validation digits of the real split."""
    arrays = {}
    for name in ("train", "validation"):
        with np.load(split_project / "data" / "split" / f"{name}.npz") as archive:
            arrays[name] = (archive["x"][:SAMPLES], archive["y"][:SAMPLES])
    return arrays


def fit(
    data: dict,
    folder: Path,
    epochs: int = 1,
    callbacks=(),
    variant: str = "wide",
    model: dict | None = None,
    **train,
) -> keras.Model:
    """fit_variant on one variant (`wide` unless told, with `model` changes to its params);
    returns the model the checkpoint saved."""
    model_params = PARAMS.model(variant).model_copy(update={"epochs": epochs, **(model or {})})
    train_params = PARAMS.train.model_copy(update=train)
    folder.mkdir(parents=True, exist_ok=True)
    model_path, history_path = folder / "model.keras", folder / "history.csv"
    fit_variant(
        model_params,
        train_params,
        data["train"],
        data["validation"],
        model_path,
        history_path,
        verbose=0,
        extra_callbacks=callbacks,
    )
    return keras.models.load_model(model_path, safe_mode=True)


def epoch_orders(seed: int, epochs: int = 3, count: int = 300) -> list[np.ndarray]:
    """Which images `training_batches` yields, in order, in each of `epochs` passes."""
    images = np.zeros((count, 28, 28), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(count) % 256, np.arange(count) // 256
    labels = (np.arange(count) % 10).astype(np.uint8)
    dataset = training_batches(images, labels, batch_size=64, seed=seed)
    orders = []
    for _ in range(epochs):  # a new iterator per pass, as Keras makes one per epoch
        batches = [(x.numpy(), y.numpy()) for x, y in dataset]
        assert [len(y) for _, y in batches] == [64, 64, 64, 64, 44]
        x, y = (np.concatenate(part) for part in zip(*batches, strict=True))
        order = np.rint(x[:, 0, 0] * 255 + x[:, 0, 1] * 255 * 256).astype(int)
        np.testing.assert_array_equal(x, scale(images[order]))
        np.testing.assert_array_equal(y, one_hot(labels[order]))
        orders.append(order)
    return orders


def test_training_batches_reshuffle_every_epoch_from_the_seed() -> None:
    """Each epoch sees every image once, in a new order; the seed fixes the sequence of orders."""
    orders = epoch_orders(seed=1)
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(300))
    assert not np.array_equal(orders[0], np.arange(300))
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    np.testing.assert_array_equal(np.stack(orders), np.stack(epoch_orders(seed=1)))
    assert not np.array_equal(orders[0], epoch_orders(seed=2, epochs=1)[0])


class ForgetAfterFirstEpoch(keras.callbacks.Callback):
    """Keeps epoch 1's validation predictions, then zeroes the weights: later epochs are worse."""

    def __init__(self, images: np.ndarray) -> None:
        super().__init__()
        self.images = images

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == 0:
            self.first = self.model.predict(self.images, verbose=0)
            for weight in self.model.weights:
                weight.assign(np.zeros(weight.shape, dtype=weight.dtype))


def test_checkpoint_keeps_the_best_epoch_not_the_last(data: dict, tmp_path: Path) -> None:
    images = data["validation"][0].astype(np.float32) / 255.0
    sabotage = ForgetAfterFirstEpoch(images)
    saved = fit(data, tmp_path, epochs=3, callbacks=[sabotage])
    history = np.genfromtxt(tmp_path / "history.csv", delimiter=",", names=True)
    assert history["val_accuracy"][0] > 0.8 > max(history["val_accuracy"][1:])
    np.testing.assert_array_equal(saved.predict(images, verbose=0), sabotage.first)


def test_checkpoint_last_keeps_the_final_epoch(data: dict, tmp_path: Path) -> None:
    images = data["validation"][0].astype(np.float32) / 255.0
    sabotage = ForgetAfterFirstEpoch(images)
    saved = fit(data, tmp_path, epochs=3, callbacks=[sabotage], model={"checkpoint": "last"})
    history = np.genfromtxt(tmp_path / "history.csv", delimiter=",", names=True)
    predicted = saved.predict(images, verbose=0).argmax(axis=1)
    accuracy = np.mean(predicted == data["validation"][1])
    assert history["val_accuracy"][0] > 0.8 > accuracy
    assert accuracy == pytest.approx(history["val_accuracy"][-1], abs=1e-6)


def test_training_record_names_the_kept_epoch() -> None:
    history = {"val_accuracy": [0.5, 0.9, 0.7], "seconds": [1.0, 1.0, 1.0]}
    best = training_record(history, 100, 1, "best")["validation"]
    last = training_record(history, 100, 1, "last")["validation"]
    assert best == {"best_accuracy": 0.9, "best_epoch": 2, "kept_accuracy": 0.9, "kept_epoch": 2}
    assert last == {"best_accuracy": 0.9, "best_epoch": 2, "kept_accuracy": 0.7, "kept_epoch": 3}


def weights(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(weight) for weight in model.weights]


@pytest.mark.parametrize(
    "change", [{"steps_per_execution": 1}, {"validation_batch_size": 100}], ids=str
)
def test_speed_settings_leave_the_weights_unchanged(
    data: dict, tmp_path: Path, change: dict
) -> None:
    reference = weights(fit(data, tmp_path / "reference"))
    changed = weights(fit(data, tmp_path / "changed", **change))
    assert len(reference) == len(changed) == 6
    for first, second in zip(reference, changed, strict=True):
        np.testing.assert_array_equal(first, second)


# Smaller convolutions for `cnn`: the test is about the conv layout, not the variant's size.
SMALL_CONV = {"conv_filters": [8, 8], "hidden_units": [32]}


@pytest.mark.parametrize("variant", ["small", "wide", "cnn"])  # the rows, flat and conv layouts
def test_the_same_thread_count_twice_gives_identical_weights(
    data: dict, tmp_path: Path, variant: str
) -> None:
    """On every machine, at this process's thread count. Another thread count may give other
    weights on some CPUs (oneDNN splits its work by thread count), so the record keeps it."""
    changes = SMALL_CONV if variant == "cnn" else {}
    first = weights(fit(data, tmp_path / "first", variant=variant, model=changes))
    again = weights(fit(data, tmp_path / "again", variant=variant, model=changes))
    assert len(first) == len(again) > 0
    for one, other in zip(first, again, strict=True):
        np.testing.assert_array_equal(one, other)


def test_another_seed_gives_other_weights(data: dict, tmp_path: Path) -> None:
    """The control for the test above: the comparison does see a real difference."""
    reference = weights(fit(data, tmp_path / "reference"))
    other = weights(fit(data, tmp_path / "other", seed=PARAMS.train.seed + 1))
    assert not np.array_equal(reference[0], other[0])


def test_cosine_schedule_decays_from_the_rate_to_zero_over_all_steps() -> None:
    params = PARAMS.model("wide").model_copy(update={"lr_schedule": "cosine", "epochs": 4})
    schedule = learning_rate(params, steps_per_epoch=100)
    rate = params.learning_rate
    assert float(schedule(0)) == pytest.approx(rate)
    assert float(schedule(200)) == pytest.approx(rate / 2)  # half way: (1 + cos(pi / 2)) / 2
    assert float(schedule(100)) == pytest.approx(rate * (1 + np.cos(np.pi / 4)) / 2)
    assert float(schedule(400)) == pytest.approx(0, abs=1e-12)
    constant = params.model_copy(update={"lr_schedule": "constant"})
    assert learning_rate(constant, steps_per_epoch=100) == rate


def test_fit_turns_op_determinism_on(data: dict, tmp_path: Path) -> None:
    fit(data, tmp_path)
    assert environment(threads=0)["op_determinism"] is True


def test_augmentation_is_deterministic_and_off_at_inference(data: dict, tmp_path: Path) -> None:
    """The cnn's random shifts and rotations: the same draws every run, none when predicting."""
    first = fit(data, tmp_path / "first", variant="cnn")
    second = fit(data, tmp_path / "second", variant="cnn")
    for one, other in zip(weights(first), weights(second), strict=True):
        np.testing.assert_array_equal(one, other)

    images = scale(data["validation"][0][:256])
    augmentation = keras.Sequential(first.layers[:3])  # Reshape, RandomTranslation, RandomRotation
    assert not np.array_equal(augmentation(images, training=True), augmentation(images))

    plain = build_model(
        PARAMS.model("cnn").model_copy(update={"augment_shift": 0.0, "augment_rotation": 0.0})
    )
    plain.set_weights(first.get_weights())
    predictions = first.predict(images, verbose=0)
    np.testing.assert_array_equal(predictions, plain.predict(images, verbose=0))
    np.testing.assert_array_equal(predictions, first.predict(images, verbose=0))


def trained_outputs(project: Path, overrides: dict) -> dict:
    """What `train@small` writes that the same inputs must reproduce: all but the timings."""
    write_params(project, {**TINY_SETTINGS, **overrides})
    run_stage("train", "small", cwd=project)
    with (project / "history" / "small.csv").open() as stream:
        history = [
            {k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(stream)
        ]
    return {
        "model": (project / "models" / "small.keras").read_bytes(),
        "metrics": (project / "metrics" / "train" / "small.json").read_bytes(),
        "history": history,
    }


def test_train_is_a_deterministic_function_of_the_split_and_its_params(split_copy: Path) -> None:
    first = trained_outputs(split_copy, {})
    # Run again, the same inputs for train: params that it does not read change nothing.
    not_read = {"split.seed": 7, "models.wide.dropout": 0.5, "report.reference_accuracy.small": 0.9}
    assert trained_outputs(split_copy, not_read) == first
    assert trained_outputs(split_copy, {"train.seed": 7})["model"] != first["model"]

    write_params(split_copy, {**TINY_SETTINGS, "split.seed": 7})
    run_stage("split", cwd=split_copy)  # another train.npz, same params for train
    assert trained_outputs(split_copy, {"split.seed": 7})["model"] != first["model"]
