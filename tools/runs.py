"""Run the real train (and evaluate) stage for one variant in a scratch folder.

The scratch folder holds the project's params.yaml with the overrides applied and a link to
its split, so each run is `python -m stages.train <variant>` exactly as `dvc repro` runs it.
The project is the current folder, as for the stages.
"""

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.files import read_json
from stages.paths import SPLIT_DIR, metrics_file, training_file

CODE = Path(__file__).resolve().parents[1]  # where the `stages` package is


@dataclass(frozen=True)
class Run:
    """One training run: a variant, a seed and the `models.<variant>` keys it changes."""

    variant: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    evaluate: bool = False


def scratch_params(run: Run, threads: int) -> dict[str, Any]:
    """The repo's params.yaml with the run's seed, thread count and model overrides."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"].update(seed=run.seed, threads=threads)
    params["models"][run.variant].update(run.overrides)
    return params


def stage(name: str, run: Run, folder: Path) -> None:
    command = [sys.executable, "-m", f"stages.{name}", run.variant]
    env = {**os.environ, "PYTHONPATH": str(CODE)}
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} {run} failed:\n{result.stderr[-2000:]}")


def execute(run: Run, threads: int) -> dict[str, Any]:
    """Train (and evaluate) one run; its best validation accuracy and epoch, and test accuracy."""
    with tempfile.TemporaryDirectory(prefix="mnist-run-") as scratch:
        folder = Path(scratch)
        (folder / "params.yaml").write_text(yaml.safe_dump(scratch_params(run, threads)))
        (folder / "data").mkdir()
        (folder / SPLIT_DIR).symlink_to(SPLIT_DIR.resolve(), target_is_directory=True)
        stage("train", run, folder)
        training = read_json(folder / training_file(run.variant), "train failed")
        record = {
            "variant": run.variant,
            "seed": run.seed,
            "val_accuracy": training["validation"]["best_accuracy"],
            "best_epoch": training["validation"]["best_epoch"],
            "environment": training["environment"],
        }
        if run.evaluate:
            stage("evaluate", run, folder)
            metrics = read_json(folder / metrics_file(run.variant), "evaluate failed")
            record["test_accuracy"] = metrics["test"]["accuracy"]
        return record


def execute_all(
    runs: Iterable[Run], jobs: int, on_done: Callable[[Run, dict[str, Any]], None]
) -> None:
    """Execute the runs `jobs` at a time, one TensorFlow thread each per core they share."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(execute, run, threads): run for run in runs}
        for future in as_completed(futures):
            on_done(futures[future], future.result())
