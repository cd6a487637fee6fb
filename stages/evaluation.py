"""Evaluating one variant on the test set: the evaluate stage's work, once its params are good."""

import stages.tf_quiet  # noqa: F401  (before anything imports TensorFlow)

# isort: split
import zipfile
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support

from stages.dataset import load_split
from stages.errors import StageError
from stages.files import atomic_output, read_json, write_json
from stages.history import read_history
from stages.mnist import NUM_CLASSES
from stages.models import flops_per_image, scale
from stages.paths import history_file, metrics_file, model_file, plots_dir, training_file
from stages.plots import plot_accuracy, plot_misclassified


def load_model(path: Path) -> keras.Model:
    """Load a .keras file in safe mode, which refuses arbitrary code such as Lambda layers."""
    if not path.exists():
        raise StageError(f"{path} is missing", "run `dvc repro` to train it first")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError, zipfile.BadZipFile) as error:
        cause = str(error).splitlines()[0]
        raise StageError(f"cannot load {path}: {cause}", "retrain with `dvc repro -f`") from None


def classification_metrics(actual: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, loss, per-class and macro precision/recall/F1 from sklearn.metrics.

    Per-class values are lists indexed by digit: `dvc metrics show` skips lists, so its table
    stays readable while the file keeps every class.
    """
    labels = list(range(NUM_CLASSES))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0
    )
    return {
        "test": {
            "accuracy": float(accuracy_score(actual, predicted)),
            "loss": float(log_loss(actual, probabilities, labels=labels)),
        },
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
        },
    }


def training_metrics(record: dict) -> dict:
    """The train stage's best validation epoch, the epoch evaluated and the epochs run; its
    timings stay out of metrics."""
    try:
        return {
            "validation": {
                "best_accuracy": float(record["validation"]["best_accuracy"]),
                "best_epoch": int(record["validation"]["best_epoch"]),
                "kept_epoch": int(record["validation"]["kept_epoch"]),
            },
            "training": {"epochs": int(record["epochs"])},
        }
    except (KeyError, TypeError, ValueError) as error:
        raise StageError(
            f"the training record lacks {error}", "retrain with `dvc repro -f train`"
        ) from None


def write_predictions(path: Path, actual: np.ndarray, predicted: np.ndarray) -> None:
    """Rows of (actual, predicted) for DVC's confusion template."""
    with atomic_output(path) as temporary:
        np.savetxt(
            temporary,
            np.column_stack([actual, predicted]),
            fmt="%d",
            delimiter=",",
            header="actual,predicted",
            comments="",
        )


def evaluate(variant: str) -> None:
    """Test-set metrics, the confusion data and the images of one trained variant."""
    model = load_model(model_file(variant))
    history = read_history(history_file(variant))
    record = read_json(training_file(variant), "run `dvc repro` to train that variant")
    x_test, y_test = load_split("test")

    probabilities = model.predict(scale(x_test), batch_size=1000, verbose=0)
    predicted = probabilities.argmax(axis=1)
    metrics = {
        **classification_metrics(y_test, probabilities),
        **training_metrics(record),
        "params": int(model.count_params()),
        "flops_per_image": flops_per_image(model),
    }
    write_predictions(plots_dir(variant) / "predictions.csv", y_test, predicted)
    plot_accuracy(history, variant, plots_dir(variant) / "accuracy.png")
    plot_misclassified(x_test, y_test, predicted, plots_dir(variant) / "misclassified.png")
    write_json(metrics_file(variant), metrics)
    print(
        f"{variant}: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"loss {metrics['test']['loss']:.4f}"
    )
