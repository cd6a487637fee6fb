"""Killed and interrupted training, unsafe models, and determinism, on real MNIST."""

import hashlib
import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from tests.conftest import SPLIT_SETTINGS, assert_fails_cleanly, dvc, subprocess_env, write_params


def start_training(project: Path, epochs: int) -> subprocess.Popen:
    write_params(project, {**SPLIT_SETTINGS, "models.small.epochs": epochs})
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train", "small"],
        cwd=project,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(project: Path, process: subprocess.Popen) -> None:
    """Block until the first epoch's checkpoint exists under its temporary name."""
    deadline = time.monotonic() + 120
    while not list((project / "models").glob(".tmp-*-small.keras")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.2)


def final_outputs(project: Path) -> list[Path]:
    return [
        path
        for path in (project / "models/small.keras", project / "history/small.csv")
        if path.exists()
    ]


def test_sigkill_leaves_nothing_and_the_next_repro_starts_cleanly(split_project: Path) -> None:
    process = start_training(split_project, epochs=50)
    wait_for_checkpoint(split_project, process)
    process.kill()
    process.wait()
    assert final_outputs(split_project) == []

    write_params(split_project, SPLIT_SETTINGS)
    dvc("repro", "train@small", cwd=split_project)
    assert len(final_outputs(split_project)) == 2
    leftovers = list(split_project.glob("*/.tmp-*"))
    assert leftovers == []


def test_ctrl_c_exits_promptly_with_one_line(split_project: Path) -> None:
    for path in final_outputs(split_project):
        path.unlink()
    process = start_training(split_project, epochs=50)
    wait_for_checkpoint(split_project, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted")
    assert final_outputs(split_project) == []
    assert list(split_project.glob("*/.tmp-*")) == []


def test_evaluate_refuses_a_model_with_a_lambda_layer(split_project: Path) -> None:
    write_params(split_project, SPLIT_SETTINGS)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Lambda(lambda x: x * 2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    (split_project / "models").mkdir(exist_ok=True)
    model.save(split_project / "models" / "small.keras")
    (split_project / "history").mkdir(exist_ok=True)
    (split_project / "history" / "small.csv").write_text(
        "epoch,accuracy,loss,seconds,val_accuracy,val_loss\n0,0.9,0.3,1.0,0.9,0.3\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "stages.evaluate", "small"],
        cwd=split_project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert_fails_cleanly(result, "models/small.keras", "Lambda")
    assert not (split_project / "metrics" / "small.json").exists()


def without_object_ids(config: object) -> object:
    """The model config without Keras's `shared_object_id`s, which are Python id()s."""
    if isinstance(config, dict):
        return {k: without_object_ids(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [without_object_ids(item) for item in config]
    return config


def train_once(project: Path) -> tuple[dict, list[np.ndarray], object, str]:
    """Metrics without timings, weights, model config, and the sha256 of the weights file."""
    dvc("repro", "-f", "train@small", "evaluate@small", cwd=project)
    metrics = json.loads((project / "metrics" / "small.json").read_text())
    del metrics["training"]["seconds"], metrics["training"]["samples_per_second"]
    model_path = project / "models" / "small.keras"
    with zipfile.ZipFile(model_path) as archive:
        config = without_object_ids(json.loads(archive.read("config.json")))
        weights_sha256 = hashlib.sha256(archive.read("model.weights.h5")).hexdigest()
    return metrics, keras.models.load_model(model_path).get_weights(), config, weights_sha256


def test_same_params_give_identical_metrics_and_weights(split_project: Path) -> None:
    write_params(split_project, SPLIT_SETTINGS)
    first_metrics, first_weights, first_config, first_sha256 = train_once(split_project)
    second_metrics, second_weights, second_config, second_sha256 = train_once(split_project)
    assert first_metrics == second_metrics
    assert len(first_weights) == len(second_weights) == 6
    for first, second in zip(first_weights, second_weights, strict=True):
        np.testing.assert_array_equal(first, second)
    # What else differs inside the .keras zip is explained in the README.
    assert first_config == second_config
    assert first_sha256 == second_sha256
