"""The canonical .keras file: identical bytes for identical models, loadable in safe mode."""

import json
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from stages.keras_file import ZIP_DATE, canonicalize, renumber_shared_objects
from stages.models import build_model, compile_model, one_hot, scale
from stages.params import load_params
from tests.conftest import REPO

RNG = np.random.default_rng(3)


def trained_model() -> keras.Model:
    """A few steps of the wide_dropout variant on random digits: every layer kind it saves."""
    params = load_params(REPO / "params.yaml").model("wide_dropout")
    keras.utils.set_random_seed(0)
    model = build_model(params)
    compile_model(model, params, steps_per_epoch=2, steps_per_execution=1)
    images = RNG.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    model.fit(scale(images), one_hot(RNG.integers(0, 10, 64)), batch_size=32, verbose=0)
    return model


def test_two_saves_differ_but_their_canonical_forms_are_identical(tmp_path: Path) -> None:
    model = trained_model()
    first, second = tmp_path / "first.keras", tmp_path / "second.keras"
    model.save(first)
    time.sleep(1.1)  # Keras stamps the save time to the second
    model.save(second)
    assert first.read_bytes() != second.read_bytes()

    canonicalize(first)
    canonicalize(second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert {info.date_time for info in archive.infolist()} == {ZIP_DATE}
        assert "date_saved" not in json.loads(archive.read("metadata.json"))
        config = archive.read("config.json").decode()
    assert '"shared_object_id": 1' in config


def test_canonical_file_loads_in_safe_mode_and_predicts_identically(tmp_path: Path) -> None:
    original, canonical = tmp_path / "original.keras", tmp_path / "canonical.keras"
    trained_model().save(original)
    canonical.write_bytes(original.read_bytes())
    canonicalize(canonical)
    images = scale(RNG.integers(0, 256, (100, 28, 28), dtype=np.uint8))
    expected = keras.models.load_model(original, safe_mode=True).predict(images, verbose=0)
    loaded = keras.models.load_model(canonical, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    assert loaded.optimizer.iterations.numpy() == 2  # the optimizer state came along


def test_shared_ids_are_numbered_in_order_of_first_use() -> None:
    config = {
        "dtype": {"shared_object_id": 140001},
        "layers": [{"shared_object_id": 77}, {"shared_object_id": 140001}, {"units": 5}],
    }
    assert renumber_shared_objects(config, {}) == {
        "dtype": {"shared_object_id": 1},
        "layers": [{"shared_object_id": 2}, {"shared_object_id": 1}, {"units": 5}],
    }
