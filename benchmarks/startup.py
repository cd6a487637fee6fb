"""Benchmark: each stage's time outside its epochs against a bare `import keras`, on this CPU.

    python -m benchmarks.startup [--variants small ...] [--tries 3] [--doc FILE]

A study run starts TensorFlow twice, in `python -m stages.train` and `python -m
stages.evaluate`. This times, in fresh processes and a scratch folder (the project's outputs
are never touched), with the split read from the project's data/ (run it from the project's
root, after `dvc repro split`):

- `python -c "import keras"` (after stages.tf_quiet, as the stages import it);
- `python -m stages.train VARIANT` for one epoch, less that epoch (its history's seconds): the
  stage's start, its model's build and save, and its exit;
- `python -m stages.evaluate VARIANT` on that model, all of it.

The medians of `--tries` rounds, each of the three in turn. Results go to
benchmarks/results/startup.json, one per CPU, and with --doc into its `startup-benchmark` block.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_kind, machine, with_result
from benchmarks.train_speed import positive_int
from stages.files import parse_yaml, write_json
from stages.params import load_params
from stages.paths import training_file
from stages.report import update_readme

RESULTS_FILE = Path("benchmarks/results/startup.json")
TARGET = 1.3  # a stage's start-up over a bare `import keras`, at most
CODE = Path(__file__).resolve().parents[1]  # the stages' code, which the scratch folder lacks
BARE = [sys.executable, "-c", "import stages.tf_quiet, keras"]


def scratch_project(folder: Path, variants: list[str]) -> None:
    """params.yaml with one epoch for `variants`, and this project's split, in `folder`."""
    params = parse_yaml(Path("params.yaml").read_text())
    for variant in variants:
        params["models"][variant]["epochs"] = 1
    (folder / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    (folder / "data").symlink_to(Path("data").resolve())


def timed(command: list[str], folder: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(CODE)}
    started = time.perf_counter()
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def measure(variants: list[str], tries: int) -> dict:
    """Median seconds of the bare import and, per variant, of each stage outside its epochs."""
    seconds: dict[str, list[float]] = {"import keras": []}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        scratch_project(folder, variants)
        for _ in range(tries):
            seconds["import keras"].append(timed(BARE, folder))
            for variant in variants:
                train = timed([sys.executable, "-m", "stages.train", variant], folder)
                epochs = json.loads((folder / training_file(variant)).read_text())["timing"]
                seconds.setdefault(f"train {variant}", []).append(train - epochs["seconds"])
                evaluate = timed([sys.executable, "-m", "stages.evaluate", variant], folder)
                seconds.setdefault(f"evaluate {variant}", []).append(evaluate)
    return {name: round(statistics.median(values), 2) for name, values in seconds.items()}


def markdown(results: dict[str, dict]) -> str:
    """One row per CPU and stage: seconds outside the epochs and their ratio to the bare import."""
    lines = [
        "| CPU | Stage | Seconds outside its epochs | Over a bare `import keras` |",
        "|--|--|--:|--:|",
    ]
    for cpu, result in sorted(results.items()):
        bare = result["seconds"]["import keras"]
        lines.append(f"| {cpu} | `import keras` alone | {bare:.2f} | 1.00 |")
        for stage, seconds in result["seconds"].items():
            if stage != "import keras":
                lines.append(
                    f"| {cpu} | {stage} | {seconds:.2f} | {seconds / bare:.2f} "
                    f"(target ≤ {TARGET}) |"
                )
    where = "; ".join(
        f"{cpu}: {r['machine']['cores']} cores, "
        f"{r['machine']['date']}, commit {r['machine']['commit']}, median of {r['tries']}"
        for cpu, r in sorted(results.items())
    )
    return "\n".join(lines) + f"\n\n{where}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    parser.add_argument("--tries", type=positive_int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file")
    args = parser.parse_args()

    variants = args.variants or list(load_params().models)
    where = machine()
    seconds = measure(variants, args.tries)
    result = {"cpu": cpu_kind(where), "machine": where, "tries": args.tries, "seconds": seconds}
    results = with_result(args.output, result)
    write_json(args.output, results)
    text = markdown(results)
    if args.doc:
        update_readme(args.doc, text, block="startup-benchmark")
    print(text)


if __name__ == "__main__":
    main()
