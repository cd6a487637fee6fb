"""split: sizes, stratification, the manifest, and the same seed gives identical arrays."""

import json
from pathlib import Path

import numpy as np
import pytest

from stages import data
from stages.errors import StageError
from tests.conftest import assert_fails_cleanly, run_stage, write_params

RNG = np.random.default_rng(1)


@pytest.fixture
def raw_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder whose raw file has MNIST's exact shapes and class counts (random pixels)."""
    labels_train = np.repeat(np.arange(10, dtype=np.uint8), data.TRAIN_CLASS_COUNTS)
    labels_test = np.repeat(np.arange(10, dtype=np.uint8), data.TEST_CLASS_COUNTS)
    monkeypatch.chdir(tmp_path)
    data.save_arrays(
        data.RAW_FILE,
        x_train=RNG.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
        y_train=RNG.permutation(labels_train),
        x_test=RNG.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
        y_test=labels_test,
    )
    write_params(tmp_path, {})
    return tmp_path


def split_arrays(project: Path) -> dict[str, np.ndarray]:
    run_stage("split", cwd=project)
    return {name: np.load(project / data.split_file(name))["y"] for name in data.SPLITS}


def test_split_sizes_and_stratification(raw_project: Path) -> None:
    labels = split_arrays(raw_project)
    assert [labels[name].size for name in data.SPLITS] == [50000, 10000, 10000]
    train_share = np.bincount(labels["train"]) / 50000
    validation_share = np.bincount(labels["validation"]) / 10000
    np.testing.assert_allclose(train_share, validation_share, atol=2e-4)
    counts = np.bincount(labels["train"]) + np.bincount(labels["validation"])
    assert counts.tolist() == list(data.TRAIN_CLASS_COUNTS)


def test_manifest_matches_and_detects_tampering(raw_project: Path) -> None:
    split_arrays(raw_project)
    manifest = json.loads((raw_project / data.MANIFEST_FILE).read_text())
    assert manifest["validation"]["size"] == 10000
    images, labels = data.load_split("validation")
    assert labels.size == 10000
    data.save_arrays(data.split_file("validation"), x=images, y=np.roll(labels, 1))
    with pytest.raises(StageError, match="does not match"):
        data.load_split("validation")


def test_same_seed_same_split_other_seed_differs(raw_project: Path) -> None:
    first = split_arrays(raw_project)
    again = split_arrays(raw_project)
    for name in data.SPLITS:
        np.testing.assert_array_equal(first[name], again[name])
    write_params(raw_project, {"split.seed": 7})
    other = split_arrays(raw_project)
    assert not np.array_equal(first["train"], other["train"])


def test_missing_raw_file_names_the_stage_to_run(tmp_path: Path) -> None:
    write_params(tmp_path, {})
    result = run_stage("split", cwd=tmp_path, check=False)
    assert_fails_cleanly(result, "data/raw/mnist.npz is missing", "dvc repro fetch")
