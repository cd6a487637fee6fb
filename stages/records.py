"""A study's records file, checked as it is read, and which of its records may be pooled.

Each record is one run (tools/experiments.py writes it). A file holds each run once, and every
record the fields that the statistics read; anything else is a one-line error naming the file
and the field.

Current records (of today's fingerprint: code, params, TensorFlow, Keras and NumPy) of one
series, a variant of one study, are pooled across the factors that a fingerprint leaves out:
the CPU kind (model and instruction sets), the thread count and the Python minor. They change a
run as the seed does, with no expected direction, so the groups of like factors are tested for
agreement first (`pool`): where they differ, they are kept apart. The sweep still compares its
recipes within one like group (`like_group`).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.errors import StageError
from stages.fingerprint import python_minor
from stages.stats import ALPHA, groups_p_value, holm

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


Factors = tuple[str, int, str]  # the CPU kind (model and instruction sets), threads, Python minor
MIN_GROUP = 2  # the records a group needs for its variance, so that it can be tested


def factors(environment: dict[str, Any], threads: int) -> Factors:
    """The factors of a run that its fingerprint leaves out, from its recorded environment."""
    flags = " ".join(environment.get("cpu_flags", ())) or "unknown instruction sets"
    kind = f"{environment.get('cpu', 'unknown CPU')} ({flags})"
    return kind, threads, python_minor(str(environment.get("python", "?")))


def record_factors(record: dict[str, Any]) -> Factors:
    return factors(record["environment"], record["threads"])


def factors_text(key: Factors) -> str:
    kind, threads, python = key
    return f"{kind}, {threads} thread{'' if threads == 1 else 's'}, Python {python}"


@dataclass(frozen=True)
class Pool:
    """One series' current records by their factors, and which of them the statistics count."""

    records: list[dict[str, Any]]
    groups: dict[Factors, list[dict[str, Any]]]
    p_value: float | None = None  # of the tested groups' means differing; None: untested
    holm_p: float | None = None  # adjusted across the series of one report

    @property
    def tested(self) -> list[Factors]:
        """The groups with records enough to be tested against the others."""
        return [key for key, group in self.groups.items() if len(group) >= MIN_GROUP]

    @property
    def apart(self) -> bool:
        """Whether the tested groups differ (Holm-adjusted p below ALPHA): then each group
        stands alone."""
        return self.holm_p is not None and self.holm_p < ALPHA

    @property
    def counted(self) -> list[dict[str, Any]]:
        """The records every statistic uses: a lone group whatever its size; else the tested
        groups pooled, or where they differ the largest alone (fewer threads first on a tie)."""
        if len(self.groups) == 1:
            return self.records
        kept = self.tested
        if self.apart:
            kept = [max(kept, key=lambda k: (len(self.groups[k]), -k[1], k))]
        return [r for r in self.records if record_factors(r) in kept]

    def for_run(self, run: Factors) -> list[dict[str, Any]]:
        """The records that a new run with these factors is judged by: the counted ones, or
        where the groups differ its own group alone (none where it has no tested group)."""
        if not self.apart:
            return self.counted
        return self.groups[run] if run in self.tested else []


def pool(series: dict[str, list[dict[str, Any]]], value: str) -> dict[str, Pool]:
    """Each series' records grouped by factors; where two or more groups can be tested, whether
    their means of `value` differ (stages.stats.groups_p_value), Holm across the series."""
    pools = {}
    for name, records in series.items():
        groups: dict[Factors, list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault(record_factors(record), []).append(record)
        pools[name] = Pool(records, groups)
    p_values = {
        name: groups_p_value([[r[value] for r in p.groups[key]] for key in p.tested])
        for name, p in pools.items()
        if len(p.tested) > 1
    }
    adjusted = dict(zip(p_values, holm(list(p_values.values())), strict=True))
    return {
        name: Pool(p.records, p.groups, p_values.get(name), adjusted.get(name))
        for name, p in pools.items()
    }
