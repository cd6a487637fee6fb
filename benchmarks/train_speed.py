"""Benchmark: training speed of the project's code path against plain Keras and plain PyTorch.

    python -m benchmarks.train_speed [--quick] [--rounds N] [--variants small wide ...] [--no-torch]
                                     [--readme README.md] [--doc docs/performance.md]

For each variant, on the real split, it times epochs after a warm-up epoch of
(a) `stages.training.fit_variant`, exactly as the train stage runs it,
(b) the same model compiled with Keras defaults and fitted with `model.fit(x, y, batch_size,
epochs, validation_data)`, as the 2016 scripts did, and
(c) the same recipe in a plain PyTorch loop (benchmarks/torch_loop.py): the `bench` extra, in
its own venv (`make bench`); `--no-torch` leaves it out.
Each measurement runs in a fresh process, in rounds that rotate which path goes first, so
that the machine's drift falls on all alike; the medians pool every round. The table also
gives the project's achieved GFLOP/s (the FLOPs a training step computes per sample,
benchmarks/flops.py, over the training part of the epoch, validation left out) against a
ceiling measured in the same run: numpy float32 matrix multiply on large matrices. Results go
to benchmarks/results/: the latest to train_speed.json, and every full run (not --quick) to
train_speed_history.json, one per CPU kind and commit, so that old and new code sit side by
side per CPU kind.
"""

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_kind, machine, measured_on
from stages.files import write_json
from stages.params import load_params
from stages.report import update_readme

RESULTS_FILE = Path("benchmarks/results/train_speed.json")
PATHS = ("project", "baseline", "torch")
TORCH_TARGET = 0.77  # the project's epoch over the PyTorch peer's, on every CPU kind


def matmul_ceiling(size: int, repeats: int) -> float:
    """Best GFLOP/s of a float32 size x size matrix multiply with numpy."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def measure(variant: str, path: str, timed_epochs: int, limit: int | None) -> dict:
    """Seconds of each timed epoch and of its training alone (the warm-up epoch dropped)."""
    from stages.dataset import load_split

    params = load_params()
    if params.train.strategy != "default":
        raise SystemExit("train_speed compares one-device training: set train.strategy: default")
    model_params = params.model(variant).model_copy(update={"epochs": 1 + timed_epochs})
    x_train, y_train = load_split("train")
    validation = load_split("validation")
    train = (x_train[:limit], y_train[:limit])
    if path == "torch":
        from benchmarks.torch_loop import epoch_seconds

        seconds = epoch_seconds(model_params, params.train, train, validation)
        return {key: values[1:] for key, values in seconds.items()} | {"samples": len(train[1])}

    from benchmarks.flops import training_flops_per_image
    from benchmarks.training_timer import TrainingTimer
    from stages.environment import environment
    from stages.models import OPTIMIZERS, build_model, scale
    from stages.training import EpochTimer, fit_variant

    with tempfile.TemporaryDirectory() as folder:
        if path == "project":
            history = fit_variant(
                model_params,
                params.train,
                train,
                validation,
                Path(folder, "model.keras"),
                Path(folder, "history.csv"),
                0,
                extra_callbacks=[TrainingTimer()],
            )
            model = history.model
        else:
            model = build_model(model_params)
            model.compile(
                optimizer=OPTIMIZERS[model_params.optimizer](),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            history = model.fit(
                scale(train[0]),
                train[1],
                batch_size=model_params.batch_size,
                epochs=model_params.epochs,
                validation_data=(scale(validation[0]), validation[1]),
                callbacks=[EpochTimer(), TrainingTimer()],
                verbose=0,
            )
    return {
        "seconds": history.history["seconds"][1:],
        "train_seconds": history.history["train_seconds"][1:],
        "samples": len(train[1]),
        "training_flops": training_flops_per_image(model),
        "onednn": environment(0)["onednn"],
    }


def measure_in_subprocess(
    variant: str, path: str, timed_epochs: int, limit: int | None, env: dict | None = None
) -> dict:
    """`measure` in a fresh process, with `env` as its environment when given."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.train_speed",
        "--measure",
        variant,
        path,
        "--timed-epochs",
        str(timed_epochs),
    ]
    if limit:
        command += ["--limit", str(limit)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise SystemExit(f"measurement {variant}/{path} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_rounds(
    variant: str, paths: tuple[str, ...], rounds: int, timed_epochs: int, limit: int | None
) -> dict:
    """Epoch seconds of each path, pooled over rounds that rotate which path runs first."""
    pooled: dict[str, dict] = {}
    for round_index in range(rounds):
        shift = round_index % len(paths)
        for path in paths[shift:] + paths[:shift]:
            result = measure_in_subprocess(variant, path, timed_epochs, limit)
            if path in pooled:
                for key in ("seconds", "train_seconds"):
                    pooled[path][key] += result[key]
            else:
                pooled[path] = result
    return pooled


def row(variant: str, pooled: dict[str, dict], ceiling: float) -> dict:
    """Medians of each path; throughput and GFLOP/s over the project's training time alone."""
    medians = {
        path: {key: statistics.median(values[key]) for key in ("seconds", "train_seconds")}
        for path, values in pooled.items()
    }
    project = pooled["project"]
    seconds, train_seconds = medians["project"]["seconds"], medians["project"]["train_seconds"]
    samples_per_second = project["samples"] / train_seconds
    gflops = samples_per_second * project["training_flops"] / 1e9
    measured = {
        "variant": variant,
        "epochs_timed": len(project["seconds"]),
        "seconds_per_epoch": round(seconds, 3),
        "train_seconds_per_epoch": round(train_seconds, 3),
        "baseline_seconds_per_epoch": round(medians["baseline"]["seconds"], 3),
        "ratio": round(seconds / medians["baseline"]["seconds"], 3),
        "samples_per_second": round(samples_per_second),
        "gflops": round(gflops, 1),
        "ceiling_fraction": round(gflops / ceiling, 3),
    }
    if "torch" not in medians:
        return measured
    return measured | {
        "torch_seconds_per_epoch": round(medians["torch"]["seconds"], 3),
        "torch_train_seconds_per_epoch": round(medians["torch"]["train_seconds"], 3),
        "torch_ratio": round(seconds / medians["torch"]["seconds"], 3),
    }


def restate(report: dict, training_flops: dict[str, int]) -> dict:
    """A report with GFLOP/s and the ceiling fraction counted anew from its measured samples/s,
    for a new FLOPs count; the timings stay as they were measured."""
    ceiling = report["matmul_ceiling_gflops"]
    rows = []
    for r in report["rows"]:
        gflops = r["samples_per_second"] * training_flops[r["variant"]] / 1e9
        rows.append(
            r | {"gflops": round(gflops, 1), "ceiling_fraction": round(gflops / ceiling, 3)}
        )
    return report | {"rows": rows}


def torch_columns(r: dict) -> str:
    """The PyTorch peer's two cells, or dashes where it was left out."""
    if "torch_seconds_per_epoch" not in r:
        return "– | –"
    return f"{r['torch_seconds_per_epoch']:.2f} | {r['torch_ratio']:.2f}"


def table(rows: list[dict], ceiling: float, where: dict) -> str:
    """The results, with the CPU, date and commit that gave them."""
    lines = [
        "| Variant | s/epoch (project) | s/epoch (Keras baseline) | project/baseline "
        "| s/epoch (PyTorch) | project/PyTorch | training samples/s | GFLOP/s | of ceiling |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['seconds_per_epoch']:.2f} "
            f"| {r['baseline_seconds_per_epoch']:.2f} | {r['ratio']:.2f} "
            f"| {torch_columns(r)} "
            f"| {r['samples_per_second']:,} | {r['gflops']:.1f} "
            f"| {100 * r['ceiling_fraction']:.0f} % |"
        )
    lines.append(
        f"\nMedians of {rows[0]['epochs_timed']} timed epochs per path and variant, validation "
        "included; samples/s and GFLOP/s count the training part of the project's epochs alone. "
        f"Ceiling: numpy float32 matmul on the same machine, {ceiling:.1f} GFLOP/s. "
        + measured_on(where)
    )
    return "\n".join(lines) + "\n"


def history_file(output: Path) -> Path:
    """Where the runs before `output`'s are kept: beside it."""
    return output.with_name(f"{output.stem}_history.json")


def with_history(path: Path, report: dict) -> list[dict]:
    """The results in `path`, oldest first, with `report` last in place of any earlier result
    of its CPU kind and commit."""
    history = json.loads(path.read_text()) if path.exists() else []
    key = (cpu_kind(report["machine"]), report["machine"]["commit"])
    kept = [r for r in history if (cpu_kind(r["machine"]), r["machine"]["commit"]) != key]
    return [*kept, report]


def history_cell(r: dict | None) -> str:
    if r is None:
        return "–"
    ratio = f"{r['torch_ratio']:.2f}" if "torch_ratio" in r else "–"
    return f"{ratio} ({r['seconds_per_epoch']:.2f} s)"


def history_table(history: list[dict]) -> str:
    """Every result by CPU kind, in the order they ran: project/PyTorch and the project's
    seconds per epoch, per variant."""
    variants = list(dict.fromkeys(r["variant"] for report in history for r in report["rows"]))
    lines = [
        f"| CPU | Commit, date | {' | '.join(variants)} |",
        f"|--|--|{'--:|' * len(variants)}",
    ]
    for report in sorted(history, key=lambda report: cpu_kind(report["machine"])):
        where, rows = report["machine"], {r["variant"]: r for r in report["rows"]}
        cells = " | ".join(history_cell(rows.get(variant)) for variant in variants)
        lines.append(f"| {cpu_kind(where)} | {where['commit']}, {where['date']} | {cells} |")
    return (
        "\n".join(lines)
        + f"\n\nEach cell: project/PyTorch (target ≤ {TORCH_TARGET}), then the project's seconds "
        "per epoch; medians of each run's timed epochs, validation included.\n"
    )


def restate_results(path: Path, readme: Path | None) -> None:
    """Rewrite the saved results and their table with today's FLOPs count."""
    from benchmarks.flops import training_flops_per_image
    from stages.models import build_model

    params = load_params()
    report = json.loads(path.read_text())
    flops = {
        r["variant"]: training_flops_per_image(build_model(params.model(r["variant"])))
        for r in report["rows"]
    }
    report = restate(report, flops)
    write_json(path, report)
    text = table(report["rows"], report["matmul_ceiling_gflops"], report["machine"])
    if readme:
        update_readme(readme, text, block="speed-benchmark")
    print(text)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,048 samples, seconds in all")
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    parser.add_argument("--timed-epochs", type=int, default=3)
    parser.add_argument(
        "--rounds", type=positive_int, help="fresh processes per path; 3, or 1 if --quick"
    )
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--readme", type=Path, help="also write the table into this README")
    parser.add_argument(
        "--doc", type=Path, help="also write the table of every full run into this Markdown file"
    )
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch peer")
    parser.add_argument(
        "--restate", action="store_true", help="recount GFLOP/s of the saved results, no timing"
    )
    args = parser.parse_args()

    if args.restate:
        restate_results(args.output, args.readme)
        return

    if args.measure:
        print(json.dumps(measure(*args.measure, args.timed_epochs, args.limit)))
        return

    paths = PATHS[:2] if args.no_torch else PATHS
    if "torch" in paths and importlib.util.find_spec("torch") is None:
        raise SystemExit(
            "error: the PyTorch peer needs torch, which this venv does not hold (the `bench` "
            "extra) (hint: `make bench` runs it in a venv of its own; or pass --no-torch)"
        )

    variants = args.variants or list(load_params().models)
    limit = 2048 if args.quick else None
    where = machine()  # before the timings, which take minutes
    ceiling = matmul_ceiling(size=1024 if args.quick else 4096, repeats=3 if args.quick else 5)
    rows = []
    rounds = args.rounds or (1 if args.quick else 3)
    for variant in variants:
        pooled = measure_rounds(variant, paths, rounds, args.timed_epochs, limit)
        rows.append(row(variant, pooled, ceiling))
    report = {
        "machine": where,
        "quick": args.quick,
        "rounds": rounds,
        "matmul_ceiling_gflops": round(ceiling, 1),
        "rows": rows,
    }
    write_json(args.output, report)
    text = table(rows, ceiling, report["machine"])
    if args.readme:
        update_readme(args.readme, text, block="speed-benchmark")
    if not args.quick:
        history = with_history(history_file(args.output), report)
        write_json(history_file(args.output), history)
        if args.doc:
            update_readme(args.doc, history_table(history), block="speed-history")
    print(text)


if __name__ == "__main__":
    main()
