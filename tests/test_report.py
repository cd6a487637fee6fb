"""The report: its table from metrics, the long history for DVC plots, and the README's copy."""

import json

import numpy as np
import pytest

from stages.errors import StageError
from stages.params import load_params
from stages.report import history_csv, readme_block, summary_table, update_readme
from tests.conftest import REPO, run


def test_summary_table_compares_with_the_2016_figure() -> None:
    metrics = {
        "small": {
            "test": {"accuracy": 0.9671},
            "params": 9474,
            "validation": {"best_epoch": 40},
            "training": {"epochs": 120, "seconds": 150.4},
        },
        "new": {
            "test": {"accuracy": 0.9},
            "params": 10,
            "validation": {"best_epoch": 1},
            "training": {"epochs": 2, "seconds": 3.0},
        },
    }
    table = summary_table(metrics, {"small": 0.965})
    rows = table.splitlines()
    assert rows[2] == "| small | 9,474 | 96.71 % | 96.50 % | +0.21 pp | 40 | 120 | 150 s |"
    assert rows[3] == "| new | 10 | 90.00 % | – | – | 1 | 2 | 3 s |"


def test_history_csv_has_one_row_per_variant_and_epoch() -> None:
    columns = ("epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds")
    history = np.array(
        [(1, 0.9, 0.3, 0.91, 0.29, 1.5), (2, 0.95, 0.2, 0.94, 0.21, 1.2)],
        dtype=[(name, float) for name in columns],
    )
    lines = history_csv({"a": history, "b": history[:1]}).splitlines()
    assert lines[0] == "variant,epoch,accuracy,loss,val_accuracy,val_loss,seconds"
    assert lines[1] == "a,1,0.9,0.3,0.91,0.29,1.5"
    assert [line.split(",")[0] for line in lines[1:]] == ["a", "a", "b"]


def test_update_readme_replaces_only_the_marked_block(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n")
    update_readme(readme, "| new |\n")
    assert (
        readme.read_text() == "intro\n<!-- results:start -->\n| new |\n<!-- results:end -->\nrest\n"
    )
    readme.write_text("no markers")
    with pytest.raises(StageError, match="no <!-- results:start -->"):
        update_readme(readme, "| new |\n")


def committed(path: str) -> str:
    """The file as committed at HEAD: a local `make repro` rewrites timings in the workspace."""
    return run(["git", "show", f"HEAD:{path}"], cwd=REPO).stdout


def test_readme_table_is_generated_from_the_committed_metrics() -> None:
    params = load_params(REPO / "params.yaml")
    metrics = {
        variant: json.loads(committed(f"metrics/{variant}.json")) for variant in params.models
    }
    table = summary_table(metrics, params.report.reference_accuracy)
    assert readme_block("results").search(committed("README.md"))[2] == table
    assert committed("reports/summary.md").endswith(table)
