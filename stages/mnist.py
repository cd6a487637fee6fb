"""MNIST's shape and canonical class counts, and the checks that every stage applies."""

import numpy as np

from stages.errors import StageError

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def class_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=NUM_CLASSES).tolist()


def check_images_and_labels(images: np.ndarray, labels: np.ndarray, what: str, hint: str) -> None:
    """Refuse arrays that are not uint8 MNIST images with labels 0-9."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise StageError(
            f"{what}: images are {images.dtype} {images.shape}, expected uint8 (n, 28, 28)", hint
        )
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise StageError(
            f"{what}: labels are {labels.dtype} {labels.shape}, "
            f"expected uint8 ({images.shape[0]},)",
            hint,
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise StageError(f"{what}: a label is {labels.max()}, expected 0-9", hint)


def check_mnist(arrays: dict[str, np.ndarray]) -> None:
    """Check shapes, dtypes and the canonical class counts of the full MNIST arrays."""
    for part, expected in (("train", TRAIN_CLASS_COUNTS), ("test", TEST_CLASS_COUNTS)):
        images, labels = arrays[f"x_{part}"], arrays[f"y_{part}"]
        check_images_and_labels(images, labels, f"MNIST {part}", "rerun `dvc repro fetch`")
        counts = class_counts(labels)
        if counts != list(expected):
            raise StageError(
                f"MNIST {part} class counts are {counts}, expected {list(expected)}",
                "the source is not the canonical MNIST; check fetch.source and fetch.url",
            )
