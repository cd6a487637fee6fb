"""A study: what is missing or stale of its runs, each run one Dask task, here or on a cluster.

The head keeps the books: it writes each record to the study's file as its run finishes, so
nothing finished is lost, and a rerun does only the runs that are missing or stale.
"""

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from tqdm import tqdm

from stages.errors import StageError
from stages.files import parse_yaml, write_json
from stages.fingerprint import fingerprint, installed_libraries, read_workspace
from stages.paths import MANIFEST_FILE, SPLITS, split_file, training_file
from stages.records import SEED_FIELDS, SWEEP_FIELDS, read_records
from tools.cluster import (
    CLOSE_SECONDS,
    SchedulerLost,
    connect,
    local_cluster,
    local_source,
    remote_source,
    run_on_cluster,
    steps_line,
)
from tools.experiments import Run, head_commit, read_record, threads_per_run

LOCK_FILE = Path(".dvc/tmp/study.lock")  # one study at a time writes a project's records


def check_split() -> None:
    """The split must be there (its files in the workspace, so in DVC's cache) before any run."""
    missing = [str(p) for p in (MANIFEST_FILE, *map(split_file, SPLITS)) if not p.exists()]
    if missing:
        raise StageError(f"the split is missing: {', '.join(missing)}", "run `dvc repro split`")


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise StageError(f"--jobs {jobs} is not allowed: expected 1 or more", "pass --jobs 2")


def expected_seconds(run: Run) -> float:
    """The variant's training seconds in the committed run, or 0 before there is one."""
    path = training_file(run.variant)
    return json.loads(path.read_text())["timing"]["seconds"] if path.exists() else 0.0


@contextlib.contextmanager
def only_study() -> Iterator[None]:
    """Hold the project's study lock, or refuse in one line: another study is running here."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise StageError(
                f"another study is running in this project (pid {lock.read().strip() or '?'})",
                "wait for it to finish, or stop it; one study at a time writes the records",
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop a study as Ctrl-C does: nothing more starts, the runs stop."""
    numbers = (signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, interrupt) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def cluster_client(scheduler: str | None, jobs: int) -> Iterator[Any]:
    """A client of the scheduler at `scheduler`, or of a LocalCluster of `jobs` workers."""
    if scheduler is None:
        with local_cluster(jobs) as client:
            yield client
        return
    client = connect(scheduler)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=CLOSE_SECONDS)


def run_study(
    runs: list[Run],
    jobs: int,
    output: Path,
    hint: str,
    order: Callable[[dict[str, Any]], Any],
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run what is missing or stale of `runs`; return every record.

    Each run is one Dask task: on a LocalCluster of `jobs` workers here, each with its share
    of the cores, or with a `scheduler` address on that cluster's workers. `output` keeps the
    records of other runs too, written in `order` after each finished run. A run whose
    experiment of this commit already finished with today's fingerprint (here, or on `origin`
    for a cluster) is read back instead of rerun.
    """
    check_jobs(jobs)
    check_split()
    with only_study(), stopped_by_signals():
        return study(runs, jobs, output, hint, order, scheduler)


def study(
    runs: list[Run],
    jobs: int,
    output: Path,
    hint: str,
    order: Callable[[dict[str, Any]], Any],
    scheduler: str | None,
) -> list[dict[str, Any]]:
    fields = SEED_FIELDS if runs[0].evaluates else SWEEP_FIELDS
    records = {record["name"]: record for record in read_records(output, hint, fields)}
    params = parse_yaml(Path("params.yaml").read_text())
    libraries = installed_libraries()
    current = {
        r.name: fingerprint(r.variant, r.params(params), read_workspace, libraries, r.stages)
        for r in runs
    }
    base = head_commit()
    remote = scheduler is not None
    source = remote_source(output, base, libraries) if remote else local_source(output, libraries)

    def write(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        write_json(output, sorted(records.values(), key=order))

    todo = []
    for run in runs:
        if records.get(run.name, {}).get("fingerprint") == current[run.name]:
            continue
        finished = read_record(run, base)
        if finished and finished["fingerprint"] == current[run.name]:
            write(finished)
        else:
            todo.append(run)
    print(f"{len(todo)} runs to do, {len(runs) - len(todo)} recorded", flush=True)
    if not todo:
        return sorted(records.values(), key=order)
    longest_first = sorted(todo, key=lambda run: -expected_seconds(run))
    planned = {run.name: expected_seconds(run) or 1.0 for run in todo}
    progress = Progress(sum(planned.values()))

    def keep(run: Run, result: dict[str, Any]) -> None:
        record = result["record"]
        write(record)
        kind = "test" if "test_accuracy" in record else "validation"
        accuracy = record.get("test_accuracy", record["val_accuracy"])
        progress.done(
            planned[run.name],
            f"{record['name']}: {kind} accuracy {accuracy:.4f} ({steps_line(result)})",
        )

    threads = 0 if scheduler else threads_per_run(jobs)
    try:
        with cluster_client(scheduler, jobs) as client:
            unpushed = run_on_cluster(longest_first, client, source, base, keep, threads)
    except KeyboardInterrupt:
        raise StageError(
            f"interrupted: {len(records)} record(s) kept in {output}; the runs in flight are "
            "stopped",
            "run the same command again to do the rest",
        ) from None
    except SchedulerLost:
        raise StageError(
            f"lost the Dask scheduler at {scheduler}: {len(records)} record(s) kept in {output}",
            "start a scheduler and its workers, then run the same command: it does only the rest",
        ) from None
    finally:
        progress.close()
    if unpushed:
        names = " ".join(result["record"]["name"] for result in unpushed)
        raise StageError(
            f"{len(unpushed)} run(s) recorded but not pushed to origin ({names}): "
            f"{unpushed[0]['not_pushed']}",
            f"on each run's worker, cd {unpushed[0]['clone']} && dvc exp push origin NAME",
        )
    return sorted(records.values(), key=order)


class Progress:
    """A bar over the study's expected seconds of training (on a terminal), and a line per
    finished run with how much is done and the time left at the rate so far."""

    def __init__(self, total: float) -> None:
        self.bar = tqdm(total=total, unit="s", disable=None, bar_format="{l_bar}{bar}| {remaining}")
        self.total = total
        self.finished = 0.0
        self.started = time.monotonic()

    def done(self, seconds: float, line: str) -> None:
        self.finished += seconds
        self.bar.update(seconds)
        elapsed = time.monotonic() - self.started
        left = (self.total - self.finished) * elapsed / self.finished
        self.bar.write(
            f"{line}; {self.finished / self.total:.0%} done, "
            f"about {tqdm.format_interval(left)} left",
            file=sys.stdout,
        )

    def close(self) -> None:
        self.bar.close()
