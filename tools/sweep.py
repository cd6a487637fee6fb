"""Hyperparameter sweep on validation only: each recipe of tools/sweep.yaml over several seeds.

    python -m tools.sweep [--jobs 2] [--readme docs/tuning.md] [--scheduler tcp://HOST:8786]

Each run is a DVC experiment named for what it is (`sweep-wide-adam-cosine-ls-s1`: `dvc exp
run -S models.wide.optimizer=adam ... train@wide`), one Dask task each, on a LocalCluster of
`--jobs` workers or with `--scheduler` on that cluster (tools/study.py); the test set is never
evaluated. Records go to reports/sweep.json as runs finish, each with the
fingerprint of the code and params it ran, so a rerun does only what is missing or stale and a
new recipe costs only its own runs. The table ranks recipes by
mean validation accuracy; the first of each variant (in bold) is the one params.yaml holds.
"""

import argparse
import re
from pathlib import Path
from typing import Any

from stages.errors import StageError, run_stage
from stages.files import parse_yaml
from stages.fingerprint import current_fingerprint, installed_libraries
from stages.params import load_params, parse_params
from stages.records import SWEEP_FIELDS, like_group, read_records
from stages.report import p_text, update_readme, welch
from stages.stats import holm, mean_std
from tools.experiments import Run
from tools.study import run_study, scheduler_address

SPACE_FILE = Path(__file__).with_name("sweep.yaml")
RESULTS_FILE = Path("reports/sweep.json")
HINT = "run `python -m tools.sweep`"
RECIPE_NAME = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")  # part of an experiment's Git ref


def planned_runs(space: dict[str, Any]) -> list[Run]:
    return [
        Run(variant, seed, recipe, overrides, study="sweep")
        for variant, recipes in space["variants"].items()
        for recipe, overrides in recipes.items()
        for seed in space["seeds"]
    ]


def check_space(space: Any, params: dict[str, Any]) -> None:
    """Distinct seeds, known variants, recipe names fit for Git refs, overrides params accept."""
    if not isinstance(space, dict) or not {"seeds", "variants"} <= set(space):
        raise StageError("the sweep space needs `seeds` and `variants`", "see tools/sweep.yaml")
    seeds = space["seeds"]
    if len(set(seeds)) != len(seeds):
        raise StageError(f"the sweep's seeds {seeds} repeat a seed", "name each seed once")
    for run in planned_runs(space):
        if run.variant not in params["models"]:
            raise StageError(
                f"the sweep names variant {run.variant!r}, not in params.yaml's models",
                f"use one of {sorted(params['models'])}",
            )
        if not RECIPE_NAME.fullmatch(run.recipe):
            raise StageError(
                f"recipe name {run.recipe!r} is not allowed: expected {RECIPE_NAME.pattern}",
                "rename it in the sweep space",
            )
        parse_params(run.params(params))


def ranking(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per variant, each recipe's validation accuracies with their mean and std, best mean
    first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["variant"], record["recipe"]), []).append(record)
    ranked: dict[str, list[dict[str, Any]]] = {}
    for (variant, recipe), group in groups.items():
        accuracies = [record["val_accuracy"] for record in group]
        mean, std = mean_std(accuracies)
        ranked.setdefault(variant, []).append(
            {
                "recipe": recipe,
                "overrides": group[0]["overrides"],
                "accuracies": accuracies,
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


def comparison_table(ranked: dict[str, list[dict[str, Any]]]) -> str:
    """Each variant's winner against each other recipe of it: Welch's test of the validation
    means, with the Holm adjustment over every comparison of the sweep (one family)."""
    pairs = [(variant, rows[0], row) for variant, rows in ranked.items() for row in rows[1:]]
    tests = [welch(winner["accuracies"], row["accuracies"]) for _, winner, row in pairs]
    adjusted = holm([p_value for _, p_value in tests])
    lines = [
        "| Variant | Winner vs recipe | Δ validation mean [95 % CI] | Welch p | Holm p |",
        "|---|---|--:|--:|--:|",
    ]
    for (variant, winner, row), (difference, p_value), holm_p in zip(
        pairs, tests, adjusted, strict=True
    ):
        lines.append(
            f"| {variant} | {winner['recipe']} vs {row['recipe']} | {difference} "
            f"| {p_text(p_value)} | {p_text(holm_p)} |"
        )
    return "\n".join(lines) + "\n"


def stale_runs(
    records: list[dict[str, Any]], runs: list[Run], params: dict[str, Any], libraries: dict
) -> list[str]:
    """The planned runs without a record made by today's code, params and `libraries`."""
    made = {record["name"]: record["fingerprint"] for record in records}
    return [
        run.name
        for run in runs
        if made.get(run.name)
        != current_fingerprint(run.variant, params, libraries, run.overrides, run.stages)
    ]


def status_line(stale: list[str], planned: int) -> str:
    """Nothing when every run is current; else how many are not, and what redoes them."""
    if not stale:
        return ""
    return (
        f"{len(stale)} of {planned} sweep runs are missing or stale (made by other code, params "
        "or libraries than today's): the tables below are of the code that made them until "
        f"`python -m tools.sweep --readme docs/tuning.md` redoes them.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--readme", type=Path, help="also write the table into this Markdown file")
    parser.add_argument("--space", type=Path, default=SPACE_FILE, help="the recipes to try")
    parser.add_argument(
        "--scheduler", help="a Dask scheduler's address: one task a run, on its workers"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument(
        "--status", action="store_true", help="only say which runs are stale (into --readme)"
    )
    args = parser.parse_args()

    load_params()
    params = parse_yaml(Path("params.yaml").read_text())
    space = parse_yaml(args.space.read_text())
    check_space(space, params)
    runs = planned_runs(space)
    if args.status:
        records = read_records(args.output, HINT, SWEEP_FIELDS)
        write_status(stale_runs(records, runs, params, installed_libraries()), runs, args.readme)
        return
    order = [run.name for run in runs]
    records = run_study(
        runs,
        args.jobs,
        args.output,
        HINT,
        lambda r: order.index(r["name"]) if r["name"] in order else len(order),
        scheduler_address(args.scheduler),
    )
    pooled, line = like_group([record for record in records if record["name"] in order])
    ranked = ranking(pooled)
    table = sweep_table(ranked) + f"\n{line}\n"
    comparisons = comparison_table(ranked)
    if args.readme:
        update_readme(args.readme, table, block="sweep")
        update_readme(args.readme, comparisons, block="sweep-tests")
        write_status([], runs, args.readme)
    print(table + "\n" + comparisons)


def write_status(stale: list[str], runs: list[Run], readme: Path | None) -> None:
    line = status_line(stale, len(runs))
    if readme:
        update_readme(readme, line, block="sweep-status")
    print(line or f"all {len(runs)} sweep runs are current")


if __name__ == "__main__":
    run_stage(main)
