"""Bad params, bad data and bad files: the stage exits non-zero with one line and writes nothing."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from stages import mnist, paths
from tests.conftest import SPLIT_SETTINGS, assert_fails_cleanly, run, run_stage, write_params

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests


def snapshot(project: Path) -> dict[Path, tuple[int, int]]:
    """Modification time and size of every output file of the project."""
    folders = ("data", "models", "history", "metrics", "plots", "reports")
    return {
        path: (path.stat().st_mtime_ns, path.stat().st_size)
        for name in folders
        for path in (project / name).rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("stage", "key", "value"),
    [
        ("train", "models.small.epochs", 0),
        ("train", "models.small.epochs", 1.5),
        ("train", "models.small.batch_size", 0),
        ("train", "models.small.dropout", 1),
        ("train", "models.small.optimizer", "adamx"),
        ("train", "models.small.activation", "swish3"),
        ("train", "models.small.learning_rate", -0.1),
        ("train", "models.small.hidden_units", []),
        ("train", "models.small", [1, 2]),
        ("split", "split.validation_size", 0),
        ("split", "split.validation_size", 60000),
        ("fetch", "fetch.source", "carrier-pigeon"),
        ("evaluate", "models.small.lr_schedule", "step"),
    ],
)
def test_bad_param_fails_before_any_work(
    split_project: Path, stage: str, key: str, value: object
) -> None:
    """In a project whose data is ready, a bad value stops the stage before it touches a file."""
    before = snapshot(split_project)
    write_params(split_project, {**SPLIT_SETTINGS, key: value})
    args = ("small",) if stage in ("train", "evaluate") else ()
    try:
        result = run_stage(stage, *args, cwd=split_project, check=False)
    finally:
        write_params(split_project, SPLIT_SETTINGS)  # the shared project, restored
    assert_fails_cleanly(result, key, repr(value))
    assert snapshot(split_project) == before


def test_typo_key_in_model_entry_is_refused(tmp_path: Path) -> None:
    write_params(tmp_path, {"models.small.epoch": 3})
    assert_fails_cleanly(
        run_stage("train", "small", cwd=tmp_path, check=False), "models.small.epoch"
    )


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_unknown_variant_is_refused(tmp_path: Path, stage: str) -> None:
    write_params(tmp_path, {})
    result = run_stage(stage, "huge", cwd=tmp_path, check=False)
    assert_fails_cleanly(result, "unknown variant 'huge'", "small")


@pytest.mark.parametrize(
    "content",
    ["models: [unclosed\n", "- just\n- a list\n", None],
    ids=["invalid-yaml", "not-a-mapping", "missing"],
)
def test_broken_params_file(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "params.yaml").write_text(content)
    assert_fails_cleanly(run_stage("split", cwd=tmp_path, check=False), "params.yaml")


def write_raw(project: Path, **changes: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
        "y_train": np.repeat(np.arange(10, dtype=np.uint8), mnist.TRAIN_CLASS_COUNTS),
        "x_test": rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
        "y_test": np.repeat(np.arange(10, dtype=np.uint8), mnist.TEST_CLASS_COUNTS),
    }
    arrays.update(changes)
    path = project / paths.RAW_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"x_train": np.zeros((60000, 784), np.uint8)}, "expected uint8 (n, 28, 28)"),
        ({"x_test": np.zeros((10000, 28, 28), np.float32)}, "expected uint8 (n, 28, 28)"),
        ({"y_test": np.full(10000, 11, np.uint8)}, "a label is 11"),
        ({"y_train": np.zeros(60000, np.int64)}, "expected uint8 (60000,)"),
        ({"y_train": np.zeros(60000, np.uint8)}, "class counts"),
    ],
    ids=["shape", "dtype", "label-range", "label-dtype", "class-counts"],
)
def test_bad_raw_arrays_are_refused(tmp_path: Path, changes: dict, message: str) -> None:
    write_params(tmp_path, {})
    write_raw(tmp_path, **changes)
    assert_fails_cleanly(run_stage("split", cwd=tmp_path, check=False), message)
    assert not (tmp_path / "data" / "split").exists()


def test_truncated_raw_file_is_refused(tmp_path: Path) -> None:
    write_params(tmp_path, {})
    write_raw(tmp_path)
    raw = tmp_path / paths.RAW_FILE
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    assert_fails_cleanly(run_stage("split", cwd=tmp_path, check=False), "corrupted")


def test_fetch_and_split_do_not_import_tensorflow(tmp_path: Path) -> None:
    code = "import sys, stages.fetch, stages.split; print('tensorflow' in sys.modules)"
    result = run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.stdout.strip() == "False"


TENSORFLOW_NOISE = re.compile(
    r"^[IWE]\d{4} |absl::InitializeLog|oneDNN custom operations|cuda drivers", re.MULTILINE
)


def test_stages_print_no_tensorflow_start_up_lines_nor_warnings_but_still_their_errors(
    tiny_copy: Path,
) -> None:
    for stage in ("train", "evaluate"):
        result = run_stage(stage, "wide", cwd=tiny_copy)
        assert not TENSORFLOW_NOISE.search(result.stderr + result.stdout), result.stderr
        assert result.stderr == ""
        assert "wide:" in result.stdout.splitlines()[-1]

    (tiny_copy / "models" / "wide.keras").write_bytes(b"not a zip file")
    broken = run_stage("evaluate", "wide", cwd=tiny_copy, check=False)
    assert_fails_cleanly(broken, "cannot load models/wide.keras")
    assert len(broken.stderr.strip().splitlines()) == 1


def test_a_users_own_tensorflow_log_level_is_respected(tiny_copy: Path) -> None:
    command = [sys.executable, "-m", "stages.evaluate", "wide"]
    result = run(command, cwd=tiny_copy, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert TENSORFLOW_NOISE.search(result.stderr)
