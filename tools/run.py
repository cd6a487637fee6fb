"""One study run in a worker's clone of the project: `python -m tools.run RUN SOURCE`, started
by the Dask task (tools/task.py) in a process group of its own.

It gets the split, runs one `dvc exp run` in the foreground, sends the experiment back with
`dvc exp push origin NAME` and prints, as its last stdout line, the run's record and the
seconds of each step and stage as JSON. A run that fails on its own exits RUN_FAILED with its
log on stderr. When its worker dies, the kernel tells it (the parent-death signal), and it
stops its process group: no orphaned training runs on, nor pushes later.
"""

import argparse
import contextlib
import ctypes
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import psutil

from stages.errors import StageError, run_stage
from stages.fingerprint import git, installed_libraries
from tools.experiments import (
    NEEDED_STAGES,
    Run,
    RunFailed,
    Source,
    dvc,
    experiment_commit,
    experiment_names,
    experiment_ref,
    head_commit,
    run_experiment,
    run_failed,
    show_log,
)
from tools.task import RUN_FAILED, stop_group

STAGE_POLL = 0.2  # seconds between two looks for the stages that a run's `dvc exp run` started
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends


def stop_group_on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM reaches this process too
    stop_group(os.getpgid(0))


def stop_with_parent(parent: int) -> None:
    """SIGTERM, which stops this run's process group, as soon as the worker `parent` is gone;
    also when it went before this process could ask the kernel."""
    signal.signal(signal.SIGTERM, stop_group_on_sigterm)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


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


def push(name: str, source: Source) -> str:
    """`dvc exp push` the experiment, never over one of the same name: '' once `origin` has it,
    else why not. On one machine only its Git commit goes: the cache is shared."""
    args = ["exp", "push", *(["--no-cache"] if source.cache else []), "origin", name]
    result = dvc(*args, check=False)
    if result.returncode != 0:
        return ((result.stderr or result.stdout).strip().splitlines() or ["no output"])[-1]
    if not on_origin(name):  # DVC only warns when `origin` has another experiment of the name
        return f"origin has another experiment named {name}"
    return ""


def on_origin(name: str) -> bool:
    """Whether `origin` has this clone's experiment `name` of its commit, the same commit."""
    base = head_commit()
    try:
        found = git("ls-remote", "origin", experiment_ref(base, name)).decode()
    except StageError:  # `origin` did not answer (in GIT_SECONDS)
        return False
    return found.split()[:1] == [experiment_commit(base, name)]


def local_cache() -> str:
    """The clone's own DVC cache folder (`dvc cache dir --local`), '' when it has none; read
    by Git, which parses DVC's config files, in a few milliseconds where DVC takes a second."""
    try:
        return git("config", "--file", ".dvc/config.local", "cache.dir").decode().strip()
    except StageError:  # no such file, or no such key
        return ""


def run_here(run: Run, source: Source, threads: int) -> dict[str, Any]:
    """Get what the run needs, run it, send its experiment back; its record, the seconds that
    each step and each stage took and, if the push failed, why."""
    check_libraries(run, source.libraries)
    seconds: dict[str, float] = {}
    stages: dict[str, float] = {}
    with timed(seconds, "pull"):
        if source.cache:
            if local_cache() != source.cache:  # set once: the clone outlives the run
                dvc("cache", "dir", "--local", source.cache)
            dvc("checkout", "--quiet", *NEEDED_STAGES)
        else:
            dvc("pull", "--quiet", *NEEDED_STAGES)
        if run.name in experiment_names(head_commit()):  # an earlier try's
            if not on_origin(run.name):
                clone = shlex.quote(os.getcwd())
                show_log(run.name, [f"this clone keeps an unpushed {run.name} of this commit: "
                                    f"cd {clone} && dvc exp push origin {run.name}"])  # fmt: skip
                raise run_failed(run.name)
            dvc("exp", "remove", run.name)
    with timed(seconds, "run"), stages_timed(stages):
        record = run_experiment(run, threads)
    with timed(seconds, "push"):
        error = push(run.name, source)
    return {
        "record": record,
        "seconds": seconds,
        "stages": stages,
        **({"not_pushed": error} if error else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one study run here (a worker's task).")
    parser.add_argument("run", type=json.loads, help="the Run's fields as JSON")
    parser.add_argument("source", type=json.loads, help="the Source's fields as JSON")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the worker's pid")
    args = parser.parse_args()
    stop_with_parent(args.parent)
    try:
        done = run_here(Run(**args.run), Source(**args.source), args.threads)
    except RunFailed:
        sys.exit(RUN_FAILED)
    print(json.dumps(done))


if __name__ == "__main__":
    run_stage(main)
