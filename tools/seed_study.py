"""Seed study: every variant of params.yaml trained and evaluated over several train.seed values.

    python -m tools.seed_study [--recipe-2016] [--seeds 4 5 ...] [--jobs 2] [--variants cnn ...]
                               [--scheduler tcp://HOST:8786]

Run it from the project's root, after `dvc repro split`, on a committed tree. The seeds are
params.yaml's report.seeds unless --seeds names others; none may be a seed of the sweep or the
committed run's. Each run is a DVC experiment named for what it is (`seed-cnn-s4`: `dvc exp run
-S train.seed=4 evaluate@cnn`); with --recipe-2016 the 2016 variants train with the keys of
report.recipe_2016 set by -S (`seed-wide-2016-s4`) and go to reports/recipe_2016.json. One Dask
task each: on a LocalCluster of `--jobs` workers here, the cores shared among them, or
with `--scheduler` (or DASK_SCHEDULER_ADDRESS) on that cluster's workers (tools/study.py).
Each record goes to reports/seeds.json as its run finishes; the report stage counts only the
records whose fingerprint matches today's code, params and libraries. A rerun does only what
is missing or stale, and keeps the records of other variants and seeds.
"""

import argparse
from pathlib import Path

from stages.errors import StageError, run_stage
from stages.files import parse_yaml
from stages.params import Params, load_params
from stages.paths import RECIPE_2016_FILE, SEEDS_FILE
from stages.report import SEEDS_HINT
from tools.experiments import Run
from tools.study import run_study, scheduler_address
from tools.sweep import SPACE_FILE


def check_seeds(seeds: list[int], committed: int, swept: list[int]) -> None:
    """Distinct seeds, none of them the committed run's or the sweep's, so that the study is
    independent of the run it judges and of the selection of its recipes."""
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise StageError(f"--seeds repeats {repeated}", "name each seed once")
    if committed in seeds:
        raise StageError(
            f"--seeds includes {committed}, the committed run's train.seed",
            "the study must be independent of the committed run: pick other seeds",
        )
    chose = sorted(set(seeds) & set(swept))
    if chose:
        raise StageError(
            f"--seeds includes {chose}, seed(s) of the sweep ({SPACE_FILE.name})",
            "seeds that chose a recipe never confirm it: pick other seeds",
        )


def check_recipes(variants: list[str], recipes: dict) -> None:
    """With --recipe-2016, every variant named has a 2016 recipe: a study of none is no study."""
    missing = [variant for variant in variants if variant not in recipes]
    if missing:
        raise StageError(
            f"--recipe-2016: no 2016 recipe for {', '.join(missing)}",
            f"name variants of report.recipe_2016 ({', '.join(recipes)})",
        )


def planned_runs(
    params: Params, variants: list[str], seeds: list[int], recipe_2016: bool
) -> list[Run]:
    """Every variant over the seeds, or with --recipe-2016 those with a 2016 recipe."""
    if not recipe_2016:
        return [Run(variant, seed) for variant in variants for seed in seeds]
    recipes = params.report.recipe_2016
    return [Run(v, seed, "2016", recipes[v]) for v in variants if v in recipes for seed in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", help="default: report.seeds")
    parser.add_argument(
        "--recipe-2016", action="store_true", help="train with report.recipe_2016's keys"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument(
        "--scheduler", help="a Dask scheduler's address: one task a run, on its workers"
    )
    parser.add_argument("--output", type=Path, help=f"default: {SEEDS_FILE}, {RECIPE_2016_FILE}")
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    args = parser.parse_args()

    params = load_params()
    variants = [params.model(name).name for name in args.variants or params.models]
    seeds = args.seeds or params.report.seeds
    check_seeds(seeds, params.train.seed, parse_yaml(SPACE_FILE.read_text())["seeds"])
    if args.recipe_2016 and args.variants:
        check_recipes(variants, params.report.recipe_2016)
    output = args.output or (RECIPE_2016_FILE if args.recipe_2016 else SEEDS_FILE)
    order = list(params.models)
    run_study(
        planned_runs(params, variants, seeds, args.recipe_2016),
        args.jobs,
        output,
        SEEDS_HINT,
        lambda r: (order.index(r["variant"]) if r["variant"] in order else len(order), r["seed"]),
        scheduler_address(args.scheduler),
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    run_stage(main)
