"""dvc.yaml: each stage depends on exactly the code it runs, so a change reruns exactly those."""

import ast
from pathlib import Path

import pytest

from stages import paths
from stages.files import parse_yaml
from stages.fingerprint import PER_RUN_KEYS, fingerprinted_files, stage_definitions
from stages.report import REPRODUCTION_FILE
from tests.conftest import (
    REPO,
    repo_params,
)

STAGES = parse_yaml((REPO / "dvc.yaml").read_text())["stages"]
PLOT_FILES = ("predictions.csv", "accuracy.png", "misclassified.png")


def imported_modules(module: str) -> set[str]:
    """The `stages` modules that `module` runs: itself and what it imports, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((REPO / f"{name.replace('.', '/')}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "stages":
                todo += [f"stages.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stages."):
                todo.append(node.module)
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("stages.")]
    return seen


def code_deps(stage: dict) -> set[str]:
    definition = stage.get("do", stage)
    return {dep for dep in definition["deps"] if dep.startswith("stages/")}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_exactly_the_modules_it_imports(name: str) -> None:
    definition = STAGES[name].get("do", STAGES[name])
    module = definition["cmd"].split()[2]  # python -m stages.<name> ...
    expected = {f"{m.replace('.', '/')}.py" for m in imported_modules(module)}
    if name == "report":  # it counts the seed records made by today's train and evaluate code
        expected |= set(fingerprinted_code())
    assert code_deps(STAGES[name]) == expected


def fingerprinted_code() -> list[str]:
    definitions = stage_definitions({"stages": STAGES}, "wide")
    return [path for path in fingerprinted_files(definitions) if path.startswith("stages/")]


def test_the_report_depends_on_every_input_of_the_seed_records_fingerprint() -> None:
    """The report judges which seed records are current: what decides that must rerun it."""
    definitions = stage_definitions({"stages": STAGES}, "wide")
    assert set(fingerprinted_files(definitions)) <= set(STAGES["report"]["deps"])
    keys = {key for d in definitions for key in d.get("params", []) if key not in PER_RUN_KEYS}
    report_keys = set(STAGES["report"]["params"])
    assert {key for key in keys if not key.startswith("models.")} <= report_keys
    assert "models" in report_keys


def test_the_package_init_runs_no_code() -> None:
    """Every stage runs stages/__init__.py too; it holds only a docstring, so no stage needs it."""
    tree = ast.parse((REPO / "stages/__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0].value, ast.Constant)
    assert Path(REPO / "stages/__init__.py").exists()


def resolved_outs(stage: str, variant: str | None = None) -> set[str]:
    definition = STAGES[stage].get("do", STAGES[stage])
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in definition.get("outs", [])}
    outs |= {next(iter(m)) for m in definition.get("metrics", [])}
    return {out.replace("${key}", variant or "") for out in outs}


def test_stage_outputs_are_the_paths_the_code_writes() -> None:
    """stages/paths.py and dvc.yaml name each file; this keeps the two the same."""
    assert resolved_outs("fetch") == {str(paths.RAW_FILE)}
    splits = {str(paths.split_file(name)) for name in paths.SPLITS}
    assert resolved_outs("split") == splits | {str(paths.MANIFEST_FILE)}
    assert resolved_outs("train", "wide") == {
        str(paths.model_file("wide")),
        str(paths.history_file("wide")),
        str(paths.training_file("wide")),
        str(paths.training_metrics_file("wide")),
    }
    plots = {str(paths.plots_dir("wide") / name) for name in PLOT_FILES}
    assert resolved_outs("evaluate", "wide") == plots | {str(paths.metrics_file("wide"))}
    report = {paths.SUMMARY_FILE, paths.SEEDS_CURRENT_FILE, paths.HISTORY_TABLE_FILE}
    report |= {paths.CHART_FILE, REPRODUCTION_FILE}
    assert resolved_outs("report") == {str(path) for path in report}
    assert resolved_outs("plots_template") == {str(paths.TEMPLATE_FILE)}
    assert str(paths.SEEDS_FILE) in STAGES["report"]["deps"]


def test_every_variant_is_a_model_artifact() -> None:
    artifacts = parse_yaml((REPO / "dvc.yaml").read_text())["artifacts"]
    for variant in repo_params()["models"]:
        artifact = artifacts[variant.replace("_", "-")]
        assert artifact["type"] == "model"
        assert artifact["path"] == str(paths.model_file(variant))
