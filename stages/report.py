"""Stage report: compare the variants in reports/summary.md, reports/history.csv and a chart.

`python -m stages.report --readme README.md` also copies the summary table into the README.
"""

import argparse
import csv
import io
import re
from pathlib import Path

import numpy as np

from stages.data import (
    HISTORY_COLUMNS,
    history_file,
    metrics_file,
    read_history,
    read_json,
    write_text,
)
from stages.errors import StageError, run_stage
from stages.params import load_params
from stages.plots import plot_validation_accuracy

REPORTS_DIR = Path("reports")
SUMMARY_FILE = REPORTS_DIR / "summary.md"
HISTORY_FILE = REPORTS_DIR / "history.csv"
CHART_FILE = REPORTS_DIR / "val_accuracy.png"
README_BLOCK = "results"


def percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def summary_table(metrics: dict[str, dict], references: dict[str, float]) -> str:
    """A Markdown table: one row per variant, test accuracy beside the 2016 figure."""
    lines = [
        "| Variant | Parameters | Test accuracy | 2016 | Δ vs 2016 | Best epoch | Epochs "
        "| Training time |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for variant, result in metrics.items():
        accuracy = result["test"]["accuracy"]
        reference = references.get(variant)
        delta = f"{100 * (accuracy - reference):+.2f} pp" if reference is not None else "–"
        lines.append(
            f"| {variant} | {result['params']:,} | {percent(accuracy)} | "
            f"{percent(reference) if reference is not None else '–'} | {delta} | "
            f"{result['validation']['best_epoch']} | {result['training']['epochs']} | "
            f"{result['training']['seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def history_csv(histories: dict[str, np.ndarray]) -> str:
    """Every variant's history in one long table with a `variant` column, for DVC plots."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("variant", *HISTORY_COLUMNS))
    for variant, history in histories.items():
        for row in history:
            writer.writerow(
                (
                    variant,
                    int(row["epoch"]),
                    *(repr(float(row[c])) for c in HISTORY_COLUMNS[1:]),
                )
            )
    return buffer.getvalue()


def readme_block(name: str) -> re.Pattern:
    """The text between `<!-- name:start -->` and `<!-- name:end -->` lines."""
    return re.compile(rf"(<!-- {name}:start -->\n)(.*?)(<!-- {name}:end -->)", re.DOTALL)


def update_readme(readme: Path, text: str, block: str = README_BLOCK) -> None:
    """Replace the marked block of the README with `text`."""
    content = readme.read_text()
    pattern = readme_block(block)
    if not pattern.search(content):
        raise StageError(
            f"{readme} has no <!-- {block}:start --> ... <!-- {block}:end --> block",
            "add the two markers where the text belongs",
        )
    write_text(readme, pattern.sub(lambda match: match[1] + text + match[3], content))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", type=Path, help="also copy the table into this README")
    args = parser.parse_args()

    params = load_params()
    variants = list(params.models)
    hint = "run `dvc repro` to evaluate every variant"
    metrics = {variant: read_json(metrics_file(variant), hint) for variant in variants}
    histories = {variant: read_history(history_file(variant)) for variant in variants}
    table = summary_table(metrics, params.report.reference_accuracy)

    write_text(SUMMARY_FILE, "# Results\n\n" + table)
    write_text(HISTORY_FILE, history_csv(histories))
    plot_validation_accuracy(histories, CHART_FILE)
    if args.readme:
        update_readme(args.readme, table)
    print(table)


if __name__ == "__main__":
    run_stage(main)
