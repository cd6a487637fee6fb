"""Scaling out by configuration only: TensorFlow's thread count, a DVC remote shared by
clones, and a sweep split over machines."""

import csv
import sys
from pathlib import Path

import pytest

from tests.conftest import dvc, run, write_params

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
    """Two machines each run part of a sweep and push it; a third pulls both and applies one.
    The project itself is machine A, which pushed the baseline; B and C are its clones."""
    origin, storage, first = tmp_path / "origin.git", tmp_path / "storage", tiny_copy
    run(["git", "init", "-q", "--bare", str(origin)], cwd=tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], cwd=first)
    dvc("remote", "add", "-d", "shared", str(storage), cwd=first)
    run(["git", "commit", "-q", "-am", "add a DVC remote"], cwd=first)
    run(["git", "push", "-q", "origin", "HEAD:main"], cwd=first)
    dvc("push", cwd=first)

    second, third = tmp_path / "b", tmp_path / "c"
    for machine in (second, third):
        run(["git", "clone", "-q", "-b", "main", str(origin), str(machine)], cwd=tmp_path)
        dvc("pull", cwd=machine)
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
