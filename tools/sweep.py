"""Hyperparameter sweep on validation only: each recipe of tools/sweep.yaml over several seeds.

    python -m tools.sweep [--jobs 2] [--readme docs/tuning.md]

Each run is the real train stage (tools/runs.py); the test set is never evaluated. Records go
to reports/sweep.json as they finish, and a rerun skips the runs already recorded there, so an
interrupted sweep resumes and a new recipe costs only its own runs. The table ranks recipes by
mean validation accuracy; the first of each variant (in bold) is the one params.yaml holds.
"""

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from stages.files import write_json
from stages.report import mean_std, update_readme
from tools.runs import CODE, Run, execute_all

SPACE_FILE = CODE / "tools/sweep.yaml"
RESULTS_FILE = Path("reports/sweep.json")


def planned_runs(space: dict[str, Any]) -> list[Run]:
    return [
        Run(variant, seed, overrides)
        for variant, recipes in space["variants"].items()
        for overrides in recipes.values()
        for seed in space["seeds"]
    ]


def recorded(run: Run, records: list[dict[str, Any]]) -> bool:
    return any(
        (r["variant"], r["seed"], r["overrides"]) == (run.variant, run.seed, run.overrides)
        for r in records
    )


def recipe_name(space: dict[str, Any], variant: str, overrides: dict[str, Any]) -> str:
    names = [name for name, known in space["variants"][variant].items() if known == overrides]
    return names[0]


def ranking(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per variant, each recipe's mean and std of validation accuracy, best mean first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["variant"], record["recipe"]), []).append(record)
    ranked: dict[str, list[dict[str, Any]]] = {}
    for (variant, recipe), group in groups.items():
        mean, std = mean_std([record["val_accuracy"] for record in group])
        ranked.setdefault(variant, []).append(
            {
                "recipe": recipe,
                "overrides": group[0]["overrides"],
                "seeds": len(group),
                "mean": mean,
                "std": std,
            }
        )
    for rows in ranked.values():
        rows.sort(key=lambda row: -row["mean"])
    return ranked


def sweep_table(ranked: dict[str, list[dict[str, Any]]]) -> str:
    """One row per recipe, a column per key it sets; each variant's winner in bold."""
    keys = list(dict.fromkeys(k for rows in ranked.values() for r in rows for k in r["overrides"]))
    lines = [
        f"| Variant | Recipe | {' | '.join(keys)} | Seeds | Validation accuracy |",
        f"|---|---|{'---|' * len(keys)}--:|--:|",
    ]
    for variant, rows in ranked.items():
        for rank, row in enumerate(rows):
            name = f"**{row['recipe']}**" if rank == 0 else row["recipe"]
            values = " | ".join(str(row["overrides"].get(key, "–")) for key in keys)
            lines.append(
                f"| {variant} | {name} | {values} | {row['seeds']} | "
                f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f} % |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--readme", type=Path, help="also write the table into this Markdown file")
    parser.add_argument("--space", type=Path, default=SPACE_FILE, help="the recipes to try")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()

    space = yaml.safe_load(args.space.read_text())
    records = json.loads(args.output.read_text()) if args.output.exists() else []
    todo = [run for run in planned_runs(space) if not recorded(run, records)]
    print(f"{len(todo)} runs to do, {len(records)} recorded")

    def record(run: Run, result: dict[str, Any]) -> None:
        name = recipe_name(space, run.variant, run.overrides)
        records.append(
            {
                "variant": run.variant,
                "recipe": name,
                "overrides": run.overrides,
                "seed": run.seed,
                "val_accuracy": result["val_accuracy"],
                "best_epoch": result["best_epoch"],
            }
        )
        write_json(args.output, records)
        print(f"{run.variant} {name} seed {run.seed}: {result['val_accuracy']:.4f}", flush=True)

    execute_all(todo, args.jobs, record)
    table = sweep_table(ranking(records))
    if args.readme:
        update_readme(args.readme, table, block="sweep")
    print(table)


if __name__ == "__main__":
    main()
