"""Benchmark a study on two Dask workers against the same study on a LocalCluster (--jobs 2).

    python -m benchmarks.cluster [--seeds 1 2] [--variants small wide_dropout wide] [--doc FILE]

Both run the real seed-study runs (full params) of this commit, one after the other, each from
its own fresh clone, with a Git remote (a bare repository) and a DVC remote (a folder) in a
temporary directory: the set-up of docs/scaling.md on one machine. The cluster is a
`dask scheduler` and two `dask worker --nthreads 1`, against a `LocalCluster` of `--jobs 2`
(one thread each), whose clones share the head's DVC cache instead of the remotes.

- wall time of each study, and the cluster's over the local one's (target: at most 1.1);
- overhead per run, (2 x wall - training) / runs, training being the runs' `train_seconds`;
- each Dask task's seconds outside its training, by step, from the line that the study prints
  for each task: the first task on a worker clones the project, the later ones reuse the
  clone (target: at most 15 s).

Commit first: the workers run the commit. Results go to benchmarks/results/cluster.json, and
with --doc into its `cluster-benchmark` block. With --scaling, the projected wall time of the
whole seed study and sweep on 2, 8 and 32 workers goes into that file's `cluster-projection`
block: each run's committed training time (reports/seeds.json, reports/sweep.json) plus the
measured overheads, longest run first onto the least busy worker, as Dask's priorities give.
"""

import argparse
import contextlib
import heapq
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from distributed import Client

from stages.files import write_json
from stages.report import update_readme
from tools.experiments import venv_env

RESULTS_FILE = Path("benchmarks/results/cluster.json")
WORKERS = 2
STUDIES = {"seed study": Path("reports/seeds.json"), "sweep": Path("reports/sweep.json")}
PROJECTED_WORKERS = (2, 8, 32)


def call(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def set_up(folder: Path, env: dict[str, str]) -> Path:
    """A bare `origin` of this commit, and a DVC remote holding the split; returns `origin`."""
    origin = folder / "origin.git"
    call(["git", "clone", "--quiet", "--bare", str(Path.cwd()), str(origin)], folder, env)
    dvc = [sys.executable, "-m", "dvc"]
    call([*dvc, "remote", "add", "--global", "-d", "storage", str(folder / "storage")], folder, env)
    call([*dvc, "push", "--quiet", "fetch", "split"], Path.cwd(), env)
    return origin


def fresh_clone(origin: Path, folder: Path, env: dict[str, str]) -> Path:
    call(["git", "clone", "--quiet", str(origin), str(folder)], origin.parent, env)
    call([sys.executable, "-m", "dvc", "pull", "--quiet", "fetch", "split"], folder, env)
    return folder


def timed_study(head: Path, arguments: list[str], env: dict[str, str]) -> tuple[float, list, str]:
    """Run the seed study from `head`; its wall time, its records and what it printed, each
    line after the second at which it came."""
    output = head.parent / f"{head.name}.json"
    command = [sys.executable, "-m", "tools.seed_study", *arguments, "--output", str(output)]
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(command, cwd=head, env=env, stdout=subprocess.PIPE, text=True) as study:
        for line in study.stdout:
            lines.append(f"{time.perf_counter() - started:.1f} {line}")
            print(lines[-1], end="", flush=True)
    if study.returncode != 0:
        raise SystemExit(f"the study failed (exit {study.returncode})")
    return time.perf_counter() - started, json.loads(output.read_text()), "".join(lines)


@contextlib.contextmanager
def dask_cluster(folder: Path, env: dict[str, str]) -> Iterator[Client]:
    """A scheduler and two one-thread workers on 127.0.0.1, as docs/scaling.md starts them."""
    scheduler_file = str(folder / "scheduler.json")
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"cwd": folder, "env": env, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([dask, "scheduler", "--scheduler-file", scheduler_file], **quiet)]
    try:
        while not Path(scheduler_file).exists():
            time.sleep(0.2)
        processes += [
            subprocess.Popen(
                [dask, "worker", "--scheduler-file", scheduler_file, "--nthreads", "1"], **quiet
            )
            for _ in range(WORKERS)
        ]
        with Client(scheduler_file=scheduler_file) as client:
            client.wait_for_workers(WORKERS)
            yield client
    finally:
        for process in processes:
            process.terminate()
            process.wait()


STEP_LINE = re.compile(
    r"^([\d.]+) (\S+): .* \(on (\S+): git ([\d.]+) s, pull ([\d.]+) s, "
    r"run ([\d.]+) s, push ([\d.]+) s; ([\d.]+) s in all[^)]*\)",
    re.M,
)


def task_overheads(printed: str, records: list[dict]) -> dict[str, dict[str, float]]:
    """Each task's seconds outside its training, by step, as the study printed them: mean of
    the first task on each worker (which clones) and of the later ones (the clone reused).

    `waited` is the time the worker spent outside the task before it: from the study's start
    for its first task, from its previous task's end for the others.
    """
    training = {record["name"]: record["train_seconds"] for record in records}
    first: list[dict[str, float]] = []
    later: list[dict[str, float]] = []
    ended: dict[str, float] = {}
    for came, name, worker, git, pull, run, push, total in STEP_LINE.findall(printed):
        steps = {"git": float(git), "pull": float(pull), "push": float(push)}
        steps["experiment"] = float(run) - training[name]  # dvc exp run but the epochs
        steps["task"] = float(total) - training[name]
        steps["waited"] = float(came) - float(total) - ended.get(worker, 0.0)
        (later if worker in ended else first).append(steps)
        ended[worker] = float(came)
    return {"first_on_worker": mean_steps(first), "clone_reused": mean_steps(later)}


def mean_steps(tasks: list[dict[str, float]]) -> dict[str, float]:
    return {step: round(sum(t[step] for t in tasks) / len(tasks), 1) for step in tasks[0]}


def summary(wall: float, records: list[dict]) -> dict:
    training = sum(record["train_seconds"] for record in records)
    return {
        "wall_seconds": round(wall, 1),
        "training_seconds": round(training, 1),
        "overhead_seconds_per_run": round((WORKERS * wall - training) / len(records), 1),
    }


def measure(seeds: list[str], variants: list[str]) -> dict:
    arguments = ["--seeds", *seeds, "--variants", *variants]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        env = {**venv_env(), "DVC_GLOBAL_CONFIG_DIR": str(folder / "dvc-config")}
        origin = set_up(folder, env)
        local_wall, local_records, _ = timed_study(
            fresh_clone(origin, folder / "local", env), [*arguments, "--jobs", "2"], env
        )
        head = fresh_clone(origin, folder / "cluster", env)
        with dask_cluster(folder, env) as client:
            address = ["--scheduler", client.scheduler.address]
            cluster_wall, on_cluster, printed = timed_study(head, [*arguments, *address], env)
    overheads = task_overheads(printed, on_cluster)
    return {
        "runs": len(local_records),
        "variants": variants,
        "seeds": seeds,
        "local_jobs_2": summary(local_wall, local_records),
        "dask_workers_2": {**summary(cluster_wall, on_cluster), "task_overhead_seconds": overheads},
        "cluster_over_local": round(cluster_wall / local_wall, 3),
        "cpu": local_records[0]["environment"]["cpu"],
    }


def markdown(results: dict) -> str:
    local, cluster = results["local_jobs_2"], results["dask_workers_2"]
    tasks = cluster["task_overhead_seconds"]
    steps = ("waited", "git", "pull", "experiment", "push", "task")
    rows = "".join(
        f"| {label} | " + " | ".join(f"{tasks[key][step]:.1f} s" for step in steps) + " |\n"
        for label, key in (("first on a worker (clones)", "first_on_worker"),
                           ("later (clone reused)", "clone_reused"))
    )  # fmt: skip
    return (
        "| Runs on 2 cores | Wall time | Training | Overhead per run |\n|--|--:|--:|--:|\n"
        f"| a LocalCluster, `--jobs 2` | {local['wall_seconds']:.0f} s "
        f"| {local['training_seconds']:.0f} s | {local['overhead_seconds_per_run']:.1f} s |\n"
        f"| 2 Dask workers, `--nthreads 1` | {cluster['wall_seconds']:.0f} s "
        f"| {cluster['training_seconds']:.0f} s | {cluster['overhead_seconds_per_run']:.1f} s |\n"
        f"\n{results['runs']} runs ({', '.join(results['variants'])}; seeds "
        f"{', '.join(results['seeds'])}) on {results['cpu']}: the cluster took "
        f"{results['cluster_over_local']:.2f}× the LocalCluster's wall time (target ≤ 1.1). "
        "A Dask task's seconds outside its training, by step (mean over tasks; `experiment` is "
        "`dvc exp run` less the epochs, as the local runs have it too; target for a task once "
        "its worker's clone exists: ≤ 15 s):\n\n"
        "| Task | waited before | git fetch, checkout | dvc pull | experiment | dvc exp push "
        "| whole task |\n|--|--:|--:|--:|--:|--:|--:|\n" + rows
    )


def projected_wall(runs: list[float], workers: int, first: float, later: float) -> float:
    """Wall time of `runs` (training seconds) on `workers`, longest first to the least busy."""
    busy = [0.0] * workers
    for seconds in sorted(runs, reverse=True):
        load = heapq.heappop(busy)
        heapq.heappush(busy, load + seconds + (first if load == 0 else later))
    return max(busy)


def projection(results: dict) -> str:
    overheads = results["dask_workers_2"]["task_overhead_seconds"]
    first, later = overheads["first_on_worker"]["task"], overheads["clone_reused"]["task"]
    header = " | ".join(f"{n} workers" for n in PROJECTED_WORKERS)
    align = "--:|" * len(PROJECTED_WORKERS)
    rows = [f"| Study | Runs | Training | {header} |", f"|--|--:|--:|{align}"]
    for study, path in STUDIES.items():
        runs = [record["train_seconds"] for record in json.loads(path.read_text())]
        walls = [projected_wall(runs, n, first, later) / 60 for n in PROJECTED_WORKERS]
        cells = " | ".join(f"{minutes:.0f} min" for minutes in walls)
        rows.append(f"| {study} | {len(runs)} | {sum(runs) / 60:.0f} min | {cells} |")
    return "\n".join(rows) + (
        f"\n\nEach run: its training time in the committed records plus {later:.1f} s of "
        f"overhead, and {first:.1f} s for a worker's first task (measured above).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", default=["1", "2"])
    parser.add_argument("--variants", nargs="+", default=["small", "wide_dropout", "wide"])
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file")
    parser.add_argument("--scaling", type=Path, help="and the projection into this one")
    args = parser.parse_args()

    results = measure(args.seeds, args.variants)
    write_json(args.output, results)
    text = markdown(results)
    if args.doc:
        update_readme(args.doc, text, block="cluster-benchmark")
    projected = projection(results)
    if args.scaling:
        update_readme(args.scaling, projected, block="cluster-projection")
    print(text, projected, sep="\n")


if __name__ == "__main__":
    main()
