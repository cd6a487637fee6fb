"""Study runs on a Dask cluster: one task a run, each in its worker's own clone of the project.

    python -m tools.seed_study --scheduler tcp://HOST:8786   (or DASK_SCHEDULER_ADDRESS)

The head submits one task per run and writes each record as its task finishes. The task
travels by value and needs nothing on the worker but this project's venv and
Git: it keeps a clone of the Git remote `origin` in the worker's local directory, checks out
the study's commit and runs `python -m tools.cluster` there, which pulls the data the run needs
from the DVC remote, runs the same `dvc exp run` as DVC's queue would, pushes the experiment
back (`dvc exp push origin NAME`: its commit to Git, its outputs to the DVC remote) and prints
the run's record. No shared disk: the code must be committed and pushed first.

Dask reruns a task whose worker died (`distributed.scheduler.allowed-failures`, 3 by default);
`retries=` reruns one whose set-up failed (Git, the DVC remote). A run that fails on its own is
reported once, with its last log lines, and not retried.
"""

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.config
from distributed import Client, as_completed, get_worker

from stages.errors import StageError, run_stage
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
)

RETRIES = 2  # reruns of a task whose set-up failed: a Git or DVC remote that did not answer
RUN_FAILED = 3  # the exit code of `python -m tools.cluster` when the run itself failed
CONNECT_SECONDS = 5
NEEDED_STAGES = ("fetch", "split")  # whose outputs every run reads; the rest it makes itself


def clone_task() -> Callable[[str, str, dict[str, Any]], dict[str, Any]]:
    """The worker's task, made here so that Dask sends it by value, as it does local functions:
    a worker needs this project's venv and Git, not the project (nor does the scheduler)."""

    def run_in_clone(origin: str, base: str, run: dict[str, Any]) -> dict[str, Any]:
        """One study run in the worker's clone of `origin` at `base`: its record and the seconds
        of each step, or its log.

        One run at a time per worker (a lock on its clone), with the worker's threads, and the
        environment the worker had before the nanny's settings for NumPy workloads: its
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
            get = ["fetch", "origin"] if (clone / ".git").exists() else ["clone", origin, "."]
            for args in (get, ["checkout", "--force", base], ["clean", "-fd"]):
                done = subprocess.run(["git", *args, "--quiet"], cwd=clone, capture_output=True)
                if done.returncode != 0:
                    raise RuntimeError(f"git {args[0]} failed: {done.stderr.decode().strip()}")
            git_seconds = time.perf_counter() - started
            command = [sys.executable, "-m", "tools.cluster", json.dumps(run)]
            threads = ["--threads", str(worker.state.nthreads)]
            result = subprocess.run([*command, *threads], cwd=clone, env=env, capture_output=True)
        stderr = result.stderr.decode(errors="replace").splitlines()
        if result.returncode == RUN_FAILED:  # its log is on stderr, each line after the run's name
            return {"failed": stderr[-LOG_LINES:]}
        if result.returncode != 0:
            raise RuntimeError("\n".join(stderr[-LOG_LINES:]))
        done = json.loads(result.stdout.decode().splitlines()[-1])
        seconds = {"git": git_seconds, **done["seconds"]}
        total = time.perf_counter() - started
        return {**done, "seconds": seconds, "total": total, "worker": worker.address}

    return run_in_clone


def scheduler_address(given: str | None) -> str | None:
    """--scheduler, or DASK_SCHEDULER_ADDRESS; None runs the study through DVC's queue."""
    return given or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def check_pushed(output: Path) -> str:
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
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded(output))
    if changed.strip():
        first = changed.decode().splitlines()[0][3:]
        raise StageError(
            f"uncommitted changes ({first} and more): the workers run the commit, not this folder",
            "commit them and git push origin HEAD",
        )
    git("fetch", "--quiet", "origin")
    if not git("branch", "--remotes", "--contains", "HEAD").strip():
        raise StageError(
            f"commit {head_commit()[:7]} is not on `origin`: the workers could not check it out",
            "git push origin HEAD",
        )
    missing = json.loads(dvc("status", "--cloud", "--json", *NEEDED_STAGES).stdout or "{}")
    if missing:
        raise StageError(
            f"the DVC remote lacks {', '.join(sorted(missing))}, which the workers pull",
            f"dvc push {' '.join(NEEDED_STAGES)}",
        )
    return remote.stdout.strip()


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
    try:
        return Client(address, timeout=f"{CONNECT_SECONDS}s")
    except OSError as error:
        raise StageError(
            f"no Dask scheduler answered at {address}: {error}",
            "start one with `dask scheduler`, or pass the address it prints",
        ) from None


def run_on_cluster(
    runs: list[Run], address: str, origin: str, keep: Callable[[dict[str, Any]], None]
) -> None:
    """Run the runs as Dask tasks, in the order given; `keep` each record as it finishes.

    A failed run cancels the tasks that no worker has taken, lets the others finish and then
    fails with its log. Ctrl-C or an error of ours cancels every task still to finish.
    """
    base = head_commit()
    client = connect(address)
    task = clone_task()
    futures = {
        client.submit(
            task,
            origin,
            base,
            dataclasses.asdict(run),
            key=f"{run.name}@{base[:7]}",
            priority=len(runs) - index,
            retries=RETRIES,
            pure=False,
        ): run
        for index, run in enumerate(runs)
    }
    print(f"{len(runs)} tasks sent to {address}", flush=True)
    failed: tuple[str, list[str]] | None = None
    try:
        for future in as_completed(futures):
            run = futures[future]
            if future.cancelled():
                continue
            try:
                result = future.result()
            except Exception as error:  # lost workers beyond allowed-failures, or set-up errors
                lines = f"{type(error).__name__}: {error}".splitlines()
                result = {"failed": [f"  {run.name} | {line}" for line in lines]}
            if "failed" in result and not failed:
                failed = (run.name, result["failed"])
                cancel_untaken(client, list(futures))
            elif "failed" not in result:
                keep(result["record"])
                print(steps_line(result), flush=True)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        client.close()
    if failed:
        print("\n".join(failed[1]), file=sys.stderr)
        raise run_failed(failed[0])


def steps_line(result: dict[str, Any]) -> str:
    """Where a task's time went: `  on tcp://...: git 0.1 s, pull 1.9 s, ...; 45.0 s in all`."""
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result["seconds"].items())
    return f"  on {result['worker']}: {steps}; {result['total']:.1f} s in all"


def cancel_untaken(client: Client, futures: list[Any]) -> None:
    """Cancel the tasks that no worker is processing; the running ones go on."""
    taken = {key for keys in client.processing().values() for key in keys}
    client.cancel([future for future in futures if future.key not in taken])


@contextlib.contextmanager
def timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - started


def run_here(run: Run, threads: int) -> dict[str, Any]:
    """In a worker's clone: pull what the run needs, run it, push its experiment; its record,
    and the seconds that each step took."""
    seconds: dict[str, float] = {}
    with timed(seconds, "pull"):
        dvc("pull", "--quiet", *NEEDED_STAGES)
        if run.name in experiment_names(head_commit()):
            dvc("exp", "remove", run.name)  # an earlier try's, never pushed
    with timed(seconds, "run"):
        record = run_experiment(run, threads)
    with timed(seconds, "push"):
        dvc("exp", "push", "--force", "origin", run.name)
    return {"record": record, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one study run here (a worker's task).")
    parser.add_argument("run", type=json.loads, help="the Run's fields as JSON")
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    try:
        done = run_here(Run(**args.run), args.threads)
    except RunFailed:
        sys.exit(RUN_FAILED)
    print(json.dumps(done))


if __name__ == "__main__":
    run_stage(main)
