"""Benchmark a real study on a LocalCluster against the training time that it holds.

    python -m benchmarks.studies [--seeds 6 7 8] [--jobs 2] [--variants cnn ...] [--doc FILE]

It runs `python -m tools.seed_study` with these arguments in the current project and times the
whole command; the study's records go to their own file (--records), never to the seed study's
reports/seeds.json. The runs it did are those it printed after "N runs to do" (not those read
back from DVC). From them:

- training: the sum of the train stage's epoch times (`history/<variant>.json`), per job;
- the study's wall time against that (target: at most 1.1 times);
- the overhead per run, (jobs x wall - training) / runs: everything but the epochs, from the
  cluster's start and the worker's clone to TensorFlow's start, evaluation, the experiment's
  commit and its push, with any idle worker at the end counted too (target: at most 12 s).

Results go to benchmarks/results/studies.json, and with --doc into its `study-benchmark` block.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from stages.files import write_json
from stages.report import update_readme

RESULTS_FILE = Path("benchmarks/results/studies.json")
RECORDS_FILE = Path("benchmarks/results/study-records.json")


def experiments(path: Path) -> set[str]:
    records = json.loads(path.read_text()) if path.exists() else []
    return {record["experiment"] for record in records}


def measure(arguments: list[str], jobs: int, records: Path) -> dict:
    """Run the seed study with `arguments`; its wall time, and the training time of its runs."""
    before = experiments(records)
    command = [sys.executable, "-m", "tools.seed_study", *arguments, "--jobs", str(jobs)]
    command += ["--output", str(records)]
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as study:
        for line in study.stdout:  # shown as it comes, kept to see which runs ran
            print(line, end="", flush=True)
            lines.append(line)
    wall = time.perf_counter() - started
    if study.returncode != 0:
        raise SystemExit(f"the seed study failed (exit {study.returncode})")
    ran = "".join(lines).split(" runs to do")[-1]  # runs read back from DVC are printed before
    done = [
        r
        for r in json.loads(records.read_text())
        if r["experiment"] not in before and f"\n{r['name']}: " in ran
    ]
    if not done:
        raise SystemExit("nothing ran: every record is current; pass seeds not yet studied")
    training = sum(record["train_seconds"] for record in done)
    return {
        "runs": len(done),
        "jobs": jobs,
        "threads_per_run": done[0]["threads"],
        "variants": sorted({record["variant"] for record in done}),
        "wall_seconds": round(wall, 1),
        "training_seconds": round(training, 1),
        "wall_over_training_per_job": round(wall / (training / jobs), 3),
        "overhead_seconds_per_run": round((jobs * wall - training) / len(done), 1),
        "cpu": done[0]["environment"]["cpu"],
    }


def markdown(results: dict) -> str:
    per_job = results["training_seconds"] / results["jobs"]
    return (
        "| Runs | Jobs × threads | Wall time | Training / jobs | Wall / (training / jobs) "
        "| Overhead per run |\n|--:|--:|--:|--:|--:|--:|\n"
        f"| {results['runs']} | {results['jobs']} × {results['threads_per_run']} "
        f"| {results['wall_seconds']:.0f} s | {per_job:.0f} s "
        f"| {results['wall_over_training_per_job']:.2f} (target ≤ 1.1) "
        f"| {results['overhead_seconds_per_run']:.1f} s (target ≤ 12 s) |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", default=["6", "7", "8", "9", "10"])
    parser.add_argument("--variants", nargs="+", default=[])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--records", type=Path, default=RECORDS_FILE, help="the study's records")
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file")
    args = parser.parse_args()

    variants = ["--variants", *args.variants] if args.variants else []
    results = measure(["--seeds", *args.seeds, *variants], args.jobs, args.records)
    write_json(args.output, results)
    text = markdown(results)
    if args.doc:
        update_readme(args.doc, text, block="study-benchmark")
    print(text)


if __name__ == "__main__":
    main()
