"""Scaling out by configuration only: tf.distribute, a DVC remote, a queue of experiments."""

import csv
import json
import socket
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import (
    QUEUED_DROPOUTS,
    TINY_SETTINGS,
    dvc,
    queue_states,
    run,
    write_params,
)

# The train stage, after hiding any GPU and splitting the one physical CPU into two logical
# devices, so that the `mirrored` strategy has two CPU replicas to keep in sync.
TRAIN_ON_TWO_CPUS = """
import tensorflow as tf
tf.config.set_visible_devices([], "GPU")
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from stages.errors import run_stage
from stages.train import main
run_stage(main)
"""
ONE_EPOCH = {**TINY_SETTINGS, "models.wide.epochs": 1, "train.steps_per_execution": 1}
TOLERANCE = 0.005  # validation accuracy, mirrored against one device, after one epoch


@pytest.fixture
def project(split_copy: Path) -> Path:
    return split_copy


def best_val_accuracy(project: Path, variant: str) -> float:
    with (project / "history" / f"{variant}.csv").open() as stream:
        return max(float(row["val_accuracy"]) for row in csv.DictReader(stream))


def train(project: Path, *python_args: str, env: dict[str, str] | None = None) -> str:
    """Train `wide` with `python <python_args> wide`; return what it printed."""
    return run([sys.executable, *python_args, "wide"], cwd=project, env=env).stdout


def test_mirrored_on_two_cpu_devices_matches_one_device(project: Path) -> None:
    write_params(project, {**ONE_EPOCH, "train.strategy": "default"})
    assert "default strategy: 1 replica(s)" in train(project, "-m", "stages.train")
    single = best_val_accuracy(project, "wide")

    write_params(project, {**ONE_EPOCH, "train.strategy": "mirrored"})
    assert "mirrored strategy: 2 replica(s)" in train(project, "-c", TRAIN_ON_TWO_CPUS)
    mirrored = best_val_accuracy(project, "wide")

    assert single > 0.9
    assert abs(mirrored - single) <= TOLERANCE


def test_multi_worker_trains_in_a_one_worker_cluster_from_tf_config(project: Path) -> None:
    write_params(project, {**ONE_EPOCH, "train.strategy": "multi_worker"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    tf_config = {"cluster": {"worker": [address]}, "task": {"type": "worker", "index": 0}}
    output = train(project, "-m", "stages.train", env={"TF_CONFIG": json.dumps(tf_config)})
    assert "multi_worker strategy: 1 replica(s)" in output
    assert best_val_accuracy(project, "wide") > 0.9


def weights_after_training(project: Path, threads: int) -> bytes:
    write_params(project, {**ONE_EPOCH, "train.threads": threads})
    train(project, "-m", "stages.train")
    with zipfile.ZipFile(project / "models" / "wide.keras") as archive:
        return archive.read("model.weights.h5")


SHOW_THREADS = """
from stages.params import load_params
from stages.training import configure_tensorflow
configure_tensorflow(load_params().train)
import tensorflow as tf
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
"""


def test_thread_cap_changes_speed_not_results(project: Path) -> None:
    assert weights_after_training(project, threads=1) == weights_after_training(project, threads=2)
    shown = run([sys.executable, "-c", SHOW_THREADS], cwd=project).stdout.split()
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


def test_queued_experiments_run_two_at_a_time(queued_experiments: tuple[Path, int]) -> None:
    project, most_running = queued_experiments
    assert most_running == 2
    status = queue_states(project)
    assert status.count("Success") == len(QUEUED_DROPOUTS), status
    rows = list(csv.DictReader(dvc("exp", "show", "--csv", cwd=project).stdout.splitlines()))
    names = {row["Experiment"]: row for row in rows if row["Experiment"]}
    assert {"drop1", "drop2", "drop3"} <= set(names)
    for dropout in QUEUED_DROPOUTS:
        row = names[f"drop{dropout[-1]}"]
        assert row["models.wide.dropout"] == dropout
        assert row["train.threads"] == "1"
        assert float(row["metrics/wide.json:test.accuracy"]) > 0.9
