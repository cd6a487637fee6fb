"""One study run as a Dask task. Runs on a worker, which needs this project's venv and Git but
not the project: the head sends this module by value (cloudpickle), so it imports only
libraries.

The task takes a free clone of the project in the worker machine's cache folder, checks out the
study's commit and runs `python -m tools.run` there (tools/run.py), in a process group of its
own. The clones outlive the worker (distributed deletes a worker's local directory when it
closes), so an experiment whose push failed stays where the study's hint says it is.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import dask.config
import psutil
from filelock import FileLock, Timeout

RUN_FAILED = 3  # the exit code of `python -m tools.run` when the run itself failed
LOG_LINES = 12  # of a failed run's log, shown with its error
GIT_SECONDS = 300  # for a worker's `git clone`, `fetch` or `checkout`
GIT_POLL = 0.1  # seconds between two looks for the study's stop while Git runs
RUN_SECONDS = 6 * 3600  # for one run: its pull, `dvc exp run` and push
STOP_SECONDS = 10  # between SIGTERM and SIGKILL, for a run's processes to end


class Stopped(Exception):
    """The study stopped this task's run (Ctrl-C, SIGTERM or SIGHUP at its head)."""


def clones_folder(origin: str) -> Path:
    """Where a machine keeps its clones of the project at `origin`, one per worker at a time:
    in $STUDY_CLONES, by default ~/.cache/mnist-keras-dvc/clones."""
    clones = os.environ.get("STUDY_CLONES") or Path.home() / ".cache/mnist-keras-dvc/clones"
    return Path(clones) / hashlib.sha256(origin.encode()).hexdigest()[:12]


def free_clone(origin: str) -> tuple[Path, FileLock]:
    """The first clone folder of `origin` that no other task holds, and its held lock."""
    folder = clones_folder(origin)
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(1024):
        lock = FileLock(folder / f"{slot}.lock")
        with suppress(Timeout):
            lock.acquire(timeout=0)
            return folder / str(slot), lock
    raise RuntimeError(f"all clone folders in {folder} are in use")


def git_env() -> dict[str, str]:
    """The worker's environment before the nanny's settings for NumPy workloads (its
    MALLOC_TRIM_THRESHOLD_ made training half as slow again), with its venv first on PATH and
    Git never prompting for credentials."""
    nanny_set = dask.config.get("distributed.nanny.pre-spawn-environ")
    env = {key: value for key, value in os.environ.items() if key not in nanny_set}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def check_out(
    clone: Path, origin: str, base: str, env: dict[str, str], stop: Callable[[], bool]
) -> None:
    """The clone at commit `base`, nothing else in its work tree; Stopped as soon as `stop()`,
    also in the middle of a Git command."""
    clone.mkdir(exist_ok=True)
    get = ["fetch", "origin"] if (clone / ".git").exists() else ["clone", origin, "."]
    for args in (get, ["checkout", "--force", base], ["clean", "-fd"]):
        if stop():
            raise Stopped
        git = subprocess.Popen(
            ["git", *args, "--quiet"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + GIT_SECONDS
        while git.poll() is None:
            if stop() or time.monotonic() > deadline:
                git.kill()
                git.wait()
                if stop():
                    raise Stopped
                raise RuntimeError(f"git {args[0]} took more than {GIT_SECONDS} s")
            time.sleep(GIT_POLL)
        if git.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed: {git.stderr.read().decode().strip()}")


def stop_group(leader: int) -> None:
    """SIGTERM to the process group of `leader`, then SIGKILL to what is left of it (this
    process too, when it is in that group)."""
    members = [p for p in psutil.process_iter() if p.pid != os.getpid() and in_group(p, leader)]
    with suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGTERM)
    psutil.wait_procs(members, timeout=STOP_SECONDS)
    with suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)


def in_group(process: psutil.Process, leader: int) -> bool:
    with suppress(psutil.Error, ProcessLookupError):
        return os.getpgid(process.pid) == leader
    return False


def stopped(marks: Path, study: str) -> bool:
    return (marks / f"{study}.stopped").exists()


def run_in_clone(
    source: dict[str, Any], base: str, run: dict[str, Any], study: str, threads: int
) -> dict[str, Any]:
    """The run in a clone at `base`: its record and the seconds of each step, or its log.

    With `threads` (0: the worker's). `stop_runs` stops it at any step: before its Git
    commands, or in its process group.
    """
    from distributed import get_worker  # here: tools/run.py imports this module, not Dask

    worker = get_worker()
    marks = Path(worker.local_directory) / "study-runs"
    marks.mkdir(exist_ok=True)
    clone, lock = free_clone(source["origin"])
    try:
        started = time.perf_counter()
        env = git_env()
        check_out(clone, source["origin"], base, env, lambda: stopped(marks, study))
        git_seconds = time.perf_counter() - started
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.run", json.dumps(run), json.dumps(source),
             "--threads", str(threads or worker.state.nthreads), "--parent", str(os.getpid())],
            cwd=clone, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        marker = marks / f"{study}-{process.pid}.run"
        marker.touch()
        try:
            if stopped(marks, study):  # after the marker: `stop_runs` sees one or the other
                stop_group(process.pid)
            stdout, stderr = process.communicate(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:  # a failure of the run: Dask must not retry it
            stop_group(process.pid)
            return {"failed": [f"  the run took more than {RUN_SECONDS} s: stopped"]}
        finally:
            marker.unlink()
    finally:
        lock.release()
    log = stderr.decode(errors="replace").splitlines()
    if process.returncode == RUN_FAILED:  # its log is on stderr, each line after the run's name
        return {"failed": log[-LOG_LINES:]}
    if stopped(marks, study):
        raise Stopped
    if process.returncode != 0:
        raise RuntimeError("\n".join(log[-LOG_LINES:]))
    done = json.loads(stdout.decode().splitlines()[-1])
    total = time.perf_counter() - started
    return {**done, "seconds": {"git": git_seconds, **done["seconds"]}, "total": total,
            "worker": worker.address, "clone": str(clone)}  # fmt: skip


def stop_runs(study: str, dask_worker: Any) -> int:
    """What `client.run` calls on every worker: no run of `study` starts here from now on, and
    each one running gets SIGTERM (its `python -m tools.run` stops its process group). Returns
    how many were running."""
    marks = Path(dask_worker.local_directory) / "study-runs"
    marks.mkdir(exist_ok=True)
    (marks / f"{study}.stopped").touch()
    running = [int(marker.stem.rsplit("-", 1)[1]) for marker in marks.glob(f"{study}-*.run")]
    for leader in running:
        with suppress(ProcessLookupError):
            os.killpg(leader, signal.SIGTERM)
    return len(running)
