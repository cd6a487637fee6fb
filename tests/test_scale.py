"""Scaling out by configuration only: TensorFlow's thread count, a DVC remote shared by
clones, a sweep split over machines, and experiments run two at a time by DVC's queue."""

import csv
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    QUEUED_DROPOUTS,
    dvc,
    queue_states,
    run,
    write_params,
)

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

SHOW_THREADS = """
from stages.params import load_params
from stages.training import configure_tensorflow
configure_tensorflow(load_params().train)
import tensorflow as tf
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
"""


def test_tensorflow_takes_the_thread_count(tmp_path: Path) -> None:
    write_params(tmp_path, {"train.threads": 2})
    shown = run([sys.executable, "-c", SHOW_THREADS], cwd=tmp_path).stdout.split()
    assert shown == ["2", "2"]


def test_remote_shares_the_cache_so_a_clone_retrains_nothing(
    tiny_copy: Path, tmp_path: Path
) -> None:
    dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=tiny_copy)
    run(["git", "commit", "-q", "-am", "add a DVC remote"], cwd=tiny_copy)
    dvc("push", cwd=tiny_copy)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(tiny_copy), str(clone)], cwd=tmp_path)
    assert not (clone / "models" / "wide.keras").exists()
    dvc("pull", cwd=clone)

    assert (clone / "models" / "wide.keras").read_bytes() == (
        tiny_copy / "models" / "wide.keras"
    ).read_bytes()
    output = dvc("repro", cwd=clone).stdout
    assert "Running stage" not in output
    assert "Data and pipelines are up to date." in output


def test_a_sweep_split_over_two_machines_meets_in_a_third(tiny_copy: Path, tmp_path: Path) -> None:
    """Two clones each run part of a sweep and push it; a third pulls both and applies one."""
    origin, storage = tmp_path / "origin.git", tmp_path / "storage"
    run(["git", "init", "-q", "--bare", str(origin)], cwd=tmp_path)
    dvc("remote", "add", "-d", "shared", str(storage), cwd=tiny_copy)
    run(["git", "commit", "-q", "-am", "add a DVC remote"], cwd=tiny_copy)
    run(["git", "push", "-q", str(origin), "HEAD:main"], cwd=tiny_copy)
    dvc("push", cwd=tiny_copy)

    machines = {}
    for name in ("a", "b", "c"):
        machines[name] = tmp_path / name
        run(["git", "clone", "-q", "-b", "main", str(origin), str(machines[name])], cwd=tmp_path)
        dvc("pull", cwd=machines[name])
    first, second, third = machines.values()
    dvc("exp", "run", "-n", "drop1", "-S", "models.wide.dropout=0.1", cwd=first)
    dvc("exp", "push", "origin", "drop1", cwd=first)
    dvc("config", "--local", "exp.auto_push", "true", cwd=second)
    dvc("config", "--local", "exp.git_remote", "origin", cwd=second)
    dvc("exp", "run", "-n", "drop3", "-S", "models.wide.dropout=0.3", cwd=second)

    dvc("exp", "pull", "origin", "drop1", "drop3", cwd=third)
    rows = list(csv.DictReader(dvc("exp", "show", "--csv", cwd=third).stdout.splitlines()))
    dropouts = {row["Experiment"]: row["models.wide.dropout"] for row in rows if row["Experiment"]}
    assert dropouts == {"drop1": "0.1", "drop3": "0.3"}

    dvc("exp", "apply", "drop3", cwd=third)
    model = "models/wide.keras"
    assert (third / model).read_bytes() == (second / model).read_bytes()
    assert (third / model).read_bytes() != (first / model).read_bytes()
    assert "up to date" in dvc("status", cwd=third).stdout


def test_queued_experiments_run_two_at_a_time(queued_experiments: tuple[Path, int]) -> None:
    project, most_running = queued_experiments
    assert most_running == 2
    status = queue_states(project)
    assert status.count("Success") == len(QUEUED_DROPOUTS), status
    rows = list(csv.DictReader(dvc("exp", "show", "--csv", cwd=project).stdout.splitlines()))
    names = {row["Experiment"]: row for row in rows if row["Experiment"]}
    assert {"drop1", "drop3"} <= set(names)
    for dropout in QUEUED_DROPOUTS:
        row = names[f"drop{dropout[-1]}"]
        assert row["models.wide.dropout"] == dropout
        assert row["train.threads"] == "1"
        assert float(row["metrics/wide.json:test.accuracy"]) > 0.9
