"""A study: what is missing or stale of its runs, run through DVC's queue or a Dask cluster.

The head keeps the books: it writes each record to the study's file as its run finishes, so
nothing finished is lost, and a rerun does only the runs that are missing or stale.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stages.errors import StageError
from stages.files import parse_yaml, write_json
from stages.fingerprint import fingerprint, read_workspace
from stages.paths import MANIFEST_FILE, SPLITS, split_file, training_file
from stages.report import read_seed_records
from tools.cluster import check_pushed, fetch_experiments, run_on_cluster
from tools.experiments import Run, head_commit, read_record, run_queued


def check_split() -> None:
    """The split must be there (its files in the workspace, so in DVC's cache) before any run."""
    missing = [str(p) for p in (MANIFEST_FILE, *map(split_file, SPLITS)) if not p.exists()]
    if missing:
        raise StageError(f"the split is missing: {', '.join(missing)}", "run `dvc repro split`")


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise StageError(f"--jobs {jobs} is not allowed: expected 1 or more", "pass --jobs 2")


def read_records(path: Path, hint: str) -> list[dict[str, Any]]:
    """A study's records file: a JSON list, or none yet."""
    if not path.exists():
        return []
    records = read_seed_records(path, hint)
    if not all(isinstance(record, dict) for record in records):
        raise StageError(f"{path} does not hold a list of records", hint)
    if not all({"name", "fingerprint"} <= set(record) for record in records):
        raise StageError(
            f"{path} holds records without a name or fingerprint (older than DVC experiments)",
            f"move it away and {hint}",
        )
    return records


def expected_seconds(run: Run) -> float:
    """The variant's training seconds in the committed run, or 0 before there is one."""
    path = training_file(run.variant)
    return json.loads(path.read_text())["timing"]["seconds"] if path.exists() else 0.0


def run_study(
    runs: list[Run],
    jobs: int,
    output: Path,
    hint: str,
    order: Callable[[dict[str, Any]], Any],
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run what is missing or stale of `runs`; return every record.

    The runs go through DVC's queue, `jobs` at a time, or with a `scheduler` address one Dask
    task each. `output` keeps the records of other runs too, written in `order` after each
    finished run. A run whose experiment of this commit already finished with today's
    fingerprint (here, or on `origin` for a cluster) is read back instead of rerun.
    """
    check_jobs(jobs)
    check_split()
    records = {record["name"]: record for record in read_records(output, hint)}
    params = parse_yaml(Path("params.yaml").read_text())
    current = {r.name: fingerprint(r.variant, r.params(params), read_workspace) for r in runs}
    base = head_commit()
    if scheduler:
        origin = check_pushed(output)
        fetch_experiments(base)

    def keep(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        write_json(output, sorted(records.values(), key=order))
        result = record.get("test_accuracy", record["val_accuracy"])
        kind = "test" if "test_accuracy" in record else "validation"
        print(f"{record['name']}: {kind} accuracy {result:.4f}", flush=True)

    todo = []
    for run in runs:
        if records.get(run.name, {}).get("fingerprint") == current[run.name]:
            continue
        finished = read_record(run, base)
        if finished and finished["fingerprint"] == current[run.name]:
            keep(finished)
        else:
            todo.append(run)
    print(f"{len(todo)} runs to do, {len(runs) - len(todo)} recorded", flush=True)
    longest_first = sorted(todo, key=lambda run: -expected_seconds(run))
    try:  # the longest first: the last runs are short and the workers finish together
        if todo and scheduler:
            run_on_cluster(longest_first, scheduler, origin, keep)
        elif todo:
            run_queued(longest_first, jobs, keep)
    except KeyboardInterrupt:
        raise StageError(
            f"interrupted: {len(records)} record(s) kept in {output}; the waiting runs are removed",
            "run the same command again to do the rest",
        ) from None
    return sorted(records.values(), key=order)
