"""Files: atomic writes, JSON, YAML and npz arrays, with clear errors for missing or broken ones."""

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML

from stages.errors import StageError


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


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def write_json(path: Path, data: Any) -> None:
    write_text(path, json_text(data))


def parse_yaml(text: str | bytes) -> Any:
    """A YAML document read as DVC reads it: YAML 1.2, so `1e-05` is a float, `yes` a string."""
    return YAML(typ="safe", pure=True).load(text)


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
