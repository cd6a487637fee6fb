"""Seed study: every variant of params.yaml trained and evaluated over several train.seed values.

    python -m tools.seed_study [--seeds 1 2 3 4 5] [--jobs 2] [--variants cnn ...]
                               [--scheduler tcp://HOST:8786]

Run it from the project's root, after `dvc repro split`, on a committed tree. Each run is a DVC
experiment named for what it is (`seed-cnn-s3`: `dvc exp run -S train.seed=3 evaluate@cnn`),
one Dask task each: on a LocalCluster of `--jobs` workers here, the cores shared among them, or
with `--scheduler` (or DASK_SCHEDULER_ADDRESS) on that cluster's workers (tools/cluster.py).
Each record goes to reports/seeds.json as its run finishes; the report stage counts only the
records whose fingerprint matches today's code, params and libraries. A rerun does only what
is missing or stale, and keeps the records of other variants and seeds.
"""

import argparse
from pathlib import Path

from stages.errors import StageError, run_stage
from stages.params import load_params
from stages.paths import SEEDS_FILE
from stages.report import SEEDS_HINT
from tools.cluster import scheduler_address
from tools.experiments import Run
from tools.study import run_study


def check_seeds(seeds: list[int], committed: int) -> None:
    """Distinct seeds, none of them the committed run's, so the study is independent of it."""
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise StageError(f"--seeds repeats {repeated}", "name each seed once")
    if committed in seeds:
        raise StageError(
            f"--seeds includes {committed}, the committed run's train.seed",
            "the study must be independent of the committed run: pick other seeds",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument(
        "--scheduler", help="a Dask scheduler's address: one task a run, on its workers"
    )
    parser.add_argument("--output", type=Path, default=SEEDS_FILE)
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    args = parser.parse_args()

    params = load_params()
    variants = [params.model(name).name for name in args.variants or params.models]
    check_seeds(args.seeds, params.train.seed)
    order = list(params.models)
    run_study(
        [Run(variant, seed) for variant in variants for seed in args.seeds],
        args.jobs,
        args.output,
        SEEDS_HINT,
        lambda r: (order.index(r["variant"]) if r["variant"] in order else len(order), r["seed"]),
        scheduler_address(args.scheduler),
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    run_stage(main)
