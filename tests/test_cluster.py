"""Studies on a Dask cluster: a real scheduler and two workers on 127.0.0.1.

The Git remote `origin` is a bare repository and the DVC remote a local folder, both named in
the workers' own configuration, as on machines that share no disk. The workers run without the
project on their Python path, from a folder outside it: they get the code from `origin`.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from distributed import Client
from filelock import FileLock

from tests.conftest import (
    BIN,
    SEEDS,
    VARIANTS,
    alive,
    assert_fails_cleanly,
    commit_all,
    experiments,
    read_records,
    run,
    run_processes,
    seed_study_command,
    subprocess_env,
)
from tools.run import stage_module
from tools.study import WORKERS_SECONDS
from tools.task import clones_folder

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

LOST_SECONDS = 120  # for a worker to close once it has lost its scheduler, with its run
MACHINE_BOUND = ("train_seconds", "experiment", "environment")  # timings and the machine


@dataclass
class Remotes:
    head: Path  # the project as its user has it: pushed to `origin`, split in the DVC remote
    origin: Path
    env: dict[str, str]  # DVC_GLOBAL_CONFIG_DIR: where the DVC remote is configured


@dataclass
class Cluster:
    address: str
    workers: list[subprocess.Popen]  # each `dask worker`: a nanny, with its worker as child
    scheduler: subprocess.Popen


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd=cwd).stdout


def pushed_as_recorded(remotes: Remotes, head: Path, name: str) -> bool:
    """Whether `origin` holds exactly one experiment called `name`, and it is the commit that
    the head recorded: a run trained again and pushed over it would be another commit."""
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps", cwd=remotes.origin)
    commits = [
        line.split()[1] for line in refs.splitlines() if line.split()[0].endswith(f"/{name}")
    ]
    [record] = [r for r in read_records(head) if r["name"] == name]
    return commits == [record["experiment"]]


def dvc_with(remotes: Remotes, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd=cwd, env=remotes.env)


def cluster_env(remotes: Remotes, path_first: Path | None = None) -> dict[str, str]:
    """A worker's environment: no PYTHONPATH and no venv on PATH, only the DVC configuration;
    `path_first` before the rest of PATH."""
    env = {**subprocess_env(), **remotes.env}
    del env["PYTHONPATH"]
    paths = [str(path_first)] if path_first else []
    paths += [p for p in env["PATH"].split(os.pathsep) if p != str(BIN)]
    env["PATH"] = os.pathsep.join(paths)
    return env


@pytest.fixture(scope="module")
def remotes(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Remotes:
    folder = tmp_path_factory.mktemp("cluster")
    head = Path(shutil.copytree(tiny_project, folder / "head", symlinks=True))
    (head / "reports/seeds.json").unlink()  # the study's output, not committed
    origin = folder / "origin.git"
    run(["git", "init", "--quiet", "--bare", str(origin)], cwd=folder)
    git("remote", "add", "origin", str(origin), cwd=head)
    git("push", "--quiet", "origin", "HEAD:main", cwd=head)
    (folder / "dvc-config").mkdir()
    found = Remotes(head, origin, {"DVC_GLOBAL_CONFIG_DIR": str(folder / "dvc-config")})
    dvc_with(found, "remote", "add", "--global", "-d", "storage", str(folder / "storage"), cwd=head)
    dvc_with(found, "push", "--quiet", "fetch", "split", cwd=head)
    return found


def head_copy(remotes: Remotes, folder: Path) -> Path:
    """A copy of the user's project, without the records of any study run from it."""
    head = Path(shutil.copytree(remotes.head, folder / "head", symlinks=True))
    (head / "reports/seeds.json").unlink(missing_ok=True)
    return head


@pytest.fixture(scope="module")
def cluster(remotes: Remotes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_cluster(remotes, tmp_path_factory.mktemp("dask")) as started:
        yield started


@pytest.fixture(scope="module")
def cluster_study(remotes: Remotes, cluster: Cluster) -> Path:
    """The runs of `seed_study` (on a LocalCluster), run on the two workers from
    `remotes.head`: one run each."""
    command = seed_study_command(
        "--seeds", *SEEDS, "--variants", *VARIANTS, "--scheduler", cluster.address
    )
    assert "2 runs to do, 0 recorded" in run(command, cwd=remotes.head, env=remotes.env).stdout
    return remotes.head


@contextlib.contextmanager
def start_cluster(
    remotes: Remotes, folder: Path, workers: int = 2, path_first: Path | None = None
) -> Iterator[Cluster]:
    """`dask scheduler` and `workers` × `dask worker --nthreads 1`, each with its own local
    directory.

    Stopped afterwards; a run that outlives its worker fails the test.
    """
    env = cluster_env(remotes, path_first)
    folder.mkdir(exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    dask = str(BIN / "dask")
    quiet = {"cwd": folder, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            **quiet,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # a guard against a scheduler that never starts
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and processes[0].poll() is None
            time.sleep(0.2)
        for number in range(1, workers + 1):
            processes.append(
                subprocess.Popen(
                    [dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                     "--local-directory", str(folder / f"worker{number}"), "--no-dashboard"],
                    **quiet,
                )
            )  # fmt: skip
        with Client(scheduler_file=str(scheduler_file)) as client:
            if workers:
                client.wait_for_workers(workers, timeout=120)
            address = client.scheduler.address
        yield Cluster(address, processes[1:], processes[0])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        _, left = psutil.wait_procs(run_processes(remotes.origin), timeout=30)
        orphans = alive(left)  # runs that outlived their worker by half a minute
        for orphan in orphans:
            orphan.kill()
        assert orphans == []


def test_a_study_on_two_workers_records_what_a_local_study_records(
    cluster_study: Path, seed_study: Path
) -> None:
    """The same runs, the same fingerprints and results: only timings and the machine differ."""
    on_cluster = read_records(cluster_study)
    local = read_records(seed_study)
    assert [r["name"] for r in on_cluster] == [r["name"] for r in local]
    for mine, theirs in zip(on_cluster, local, strict=True):
        assert {k: v for k, v in mine.items() if k not in MACHINE_BOUND} == {
            k: v for k, v in theirs.items() if k not in MACHINE_BOUND
        }
        assert mine["threads"] == 1  # the worker's one thread


def test_the_heads_exp_pull_brings_every_run_for_dvc_exp_show(
    cluster_study: Path, remotes: Remotes, tmp_path: Path
) -> None:
    head = head_copy(remotes, tmp_path)
    records = read_records(cluster_study)
    assert not {r["name"] for r in records} & set(experiments(head))  # the workers have them
    dvc_with(remotes, "exp", "pull", "origin", cwd=head)
    shown = experiments(head)
    for record in records:
        data = shown[record["name"]]
        assert data["params"]["params.yaml"]["data"]["train"]["seed"] == record["seed"]
        metrics = data["metrics"][f"metrics/{record['variant']}.json"]["data"]
        assert metrics["test"]["accuracy"] == record["test_accuracy"]
    applied = f"seed-wide-s{SEEDS[0]}"
    dvc_with(remotes, "exp", "apply", applied, cwd=head)  # its outputs came with it
    status = dvc_with(remotes, "status", "evaluate@wide", cwd=head).stdout
    assert "up to date" in status


def test_a_head_without_records_reads_finished_runs_back_from_origin(
    cluster_study: Path, remotes: Remotes, cluster: Cluster, tmp_path: Path
) -> None:
    head = head_copy(remotes, tmp_path)
    command = seed_study_command(
        "--seeds", *SEEDS, "--variants", *VARIANTS, "--scheduler", cluster.address
    )
    assert "0 runs to do, 2 recorded" in run(command, cwd=head, env=remotes.env).stdout
    assert read_records(head) == read_records(cluster_study)


def test_a_run_that_fails_on_its_own_is_reported_once_by_name(
    remotes: Remotes, cluster: Cluster, tmp_path: Path
) -> None:
    head = head_copy(remotes, tmp_path)
    training = head / "stages/training.py"
    training.write_text(
        training.read_text().replace(
            "    if not is_chief(params.train):",
            "    if params.train.seed == 5:\n        raise ValueError('seed 5 breaks')\n"
            "    if not is_chief(params.train):",
        )
    )
    commit_all(head, "seed 5 breaks")
    git("push", "--quiet", "origin", "HEAD:broken", cwd=head)
    command = seed_study_command(
        "--seeds", "5", "--variants", "wide", "--scheduler", cluster.address
    )
    result = run(command, cwd=head, env=remotes.env, check=False)
    assert_fails_cleanly(result, "experiment seed-wide-s5 failed")
    assert "seed-wide-s5 | ValueError: seed 5 breaks" in result.stderr
    assert result.stderr.count("error: ") == 1


def training_worker(cluster: Cluster) -> psutil.Process | None:
    """The worker process (a nanny's child) under which a train stage runs, if one does."""
    nannies = {process.pid for process in cluster.workers}
    for process in psutil.process_iter(["cmdline"]):
        if stage_module(process.info["cmdline"] or []) == "train":
            chain = [process, *process.parents()]
            for child, parent in zip(chain, chain[1:], strict=False):
                if parent.pid in nannies:
                    return child
    return None


def study_in_training(
    head: Path, remotes: Remotes, cluster: Cluster, seed: str
) -> tuple[subprocess.Popen, psutil.Process]:
    """A one-run study of `wide` started from `head`, once a worker trains it; and that worker."""
    command = seed_study_command(
        "--seeds", seed, "--variants", "wide", "--scheduler", cluster.address
    )
    study = subprocess.Popen(
        command, cwd=head, env={**subprocess_env(), **remotes.env}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 300  # a guard against a study that never trains
    while (worker := training_worker(cluster)) is None:
        assert study.poll() is None and time.monotonic() < deadline, study.communicate()
        time.sleep(0.1)
    return study, worker


def test_a_worker_killed_while_it_trains_costs_no_run(
    remotes: Remotes, cluster: Cluster, tmp_path: Path
) -> None:
    """SIGKILL on a worker mid-training (as the OOM killer sends): its run stops with it, Dask
    reruns its task, and the run is recorded and pushed once.

    The worker's nanny starts a new worker process, so the cluster has two workers again.
    """
    head = head_copy(remotes, tmp_path)
    study, worker = study_in_training(head, remotes, cluster, "10")
    its_runs = worker.children(recursive=True)  # `python -m tools.run`, DVC, the stage
    worker.send_signal(signal.SIGKILL)
    _, left = psutil.wait_procs(its_runs, timeout=30)
    assert left == []  # no orphaned training runs on, nor pushes later
    _, stderr = study.communicate(timeout=600)
    assert study.returncode == 0, stderr
    assert [record["name"] for record in read_records(head)] == ["seed-wide-s10"]
    assert pushed_as_recorded(remotes, head, "seed-wide-s10")


def test_a_lost_scheduler_ends_the_study_in_one_line_and_a_new_one_does_the_rest(
    remotes: Remotes, tmp_path: Path
) -> None:
    """One worker, so that the second run is on it when the first is recorded."""
    head = head_copy(remotes, tmp_path)
    command = seed_study_command("--seeds", "11", "12", "--variants", "wide")
    env = {**subprocess_env(), **remotes.env}
    with start_cluster(remotes, tmp_path / "first", workers=1) as first:
        study = subprocess.Popen(
            [*command, "--scheduler", first.address], cwd=head, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 600  # a guard against a study that never records
        while not (head / "reports/seeds.json").exists():
            assert study.poll() is None and time.monotonic() < deadline, study.communicate()
            time.sleep(0.2)
        first.scheduler.send_signal(signal.SIGKILL)
        _, stderr = study.communicate(timeout=60)  # the head gives up within a minute
        _, left = psutil.wait_procs(run_processes(remotes.origin), timeout=LOST_SECONDS)
        assert alive(left) == []  # the worker closed without its scheduler, and its run stopped
    assert_fails_cleanly(
        subprocess.CompletedProcess(command, study.returncode, "", stderr),
        f"lost the Dask scheduler at {first.address}",
        "record(s) kept in reports/seeds.json",
        "run the same command",
    )
    kept = read_records(head)
    with start_cluster(remotes, tmp_path / "second", workers=1) as second:
        rerun = run([*command, "--scheduler", second.address], cwd=head, env=remotes.env).stdout
    counts = re.search(r"(\d+) runs to do, (\d+) recorded", rerun)
    assert counts, rerun
    todo, recorded = int(counts[1]), int(counts[2])
    assert todo + recorded == 2 and recorded >= len(kept) >= 1
    records = read_records(head)
    assert [r["name"] for r in records] == ["seed-wide-s11", "seed-wide-s12"]
    assert [r for r in records if r["name"] in {k["name"] for k in kept}] == kept


def test_an_unpushed_run_keeps_its_experiment_after_its_worker_has_closed(
    remotes: Remotes, tmp_path: Path
) -> None:
    """`origin` gone from the run's start of training until after the study: the push fails,
    the training ran once, the record is kept. The hint's command, run once the worker has
    closed (distributed deletes its local directory then), sends the experiment."""
    head = head_copy(remotes, tmp_path)
    with start_cluster(remotes, tmp_path / "dask", workers=1) as cluster:
        study, _ = study_in_training(head, remotes, cluster, "14")
        moved = remotes.origin.with_name("origin-away.git")
        remotes.origin.rename(moved)
        try:
            stdout, stderr = study.communicate(timeout=600)
        finally:
            moved.rename(remotes.origin)
    result = subprocess.CompletedProcess(study.args, study.returncode, stdout, stderr)
    assert_fails_cleanly(result, "1 run(s) recorded but not pushed to origin")
    assert stdout.count("seed-wide-s14: test accuracy") == 1
    assert [r["name"] for r in read_records(head)] == ["seed-wide-s14"]
    [line] = [line for line in stderr.splitlines() if line.startswith("  seed-wide-s14 | ")]
    command = line.split(" | ", 1)[1].split("  # on ")[0]
    assert command.endswith(" && dvc exp push origin seed-wide-s14")
    assert str(tmp_path / "dask") not in command  # not in the worker's local directory
    run(["sh", "-c", command], cwd=tmp_path, env=remotes.env)
    assert pushed_as_recorded(remotes, head, "seed-wide-s14")


def test_ctrl_c_of_one_study_leaves_another_studys_runs_of_the_same_commit_alone(
    remotes: Remotes, cluster: Cluster, tmp_path: Path
) -> None:
    """Two heads of one commit on one scheduler, one run each: Ctrl-C stops the first one's
    run only; the second trains on, once, and pushes once."""
    env = {**subprocess_env(), **remotes.env}
    studies = {}
    for seed in ("16", "17"):
        head = head_copy(remotes, tmp_path / seed)
        command = seed_study_command(
            "--seeds", seed, "--variants", "wide", "--scheduler", cluster.address
        )
        studies[seed] = subprocess.Popen(
            command, cwd=head, env=env, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    deadline = time.monotonic() + 300  # a guard against studies that never train
    while len(trains := training_runs()) < 2:
        assert time.monotonic() < deadline and all(s.poll() is None for s in studies.values())
        time.sleep(0.1)
    os.killpg(studies["16"].pid, signal.SIGINT)
    _, stderr = studies["16"].communicate(timeout=60)
    assert "error: interrupted: 0 record(s) kept" in stderr.splitlines()[-1]
    time.sleep(3)  # SIGTERM to its process group would have ended it by now
    assert alive([trains["17"]]) == [trains["17"]]  # the other study's run was left alone
    stdout, stderr = studies["17"].communicate(timeout=600)
    assert studies["17"].returncode == 0, stderr
    assert stdout.count("seed-wide-s17: test accuracy") == 1
    assert pushed_as_recorded(remotes, tmp_path / "17" / "head", "seed-wide-s17")


def training_runs() -> dict[str, psutil.Process]:
    """The `tools.run` processes of runs that train now, by seed."""
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "tools.run" in cmdline:
            with contextlib.suppress(psutil.NoSuchProcess):
                children = process.children(recursive=True)
                if any(stage_module(child.cmdline()) == "train" for child in children):
                    found[str(json.loads(cmdline[cmdline.index("tools.run") + 1])["seed"])] = (
                        process
                    )
    return found


def test_ctrl_c_while_a_task_runs_git_stops_it_before_its_run(
    remotes: Remotes, tmp_path: Path
) -> None:
    """A worker whose Git takes 3 s a command; Ctrl-C at the head during them: the task ends
    without starting its run, and nothing is pushed."""
    slow = tmp_path / "slow-git"
    slow.mkdir()
    (slow / "git").write_text(f'#!/bin/sh\nsleep 3\nexec {shutil.which("git")} "$@"\n')
    (slow / "git").chmod(0o755)
    head = head_copy(remotes, tmp_path)
    with start_cluster(remotes, tmp_path / "dask", workers=1, path_first=slow) as cluster:
        command = seed_study_command(
            "--seeds", "18", "--variants", "wide", "--scheduler", cluster.address
        )
        study = subprocess.Popen(
            command, cwd=head, env={**subprocess_env(), **remotes.env}, text=True,
            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 120  # a guard against a task that never starts Git
        while not any(str(slow) in " ".join(p.info["cmdline"] or []) for p in
                      psutil.process_iter(["cmdline"])):  # fmt: skip
            assert study.poll() is None and time.monotonic() < deadline, study.communicate()
            time.sleep(0.05)
        os.killpg(study.pid, signal.SIGINT)
        _, stderr = study.communicate(timeout=60)
        assert "error: interrupted: 0 record(s) kept" in stderr.splitlines()[-1]
        with FileLock(clones_folder(str(remotes.origin)) / "0.lock").acquire(timeout=120):
            pass  # the task has let go of its clone: it ended
        assert run_processes(remotes.origin) == []
    assert "seed-wide-s18" not in git("for-each-ref", "refs/exps", cwd=remotes.origin)


def test_a_scheduler_without_workers_ends_the_study_in_one_line(
    remotes: Remotes, tmp_path: Path
) -> None:
    head = head_copy(remotes, tmp_path)
    with start_cluster(remotes, tmp_path / "dask", workers=0) as empty:
        command = seed_study_command(
            "--seeds", "19", "--variants", "wide", "--scheduler", empty.address
        )
        result = run(command, cwd=head, env=remotes.env, check=False)
    assert_fails_cleanly(
        result,
        f"the Dask scheduler at {empty.address} had no worker for {WORKERS_SECONDS} s",
        "0 record(s) kept",
        f"dask worker {empty.address}",
    )


Breakage = Callable[[Path, dict[str, str]], None]


def remove_origin(head: Path, env: dict[str, str]) -> None:
    git("remote", "remove", "origin", cwd=head)


def unreachable_origin(head: Path, env: dict[str, str]) -> None:
    git("remote", "set-url", "origin", str(head.parent / "gone.git"), cwd=head)


def change_training(head: Path, env: dict[str, str]) -> None:
    with (head / "stages/training.py").open("a") as module:
        module.write("# changed\n")


def commit_a_change(head: Path, env: dict[str, str]) -> None:
    change_training(head, env)
    commit_all(head, "not pushed")


def push_to_another_remote(head: Path, env: dict[str, str]) -> None:
    commit_a_change(head, env)
    upstream = head.parent / "upstream.git"
    run(["git", "init", "--quiet", "--bare", str(upstream)], cwd=head.parent)
    git("remote", "add", "upstream", str(upstream), cwd=head)
    git("push", "--quiet", "upstream", "HEAD:main", cwd=head)


def delete_on_origin(head: Path, env: dict[str, str]) -> None:
    """The branch was on `origin` once: the head's remote-tracking ref is stale."""
    commit_a_change(head, env)
    git("push", "--quiet", "origin", "HEAD:gone", cwd=head)
    git(
        "branch",
        "--quiet",
        "-D",
        "gone",
        cwd=Path(git("remote", "get-url", "origin", cwd=head).strip()),
    )


def empty_the_dvc_remote(head: Path, env: dict[str, str]) -> None:
    env["DVC_GLOBAL_CONFIG_DIR"] = str(head.parent / "other-config")
    empty = str(head.parent / "empty-storage")
    run([str(BIN / "dvc"), "remote", "add", "--global", "-d", "empty", empty], cwd=head, env=env)


def no_scheduler(head: Path, env: dict[str, str]) -> None:
    env["DASK_SCHEDULER_ADDRESS"] = "tcp://127.0.0.1:9"  # nothing listens there


@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        (remove_origin, "the project has no Git remote `origin`"),
        (unreachable_origin, "`git fetch` failed: fatal: "),
        (change_training, "uncommitted changes (stages/training.py"),
        (commit_a_change, "is not on `origin`: the workers could not check it out"),
        (push_to_another_remote, "is not on `origin`: the workers could not check it out"),
        (delete_on_origin, "is not on `origin`: the workers could not check it out"),
        (empty_the_dvc_remote, "the DVC remote lacks data/raw/mnist.npz, data/split/test.npz"),
        (no_scheduler, "no Dask scheduler answered at tcp://127.0.0.1:9"),
    ],
)
def test_what_the_workers_could_not_run_fails_in_one_line_before_any_task(
    remotes: Remotes, tmp_path: Path, breakage: Breakage, fragment: str
) -> None:
    head = head_copy(remotes, tmp_path)
    env = dict(remotes.env)
    breakage(head, env)
    address = ["--scheduler", "tcp://127.0.0.1:9"] if "DASK_SCHEDULER_ADDRESS" not in env else []
    command = seed_study_command("--seeds", "7", "--variants", "wide", *address)
    assert_fails_cleanly(run(command, cwd=head, env=env, check=False), fragment)
    assert not (head / "reports/seeds.json").exists()
