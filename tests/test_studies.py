"""The sweep and the seed study run the real stages in scratch folders and record what they saw."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from stages.params import load_params
from stages.report import recipe, seed_accuracies
from tests.conftest import REPO, TINY_SETTINGS, repo_params, run, run_stage
from tools.sweep import planned_runs, ranking, recorded

VARIANTS = tuple(load_params(REPO / "params.yaml").models)


@pytest.fixture(scope="module")
def seed_study(
    tiny_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict]]:
    """The seed study over two seeds, in a copy of the tiny pipeline, into the copy's reports/."""
    folder = tmp_path_factory.mktemp("seeds") / "project"
    project = Path(shutil.copytree(tiny_project, folder, symlinks=True))
    run([sys.executable, "-m", "tools.seed_study", "--seeds", "1", "2"], cwd=project)
    return project, json.loads((project / "reports/seeds.json").read_text())


def test_seed_study_records_every_variant_and_seed(seed_study: tuple[Path, list[dict]]) -> None:
    project, records = seed_study
    assert [(r["variant"], r["seed"]) for r in records] == [
        (variant, seed) for variant in VARIANTS for seed in (1, 2)
    ]
    params = load_params(project / "params.yaml")
    for record in records:
        epochs = TINY_SETTINGS[f"models.{record['variant']}.epochs"]
        assert 0.8 < record["test_accuracy"] <= 1 and 0.8 < record["val_accuracy"] <= 1
        assert 1 <= record["best_epoch"] <= epochs
        assert record["recipe"] == recipe(params.model(record["variant"]))
        reference = params.report.reference_accuracy.get(record["variant"])  # none for cnn
        assert record["reference"] == reference
    environment = json.loads((project / "reports/seeds_environment.json").read_text())
    assert environment["op_determinism"] is True


def test_seed_study_seed_changes_the_result_and_the_report_reads_it(
    seed_study: tuple[Path, list[dict]],
) -> None:
    project, records = seed_study
    wide = [r["test_accuracy"] for r in records if r["variant"] == "wide"]
    assert wide[0] != wide[1]  # another seed, another draw
    run_stage("report", cwd=project)
    summary = (project / "reports/summary.md").read_text()
    params = load_params(project / "params.yaml")
    for variant in VARIANTS:
        accuracies = seed_accuracies(records, variant, recipe(params.model(variant)))
        assert len(accuracies) == 2
        assert f"| {variant} | " in summary and "| 2 | " in summary


def test_seed_study_of_some_variants_keeps_the_others_records(
    seed_study: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    project = Path(shutil.copytree(seed_study[0], tmp_path / "project", symlinks=True))
    command = [sys.executable, "-m", "tools.seed_study", "--variants", "small", "--seeds", "3"]
    run(command, cwd=project)
    records = json.loads((project / "reports/seeds.json").read_text())
    assert [(r["variant"], r["seed"]) for r in records] == [("small", 3)] + [
        (variant, seed) for variant in VARIANTS[1:] for seed in (1, 2)
    ]
    assert [r for r in records if r["variant"] != "small"] == [
        r for r in seed_study[1] if r["variant"] != "small"
    ]


def test_sweep_ranks_recipes_by_validation_and_resumes(tiny_copy: Path) -> None:
    space = {
        "seeds": [1],
        "variants": {"wide": {"plain": {}, "smoothed": {"label_smoothing": 0.1}}},
    }
    (tiny_copy / "space.yaml").write_text(yaml.safe_dump(space))
    command = [sys.executable, "-m", "tools.sweep", "--space", "space.yaml", "--output", "s.json"]
    first = run(command, cwd=tiny_copy).stdout
    assert "2 runs to do, 0 recorded" in first
    records = json.loads((tiny_copy / "s.json").read_text())
    assert sorted(r["recipe"] for r in records) == ["plain", "smoothed"]
    assert all("test_accuracy" not in r for r in records)  # the test set is never evaluated
    best = max(records, key=lambda r: r["val_accuracy"])
    table_rows = [line for line in first.splitlines() if line.startswith("| wide |")]
    assert f"**{best['recipe']}**" in table_rows[0]
    assert "0 runs to do, 2 recorded" in run(command, cwd=tiny_copy).stdout


def test_params_hold_the_recipe_that_won_on_validation() -> None:
    """The committed sweep ran every recipe over every seed; params.yaml holds each winner."""
    space = yaml.safe_load((REPO / "tools/sweep.yaml").read_text())
    records = json.loads((REPO / "reports/sweep.json").read_text())
    assert all(recorded(run, records) for run in planned_runs(space))
    assert all("test_accuracy" not in record for record in records)
    models = repo_params()["models"]
    for variant, rows in ranking(records).items():
        winner = rows[0]["overrides"]
        assert {key: models[variant][key] for key in winner} == winner, variant
