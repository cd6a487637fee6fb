"""Data files: atomic writes, npz arrays, MNIST checks and the split on disk."""

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from stages.errors import StageError

RAW_FILE = Path("data/raw/mnist.npz")
SPLIT_DIR = Path("data/split")
MANIFEST_FILE = SPLIT_DIR / "manifest.json"
SPLITS = ("train", "validation", "test")

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it into place only if the block succeeds.

    The temporary name keeps the suffix (Keras and numpy look at it) and starts with a dot.
    Leftovers of a killed earlier run are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".tmp-*-{path.name}"):
        stale.unlink()
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    with atomic_output(path) as temporary:
        np.savez(temporary, **arrays)


def load_arrays(path: Path, names: tuple[str, ...], hint: str) -> dict[str, np.ndarray]:
    """Load the named arrays from an npz file, with a clear error when it is missing or broken."""
    if not path.exists():
        raise StageError(f"{path} is missing", hint)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise StageError(f"{path} lacks the arrays {missing}", hint)
            return {name: archive[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise StageError(f"{path} is corrupted: {error}", hint) from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Hash of an array's dtype, shape and bytes, independent of the file it is stored in."""
    header = f"{array.dtype.str}{array.shape}".encode()
    return sha256_bytes(header + np.ascontiguousarray(array).tobytes())


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


def load_raw() -> dict[str, np.ndarray]:
    arrays = load_arrays(
        RAW_FILE, ("x_train", "y_train", "x_test", "y_test"), "run `dvc repro fetch` first"
    )
    check_mnist(arrays)
    return arrays


def split_file(name: str) -> Path:
    return SPLIT_DIR / f"{name}.npz"


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


def read_json(path: Path, hint: str) -> dict[str, Any]:
    """A JSON object from `path`, with a clear error when it is missing or not an object."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path} is missing", hint) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise StageError(f"{path} is not valid JSON: {error}", hint) from None
    if not isinstance(data, dict):
        raise StageError(f"{path} does not hold a JSON object", hint)
    return data


def split_size(name: str) -> int:
    """The number of samples in one split, from the manifest."""
    entry = read_json(MANIFEST_FILE, "run `dvc repro split`").get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
        raise StageError(f"{MANIFEST_FILE} has no size for {name!r}", "run `dvc repro split`")
    return entry["size"]


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


def model_file(variant: str) -> Path:
    return Path("models") / f"{variant}.keras"


def history_file(variant: str) -> Path:
    return Path("history") / f"{variant}.csv"


HISTORY_COLUMNS = ("epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds")


def read_history(path: Path) -> np.ndarray:
    """The per-epoch history CSV as a structured array, one record per epoch.

    CSVLogger counts epochs from 0; the array counts them from 1, as Keras prints them.
    """
    hint = "run `dvc repro` to train that variant"
    if not path.exists():
        raise StageError(f"{path} is missing", hint)
    try:
        history = np.atleast_1d(np.genfromtxt(path, delimiter=",", names=True))
    except ValueError as error:
        raise StageError(f"{path} is not a history CSV: {error}", hint) from None
    missing = [column for column in HISTORY_COLUMNS if column not in (history.dtype.names or ())]
    if missing:
        raise StageError(f"{path} lacks the columns {missing}", hint)
    if history.size == 0 or any(np.isnan(history[column]).any() for column in HISTORY_COLUMNS):
        raise StageError(f"{path} has no rows, or values that are not numbers", hint)
    history["epoch"] += 1
    return history


def metrics_file(variant: str) -> Path:
    return Path("metrics") / f"{variant}.json"


def plots_dir(variant: str) -> Path:
    return Path("plots") / variant
