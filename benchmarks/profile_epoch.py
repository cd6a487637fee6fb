"""Benchmark: where the train stage's epochs spend their time, by TensorFlow op type.

    python -m benchmarks.profile_epoch [--quick] [--epochs N] [--variants small wide ...]

For each variant, in a fresh process, it runs `stages.training.fit_variant` (the train stage's
code path, validation included) for a warm-up epoch and then a few epochs under TensorFlow's
profiler, and sums the self time of every op type over those, per epoch. Ops run on several
threads in parallel, so the op times add up to more than the epoch's wall time; the shares say
which ops dominate. Results go to benchmarks/results/profile_epoch.json.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.machine import machine, measured_on
from benchmarks.train_speed import positive_int
from stages.files import write_json
from stages.params import load_params
from stages.report import update_readme

RESULTS_FILE = Path("benchmarks/results/profile_epoch.json")
SHOWN_OP_TYPES = 8


def op_self_seconds(profile_dir: Path) -> dict[str, float]:
    """Total self time of each op type in the profile, idle time left out."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    found = list(profile_dir.glob("plugins/profile/*/*.xplane.pb"))
    if len(found) != 1:
        raise SystemExit(f"expected one profile in {profile_dir}, found {len(found)}")
    [xspace] = found
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data([str(xspace)], "framework_op_stats")
    if not ok:
        raise SystemExit(f"cannot read the profile {xspace}: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    seconds: dict[str, float] = {}
    for cells in table["rows"]:
        row = dict(zip(columns, (cell["v"] if cell else None for cell in cells["c"]), strict=True))
        if row["type"] != "IDLE":
            seconds[row["type"]] = seconds.get(row["type"], 0.0) + row["total_self_time"] / 1e6
    return seconds


def profile(variant: str, epochs: int, limit: int | None) -> dict:
    """Profile `epochs` epochs of one variant's training after a warm-up epoch, per epoch."""
    import keras
    import tensorflow as tf

    from stages.dataset import load_split
    from stages.training import fit_variant

    class ProfileAfterWarmUp(keras.callbacks.Callback):
        def __init__(self, log_dir: str) -> None:
            super().__init__()
            self.log_dir = log_dir

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if epoch == 1:
                tf.profiler.experimental.start(self.log_dir)

        def on_train_end(self, logs: dict | None = None) -> None:
            tf.profiler.experimental.stop()

    params = load_params()
    model_params = params.model(variant).model_copy(update={"epochs": 1 + epochs})
    x_train, y_train = load_split("train")
    with tempfile.TemporaryDirectory() as folder:
        history = fit_variant(
            model_params,
            params.train,
            (x_train[:limit], y_train[:limit]),
            load_split("validation"),
            Path(folder, "model.keras"),
            Path(folder, "history.csv"),
            0,
            [ProfileAfterWarmUp(folder)],
        )
        seconds = op_self_seconds(Path(folder))
    return {
        "variant": variant,
        "epoch_seconds": [round(s, 3) for s in history.history["seconds"][1:]],
        "op_seconds_per_epoch": {op: s / epochs for op, s in seconds.items()},
    }


def profile_in_subprocess(variant: str, epochs: int, limit: int | None) -> dict:
    command = [sys.executable, "-m", "benchmarks.profile_epoch", "--profile", variant]
    command += ["--epochs", str(epochs)] + (["--limit", str(limit)] if limit else [])
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"profiling {variant} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def top_ops(op_seconds: dict[str, float]) -> list[dict]:
    """The op types that take the most time, then the rest as one row, with shares of the total."""
    total = sum(op_seconds.values())
    if total <= 0:
        raise SystemExit("the profile recorded no op time")
    ranked = sorted(op_seconds.items(), key=lambda item: -item[1])
    rest = sum(seconds for _, seconds in ranked[SHOWN_OP_TYPES:])
    rows = [{"op": op, "seconds": seconds} for op, seconds in ranked[:SHOWN_OP_TYPES]]
    rows.append({"op": "all other ops", "seconds": rest})
    return [
        {"op": r["op"], "seconds": round(r["seconds"], 3), "share": round(r["seconds"] / total, 3)}
        for r in rows
    ]


def table(results: list[dict], where: dict) -> str:
    """Each variant's op types by time, with the CPU, date and commit that gave them."""
    lines = []
    for result in results:
        seconds = statistics.median(result["epoch_seconds"])
        lines += [
            f"`{result['variant']}`: median epoch {seconds:.2f} s under the profiler; "
            "op time per epoch:\n",
            "| Op type | Seconds | Share of op time |",
            "|---|--:|--:|",
        ]
        lines += [
            f"| {r['op']} | {r['seconds']:.3f} | {100 * r['share']:.0f} % |" for r in result["ops"]
        ]
        lines.append("")
    lines.append(measured_on(where) + "\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,048 samples, 1 profiled epoch")
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    parser.add_argument(
        "--epochs", type=positive_int, help="epochs profiled after the warm-up; 3, or 1 if --quick"
    )
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="VARIANT", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--readme", type=Path, help="also write the tables into this README")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.quick else 3)

    if args.profile:
        print(json.dumps(profile(args.profile, epochs, args.limit)))
        return

    limit = 2048 if args.quick else None
    where = machine()
    results = []
    for variant in args.variants or list(load_params().models):
        measured = profile_in_subprocess(variant, epochs, limit)
        results.append(
            {
                "variant": variant,
                "epoch_seconds": measured["epoch_seconds"],
                "ops": top_ops(measured["op_seconds_per_epoch"]),
            }
        )
    report = {"machine": where, "quick": args.quick, "epochs": epochs, "variants": results}
    write_json(args.output, report)
    text = table(results, where)
    if args.readme:
        update_readme(args.readme, text, block="profile-benchmark")
    print(text)


if __name__ == "__main__":
    main()
