"""Benchmark a real study on a LocalCluster against the training time that it holds.

    python -m benchmarks.studies [--seeds 6 7 8] [--jobs 2] [--variants cnn ...] [--doc FILE]

It runs `python -m tools.seed_study` with these arguments in the current project and times the
whole command; the study's records go to their own file (--records), never to the seed study's
reports/seeds.json. The runs it did are those it printed after "N runs to do" (not those read
back from DVC). From them:

- the stages: the sum of the seconds of each run's stage processes (train and evaluate, as the
  line that the study prints for each run gives them), per job;
- the study's wall time against that (target: at most 1.1 times): what DVC, Git, Dask and the
  study itself add to the stages;
- training: the sum of the train stage's epoch times (`history/<variant>.json`);
- the time outside the epochs per run, (jobs x wall - training) / runs: everything but the
  epochs, from the cluster's start and the worker's clone to TensorFlow's start, evaluation,
  the experiment's commit and its push, with any idle worker at the end counted too (target:
  at most 12 s).

Results go to benchmarks/results/studies.json, one per CPU (a run replaces its CPU's earlier
one only), and with --doc all of them into its `study-benchmark` block.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stages.files import write_json
from stages.report import update_readme

RESULTS_FILE = Path("benchmarks/results/studies.json")
RECORDS_FILE = Path("benchmarks/results/study-records.json")
# A finished run's line, as tools.study.steps_line writes it: its steps, total and stages.
RUN_LINE = re.compile(
    r"^(\S+): .* \(on \S+: ([^;]*); ([\d.]+) s in all; the stages: ([^;)]*)", re.M
)
# The issues' targets: wall time over stage time per job, seconds a run outside its epochs, and
# seconds that DVC, Git, Dask and the head add to a run outside its two stage processes.
STAGES_TARGET = 1.1
OUTSIDE_TARGET = 12
PATH_TARGET = 5
STAGE_PARTS = ("train_start_and_save", "evaluate")  # the stage processes' own, outside epochs
# Where a run's time outside its epochs goes, by part, as the table below names them.
PARTS = {
    "train_start_and_save": "train stage outside its epochs",
    "evaluate": "evaluate stage",
    "dvc_experiment": "`dvc exp run` outside the stages",
    "git_and_dvc_steps": "the task's Git, `dvc checkout` and `dvc exp push`",
    "task_start": "the task's own start",
    "head_and_idle": "the head, the cluster's start and idle workers",
}


def seconds_by_name(text: str) -> dict[str, float]:
    """{"git": 0.1, "pull": 1.9} from `git 0.1 s, pull 1.9 s`."""
    return {name: float(seconds) for name, seconds in re.findall(r"(\w+) ([\d.]+) s", text)}


def run_lines(printed: str) -> dict[str, dict[str, Any]]:
    """Each finished run's steps, total and stages, by name, from the lines the study printed."""
    return {
        name: {
            "steps": seconds_by_name(steps),
            "total": float(total),
            "stages": seconds_by_name(stages),
        }
        for name, steps, total, stages in RUN_LINE.findall(printed)
    }


def outside_the_epochs(run: dict[str, Any], epochs: float) -> dict[str, float]:
    """A task's seconds outside its epochs, by part (all but the head's and idle workers')."""
    steps, stages = run["steps"], run["stages"]
    return {
        "train_start_and_save": stages["train"] - epochs,
        "evaluate": stages["evaluate"],
        "dvc_experiment": steps["run"] - sum(stages.values()),
        "git_and_dvc_steps": steps["git"] + steps["pull"] + steps["push"],
        "task_start": run["total"] - sum(steps.values()),
    }


def keras_start_seconds(tries: int = 3) -> float:
    """The median wall time of a Python that imports what each stage starts with: TensorFlow
    and Keras (through stages.tf_quiet, as the stages do), and nothing else."""
    command = [sys.executable, "-c", "import stages.tf_quiet, keras"]
    seconds = []
    for _ in range(tries):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return sorted(seconds)[tries // 2]


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
    runs = run_lines(ran)
    stages = sum(sum(runs[record["name"]]["stages"].values()) for record in done)
    overhead = (jobs * wall - training) / len(done)
    parts = [outside_the_epochs(runs[record["name"]], record["train_seconds"]) for record in done]
    per_run = {part: sum(p[part] for p in parts) / len(done) for part in parts[0]}
    per_run["head_and_idle"] = overhead - sum(per_run.values())
    return {
        "runs": len(done),
        "jobs": jobs,
        "threads_per_run": done[0]["threads"],
        "variants": sorted({record["variant"] for record in done}),
        "wall_seconds": round(wall, 1),
        "stage_seconds": round(stages, 1),
        "wall_over_stages_per_job": round(wall / (stages / jobs), 3),
        "training_seconds": round(training, 1),
        "overhead_seconds_per_run": round(overhead, 1),
        "overhead_seconds_by_part": {part: round(seconds, 1) for part, seconds in per_run.items()},
        "keras_start_seconds": round(keras_start_seconds(), 1),
        "cpu": done[0]["environment"]["cpu"],
    }


def markdown(results: dict[str, dict]) -> str:
    """The summary by CPU, the parts of the time outside the epochs and the Keras start."""
    cpus = sorted(results)
    paths = "".join(
        f"| {cpu} | {execution_path(r):.1f} s (target ≤ {PATH_TARGET} s) "
        f"| {sum(r['overhead_seconds_by_part'][part] for part in STAGE_PARTS):.1f} s |\n"
        for cpu, r in sorted(results.items())
    )
    rows = "".join(
        f"| {cpu} | {r['runs']} | {r['jobs']} × {r['threads_per_run']} "
        f"| {r['training_seconds']:.0f} s | {r['wall_seconds']:.0f} s "
        f"| {r['stage_seconds'] / r['jobs']:.0f} s "
        f"| {r['wall_over_stages_per_job']:.2f} (target ≤ {STAGES_TARGET}) "
        f"| {r['overhead_seconds_per_run']:.1f} s (target ≤ {OUTSIDE_TARGET} s) |\n"
        for cpu, r in sorted(results.items())
    )
    parts = "".join(
        f"| {name} | "
        + " | ".join(f"{results[cpu]['overhead_seconds_by_part'][part]:.1f}" for cpu in cpus)
        + " |\n"
        for part, name in PARTS.items()
    )
    starts = ", ".join(f"{results[cpu]['keras_start_seconds']:.1f} s on {cpu}" for cpu in cpus)
    return (
        "| CPU | Runs | Jobs × threads | Epochs, all runs | Wall time | Stages / jobs "
        "| Wall / (stages / jobs) | Outside the epochs per run |\n"
        "|--|--:|--:|--:|--:|--:|--:|--:|\n"
        + rows
        + "\nWhere a run's time outside its epochs went, in seconds (mean over the runs):\n\n"
        + f"| Part | {' | '.join(cpus)} |\n|--|{'--:|' * len(cpus)}\n"
        + parts
        + "\nThe execution path per run: what DVC, Git, Dask and the head add outside the two "
        "stage processes (the parts above but the first two), beside the stages' own time "
        "outside the epochs:\n\n"
        "| CPU | Execution path per run | Stages outside the epochs per run |\n|--|--:|--:|\n"
        + paths
        + "\nA Python that only imports TensorFlow and Keras, as each stage starts, took "
        + starts
        + " (median of 3, once the study had finished); a run starts two stages.\n"
    )


def execution_path(result: dict) -> float:
    """The seconds per run outside the stage processes: the parts but the stages' own."""
    parts = result["overhead_seconds_by_part"]
    return sum(seconds for part, seconds in parts.items() if part not in STAGE_PARTS)


def with_result(path: Path, result: dict) -> dict[str, dict]:
    """The results in `path`, one per CPU, with `result` in place of its CPU's earlier one."""
    results = json.loads(path.read_text()) if path.exists() else {}
    return {**results, result["cpu"]: result}


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
    result = measure(["--seeds", *args.seeds, *variants], args.jobs, args.records)
    results = with_result(args.output, result)
    write_json(args.output, results)
    text = markdown(results)
    if args.doc:
        update_readme(args.doc, text, block="study-benchmark")
    print(text)


if __name__ == "__main__":
    main()
