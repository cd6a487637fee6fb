"""Studies on a Dask cluster: a real scheduler and two workers on 127.0.0.1.

The Git remote `origin` is a bare repository and the DVC remote a local folder, both named in
the workers' own configuration, as on machines that share no disk. The workers run without the
project on their Python path, from a folder outside it: they get the code from `origin`.
"""

import contextlib
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

from tests.conftest import (
    BIN,
    SEEDS,
    VARIANTS,
    assert_fails_cleanly,
    commit_all,
    experiments,
    read_records,
    run,
    seed_study_command,
    subprocess_env,
)
from tools.cluster import stage_module

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

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


def dvc_with(remotes: Remotes, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd=cwd, env=remotes.env)


def cluster_env(remotes: Remotes) -> dict[str, str]:
    """A worker's environment: no PYTHONPATH and no venv on PATH, only the DVC configuration."""
    env = {**subprocess_env(), **remotes.env}
    del env["PYTHONPATH"]
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(BIN))
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
def start_cluster(remotes: Remotes, folder: Path, workers: int = 2) -> Iterator[Cluster]:
    """`dask scheduler` and `workers` × `dask worker --nthreads 1`, each with its own local
    directory.

    Stopped afterwards, with any training a killed worker left behind.
    """
    env = cluster_env(remotes)
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
            client.wait_for_workers(workers, timeout=120)
            address = client.scheduler.address
        yield Cluster(address, processes[1:], processes[0])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        for leftover in psutil.process_iter(["cwd"]):  # a killed worker's orphaned training
            if (leftover.info["cwd"] or "").startswith(str(folder)):
                leftover.kill()


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
    its_runs = worker.children(recursive=True)  # `python -m tools.cluster`, DVC, the stage
    worker.send_signal(signal.SIGKILL)
    _, left = psutil.wait_procs(its_runs, timeout=30)
    assert left == []  # no orphaned training runs on, nor pushes later
    _, stderr = study.communicate(timeout=600)
    assert study.returncode == 0, stderr
    assert [record["name"] for record in read_records(head)] == ["seed-wide-s10"]
    pushed = [ref.rsplit("/", 1)[-1] for ref in git("ls-remote", "origin", cwd=head).split()]
    assert pushed.count("seed-wide-s10") == 1


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


def test_a_failed_push_is_tried_again_never_the_training_and_keeps_the_record(
    remotes: Remotes, cluster: Cluster, tmp_path: Path
) -> None:
    """`origin` gone from the run's start of training until after the study: the push is tried
    three times, the training once; the record is kept, and the hint's push works later."""
    head = head_copy(remotes, tmp_path)
    study, _ = study_in_training(head, remotes, cluster, "14")
    moved = remotes.origin.with_name("origin-away.git")
    remotes.origin.rename(moved)
    try:
        stdout, stderr = study.communicate(timeout=600)
    finally:
        moved.rename(remotes.origin)
    result = subprocess.CompletedProcess(study.args, study.returncode, stdout, stderr)
    assert_fails_cleanly(result, "1 run(s) recorded but not pushed to origin (seed-wide-s14)")
    assert stdout.count("seed-wide-s14: test accuracy") == 1  # trained once, never retried
    assert "push tried 3 times" in stdout
    assert [r["name"] for r in read_records(head)] == ["seed-wide-s14"]
    hint = stderr.strip().splitlines()[-1].split("hint: on each run's worker, ")[1].rstrip(")")
    clone = hint.split("cd ")[1].split(" && ")[0]
    dvc_with(remotes, "exp", "push", "origin", "seed-wide-s14", cwd=Path(clone))
    pushed = [ref.rsplit("/", 1)[-1] for ref in git("ls-remote", "origin", cwd=head).split()]
    assert pushed.count("seed-wide-s14") == 1


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
