"""Benchmark: the whole pipeline's wall time and each stage's peak memory, in a fresh copy.

    python -m benchmarks.pipeline [--readme README.md]

It copies the project into a temporary folder, runs `dvc repro --single-item <stage>` for
every stage in order (fetch downloads MNIST; the others start from scratch), timing each and
reading its peak resident memory from the kernel (`os.wait4`: the larger of DVC and the stage
process), then times a no-op `dvc repro` three times. Results go to benchmarks/results/.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import machine, measured_on
from stages.files import write_json
from stages.report import update_readme

RESULTS_FILE = Path("benchmarks/results/pipeline.json")
PROJECT_FILES = (
    "dvc.yaml",
    "params.yaml",
    "requirements",
    "stages",
    "tools",
    ".dvc/config",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
    "reports/seeds.json",
    "reports/recipe_2016.json",
)


def timed(command: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak resident MB of a command and the children it waited for."""
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{log.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss // 1024


def copy_project(source: Path, destination: Path) -> Path:
    """Copy the pipeline's source (no outputs) from `source` into `destination`, a new git repo."""
    for name in PROJECT_FILES:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (source / name).is_dir():
            shutil.copytree(source / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source / name, target)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


def run_pipeline(project: Path) -> dict:
    dvc = str(Path(sys.executable).parent / "dvc")
    listing = subprocess.run(
        [dvc, "stage", "list", "--name-only"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    stages = []
    for name in listing.stdout.split():
        seconds, peak_mb = timed([dvc, "repro", "--single-item", name], project)
        stages.append({"stage": name, "seconds": round(seconds, 1), "peak_mb": peak_mb})
        print(f"{name}: {seconds:.1f} s, {peak_mb} MB", flush=True)
    no_op = [timed([dvc, "repro"], project)[0] for _ in range(3)]
    by_name = {stage["stage"]: stage["seconds"] for stage in stages}
    return {
        "stages": stages,
        "full_repro_seconds": round(sum(by_name.values()), 1),
        "full_repro_without_fetch_seconds": round(sum(by_name.values()) - by_name["fetch"], 1),
        "fetch_and_split_seconds": round(by_name["fetch"] + by_name["split"], 1),
        "no_op_repro_seconds": round(statistics.median(no_op), 2),
        "peak_mb": max(stage["peak_mb"] for stage in stages),
    }


def markdown(results: dict) -> str:
    lines = ["| Stage | Wall time | Peak memory |", "|---|--:|--:|"]
    lines += [
        f"| {s['stage']} | {s['seconds']:.1f} s | {s['peak_mb']} MB |" for s in results["stages"]
    ]
    lines += [
        "",
        f"Whole pipeline from scratch: {results['full_repro_seconds']:.0f} s "
        f"({results['full_repro_without_fetch_seconds']:.0f} s after the download); "
        f"fetch + split: {results['fetch_and_split_seconds']:.1f} s (download included); "
        f"no-op `dvc repro`: {results['no_op_repro_seconds']:.2f} s; "
        f"largest peak memory: {results['peak_mb']} MB. {measured_on(results['machine'])}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--readme", type=Path, help="also write the table into this README")
    args = parser.parse_args()

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    where = machine()
    with tempfile.TemporaryDirectory() as folder:
        results = {"machine": where} | run_pipeline(copy_project(Path.cwd(), Path(folder)))
    write_json(args.output, results)
    text = markdown(results)
    if args.readme:
        update_readme(args.readme, text, block="pipeline-benchmark")
    print(text)


if __name__ == "__main__":
    main()
