"""The per-epoch history that the train stage's CSVLogger writes."""

from pathlib import Path

import numpy as np

from stages.errors import StageError

HISTORY_COLUMNS = ("epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds")


def read_history(path: Path) -> np.ndarray:
    """The per-epoch history CSV as a structured array, one record per epoch (from 1)."""
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
    return history
