"""The data on disk: the raw MNIST file and the split, checked against its manifest."""

from typing import Any

import numpy as np

from stages.errors import StageError
from stages.files import load_arrays, read_json, sha256_array
from stages.mnist import check_images_and_labels, check_mnist, class_counts
from stages.paths import MANIFEST_FILE, RAW_FILE, split_file


def load_raw() -> dict[str, np.ndarray]:
    arrays = load_arrays(
        RAW_FILE, ("x_train", "y_train", "x_test", "y_test"), "run `dvc repro fetch` first"
    )
    check_mnist(arrays)
    return arrays


def split_manifest(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Sizes, per-class counts and array hashes that describe a split."""
    return {
        name: {
            "size": int(labels.size),
            "class_counts": class_counts(labels),
            "sha256": {"x": sha256_array(images), "y": sha256_array(labels)},
        }
        for name, (images, labels) in splits.items()
    }


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split and check it against the manifest written beside it."""
    hint = "run `dvc repro split`"
    arrays = load_arrays(split_file(name), ("x", "y"), hint)
    images, labels = arrays["x"], arrays["y"]
    check_images_and_labels(images, labels, str(split_file(name)), hint)
    expected = read_json(MANIFEST_FILE, hint).get(name)
    if expected != split_manifest({name: (images, labels)})[name]:
        raise StageError(f"{split_file(name)} does not match {MANIFEST_FILE}", hint)
    return images, labels
