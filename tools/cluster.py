"""Study runs on Dask: one task a run, each in its worker's own clone of the project.

    python -m tools.seed_study --jobs 2                      a LocalCluster on this machine
    python -m tools.seed_study --scheduler tcp://HOST:8786   (or DASK_SCHEDULER_ADDRESS)

Every run is one Dask task, on one machine as across many. The task travels by value and needs
nothing on the worker but this project's venv and Git: it keeps a clone of the project in the
worker's local directory, checks out the study's commit and runs `python -m tools.cluster`
there, which runs one `dvc exp run` in the foreground, sends the experiment back (`dvc exp
push origin NAME`) and prints the run's record. On one machine the clones come from the head's
own folder and share its DVC cache, so nothing needs a remote; across machines they clone the
Git remote `origin` and pull from and push to the DVC remote. The code must be committed first.

The head sends no more tasks than there are workers, longest first, and writes each record as
its task finishes. Dask reruns a task whose worker died (`distributed.scheduler.allowed-failures`,
3 by default); `retries=` reruns one whose set-up failed (Git, the DVC remote). A run that fails
on its own is reported once, with its last log lines, and not retried; a failed push is retried,
never the training.
"""

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.config
import psutil
from distributed import Client, LocalCluster, as_completed, get_worker

from stages.errors import StageError, run_stage
from stages.fingerprint import installed_libraries
from tools.experiments import (
    LOG_LINES,
    Run,
    RunFailed,
    dvc,
    experiment_names,
    experiment_ref,
    git,
    head_commit,
    run_experiment,
    run_failed,
    show_log,
)

RETRIES = 2  # reruns of a task whose set-up failed: a Git or DVC remote that did not answer
RUN_FAILED = 3  # the exit code of `python -m tools.cluster` when the run itself failed
CONNECT_SECONDS = 5
NEEDED_STAGES = ("fetch", "split")  # whose outputs every run reads; the rest it makes itself
PUSH_WAITS = (5, 20)  # seconds before each new try of a failed `dvc exp push`
STAGE_POLL = 0.2  # seconds between two looks for the stages that a run's `dvc exp run` started
CLOSE_SECONDS = 10  # for the client to let go of a scheduler that is gone


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a worker clones the project from and sends its experiment back to."""

    origin: str  # a Git URL, or the head's own folder on one machine
    libraries: dict[str, str]  # the head's installed_libraries(), which every worker must have
    cache: str = ""  # on one machine, the head's DVC cache, which the clones share


def clone_task() -> Callable[[dict[str, str], str, dict[str, Any], int], dict[str, Any]]:
    """The worker's task, made here so that Dask sends it by value, as it does local functions:
    a worker needs this project's venv and Git, not the project (nor does the scheduler)."""

    def run_in_clone(
        source: dict[str, str], base: str, run: dict[str, Any], threads: int
    ) -> dict[str, Any]:
        """One study run in the worker's clone at `base`: its record and the seconds of each
        step, or its log.

        One run at a time per worker (a lock on its clone), with `threads` (0: the worker's),
        in a process group of its own that `stop_task` can stop, and with the environment the
        worker had before the nanny's settings for NumPy workloads: its
        MALLOC_TRIM_THRESHOLD_ made training half as slow again.
        """
        worker = get_worker()
        clone = Path(worker.local_directory) / "project"
        clone.mkdir(exist_ok=True)
        venv = os.path.dirname(sys.executable)  # where the stages' `python` and `dvc` are
        nanny_set = dask.config.get("distributed.nanny.pre-spawn-environ")
        env = {key: value for key, value in os.environ.items() if key not in nanny_set}
        env["PATH"] = os.pathsep.join([venv, os.environ["PATH"]])
        with open(f"{clone}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            started = time.perf_counter()
            cloned = (clone / ".git").exists()
            get = ["fetch", "origin"] if cloned else ["clone", source["origin"], "."]
            for args in (get, ["checkout", "--force", base], ["clean", "-fd"]):
                done = subprocess.run(["git", *args, "--quiet"], cwd=clone, capture_output=True)
                if done.returncode != 0:
                    raise RuntimeError(f"git {args[0]} failed: {done.stderr.decode().strip()}")
            git_seconds = time.perf_counter() - started
            command = [sys.executable, "-m", "tools.cluster", json.dumps(run), json.dumps(source)]
            command += ["--threads", str(threads or worker.state.nthreads)]
            process = subprocess.Popen(
                command, cwd=clone, env=env, start_new_session=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            marker = Path(worker.local_directory) / f"{base[:7]}-{process.pid}.run"
            marker.touch()
            try:
                stdout, stderr_bytes = process.communicate()
            finally:
                marker.unlink()
        stderr = stderr_bytes.decode(errors="replace").splitlines()
        if process.returncode == RUN_FAILED:  # its log is on stderr, each line after the run's name
            return {"failed": stderr[-LOG_LINES:]}
        if process.returncode != 0:
            raise RuntimeError("\n".join(stderr[-LOG_LINES:]))
        done = json.loads(stdout.decode().splitlines()[-1])
        seconds = {"git": git_seconds, **done["seconds"]}
        total = time.perf_counter() - started
        return {**done, "seconds": seconds, "total": total, "worker": worker.address,
                "clone": str(clone)}  # fmt: skip

    return run_in_clone


def stop_task() -> Callable[..., int]:
    """What `client.run` calls on every worker to stop the runs of a study: made here so that
    Dask sends it by value."""

    def stop_runs(base: str, dask_worker: Any) -> int:
        """Kill the process group of each of this worker's runs of the study at `base`."""
        stopped = 0
        for marker in Path(dask_worker.local_directory).glob(f"{base[:7]}-*.run"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(marker.stem.rsplit("-", 1)[1]), signal.SIGKILL)
                stopped += 1
        return stopped

    return stop_runs


def scheduler_address(given: str | None) -> str | None:
    """--scheduler, or DASK_SCHEDULER_ADDRESS; None runs the study on a LocalCluster here."""
    return given or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def check_committed(output: Path) -> None:
    """Every tracked file but the study's own records must be committed: workers run commits."""
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded(output))
    if changed.strip():
        first = changed.decode().splitlines()[0][3:]
        raise StageError(
            f"uncommitted changes ({first} and more): the workers run the commit, not this folder",
            "commit them, then run the same command again",
        )


def local_source(output: Path, libraries: dict[str, str]) -> Source:
    """This folder and its DVC cache, for the workers of a LocalCluster; one-line errors else."""
    check_committed(output)
    cache = dvc("cache", "dir").stdout.strip()
    return Source(str(Path.cwd().resolve()), libraries, cache=str(Path(cache).resolve()))


def remote_source(output: Path, base: str, libraries: dict[str, str]) -> Source:
    """The URL of `origin`, once the workers can have what the head has; one-line errors else.

    Every tracked file but the study's own records must be committed, the commit on `origin`,
    and the outputs of the fetch and split stages in the DVC remote.
    """
    remote = subprocess.run(["git", "remote", "get-url", "origin"], capture_output=True, text=True)
    if remote.returncode != 0:
        raise StageError(
            "the project has no Git remote `origin` for the workers to clone",
            "git remote add origin URL, then git push origin HEAD",
        )
    check_committed(output)
    git("fetch", "--quiet", "origin")
    if not git("branch", "--remotes", "--contains", "HEAD").strip():
        raise StageError(
            f"commit {base[:7]} is not on `origin`: the workers could not check it out",
            "git push origin HEAD",
        )
    missing = json.loads(dvc("status", "--cloud", "--json", *NEEDED_STAGES).stdout or "{}")
    if missing:
        raise StageError(
            f"the DVC remote lacks {', '.join(sorted(missing))}, which the workers pull",
            f"dvc push {' '.join(NEEDED_STAGES)}",
        )
    fetch_experiments(base)
    return Source(remote.stdout.strip(), libraries)


def excluded(output: Path) -> list[str]:
    """A pathspec that leaves out the study's records file, when it is in the project."""
    try:
        return [f":!{output.resolve().relative_to(Path.cwd().resolve())}"]
    except ValueError:
        return []


def fetch_experiments(base: str) -> None:
    """Fetch from `origin` the experiments of `base` (Git only), so finished runs are read back."""
    refs = experiment_ref(base, "*")
    git("fetch", "--quiet", "origin", f"+{refs}:{refs}")


def connect(address: str) -> Client:
    """A client of the scheduler at `address`, quiet: its failures reach the user as one line."""
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return Client(address, timeout=f"{CONNECT_SECONDS}s")
    except OSError as error:
        raise StageError(
            f"no Dask scheduler answered at {address}: {error}",
            "start one with `dask scheduler`, or pass the address it prints",
        ) from None


@contextlib.contextmanager
def local_cluster(jobs: int) -> Iterator[Client]:
    """`jobs` worker processes on this machine, one task at a time each; gone afterwards."""
    with (
        LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


class SchedulerLost(Exception):
    """The client lost its scheduler: every task in flight is gone with it."""


def run_on_cluster(
    runs: list[Run],
    client: Client,
    source: Source,
    base: str,
    keep: Callable[[Run, dict[str, Any]], None],
    threads: int = 0,
) -> list[dict[str, Any]]:
    """Run the runs as Dask tasks of the commit `base`, in the order given; `keep` each run's
    result as it finishes.

    No more tasks are in flight than there are workers, so a failed run sends no more: the
    running ones finish and are kept, and then it fails with its log. Ctrl-C, SIGTERM or an
    error of ours cancels every task and stops the runs on the workers. Returns the results
    of the runs whose experiment could not be sent back.
    """
    task = clone_task()
    waiting = list(runs)
    running: dict[Any, Run] = {}
    finished = as_completed()
    failed: tuple[str, list[str]] | None = None
    unpushed: list[dict[str, Any]] = []

    def send_more() -> None:
        while waiting and not failed and len(running) < max(1, len(client.nthreads())):
            run = waiting.pop(0)
            future = client.submit(
                task, dataclasses.asdict(source), base, dataclasses.asdict(run), threads,
                key=f"{run.name}@{base[:7]}", retries=RETRIES, pure=False,
            )  # fmt: skip
            running[future] = run
            finished.add(future)

    try:
        send_more()
        for future in finished:
            run = running.pop(future)
            if future.cancelled():
                raise SchedulerLost
            try:
                result = future.result()
            except Exception as error:  # lost workers beyond allowed-failures, or set-up errors
                lines = f"{type(error).__name__}: {error}".splitlines()
                result = {"failed": [f"  {run.name} | {line}" for line in lines]}
            if "failed" in result:
                failed = failed or (run.name, result["failed"])
            else:
                keep(run, result)
                if "not_pushed" in result:
                    unpushed.append(result)
            send_more()
    except SchedulerLost:
        raise  # nothing to cancel: the tasks went with the scheduler
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(running))
            client.run(stop_task(), base, wait=True)
        raise
    if failed:
        print("\n".join(failed[1]), file=sys.stderr)
        raise run_failed(failed[0])
    return unpushed


def steps_line(result: dict[str, Any]) -> str:
    """Where a task's time went: `on tcp://...: git 0.1 s, pull 1.9 s, ...; 45.0 s in all`, the
    stages' share of its run (`the stages: train 38.2 s, evaluate 7.9 s`), and how often its
    push was tried when once was not enough."""
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result["seconds"].items())
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result["stages"].items())
    tries = f"; push tried {result['push_tries']} times" if result["push_tries"] > 1 else ""
    total = f"{result['total']:.1f} s in all"
    return f"on {result['worker']}: {steps}; {total}; the stages: {stages}{tries}"


@contextlib.contextmanager
def timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - started


@contextlib.contextmanager
def stages_timed(seconds: dict[str, float]) -> Iterator[None]:
    """The seconds of each stage that this process's children run (`python -m stages.train`,
    ...), by stage: from the process's start to the last look that found it, a look every
    STAGE_POLL seconds. What a run spends in DVC is its `dvc exp run` less these."""
    seen: dict[int, tuple[str, float, float]] = {}  # pid: stage, started, last seen
    stop = threading.Event()
    this = psutil.Process()

    def look() -> None:
        for child in this.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.pid in seen:
                    stage, started, _ = seen[child.pid]
                    seen[child.pid] = (stage, started, time.time())
                elif module := stage_module(child.cmdline()):
                    seen[child.pid] = (module, child.create_time(), time.time())

    def watch() -> None:
        while not stop.wait(STAGE_POLL):
            look()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        for stage, started, last in seen.values():
            seconds[stage] = seconds.get(stage, 0.0) + last - started


def stage_module(cmdline: list[str]) -> str:
    """`train` for `python -m stages.train wide`, '' for any other command."""
    for flag, module in zip(cmdline, cmdline[1:], strict=False):
        if flag == "-m" and module.startswith("stages."):
            return module.removeprefix("stages.")
    return ""


def die_with_parent() -> None:
    """Kill this run's process group (DVC and the stage) as soon as its worker is gone: a
    worker killed mid-run (by the OOM killer, say) leaves no training running on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def push(name: str, source: Source) -> tuple[int, str]:
    """`dvc exp push` the experiment, trying again after each of PUSH_WAITS: the tries, and ''
    once it is sent or else the last error. On one machine only its Git commit goes: the cache
    is shared."""
    args = ["exp", "push", "--force", *(["--no-cache"] if source.cache else []), "origin", name]
    error = ""
    for tries, wait in enumerate((*PUSH_WAITS, None), start=1):
        result = dvc(*args, check=False)
        if result.returncode == 0:
            return tries, ""
        error = ((result.stderr or result.stdout).strip().splitlines() or ["no output"])[-1]
        if wait is not None:
            time.sleep(wait)
    return tries, error


def check_libraries(run: Run, head: dict[str, str]) -> None:
    """A run whose worker has other library versions than the head fails before it starts:
    its record would not be like the others (nor current, by its fingerprint)."""
    here = installed_libraries()
    if here != head:
        differ = ", ".join(
            f"{key} {here.get(key)} (head: {value})" for key, value in head.items()
            if here.get(key) != value
        )  # fmt: skip
        show_log(run.name, [f"this worker runs {differ}: install the head's lock here"])
        raise run_failed(run.name)


def run_here(run: Run, source: Source, threads: int) -> dict[str, Any]:
    """In a worker's clone: get what the run needs, run it, send its experiment back; its
    record, the seconds that each step and each stage took and, if the push failed, why."""
    check_libraries(run, source.libraries)
    seconds: dict[str, float] = {}
    stages: dict[str, float] = {}
    with timed(seconds, "pull"):
        if source.cache:
            dvc("cache", "dir", "--local", source.cache)
            dvc("checkout", "--quiet", *NEEDED_STAGES)
        else:
            dvc("pull", "--quiet", *NEEDED_STAGES)
        if run.name in experiment_names(head_commit()):
            dvc("exp", "remove", run.name)  # an earlier try's, never pushed
    with timed(seconds, "run"), stages_timed(stages):
        record = run_experiment(run, threads)
    with timed(seconds, "push"):
        tries, error = push(run.name, source)
    return {
        "record": record,
        "seconds": seconds,
        "stages": stages,
        "push_tries": tries,
        **({"not_pushed": error} if error else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one study run here (a worker's task).")
    parser.add_argument("run", type=json.loads, help="the Run's fields as JSON")
    parser.add_argument("source", type=json.loads, help="the Source's fields as JSON")
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    die_with_parent()
    try:
        done = run_here(Run(**args.run), Source(**args.source), args.threads)
    except RunFailed:
        sys.exit(RUN_FAILED)
    print(json.dumps(done))


if __name__ == "__main__":
    run_stage(main)
