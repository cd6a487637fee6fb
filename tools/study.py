"""The head of a study: what is missing or stale of its runs, each run one Dask task, here or on
a cluster. Runs where the user runs `python -m tools.seed_study` or `python -m tools.sweep`.

    python -m tools.seed_study --jobs 2                      a LocalCluster on this machine
    python -m tools.seed_study --scheduler tcp://HOST:8786   (or DASK_SCHEDULER_ADDRESS)

The head keeps the books: it writes each record to the study's file as its run finishes, so
nothing finished is lost, and a rerun does only the runs that are missing or stale. It sends no
more tasks than there are workers, longest first (tools/task.py runs each in a clone on its
worker, tools/run.py the run there). On one machine the clones come from this folder and share
its DVC cache; across machines they clone the Git remote `origin` and pull from and push to the
DVC remote. The code must be committed first.

Dask reruns a task whose worker died (`distributed.scheduler.allowed-failures`, 3 by default);
`retries=` reruns one whose set-up failed (Git, the DVC remote). A run that fails on its own is
reported once, with its last log lines, and not retried.
"""

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import cloudpickle
from distributed import Client, LocalCluster, wait
from distributed.client import FuturesCancelledError
from filelock import FileLock, Timeout
from tqdm import tqdm

import tools.task
from stages.errors import StageError
from stages.files import parse_yaml, write_json
from stages.fingerprint import current_fingerprint, git, installed_libraries
from stages.paths import MANIFEST_FILE, SPLITS, split_file, training_file
from stages.records import SEED_FIELDS, SWEEP_FIELDS, read_records
from tools.experiments import (
    NEEDED_STAGES,
    Run,
    Source,
    dvc,
    experiment_names,
    experiment_ref,
    head_commit,
    read_record,
    run_failed,
    threads_per_run,
)
from tools.task import run_in_clone, stop_runs

LOCK_FILE = Path(".dvc/tmp/study.lock")  # one study at a time writes a project's records
PID_FILE = Path(".dvc/tmp/study.pid")  # the pid of the study that holds the lock
NOT_READ_BY_RUNS = (":!reports", ":!docs", ":!*.md")  # what studies write, and no run reads
RETRIES = 2  # reruns of a task whose set-up failed: a Git or DVC remote that did not answer
CONNECT_SECONDS = 5
REMOTE_SECONDS = 300  # for the head's look at the DVC remote
WORKERS_SECONDS = 30  # for a scheduler without workers to get one, before the study gives up
POLL_SECONDS = 1  # between two looks at the workers while no run finishes
CLOSE_SECONDS = 10  # for the client to let go of a scheduler that is gone
TERMINAL_SIGNALS = {signal.SIGINT, signal.SIGHUP}  # what a terminal sends its foreground group

cloudpickle.register_pickle_by_value(tools.task)  # the workers need no copy of the project


def check_split() -> None:
    """The split must be there (its files in the workspace, so in DVC's cache) before any run."""
    missing = [str(p) for p in (MANIFEST_FILE, *map(split_file, SPLITS)) if not p.exists()]
    if missing:
        raise StageError(f"the split is missing: {', '.join(missing)}", "run `dvc repro split`")


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise StageError(f"--jobs {jobs} is not allowed: expected 1 or more", "pass --jobs 2")


def scheduler_address(given: str | None) -> str | None:
    """--scheduler, or DASK_SCHEDULER_ADDRESS; None runs the study on a LocalCluster here."""
    return given or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def expected_seconds(run: Run) -> float:
    """The variant's training seconds in the committed run, or 0 before there is one."""
    path = training_file(run.variant)
    return json.loads(path.read_text())["timing"]["seconds"] if path.exists() else 0.0


@contextlib.contextmanager
def only_study() -> Iterator[None]:
    """Hold the project's study lock, or refuse in one line: another study is running here."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pid = PID_FILE.read_text().strip() if PID_FILE.exists() else "?"
        raise StageError(
            f"another study is running in this project (pid {pid})",
            "wait for it to finish, or stop it; one study at a time writes the records",
        ) from None
    try:
        PID_FILE.write_text(str(os.getpid()))
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt once; any later one is ignored, so
    that a second Ctrl-C does not cut the stop of the runs short."""
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        for number in numbers:
            signal.signal(number, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def check_committed() -> None:
    """Every file that a run reads must be committed: workers run commits."""
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_READ_BY_RUNS)
    if changed.strip():
        first = changed.decode().splitlines()[0][3:]
        raise StageError(
            f"uncommitted changes ({first} and more): the workers run the commit, not this folder",
            "commit them, then run the same command again",
        )


def local_source(libraries: dict[str, str]) -> Source:
    """This folder and its DVC cache, for the workers of a LocalCluster; one-line errors else."""
    check_committed()
    cache = dvc("cache", "dir").stdout.strip()
    return Source(str(Path.cwd().resolve()), libraries, cache=str(Path(cache).resolve()))


def remote_source(base: str, libraries: dict[str, str]) -> Source:
    """The URL of `origin`, once the workers can have what the head has; one-line errors else.

    Every file that a run reads must be committed, the commit on a branch of `origin` as it is
    now, and the outputs of the fetch and split stages in the DVC remote.
    """
    try:
        url = git("remote", "get-url", "origin").decode().strip()
    except StageError:
        raise StageError(
            "the project has no Git remote `origin` for the workers to clone",
            "git remote add origin URL, then git push origin HEAD",
        ) from None
    check_committed()
    git("fetch", "--quiet", "--prune", "origin")
    if not git("for-each-ref", "--contains", base, "refs/remotes/origin").strip():
        raise StageError(
            f"commit {base[:7]} is not on `origin`: the workers could not check it out",
            "git push origin HEAD",
        )
    status = dvc("status", "--cloud", "--json", *NEEDED_STAGES, timeout=REMOTE_SECONDS)
    missing = json.loads(status.stdout or "{}")
    if missing:
        raise StageError(
            f"the DVC remote lacks {', '.join(sorted(missing))}, which the workers pull",
            f"dvc push {' '.join(NEEDED_STAGES)}",
        )
    refs = experiment_ref(base, "*")
    git("fetch", "--quiet", "origin", f"{refs}:{refs}")  # the finished runs; never over yours
    return Source(url, libraries)


def check_names(todo: list[Run], base: str) -> None:
    """A run to do must not share its name with an experiment of `base` that it did not make:
    the study would push over it."""
    taken = sorted(experiment_names(base) & {run.name for run in todo})
    if taken:
        raise StageError(
            f"experiment(s) {', '.join(taken)} of commit {base[:7]} exist but are not current "
            "runs of this study (other code, params or libraries)",
            f"remove them (`dvc exp remove {' '.join(taken)}`, with `-g origin` for a cluster's), "
            "then run the same command",
        )


@contextlib.contextmanager
def local_cluster(jobs: int) -> Iterator[LocalCluster]:
    """`jobs` worker processes here, one task at a time each. They start with Ctrl-C and SIGHUP
    ignored, which their runs inherit: a terminal's signals reach the head alone, which stops
    them in order. One that comes meanwhile waits, blocked, and reaches the head once they have
    started, inside the `with` that closes them."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINAL_SIGNALS)
    handlers = {number: signal.signal(number, signal.SIG_IGN) for number in TERMINAL_SIGNALS}

    def restore() -> None:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    try:
        cluster = LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )  # fmt: skip
    except BaseException:
        restore()
        raise
    with cluster:
        restore()
        yield cluster


@contextlib.contextmanager
def cluster_client(scheduler: str | None, jobs: int) -> Iterator[Client]:
    """A client of the scheduler at `scheduler`, or of a LocalCluster of `jobs` workers, quiet:
    failures reach the user as one line."""
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if scheduler is None:
        with local_cluster(jobs) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout=f"{CONNECT_SECONDS}s")
    except OSError as error:
        raise StageError(
            f"no Dask scheduler answered at {scheduler}: {error}",
            "start one with `dask scheduler`, or pass the address it prints",
        ) from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=CLOSE_SECONDS)


class SchedulerLost(Exception):
    """The client lost its scheduler: every task in flight is gone with it."""


class NoWorkers(Exception):
    """The scheduler had no worker for WORKERS_SECONDS."""


def check_workers(client: Client, since: list[float]) -> None:
    """Raise NoWorkers once the scheduler has had none for WORKERS_SECONDS; `since` holds
    when it was last seen with one."""
    if client.scheduler_info().get("workers"):
        since[0] = time.monotonic()
    elif time.monotonic() - since[0] > WORKERS_SECONDS:
        raise NoWorkers


def run_on_cluster(
    runs: list[Run],
    client: Client,
    source: Source,
    base: str,
    keep: Callable[[Run, dict[str, Any]], None],
    threads: int = 0,
) -> None:
    """Run the runs as Dask tasks of the commit `base`, in the order given; `keep` each run's
    result as it finishes.

    No more tasks are in flight than there are workers, so a failed run sends no more: the
    running ones finish and are kept, and then it fails with its log. Ctrl-C, SIGTERM or an
    error of ours cancels every task and stops the runs on the workers, those in their Git
    commands too.
    """
    study = uuid.uuid4().hex[:12]  # this study's tasks and runs, among any other study's
    waiting = list(runs)
    running: dict[Any, Run] = {}
    failed: tuple[str, list[str]] | None = None
    workers_seen = [time.monotonic()]

    # Local functions: pickle cannot send them, so Dask sends them with cloudpickle, and with
    # them tools.task by value (registered above).
    def task(*args: Any) -> dict[str, Any]:
        return run_in_clone(*args)

    def stop(study: str, dask_worker: Any) -> int:
        return stop_runs(study, dask_worker)

    def send_more() -> None:
        try:
            submit_more()
        except OSError:  # distributed's CommClosedError: the scheduler went
            raise SchedulerLost from None

    def submit_more() -> None:
        while waiting and not failed and len(running) < max(1, len(client.nthreads())):
            run = waiting.pop(0)
            future = client.submit(
                task, dataclasses.asdict(source), base, dataclasses.asdict(run), study,
                threads, key=f"{run.name}-{study}", retries=RETRIES, pure=False,
            )  # fmt: skip
            running[future] = run

    try:
        send_more()
        while running:
            try:
                done, _ = wait(list(running), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                check_workers(client, workers_seen)
                continue
            except FuturesCancelledError:
                raise SchedulerLost from None
            for future in done:
                run = running.pop(future)
                try:
                    result = future.result()
                except Exception as error:  # lost workers beyond allowed-failures, or set-up
                    lines = f"{type(error).__name__}: {error}".splitlines()
                    result = {"failed": [f"  {run.name} | {line}" for line in lines]}
                if "failed" in result:
                    failed = failed or (run.name, result["failed"])
                else:
                    keep(run, result)
            send_more()
    except SchedulerLost:
        raise  # nothing to cancel: the tasks went with the scheduler
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(running))
        with contextlib.suppress(Exception):
            client.run(stop, study, on_error="ignore")
        raise
    if failed:
        print("\n".join(failed[1]), file=sys.stderr)
        raise run_failed(failed[0])


def steps_line(result: dict[str, Any]) -> str:
    """Where a task's time went: `on tcp://...: git 0.1 s, pull 1.9 s, ...; 45.0 s in all`, and
    the stages' share of its run (`the stages: train 38.2 s, evaluate 7.9 s`)."""
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result["seconds"].items())
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result["stages"].items())
    return f"on {result['worker']}: {steps}; {result['total']:.1f} s in all; the stages: {stages}"


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
    records: dict[str, dict[str, Any]] = {}
    try:
        with interruptible(), only_study():
            return study(runs, jobs, output, hint, order, scheduler, records)
    except KeyboardInterrupt:
        raise StageError(
            f"interrupted: {len(records)} record(s) kept in {output}; the runs in flight are "
            "stopped",
            "run the same command again to do the rest",
        ) from None


def study(
    runs: list[Run],
    jobs: int,
    output: Path,
    hint: str,
    order: Callable[[dict[str, Any]], Any],
    scheduler: str | None,
    records: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    fields = SEED_FIELDS if runs[0].evaluates else SWEEP_FIELDS
    records |= {record["name"]: record for record in read_records(output, hint, fields)}
    params = parse_yaml(Path("params.yaml").read_text())
    libraries = installed_libraries()
    current = {
        r.name: current_fingerprint(r.variant, params, libraries, r.overrides, r.stages)
        for r in runs
    }
    base = head_commit()
    source = remote_source(base, libraries) if scheduler else local_source(libraries)

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
    check_names(todo, base)
    print(f"{len(todo)} runs to do, {len(runs) - len(todo)} recorded", flush=True)
    if not todo:
        return sorted(records.values(), key=order)
    longest_first = sorted(todo, key=lambda run: -expected_seconds(run))
    planned = {run.name: expected_seconds(run) or 1.0 for run in todo}
    progress = Progress(sum(planned.values()))

    unpushed: list[dict[str, Any]] = []

    def keep(run: Run, result: dict[str, Any]) -> None:
        record = result["record"]
        write(record)
        kind = "test" if "test_accuracy" in record else "validation"
        accuracy = record.get("test_accuracy", record["val_accuracy"])
        progress.done(
            planned[run.name],
            f"{record['name']}: {kind} accuracy {accuracy:.4f} ({steps_line(result)})",
        )
        if "not_pushed" in result:
            unpushed.append(result)

    threads = 0 if scheduler else threads_per_run(jobs)
    try:
        with cluster_client(scheduler, jobs) as client:
            run_on_cluster(longest_first, client, source, base, keep, threads)
    except SchedulerLost:
        raise StageError(
            f"lost the Dask scheduler at {scheduler}: {len(records)} record(s) kept in {output}",
            "start a scheduler and its workers, then run the same command: it does only the rest",
        ) from None
    except NoWorkers:
        raise StageError(
            f"the Dask scheduler at {scheduler} had no worker for {WORKERS_SECONDS} s: "
            f"{len(records)} record(s) kept in {output}",
            f"start workers (`dask worker {scheduler}`), then run the same command",
        ) from None
    finally:
        progress.close()
        for result in unpushed:  # also when the study ends otherwise: they are recorded
            print(push_line(result), file=sys.stderr)
    if unpushed:
        raise StageError(
            f"{len(unpushed)} run(s) recorded but not pushed to origin",
            "on each run's machine, run the command after its name above: it pushes the "
            "experiment from the clone that keeps it",
        )
    return sorted(records.values(), key=order)


def push_line(result: dict[str, Any]) -> str:
    """An unpushed run: the command that sends its experiment to `origin` from the clone that
    keeps it, the machine to run it on, and why the push failed."""
    name, clone = result["record"]["name"], shlex.quote(result["clone"])
    command = f"cd {clone} && dvc exp push origin {name}"
    return f"  {name} | {command}  # on {result['worker']}; not pushed: {result['not_pushed']}"


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
        sys.stdout.flush()  # as the run finishes, also into a pipe or a file

    def close(self) -> None:
        self.bar.close()
