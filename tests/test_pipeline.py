"""End to end: the real pipeline, on real MNIST from the mirror, with one or two epochs a variant.

It runs in a temporary copy of the project (`tiny_project` in conftest), so the repo's own
dvc.lock and metrics stay as they are.
"""

import csv
import hashlib
import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from stages import paths
from stages.models import scale
from tests.conftest import BIN, commit_all, dvc, repo_params, run, write_params
from tests.conftest import TINY_SETTINGS as TINY

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

VARIANTS = tuple(repo_params()["models"])
# The tiny pipeline's models (TINY_SETTINGS: 64 units, cnn 8 and 16 filters and 32 units); the
# real ones are pinned in test_models.py. wide: 784*64+64 + 64*64+64 + 64*10+10 weights and
# 2 * (784*64 + 64*64 + 64*10) FLOPs; cnn: 5*5*8+8 + 5*5*8*16+16 + 256*32+32 + 32*10+10, and
# 2 * (24*24*25*8 + 8*8*25*8*16 + 256*32 + 32*10).
PARAM_COUNTS = {"small": 9474, "wide_dropout": 55_050, "wide": 55_050, "cnn": 11_978}
FLOPS = {"small": 103_488, "wide_dropout": 109_824, "wide": 109_824, "cnn": 657_024}


@pytest.fixture
def project(tiny_project: Path) -> Path:
    return tiny_project


def metrics(project: Path, variant: str) -> dict:
    return json.loads((project / "metrics" / f"{variant}.json").read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_writes_sane_metrics_and_plots(project: Path, variant: str) -> None:
    result = metrics(project, variant)
    epochs = TINY[f"models.{variant}.epochs"]
    assert 0.8 < result["test"]["accuracy"] <= 1.0
    assert 0.0 < result["test"]["loss"] < 1.0
    assert result["params"] == PARAM_COUNTS[variant]
    assert result["training"]["epochs"] == epochs
    assert 1 <= result["validation"]["best_epoch"] <= epochs
    assert set(result) == {
        "test",
        "macro",
        "per_class",
        "validation",
        "training",
        "params",
        "flops_per_image",
    }
    assert result["flops_per_image"] == FLOPS[variant]
    assert sorted(result["per_class"]) == ["f1", "precision", "recall"]
    assert all(len(values) == 10 for values in result["per_class"].values())
    assert 0.8 < result["macro"]["f1"] <= 1.0

    with (project / "history" / f"{variant}.csv").open() as stream:
        history = list(csv.DictReader(stream))
    assert [int(row["epoch"]) for row in history] == list(range(1, epochs + 1))
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(history[0])

    with (project / "plots" / variant / "predictions.csv").open() as stream:
        predictions = list(csv.DictReader(stream))
    assert len(predictions) == 10000
    correct = sum(row["actual"] == row["predicted"] for row in predictions)
    assert correct / 10000 == pytest.approx(result["test"]["accuracy"])
    for image in ("accuracy.png", "misclassified.png"):
        assert (project / "plots" / variant / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (project / "models" / f"{variant}.keras").stat().st_size > 0

    record = json.loads((project / "history" / f"{variant}.json").read_text())
    evaluated = ("best_accuracy", "best_epoch", "kept_epoch")
    assert {key: record["validation"][key] for key in evaluated} == result["validation"]
    training_metrics = json.loads((project / "metrics/train" / f"{variant}.json").read_text())
    assert training_metrics == {"validation": record["validation"], "epochs": epochs}
    assert record["epochs"] == epochs
    assert record["timing"]["seconds"] == pytest.approx(
        sum(float(r["seconds"]) for r in history), abs=0.01
    )
    assert record["timing"]["samples_per_second"] > 0
    environment = record["environment"]
    assert environment["op_determinism"] is True
    assert environment["cores"] >= 1 and environment["threads"] >= 1
    assert environment["keras"].startswith("3.")


def test_one_epoch_of_the_small_model_beats_90_percent(project: Path) -> None:
    assert metrics(project, "small")["test"]["accuracy"] > 0.90


def test_pipeline_is_up_to_date_after_repro(project: Path) -> None:
    assert "up to date" in dvc("status", cwd=project).stdout


def test_metrics_show_lists_every_variant(project: Path) -> None:
    shown = dvc("metrics", "show", cwd=project).stdout
    for variant in VARIANTS:
        assert f"metrics/{variant}.json" in shown


def test_plots_show_writes_html_with_every_chart(project: Path, tmp_path: Path) -> None:
    shown = tmp_path / "dvc_plots"  # outside the shared project, which tests only read
    dvc("plots", "show", "-o", str(shown), cwd=project)
    html = (shown / "index.html").read_text()
    assert "Validation accuracy per epoch" in html
    assert "Validation loss per epoch" in html
    assert "Test accuracy over seeds" in html
    seeds = json.loads((project / "reports" / "seeds_current.json").read_text())
    for variant in VARIANTS:
        studied = sum(record["variant"] == variant for record in seeds)
        epochs = TINY[f"models.{variant}.epochs"]
        assert html.count(f'"variant": "{variant}"') == 2 * epochs + studied
        assert f"plots/{variant}/predictions.csv" in html
        for image in ("accuracy", "misclassified"):
            assert f'<img src="static/workspace_plots_{variant}_{image}.png">' in html
            assert (shown / "static" / f"workspace_plots_{variant}_{image}.png").exists()


def test_changing_one_variant_reruns_only_that_variant(tiny_copy: Path) -> None:
    project = tiny_copy
    write_params(project, {**TINY, "models.wide.dropout": 0.1})
    output = dvc("repro", cwd=project).stdout
    assert "Running stage 'train@wide'" in output
    assert "Running stage 'evaluate@wide'" in output
    for stage in ("fetch", "split", "train@small", "evaluate@small", "train@wide_dropout"):
        assert f"Running stage '{stage}'" not in output
    assert metrics(project, "wide")["training"]["epochs"] == 1
    with zipfile.ZipFile(project / "models" / "wide.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    rates = [layer["config"]["rate"] for layer in layers if layer["class_name"] == "Dropout"]
    assert rates == [0.1, 0.1]


def test_dvcs_own_overrides_of_a_small_float_and_a_list_reach_training(tiny_copy: Path) -> None:
    """`-S` writes YAML 1.2 back into params.yaml (`1e-05`), which the stage reads as DVC does."""
    overrides = {
        "models.small.learning_rate": "0.00001",
        "models.small.weight_decay": "1e-6",
        "models.small.hidden_units": "[16,8]",
    }
    settings = [arg for key, value in overrides.items() for arg in ("-S", f"{key}={value}")]
    dvc("exp", "run", "-n", "small-lr", *settings, "train@small", cwd=tiny_copy)
    written = (tiny_copy / "params.yaml").read_text()
    assert "learning_rate: 1e-05\n" in written and "weight_decay: 1e-06\n" in written
    with zipfile.ZipFile(tiny_copy / "models" / "small.keras") as archive:
        config = json.loads(archive.read("config.json"))
    optimizer = config["compile_config"]["optimizer"]["config"]
    assert optimizer["learning_rate"]["config"]["initial_learning_rate"] == 1e-05
    assert optimizer["weight_decay"] == 1e-06
    dense = [
        layer["config"]["units"]
        for layer in config["config"]["layers"]
        if "units" in layer["config"]
    ]
    assert dense == [16, 8, 10]


OUTPUTS = ("models/wide.keras", "metrics/wide.json", "history/wide.csv")


def wide_hashes(project: Path) -> dict[str, str]:
    return {path: hashlib.sha256((project / path).read_bytes()).hexdigest() for path in OUTPUTS}


def test_git_checkout_and_dvc_checkout_restore_each_commit(tiny_copy: Path) -> None:
    project = tiny_copy
    first = run(["git", "rev-parse", "HEAD"], cwd=project).stdout.strip()
    first_hashes = wide_hashes(project)
    write_params(project, {**TINY, "models.wide.dropout": 0.15})
    dvc("repro", cwd=project)
    second = commit_all(project, "wide with another dropout")
    second_hashes = wide_hashes(project)
    assert first_hashes["models/wide.keras"] != second_hashes["models/wide.keras"]

    for commit, hashes in ((first, first_hashes), (second, second_hashes)):
        run(["git", "checkout", "-q", commit], cwd=project)
        dvc("checkout", cwd=project)
        assert wide_hashes(project) == hashes
        assert "up to date" in dvc("status", cwd=project).stdout


def test_the_saved_model_scores_the_recorded_best_validation_accuracy(project: Path) -> None:
    """Reloaded and run on the validation split, the model scores what training recorded."""
    with np.load(project / "data" / "split" / "validation.npz") as archive:
        images, labels = archive["x"], archive["y"]
    for variant in VARIANTS:
        model = keras.models.load_model(project / "models" / f"{variant}.keras", safe_mode=True)
        predicted = model.predict(scale(images), batch_size=1000, verbose=0).argmax(axis=1)
        recorded = metrics(project, variant)["validation"]["best_accuracy"]
        assert np.mean(predicted == labels) == pytest.approx(recorded, abs=1e-6)


def test_changing_shared_code_makes_exactly_its_stages_stale(tiny_copy: Path) -> None:
    with (tiny_copy / "stages/plots.py").open("a") as module:
        module.write("\n# a change to the plotting code\n")
    status = json.loads(dvc("status", "--json", cwd=tiny_copy).stdout)
    variants = repo_params()["models"]
    assert set(status) == {f"evaluate@{v}" for v in variants} | {"report"}


def test_changing_the_thread_count_makes_every_train_stage_stale(tiny_copy: Path) -> None:
    """On some CPUs another thread count gives other weights, so it retrains every variant."""
    write_params(tiny_copy, {**TINY, "train.threads": 3})
    status = json.loads(dvc("status", "--json", cwd=tiny_copy).stdout)
    assert set(status) == {f"train@{v}" for v in repo_params()["models"]}


def test_a_registered_model_comes_back_with_dvc_artifacts_get(
    tiny_copy: Path, tmp_path: Path
) -> None:
    """`gto register` tags a version in git; `dvc artifacts get` fetches it from the remote."""
    project = tiny_copy
    dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=project)
    dvc("push", cwd=project)
    commit_all(project, "a DVC remote")
    run([str(BIN / "gto"), "register", "wide"], cwd=project)
    target = tmp_path / "wide.keras"
    dvc("artifacts", "get", ".", "wide", "-o", str(target), cwd=project)
    assert target.read_bytes() == (project / paths.model_file("wide")).read_bytes()
