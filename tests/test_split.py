"""split: sizes, stratification, the manifest, and the same seed gives identical arrays."""

import json
from pathlib import Path

import numpy as np
import pytest

from stages import dataset, files, mnist, paths
from stages.errors import StageError
from tests.conftest import assert_fails_cleanly, output_bytes, run_stage, write_params

RNG = np.random.default_rng(1)


@pytest.fixture
def raw_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder whose raw file has MNIST's exact shapes and class counts (random pixels)."""
    labels_train = np.repeat(np.arange(10, dtype=np.uint8), mnist.TRAIN_CLASS_COUNTS)
    labels_test = np.repeat(np.arange(10, dtype=np.uint8), mnist.TEST_CLASS_COUNTS)
    monkeypatch.chdir(tmp_path)
    files.save_arrays(
        paths.RAW_FILE,
        x_train=RNG.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
        y_train=RNG.permutation(labels_train),
        x_test=RNG.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
        y_test=labels_test,
    )
    write_params(tmp_path, {})
    return tmp_path


def split_arrays(project: Path) -> dict[str, np.ndarray]:
    run_stage("split", cwd=project)
    return {name: np.load(project / paths.split_file(name))["y"] for name in paths.SPLITS}


def test_split_sizes_and_stratification(raw_project: Path) -> None:
    labels = split_arrays(raw_project)
    assert [labels[name].size for name in paths.SPLITS] == [50000, 10000, 10000]
    train_share = np.bincount(labels["train"]) / 50000
    validation_share = np.bincount(labels["validation"]) / 10000
    np.testing.assert_allclose(train_share, validation_share, atol=2e-4)
    counts = np.bincount(labels["train"]) + np.bincount(labels["validation"])
    assert counts.tolist() == list(mnist.TRAIN_CLASS_COUNTS)


def test_manifest_matches_and_detects_tampering(raw_project: Path) -> None:
    split_arrays(raw_project)
    manifest = json.loads((raw_project / paths.MANIFEST_FILE).read_text())
    assert manifest["validation"]["size"] == 10000
    images, labels = dataset.load_split("validation")
    assert labels.size == 10000
    files.save_arrays(paths.split_file("validation"), x=images, y=np.roll(labels, 1))
    with pytest.raises(StageError, match="does not match"):
        dataset.load_split("validation")


def test_same_seed_same_split_other_seed_differs(raw_project: Path) -> None:
    first = split_arrays(raw_project)
    again = split_arrays(raw_project)
    for name in paths.SPLITS:
        np.testing.assert_array_equal(first[name], again[name])
    write_params(raw_project, {"split.seed": 7})
    other = split_arrays(raw_project)
    assert not np.array_equal(first["train"], other["train"])


def test_missing_raw_file_names_the_stage_to_run(tmp_path: Path) -> None:
    write_params(tmp_path, {})
    result = run_stage("split", cwd=tmp_path, check=False)
    assert_fails_cleanly(result, "data/raw/mnist.npz is missing", "dvc repro fetch")


def test_test_split_is_the_official_test_set_and_train_validation_partition_the_rest(
    raw_project: Path,
) -> None:
    run_stage("split", cwd=raw_project)
    with np.load(raw_project / paths.RAW_FILE) as raw:
        raw_arrays = {name: raw[name] for name in raw.files}
    parts = {}
    for name in paths.SPLITS:
        with np.load(raw_project / paths.split_file(name)) as split:
            parts[name] = (split["x"], split["y"])
    np.testing.assert_array_equal(parts["test"][0], raw_arrays["x_test"])
    np.testing.assert_array_equal(parts["test"][1], raw_arrays["y_test"])

    def rows(images: np.ndarray) -> set[bytes]:
        return {image.tobytes() for image in images}

    train, validation = rows(parts["train"][0]), rows(parts["validation"][0])
    assert not train & validation
    assert train | validation == rows(raw_arrays["x_train"])


SPLIT_OUTPUTS = [str(paths.split_file(name)) for name in paths.SPLITS] + [str(paths.MANIFEST_FILE)]


def split_outputs(project: Path) -> dict[str, bytes]:
    run_stage("split", cwd=project)
    return output_bytes(project, SPLIT_OUTPUTS)


def test_split_is_a_deterministic_function_of_the_raw_file_and_its_params(
    raw_project: Path,
) -> None:
    first = split_outputs(raw_project)
    assert split_outputs(raw_project) == first
    write_params(raw_project, {"train.seed": 7, "models.small.epochs": 3})  # not split's
    assert split_outputs(raw_project) == first

    write_params(raw_project, {"split.seed": 7})
    reseeded = split_outputs(raw_project)
    for name in ("train", "validation"):
        assert reseeded[str(paths.split_file(name))] != first[str(paths.split_file(name))]
    assert reseeded[str(paths.split_file("test"))] == first[str(paths.split_file("test"))]

    write_params(raw_project, {})
    raw = dict(np.load(paths.RAW_FILE))
    raw["x_train"][0, 0, 0] ^= 1  # one bit of one pixel of the raw file
    files.save_arrays(paths.RAW_FILE, **raw)
    assert split_outputs(raw_project) != first
