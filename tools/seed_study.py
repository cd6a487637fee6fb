"""Seed study: every variant of params.yaml trained and evaluated over several train.seed values.

    python -m tools.seed_study [--seeds 1 2 3 4 5] [--jobs 2] [--variants cnn ...]

Run it from the project's root, after `dvc repro split`. Each run is the real train and
evaluate stage (tools/runs.py) with only train.seed changed.
It writes reports/seeds.json (one record per variant and seed, read by the report stage and
charted by `dvc plots show`) and reports/seeds_environment.json (the machine that ran it).
With --variants, only those variants run and the other variants' records are kept.
"""

import argparse
from pathlib import Path
from typing import Any

from stages.files import write_json
from stages.params import Params, load_params
from stages.paths import SEEDS_FILE
from stages.report import read_seed_records, recipe
from tools.runs import Run, execute_all

ENVIRONMENT_FILE = "seeds_environment.json"  # beside the records


def study_records(
    params: Params, results: list[dict[str, Any]], kept: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The runs' results with their recipe and 2016 figure, and the kept records of others.

    Sorted by params.yaml's variant order, then seed.
    """
    order = list(params.models)
    new = [
        {
            "variant": result["variant"],
            "seed": result["seed"],
            "test_accuracy": result["test_accuracy"],
            "val_accuracy": result["val_accuracy"],
            "best_epoch": result["best_epoch"],
            "reference": params.report.reference_accuracy.get(result["variant"]),
            "recipe": recipe(params.models[result["variant"]]),
        }
        for result in results
    ]
    records = new + [record for record in kept if record["variant"] in order]
    return sorted(records, key=lambda r: (order.index(r["variant"]), r["seed"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--output", type=Path, default=SEEDS_FILE)
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    args = parser.parse_args()

    params = load_params()
    variants = [params.model(name).name for name in args.variants or params.models]
    kept = []
    if args.variants and args.output.exists():
        kept = [r for r in read_seed_records(args.output) if r["variant"] not in variants]
    runs = [Run(variant, seed, evaluate=True) for variant in variants for seed in args.seeds]
    results: list[dict[str, Any]] = []

    def collect(run: Run, result: dict[str, Any]) -> None:
        results.append(result)
        print(f"{run.variant} seed {run.seed}: test {result['test_accuracy']:.4f}", flush=True)

    execute_all(runs, args.jobs, collect)
    write_json(args.output, study_records(params, results, kept))
    environment_file = args.output.with_name(ENVIRONMENT_FILE)
    if not args.variants or not environment_file.exists():  # kept records keep their machine
        write_json(environment_file, results[0]["environment"])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
