"""Killed and interrupted training, unsafe models, and determinism, on real MNIST."""

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from stages import errors
from stages.errors import run_stage
from stages.files import parse_yaml
from stages.training import StopOnCtrlC
from tests.conftest import (
    SPLIT_SETTINGS,
    assert_fails_cleanly,
    dvc,
    run,
    subprocess_env,
    write_params,
)

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests


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
        for path in (
            project / "models/small.keras",
            project / "history/small.csv",
            project / "history/small.json",
        )
        if path.exists()
    ]


def test_sigkill_leaves_nothing_and_the_next_repro_starts_cleanly(split_copy: Path) -> None:
    process = start_training(split_copy, epochs=50)
    wait_for_checkpoint(split_copy, process)
    process.kill()
    process.wait()
    assert final_outputs(split_copy) == []

    write_params(split_copy, SPLIT_SETTINGS)
    dvc("repro", "train@small", cwd=split_copy)
    assert len(final_outputs(split_copy)) == 3
    leftovers = list(split_copy.glob("*/.tmp-*"))
    assert leftovers == []


@pytest.mark.usefixtures("ctrl_c_enabled")
def test_ctrl_c_exits_promptly_with_one_line(split_copy: Path) -> None:
    process = start_training(split_copy, epochs=50)
    wait_for_checkpoint(split_copy, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted")
    assert final_outputs(split_copy) == []
    assert list(split_copy.glob("*/.tmp-*")) == []


@pytest.mark.usefixtures("ctrl_c_enabled")
def test_ctrl_c_that_library_code_swallows_still_ends_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keras's saving has a bare `except:`; a Ctrl-C landing there must still stop the stage."""
    monkeypatch.setattr(errors, "_interrupted", False)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    epochs_run: list[int] = []

    def main() -> None:
        with contextlib.suppress(KeyboardInterrupt):  # as keras.src.saving.saving_lib does
            signal.raise_signal(signal.SIGINT)
        model.fit(
            np.zeros((8, 4)),
            np.zeros(8),
            epochs=5,
            verbose=0,
            callbacks=[
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda epoch, _: epochs_run.append(epoch)
                ),
                StopOnCtrlC(),
            ],
        )

    with pytest.raises(SystemExit) as exit_info:
        run_stage(main)
    assert exit_info.value.code == 130
    assert epochs_run == [0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stage_started_with_ctrl_c_ignored_keeps_ignoring_it() -> None:
    """As under nohup or in a background job: Ctrl-C must not stop the stage."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    finished = []

    def main() -> None:
        signal.raise_signal(signal.SIGINT)
        finished.append(True)

    try:
        run_stage(main)
        assert finished == [True]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def evaluate_small(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.evaluate", "small"],
        cwd=project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def trained_small(split_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of split_project with a one-epoch small model; tests restore what they change."""
    folder = tmp_path_factory.mktemp("trained") / "project"
    project = Path(shutil.copytree(split_project, folder, symlinks=True))
    dvc("repro", "train@small", cwd=project)
    return project


@contextlib.contextmanager
def restored(path: Path) -> Iterator[None]:
    original = path.read_bytes()
    try:
        yield
    finally:
        path.write_bytes(original)


def test_evaluate_refuses_a_model_with_a_lambda_layer(trained_small: Path) -> None:
    """A model that would evaluate fine if loaded: only safe mode stops it."""
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Lambda(lambda x: x * 2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    with restored(trained_small / "models" / "small.keras"):
        model.save(trained_small / "models" / "small.keras")
        assert_fails_cleanly(evaluate_small(trained_small), "models/small.keras", "Lambda")
    assert not (trained_small / "metrics" / "small.json").exists()


@pytest.mark.parametrize(
    ("path", "damage", "message"),
    [
        ("models/small.keras", lambda data: data[: len(data) // 2], "cannot load"),
        ("history/small.csv", lambda data: b"epoch,loss\n0,oops\n", "lacks the columns"),
        ("data/split/manifest.json", lambda data: data[:-20], "is not valid JSON"),
        ("data/split/test.npz", lambda data: data[:1000], "is corrupted"),
    ],
    ids=["model", "history", "manifest", "split"],
)
def test_evaluate_refuses_damaged_inputs(trained_small: Path, path, damage, message) -> None:
    target = trained_small / path
    with restored(target):
        target.write_bytes(damage(target.read_bytes()))
        assert_fails_cleanly(evaluate_small(trained_small), path, message)
    assert not (trained_small / "metrics" / "small.json").exists()


def locked_outputs(project: Path) -> dict[str, str]:
    """Each output's md5 as dvc.lock records it."""
    lock = parse_yaml((project / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage["outs"]}


def test_forced_rerun_leaves_models_and_metrics_byte_identical(tiny_copy: Path) -> None:
    project = tiny_copy
    before = locked_outputs(project)
    stages = ("train@wide_dropout", "evaluate@wide_dropout")  # dropout: random, yet repeatable
    output = dvc("repro", "-f", "-s", *stages, cwd=project).stdout
    assert output.count("Running stage") == len(stages)
    after = locked_outputs(project)
    for output in ("models/wide_dropout.keras", "metrics/wide_dropout.json"):
        assert after[output] == before[output]
    assert after["history/wide_dropout.csv"] != before["history/wide_dropout.csv"]  # timings
    assert run(["git", "status", "--porcelain", "metrics", "plots"], cwd=project).stdout == ""
    assert dvc("metrics", "diff", cwd=project).stdout == ""
