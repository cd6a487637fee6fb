"""The canonical .keras file: identical bytes for identical models, loadable in safe mode.

Keras's own file differs from save to save: metadata.json records the save time, the zip entry
of model.weights.h5 carries the current time, and config.json names shared objects by their
Python id(), a memory address. The canonical copy drops the save time, numbers the shared
objects in order of first use and gives every zip entry the same fixed stamp.
"""

import json
import zipfile
from pathlib import Path
from typing import Any

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o644 << 16


def renumber_shared_objects(node: Any, numbers: dict[int, int]) -> Any:
    """A copy of a Keras config with each shared_object_id replaced by 1, 2, ... in order of use."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1)
            if key == "shared_object_id"
            else renumber_shared_objects(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [renumber_shared_objects(item, numbers) for item in node]
    return node


def canonical_member(name: str, data: bytes) -> bytes:
    if name == "metadata.json":
        metadata = json.loads(data)
        metadata.pop("date_saved", None)
        return json.dumps(metadata).encode()
    if name == "config.json":
        return json.dumps(renumber_shared_objects(json.loads(data), {})).encode()
    return data


def canonicalize(path: Path) -> None:
    """Rewrite the .keras file at `path` in canonical form (a temporary file: not atomic)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = ZIP_MODE
            archive.writestr(info, canonical_member(name, data))
