"""The sweep and the seed study: every run a DVC experiment, one Dask task each, nothing stale.

Each study here runs the real stages on the tiny pipeline (one or two epochs) in a copy.
"""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from scipy.stats import ttest_ind

from stages.files import parse_yaml
from stages.fingerprint import fingerprint, installed_libraries, recorded_libraries
from stages.records import like_group, like_key
from stages.report import holm, p_text, readme_block
from tests.conftest import (
    REPO,
    SEEDS,
    TINY_SETTINGS,
    VARIANTS,
    commit_all,
    dvc,
    experiments,
    read_records,
    repo_params,
    run,
    run_stage,
    seed_study_command,
    write_params,
    yaml_text,
)
from tools.experiments import Run, threads_per_run
from tools.sweep import comparison_table, planned_runs, ranking, status_line, sweep_table

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests


def charted(project: Path) -> list[str]:
    """The seed runs that the report handed to the seeds chart."""
    rows = read_records(project, "reports/seeds_current.json")
    return [row["name"] for row in rows if row["test_accuracy"] is not None]


def committed_file(project: Path, commit: str, path: str) -> str:
    return run(["git", "show", f"{commit}:{path}"], cwd=project).stdout


@pytest.fixture
def seed_copy(seed_study: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(seed_study, tmp_path / "project", symlinks=True))


def test_every_run_is_an_experiment_that_dvc_exp_show_lists(seed_study: Path) -> None:
    records = read_records(seed_study)
    names = [f"seed-{variant}-s{seed}" for variant in VARIANTS for seed in SEEDS]
    assert [record["name"] for record in records] == names
    shown = experiments(seed_study)
    assert set(shown) == set(names)
    for record in records:
        data = shown[record["name"]]
        variant = record["variant"]
        assert data["params"]["params.yaml"]["data"]["train"]["seed"] == record["seed"]
        metrics = data["metrics"]
        assert (
            metrics[f"metrics/{variant}.json"]["data"]["test"]["accuracy"]
            == (record["test_accuracy"])
        )
        validation = metrics[f"metrics/train/{variant}.json"]["data"]["validation"]
        assert record["kept_epoch"] == record["best_epoch"]  # checkpoint: best
        assert validation == {
            "best_accuracy": record["val_accuracy"],
            "best_epoch": record["best_epoch"],
            "kept_accuracy": record["val_accuracy"],
            "kept_epoch": record["kept_epoch"],
        }
        assert record["threads"] == threads_per_run(2) == record["environment"]["threads"]
        # Only this variant's stages ran: the others keep the committed run's seed in dvc.lock.
        lock = parse_yaml(committed_file(seed_study, record["experiment"], "dvc.lock"))
        for name, stage in lock["stages"].items():
            if name.startswith("train@"):
                seed = stage["params"]["params.yaml"]["train.seed"]
                assert seed == (record["seed"] if name == f"train@{variant}" else 42), name


def test_records_carry_the_fingerprint_of_what_they_ran(seed_study: Path) -> None:
    head = run(["git", "rev-parse", "HEAD"], cwd=seed_study).stdout.strip()
    params = parse_yaml((seed_study / "params.yaml").read_text())
    for record in read_records(seed_study):
        assert record["base"] == head
        read = lambda p: (seed_study / p).read_bytes()  # noqa: E731
        workspace = fingerprint(record["variant"], params, read, installed_libraries())
        assert record["fingerprint"] == workspace


def test_a_second_call_runs_nothing(seed_copy: Path) -> None:
    before = read_records(seed_copy)
    command = seed_study_command("--seeds", *SEEDS, "--variants", *VARIANTS)
    assert "0 runs to do, 2 recorded" in run(command, cwd=seed_copy).stdout
    assert read_records(seed_copy) == before


def test_finished_experiments_without_records_are_read_back_from_dvc(seed_copy: Path) -> None:
    """A study killed between a run's end and its record: the rerun collects it, trains nothing."""
    before = read_records(seed_copy)
    (seed_copy / "reports/seeds.json").unlink()
    command = seed_study_command("--seeds", *SEEDS, "--variants", *VARIANTS)
    assert "0 runs to do, 2 recorded" in run(command, cwd=seed_copy).stdout
    assert read_records(seed_copy) == before


def test_the_report_counts_current_records_and_a_changed_training_module_makes_them_stale(
    seed_copy: Path,
) -> None:
    run_stage("report", cwd=seed_copy)
    summary = (seed_copy / "reports/summary.md").read_text()
    assert "left out" not in summary
    for variant in VARIANTS:
        row = next(line for line in summary.splitlines() if line.startswith(f"| {variant} |"))
        assert row.split(" | ")[4] == "2"  # the Seeds column
    assert charted(seed_copy) == [r["name"] for r in read_records(seed_copy)]

    before = {r["name"]: r for r in read_records(seed_copy)}
    with (seed_copy / "stages/training.py").open("a") as module:
        module.write("\n# a change to the training code\n")
    summary = run_stage("report", cwd=seed_copy).stdout
    assert "2 seed-study record(s) of wide left out" in summary
    assert charted(seed_copy) == []
    commit_all(seed_copy, "a change to the training code")  # workers run commits

    command = seed_study_command("--seeds", "8", "--variants", "wide", "--jobs", "2")
    assert "1 runs to do, 0 recorded" in run(command, cwd=seed_copy).stdout
    after = {r["name"]: r for r in read_records(seed_copy)}
    assert after["seed-wide-s8"]["fingerprint"] != before["seed-wide-s8"]["fingerprint"]
    assert {name: after[name] for name in before if name != "seed-wide-s8"} == {
        name: record for name, record in before.items() if name != "seed-wide-s8"
    }
    summary = run_stage("report", cwd=seed_copy).stdout
    assert "1 seed-study record(s) of wide left out" in summary
    assert charted(seed_copy) == ["seed-wide-s8"]


def test_a_foreground_run_gives_the_studys_record(seed_copy: Path) -> None:
    """The one-run function that a worker calls, run in the project itself: the same record."""
    queued = {r["name"]: r for r in read_records(seed_copy)}["seed-wide-s9"]
    dvc("exp", "remove", "seed-wide-s9", cwd=seed_copy)
    script = (
        "import json; from tools.experiments import Run, run_experiment; "
        "print(json.dumps(run_experiment(Run('wide', 9), 1)))"
    )
    foreground = json.loads(run([sys.executable, "-c", script], cwd=seed_copy).stdout)
    timings = ("train_seconds", "experiment")
    assert {k: v for k, v in foreground.items() if k not in timings} == {
        k: v for k, v in queued.items() if k not in timings
    }


def test_sweep_ranks_recipes_by_validation_and_never_reads_the_test_set(
    tiny_project: Path, tmp_path: Path
) -> None:
    project = Path(shutil.copytree(tiny_project, tmp_path / "project", symlinks=True))
    recipes = {"plain": {}, "smoothed": {"label_smoothing": 0.2}}
    space = {"seeds": [1], "variants": {"wide": recipes}}
    (project / "space.yaml").write_text(yaml_text(space))
    command = [sys.executable, "-m", "tools.sweep", "--space", "space.yaml", "--output", "s.json"]
    first = run(command, cwd=project).stdout
    assert "2 runs to do, 0 recorded" in first
    records = read_records(project, "s.json")
    assert [r["name"] for r in records] == ["sweep-wide-plain-s1", "sweep-wide-smoothed-s1"]
    assert all("test_accuracy" not in r for r in records)
    baseline = json.loads((project / "metrics/wide.json").read_text())
    shown = experiments(project)
    for record in records:
        metrics = shown[record["name"]]["metrics"]
        validation = metrics["metrics/train/wide.json"]["data"]["validation"]
        assert validation["best_accuracy"] == record["val_accuracy"]
        assert metrics["metrics/wide.json"]["data"]["test"] == baseline["test"]  # not evaluated
    models = shown["sweep-wide-smoothed-s1"]["params"]["params.yaml"]["data"]["models"]
    assert models["wide"]["label_smoothing"] == 0.2
    assert records[0]["val_accuracy"] != records[1]["val_accuracy"]
    best = max(records, key=lambda r: r["val_accuracy"])
    table_rows = [line for line in first.splitlines() if line.startswith("| wide |")]
    assert f"**{best['recipe']}**" in table_rows[0]
    assert "0 runs to do, 2 recorded" in run(command, cwd=project).stdout


def locked_versions() -> dict[str, str]:
    """The versions that requirements/pipeline.txt pins for the libraries in a fingerprint."""
    lock = (REPO / "requirements/pipeline.txt").read_text()
    names = {"tensorflow": "tensorflow-cpu", "keras": "keras", "numpy": "numpy"}
    return {key: re.search(rf"^{name}==(\S+)", lock, re.M)[1] for key, name in names.items()}


def test_params_hold_the_recipe_that_won_on_validation() -> None:
    """The committed sweep ran every recipe over every seed on the lock's libraries (on one
    thread count and instruction set, so its table pools them all); docs/tuning.md says which
    of its runs today's code, params and libraries would redo."""
    space = parse_yaml((REPO / "tools/sweep.yaml").read_text())
    records = {r["name"]: r for r in json.loads((REPO / "reports/sweep.json").read_text())}
    params = repo_params()
    stale = []
    for planned in planned_runs(space):
        record = records[planned.name]
        libraries = recorded_libraries(record["environment"])
        assert {k: v for k, v in libraries.items() if k != "python"} == locked_versions()
        current = fingerprint(
            planned.variant, planned.params(params), read_repo, libraries, planned.stages
        )
        stale += [] if record["fingerprint"] == current else [planned.name]
        assert "test_accuracy" not in record
    doc = (REPO / "docs/tuning.md").read_text()
    status = status_line(stale, len(planned_runs(space)))
    assert readme_block("sweep-status").search(doc)[2] == status
    assert len({like_key(record) for record in records.values()}) == 1
    ranked = ranking([records[planned.name] for planned in planned_runs(space)])
    for variant, rows in ranked.items():
        winner = rows[0]["overrides"]
        assert {key: params["models"][variant][key] for key in winner} == winner, variant


def read_repo(path: str) -> bytes:
    return (REPO / path).read_bytes()


def test_run_names_say_what_they_are() -> None:
    assert Run("cnn", 3).name == "seed-cnn-s3"
    assert Run("wide", 4, "2016", {"epochs": 20}).name == "seed-wide-2016-s4"
    sweep = Run("wide", 1, "adam-cosine", {"optimizer": "adam"}, study="sweep")
    assert sweep.name == "sweep-wide-adam-cosine-s1"
    assert (sweep.evaluates, Run("wide", 4, "2016", {}).evaluates) == (False, True)


def test_tuning_md_holds_the_tables_of_the_committed_sweep() -> None:
    """docs/tuning.md's ranking and tests are what tools.sweep makes of reports/sweep.json."""
    records = json.loads((REPO / "reports/sweep.json").read_text())
    pooled, line = like_group(records)
    ranked = ranking(pooled)
    doc = (REPO / "docs/tuning.md").read_text()
    assert readme_block("sweep").search(doc)[2] == sweep_table(ranked) + f"\n{line}\n"
    assert readme_block("sweep-tests").search(doc)[2] == comparison_table(ranked)


def test_the_sweep_status_counts_the_runs_that_are_not_current() -> None:
    assert status_line([], 45) == ""
    assert status_line(["sweep-wide-a-s1"], 45).startswith(
        "1 of 45 sweep runs are missing or stale"
    )


def test_each_winner_is_tested_against_every_other_recipe_with_holm_over_the_sweep() -> None:
    def record(variant: str, recipe: str, accuracy: float) -> dict:
        return {"variant": variant, "recipe": recipe, "overrides": {}, "val_accuracy": accuracy}

    records = [record("wide", "a", x) for x in (0.990, 0.991, 0.992)]
    records += [record("wide", "b", x) for x in (0.980, 0.982, 0.981)]
    records += [record("wide", "c", x) for x in (0.989, 0.991, 0.990)]
    records += [record("small", "d", x) for x in (0.970, 0.972, 0.971)]
    records += [record("small", "e", x) for x in (0.960, 0.965, 0.961)]
    rows = comparison_table(ranking(records)).splitlines()[2:]
    assert [row.split(" | ")[1] for row in rows] == ["a vs c", "a vs b", "d vs e"]  # by rank
    raw = [
        ttest_ind(*pair, equal_var=False).pvalue
        for pair in [
            ((0.990, 0.991, 0.992), (0.989, 0.991, 0.990)),
            ((0.990, 0.991, 0.992), (0.980, 0.982, 0.981)),
            ((0.970, 0.972, 0.971), (0.960, 0.965, 0.961)),
        ]
    ]
    for row, p_value, adjusted in zip(rows, raw, holm(raw), strict=True):
        assert row.endswith(f"| {p_text(p_value)} | {p_text(adjusted)} |")
    assert rows[0].endswith(f"| {raw[0]:.2g} | {holm(raw)[0]:.2g} |")  # above the floor: 2 digits


def test_a_repro_on_another_seed_ends_with_a_verdict_from_the_seed_study(seed_copy: Path) -> None:
    """A real `dvc repro` retrains `wide` on a seed outside the study: the report judges it by
    the study's two current records; the variants it did not retrain keep their bytes."""
    write_params(seed_copy, TINY_SETTINGS | {"train.seed": 7})
    shown = dvc("repro", "--single-item", "train@wide", "evaluate@wide", "report", cwd=seed_copy)
    verdicts = json.loads((seed_copy / "reports/reproduction.json").read_text())
    assert {v: e["verdict"] for v, e in verdicts.items()} == {
        "small": "identical",
        "wide_dropout": "identical",
        "wide": "reproduced",
        "cnn": "identical",
    }
    assert verdicts["wide"]["seeds"] == len(SEEDS)
    assert verdicts["wide"]["confidence"] == 0.95  # the one variant with an interval
    lines = run_stage("report", "--verdicts", cwd=seed_copy).stdout.splitlines()
    assert lines[2].startswith("wide          reproduced  ")
    assert lines[2] in shown.stdout  # the report stage printed the same lines in `dvc repro`
    commit_all(seed_copy, "the seed-7 run")  # the report's deps stay as they are: HEAD moved
    lines = run_stage("report", "--verdicts", cwd=seed_copy).stdout.splitlines()
    assert lines[2].startswith("wide          identical   ")
