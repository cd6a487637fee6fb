"""Stage evaluate@<variant>: test-set metrics, confusion data and images for one variant."""

import argparse
import zipfile
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support

from stages.data import (
    NUM_CLASSES,
    atomic_output,
    history_file,
    load_split,
    metrics_file,
    model_file,
    plots_dir,
    read_history,
    split_size,
    write_json,
)
from stages.errors import StageError, run_stage
from stages.models import scale
from stages.params import load_params
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


def training_metrics(history: np.ndarray, train_size: int) -> dict:
    """Best validation epoch (the one ModelCheckpoint kept), epochs run and speed."""
    best = int(np.argmax(history["val_accuracy"]))
    seconds = float(history["seconds"].sum())
    return {
        "validation": {
            "best_accuracy": float(history["val_accuracy"][best]),
            "best_epoch": int(history["epoch"][best]),
        },
        "training": {
            "epochs": int(history.size),
            "seconds": round(seconds, 2),
            "samples_per_second": round(history.size * train_size / seconds, 1),
        },
    }


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
    load_params().model(variant)  # fails early on an unknown variant
    model = load_model(model_file(variant))
    history = read_history(history_file(variant))
    x_test, y_test = load_split("test")
    train_size = split_size("train")

    probabilities = model.predict(scale(x_test), batch_size=1000, verbose=0)
    predicted = probabilities.argmax(axis=1)
    metrics = {
        **classification_metrics(y_test, probabilities),
        **training_metrics(history, train_size),
        "params": int(model.count_params()),
    }
    write_predictions(plots_dir(variant) / "predictions.csv", y_test, predicted)
    plot_accuracy(history, variant, plots_dir(variant) / "accuracy.png")
    plot_misclassified(x_test, y_test, predicted, plots_dir(variant) / "misclassified.png")
    write_json(metrics_file(variant), metrics)
    print(
        f"{variant}: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"loss {metrics['test']['loss']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variant", help="a key of `models` in params.yaml")
    evaluate(parser.parse_args().variant)


if __name__ == "__main__":
    run_stage(main)
