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
  at most 12 s);
- the execution path: what DVC, Git and Dask add to a run outside its two stage processes
  (target: at most 5 s), apart from what the study adds once (the head's start and checks, the
  cluster's start, and its end with any worker idle until the last run is done), which earlier
  results counted in it, spread over their runs. The benchmark tells them apart by when each
  line came: a run's task started its total before its line.

Results go to benchmarks/results/studies.json, one per CPU (a run replaces its CPU's earlier
one only), and with --doc all of them into its `study-benchmark` block.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks.machine import cpu_kind, with_result
from stages.files import write_json
from stages.report import update_readme

RESULTS_FILE = Path("benchmarks/results/studies.json")
RECORDS_FILE = Path("benchmarks/results/study-records.json")
# A finished run's line, as tools.study.steps_line writes it: its worker, steps, total and stages.
RUN_LINE = re.compile(r"^(\S+): .* \(on (\S+): ([^;]*); ([\d.]+) s in all; the stages: ([^;)]*)")
# The issues' targets: wall time over stage time per job, seconds a run outside its epochs, and
# seconds that DVC, Git and Dask add to a run outside its two stage processes.
STAGES_TARGET = 1.1
OUTSIDE_TARGET = 12
PATH_TARGET = 5
LATE_LINE = 0.5  # seconds a task may seem to start before the line of its worker's last came
STAGE_PARTS = ("train_start_and_save", "evaluate")  # the stage processes' own, outside epochs
# Where a run's time outside its epochs goes, by part, as the table below names them.
PARTS = {
    "train_start_and_save": "train stage outside its epochs",
    "evaluate": "evaluate stage",
    "dvc_experiment": "`dvc exp run` outside the stages",
    "git_and_dvc_steps": "the task's Git, `dvc checkout` and `dvc exp push`",
    "task_start": "the task's own start",
    "dispatch": "Dask, between a worker's tasks",
    "per_study": "the study's start and end, spread over its runs",
}
# What a study costs once, however many runs it has (the last part above, in all).
STUDY_PARTS = {
    "head": "the head",  # its start and checks, to its `N runs to do`
    "cluster_start": "the cluster's start",  # to a worker's first task
    "end": "the end",  # after a worker's last task: idle until the last run, then the close
}


def seconds_by_name(text: str) -> dict[str, float]:
    """{"git": 0.1, "pull": 1.9} from `git 0.1 s, pull 1.9 s`."""
    return {name: float(seconds) for name, seconds in re.findall(r"(\w+) ([\d.]+) s", text)}


def run_lines(lines: list[tuple[float, str]]) -> dict[str, dict[str, Any]]:
    """Each finished run's worker, steps, total, stages and when its line came (seconds into
    the study), by name, from the lines the study printed and when each came."""
    runs = {}
    for arrived, line in lines:
        if found := RUN_LINE.match(line):
            name, worker, steps, total, stages = found.groups()
            runs[name] = {
                "worker": worker,
                "steps": seconds_by_name(steps),
                "total": float(total),
                "stages": seconds_by_name(stages),
                "ended": arrived,
            }
    return runs


def timeline(
    runs: list[dict[str, Any]], planned: float, wall: float, jobs: int
) -> dict[str, float]:
    """The `jobs` workers' seconds outside their tasks, in all, by part: the head's (every
    worker waits for it), the cluster's start, Dask's between two tasks of a worker, and the
    end (a worker that got no task idles from the head's plan to the end).

    A task started its total before its line came (`ended`), and `planned` is when the study's
    `N runs to do` came; the time a result takes to reach the head counts as Dask's.
    """
    parts = dict.fromkeys([*STUDY_PARTS, "dispatch"], 0.0)
    workers = {run["worker"] for run in runs}
    for worker in workers:
        tasks = sorted((r["ended"] - r["total"], r["ended"]) for r in runs if r["worker"] == worker)
        gaps = [start - end for (_, end), (start, _) in pairwise(tasks)]
        if min(gaps, default=0.0) < -LATE_LINE:
            raise SystemExit("the study's lines came late (buffered?): no timeline to tell")
        parts["head"] += planned
        parts["cluster_start"] += tasks[0][0] - planned
        parts["dispatch"] += sum(gaps)
        parts["end"] += wall - tasks[-1][1]
    idle = jobs - len(workers)
    parts["head"] += idle * planned
    parts["end"] += idle * (wall - planned)
    return parts


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
    lines = []  # (seconds into the study, line)
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as study:
        for line in study.stdout:  # shown as it comes, kept with when it came
            print(line, end="", flush=True)
            lines.append((time.perf_counter() - started, line))
    wall = time.perf_counter() - started
    if study.returncode != 0:
        raise SystemExit(f"the seed study failed (exit {study.returncode})")
    # The runs that ran: their lines come after `N runs to do` (runs read back from DVC, before).
    planned = next(arrived for arrived, line in lines if " runs to do" in line)
    runs = run_lines([(arrived, line) for arrived, line in lines if arrived > planned])
    done = [
        r
        for r in json.loads(records.read_text())
        if r["experiment"] not in before and r["name"] in runs
    ]
    if not done:
        raise SystemExit("nothing ran: every record is current; pass seeds not yet studied")
    training = sum(record["train_seconds"] for record in done)
    stages = sum(sum(runs[record["name"]]["stages"].values()) for record in done)
    overhead = (jobs * wall - training) / len(done)
    parts = [outside_the_epochs(runs[record["name"]], record["train_seconds"]) for record in done]
    per_run = {part: sum(p[part] for p in parts) / len(done) for part in parts[0]}
    outside_tasks = timeline([runs[record["name"]] for record in done], planned, wall, jobs)
    per_run["dispatch"] = outside_tasks.pop("dispatch") / len(done)
    per_run["per_study"] = overhead - sum(per_run.values())  # = outside_tasks's, spread
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
        "study_seconds_by_part": {part: round(s / jobs, 1) for part, s in outside_tasks.items()},
        "keras_start_seconds": round(keras_start_seconds(), 1),
        "cpu": cpu_kind(done[0]["environment"]),
    }


def markdown(results: dict[str, dict]) -> str:
    """The summary by CPU, the parts of the time outside the epochs, the execution path and the
    Keras start."""
    cpus = sorted(results)
    rows = "".join(
        f"| {cpu} | {r['runs']} | {r['jobs']} × {r['threads_per_run']} "
        f"| {r['training_seconds']:.0f} s | {r['wall_seconds']:.0f} s "
        f"| {r['stage_seconds'] / r['jobs']:.0f} s "
        f"| {r['wall_over_stages_per_job']:.2f} (target ≤ {STAGES_TARGET}) "
        f"| {r['overhead_seconds_per_run']:.1f} s (target ≤ {OUTSIDE_TARGET} s) |\n"
        for cpu, r in sorted(results.items())
    )
    parts = "".join(
        f"| {name} | " + " | ".join(part_cell(results[cpu], part) for cpu in cpus) + " |\n"
        for part, name in PARTS.items()
    )
    paths = "".join(
        f"| {cpu} | {path_cell(r)} | {study_cell(r)} "
        f"| {sum(r['overhead_seconds_by_part'][part] for part in STAGE_PARTS):.1f} s |\n"
        for cpu, r in sorted(results.items())
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
        + "\nThe execution path: what DVC, Git and Dask add to each run outside the two stage "
        "processes (the parts above but the first two and the last), and what the study adds "
        "once, however many runs it has (the last part, before it is spread over the runs): "
        "the head's start and checks until it prints `N runs to do`, the cluster's start until "
        "a worker's first task, and the end, after a worker's last task (idle until the last "
        "run is done, then the cluster's close); beside the stages' own time outside the "
        "epochs:\n\n"
        "| CPU | Execution path per run | Once a study | Stages outside the epochs per run |\n"
        "|--|--:|--:|--:|\n"
        + paths
        + "\nA Python that only imports TensorFlow and Keras, as each stage starts, took "
        + starts
        + " (median of 3, once the study had finished); a run starts two stages.\n"
    )


def part_cell(result: dict, part: str) -> str:
    """A part's seconds; a result from before Dask's part was told apart from the study's
    start and end has their sum in the latter (`head_and_idle`), and none in the former."""
    parts = result["overhead_seconds_by_part"]
    if part in parts:
        return f"{parts[part]:.1f}"
    if part == "per_study" and "head_and_idle" in parts:
        return f"{parts['head_and_idle']:.1f}, Dask's part with it"
    return "—"


def path_cell(result: dict) -> str:
    """The execution path per run; from a result that did not tell it apart, a bound."""
    bound = "" if "dispatch" in result["overhead_seconds_by_part"] else "at most "
    return f"{bound}{execution_path(result):.1f} s (target ≤ {PATH_TARGET} s)"


def study_cell(result: dict) -> str:
    """What a study adds once, in all and by part (STUDY_PARTS), where the result has it."""
    if "study_seconds_by_part" not in result:
        return "not measured"
    parts = result["study_seconds_by_part"]
    named = ", ".join(f"{STUDY_PARTS[part]} {seconds:.1f} s" for part, seconds in parts.items())
    return f"{sum(parts.values()):.1f} s ({named})"


def execution_path(result: dict) -> float:
    """The seconds that a run spends outside its stage processes, the study's start and end
    not counted; for a result that did not tell Dask's part apart from those, with them (a
    bound from above)."""
    parts = result["overhead_seconds_by_part"]
    once = ("per_study",) if "dispatch" in parts else ()
    return sum(seconds for part, seconds in parts.items() if part not in (*STAGE_PARTS, *once))


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
