"""tf.distribute: `mirrored` on two CPU devices, and `multi_worker` with two real worker
processes on 127.0.0.1: training like one, only the chief writing, a lost worker."""

import contextlib
import csv
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.backend.tensorflow import trainer

from stages import keras_compat
from stages.errors import StageError
from stages.params import load_params
from stages.training import is_chief
from tests.conftest import (
    REPO,
    TINY_SETTINGS,
    documented_message,
    run,
    run_stage,
    subprocess_env,
    write_params,
)

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

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
# TensorFlow's own thread pools (0), as when the tolerances here and in docs/scaling.md were
# measured; the tiny pipeline's one thread is for runs beside DVC's queue.
ONE_EPOCH = {
    **TINY_SETTINGS,
    "train.threads": 0,
    "models.wide.epochs": 1,
    "train.steps_per_execution": 1,
}
TOLERANCE = 0.005  # validation accuracy, mirrored against one device, after one epoch


@pytest.fixture
def project(split_copy: Path) -> Path:
    return split_copy


def best_val_accuracy(project: Path, variant: str) -> float:
    with (project / "history" / f"{variant}.csv").open() as stream:
        return max(float(row["val_accuracy"]) for row in csv.DictReader(stream))


def train(project: Path, *python_args: str) -> str:
    """Train `wide` with `python <python_args> wide`; return what it printed."""
    return run([sys.executable, *python_args, "wide"], cwd=project).stdout


def test_mirrored_on_two_cpu_devices_matches_one_device(project: Path) -> None:
    write_params(project, {**ONE_EPOCH, "train.strategy": "default"})
    assert "default strategy: 1 replica(s)" in train(project, "-m", "stages.train")
    single = best_val_accuracy(project, "wide")

    write_params(project, {**ONE_EPOCH, "train.strategy": "mirrored"})
    assert "mirrored strategy: 2 replica(s)" in train(project, "-c", TRAIN_ON_TWO_CPUS)
    mirrored = best_val_accuracy(project, "wide")

    assert single > 0.9
    assert abs(mirrored - single) <= TOLERANCE


TWO_WORKERS = {
    **ONE_EPOCH,
    "train.strategy": "multi_worker",
    "models.wide.hidden_units": [64, 64],
    "split.validation_size": 10_001,  # 49,999 training images: 499 batches of 100 and one of 99
    "models.wide.batch_size": 100,  # 50 a worker; the last batch splits 50 + 49
    "models.wide.optimizer": "sgd",
    "models.wide.learning_rate": 0.1,
    "models.wide.weight_decay": 0.0,
}
# Two workers against one at the same global batch, after one epoch: measured 5e-7 here. SGD,
# because RMSprop divides by the root of tiny running averages for pixels that are almost
# never lit, and so turns rounding differences there into visible ones.
WEIGHT_TOLERANCE = 1e-5


def free_addresses(count: int) -> list[str]:
    """`count` free ports on 127.0.0.1, held open together so that they differ."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{probe.getsockname()[1]}" for probe in probes]


def start_two_workers(
    command: list[str], cwds: list[Path], temporary: list[Path], logs: Path
) -> tuple[list[subprocess.Popen], list[str]]:
    """Start `command` as worker 0 (the chief) and worker 1 of one TF_CONFIG cluster, each in
    its own folder with its own TMPDIR, writing to logs/<index>.out and logs/<index>.err.
    Return the processes and the workers' addresses."""
    cluster = {"worker": free_addresses(2)}
    logs.mkdir(exist_ok=True)
    processes = []
    for index, (cwd, folder) in enumerate(zip(cwds, temporary, strict=True)):
        folder.mkdir()
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {"TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(folder)}
        with (logs / f"{index}.out").open("w") as out, (logs / f"{index}.err").open("w") as err:
            processes.append(
                subprocess.Popen(
                    command, cwd=cwd, env={**subprocess_env(), **env}, stdout=out, stderr=err
                )
            )
    return processes, cluster["worker"]


def run_two_workers(command: list[str], cwds: list[Path], temporary: list[Path]) -> list[str]:
    """Run `command` as the two workers of one cluster (start_two_workers); check that both
    succeed and return what each printed on stdout."""
    logs = temporary[0].parent / "logs"
    processes, _ = start_two_workers(command, cwds, temporary, logs)
    try:
        for process in processes:
            process.wait(timeout=600)
    finally:
        for process in processes:
            process.kill()  # a no-op once it exited; frees the ports if the other one hung
    outputs = [(logs / f"{index}.out").read_text() for index in (0, 1)]
    for index, process in enumerate(processes):
        assert process.returncode == 0, outputs[index] + (logs / f"{index}.err").read_text()
    return outputs


def files_in(project: Path) -> dict[str, int]:
    """Every file of the project but Python's caches, with its modification time."""
    return {
        str(path.relative_to(project)): path.stat().st_mtime_ns
        for path in project.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def model_weights(path: Path) -> list:
    return [weight.numpy() for weight in keras.models.load_model(path, safe_mode=True).weights]


def test_two_workers_train_like_one_and_only_the_chief_writes(
    split_project: Path, tmp_path: Path
) -> None:
    """Two processes, each in its own copy of the project (two machines), one TF_CONFIG cluster."""
    chief = Path(shutil.copytree(split_project, tmp_path / "chief", symlinks=True))
    write_params(chief, TWO_WORKERS)
    run_stage("split", cwd=chief)
    worker, alone = (
        Path(shutil.copytree(chief, tmp_path / name, symlinks=True)) for name in ("worker", "alone")
    )
    before = files_in(worker)
    temporary = [tmp_path / "tmp-chief", tmp_path / "tmp-worker"]
    command = [sys.executable, "-m", "stages.train", "wide"]
    outputs = run_two_workers(command, [chief, worker], temporary)
    for output in outputs:
        assert "multi_worker strategy: 2 replica(s)" in output
    assert "to models/wide.keras" in outputs[0]
    assert "trained as a worker" in outputs[1]

    assert files_in(worker) == before, "the non-chief wrote into its project"
    assert list(temporary[1].iterdir()) == [], "the non-chief left its temporary folder"
    assert best_val_accuracy(chief, "wide") > 0.9  # chance is 0.1

    write_params(alone, {**TWO_WORKERS, "train.strategy": "default"})
    run_stage("train", "wide", cwd=alone)
    two, one = (model_weights(m / "models" / "wide.keras") for m in (chief, alone))
    assert len(two) == len(one) == 6
    for together, single in zip(two, one, strict=True):
        np.testing.assert_allclose(together, single, atol=WEIGHT_TOLERANCE, rtol=0)


# A frozen worker (SIGSTOP) is declared lost when it misses the coordination service's heartbeats
# for 10 s (TensorFlow's default); measured: the chief exits 15 s after the signal. The bound
# guards against a hang, it is not a timing check.
LOST_WORKER_BOUND = 120


def wait_for(path: Path, text: str, process: subprocess.Popen) -> None:
    """Wait until `text` appears in the file `path` written by `process`."""
    deadline = time.monotonic() + 300  # a guard against a hung start, not a timing check
    while text not in path.read_text():
        assert process.poll() is None and time.monotonic() < deadline, path.read_text()
        time.sleep(0.2)


@pytest.mark.parametrize("lose", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_a_lost_worker_ends_the_chief_with_one_line_and_nothing_written(
    split_project: Path, tmp_path: Path, lose: signal.Signals
) -> None:
    chief, worker = (
        Path(shutil.copytree(split_project, tmp_path / name, symlinks=True))
        for name in ("chief", "worker")
    )
    for machine in (chief, worker):
        write_params(machine, {**TWO_WORKERS, "models.wide.epochs": 50})
    before = files_in(chief)
    logs = tmp_path / "logs"
    temporary = [tmp_path / "tmp-chief", tmp_path / "tmp-worker"]
    command = [sys.executable, "-m", "stages.train", "wide"]
    processes, addresses = start_two_workers(command, [chief, worker], temporary, logs)
    try:
        wait_for(logs / "1.out", "Epoch 1/", processes[1])
        processes[1].send_signal(lose)
        assert processes[0].wait(timeout=LOST_WORKER_BOUND) == 1
    finally:
        for process in processes:
            process.kill()  # a frozen one too
    errors = (logs / "0.err").read_text()
    assert "Traceback" not in errors + (logs / "0.out").read_text()
    [line] = errors.strip().splitlines()
    documented = documented_message("scaling.md", "error: multi_worker training lost worker 1")
    assert line == documented.replace("10.0.0.2:12345", addresses[1]), line
    assert files_in(chief) == before, "the chief left a file behind"
    assert list(temporary[0].iterdir()) == [], "the chief left its temporary folder"


# One epoch of a three-class softmax under the multi_worker fix (or on one machine without
# TF_CONFIG), logging F1Score(average=None): one value per class, a vector metric. The logs of
# the last batch are the replicas' values as reduce_per_replica reduced them (the epoch's logs
# are read from the metric objects instead).
LOG_A_VECTOR_METRIC = """
import json, os
import keras, numpy as np, tensorflow as tf
from stages import keras_compat
if "TF_CONFIG" in os.environ:
    keras_compat.apply()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
else:
    strategy = tf.distribute.get_strategy()
keras.utils.set_random_seed(0)
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    f1 = keras.metrics.F1Score(average=None)
    model.compile("sgd", "categorical_crossentropy", metrics=[f1])
x = np.random.default_rng(0).random((96, 4), dtype=np.float32)
y = np.eye(3, dtype=np.float32)[np.arange(96) % 3]
batch_logs = {}
keep = keras.callbacks.LambdaCallback(on_train_batch_end=lambda _, logs: batch_logs.update(logs))
model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[keep])
print(json.dumps({name: np.asarray(value).tolist() for name, value in batch_logs.items()}))
"""


def test_two_workers_log_a_vector_metric_with_its_shape(tmp_path: Path) -> None:
    """Keras's own "mean" keeps a logged value's shape; so does the multi_worker fix."""
    command = [sys.executable, "-c", LOG_A_VECTOR_METRIC]
    temporary = [tmp_path / "chief", tmp_path / "worker"]
    chief, worker = (
        json.loads(output.strip().splitlines()[-1])
        for output in run_two_workers(command, [tmp_path, tmp_path], temporary)
    )
    alone = json.loads(run(command, cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert np.shape(alone["f1_score"]) == np.shape(chief["f1_score"]) == (3,)
    assert np.shape(chief["loss"]) == ()
    assert chief == worker  # both workers log the all-reduced values


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
    ],
)
def test_the_chief_is_the_chief_task_or_else_worker_0(
    monkeypatch: pytest.MonkeyPatch, cluster: dict, task: dict, chief: bool
) -> None:
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    train = load_params(REPO / "params.yaml").train
    multi_worker = train.model_copy(update={"strategy": "multi_worker"})
    assert is_chief(multi_worker) is chief
    assert is_chief(train) is True  # other strategies always write


def test_the_multi_worker_fix_refuses_an_unverified_keras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    with pytest.raises(StageError, match=r"not on Keras 3\.99\.0"):
        keras_compat.apply()
    assert trainer.reduce_per_replica is keras_compat.KERAS_REDUCE_PER_REPLICA
