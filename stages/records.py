"""A study's records file, checked as it is read, and which of its records may be pooled.

Each record is one run (tools/experiments.py writes it). A file holds each run once, and every
record the fields that the statistics read; anything else is a one-line error naming the file
and the field. Runs are pooled only like with like: one thread count, one CPU instruction set
and one Python minor (TensorFlow, Keras and NumPy are in the fingerprint, so current records
share them).
"""

import json
from pathlib import Path
from typing import Any

from stages.errors import StageError
from stages.fingerprint import python_minor

Number = (int, float)

# The fields every record has, and those of a seed-study or a sweep record, with their types.
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "variant": str,
    "seed": int,
    "fingerprint": str,
    "val_accuracy": Number,
    "threads": int,
    "environment": dict,
}
SEED_FIELDS = RECORD_FIELDS | {"test_accuracy": Number}
SWEEP_FIELDS = RECORD_FIELDS | {"recipe": str, "overrides": dict}


def read_records(path: Path, hint: str, fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of `path`, each with `fields`, each name once; [] when there is no file."""
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except ValueError as error:
        raise StageError(f"{path} is not valid JSON: {error}", hint) from None
    if not isinstance(records, list):
        raise StageError(f"{path} does not hold a list of records", hint)
    for index, record in enumerate(records):
        check_record(record, f"{path}: record {index + 1}", fields, hint)
    check_unique([record["name"] for record in records], path, hint)
    return records


def check_record(record: Any, where: str, fields: dict[str, Any], hint: str) -> None:
    if not isinstance(record, dict):
        raise StageError(f"{where} is {type(record).__name__}, not an object", hint)
    for field, kind in fields.items():
        if field not in record:
            raise StageError(f"{where} has no `{field}`", f"move the file away and {hint}")
        value = record[field]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise StageError(
                f"{where}: `{field}` = {value!r} is not allowed: expected {type_name(kind)}",
                f"move the file away and {hint}",
            )


def type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", Number: "a number"}
    return names[kind]


def check_unique(names: list[str], path: Path, hint: str) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise StageError(
            f"{path} holds {repeated[0]} more than once ({len(repeated)} name(s) repeated)",
            f"keep one record per run: move the file away and {hint}",
        )


def like_key(record: dict[str, Any]) -> tuple[int, tuple[str, ...], str]:
    """What must be equal for two runs to be pooled: the thread count, the instruction set and
    the Python minor."""
    environment = record["environment"]
    python = python_minor(str(environment.get("python", "?")))
    return record["threads"], tuple(environment.get("cpu_flags", ())), python


def like_group(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The largest group of like records (fewer threads first on a tie) and a line saying which
    it is and what it leaves out; the line is empty when there are no records."""
    groups: dict[tuple[int, tuple[str, ...], str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(like_key(record), []).append(record)
    if not groups:
        return [], ""
    key = max(groups, key=lambda k: (len(groups[k]), -k[0], k[1], k[2]))
    threads, flags, python = key
    line = (
        f"{len(groups[key])} current records pooled, all trained at {threads} "
        f"thread{'' if threads == 1 else 's'} on "
        f"{' '.join(flags) or 'unknown instruction sets'} with Python {python}"
    )
    left_out = len(records) - len(groups[key])
    if left_out:
        line += (
            f"; {left_out} left out as unlike ({len(groups) - 1} other group(s) of thread count, "
            "instruction set and Python; the largest group is used)"
        )
    return groups[key], line + "."
