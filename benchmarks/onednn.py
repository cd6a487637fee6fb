"""Benchmark: each variant's epochs with TensorFlow's oneDNN ops off and on, on this CPU.

    python -m benchmarks.onednn [--variants cnn ...] [--rounds 4] [--timed-epochs 2] [--doc FILE]

TensorFlow turns its oneDNN ops on by default only on CPUs with AVX512_VNNI, AVX512_BF16 or
AMX; `TF_ENABLE_ONEDNN_OPTS=0` or `1` decides it on any CPU. Each measurement is a fresh
process of the train stage's own code path (`python -m benchmarks.train_speed --measure
VARIANT project`), with the variable set one way or the other, in rounds that alternate which
goes first. Each process says whether oneDNN was on in it, and the benchmark records what
TensorFlow does here without the variable. A variant's verdict (`faster`, `slower` or `no
difference shown` with oneDNN) comes from Welch's t-test of the processes' log seconds per
epoch, Holm-adjusted over the variants.

Results go to benchmarks/results/onednn.json, one per CPU (a run replaces its CPU's earlier
one only), and with --doc all of them into its `onednn-benchmark` block.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.machine import machine
from benchmarks.train_speed import measure_in_subprocess, positive_int
from stages.files import write_json
from stages.params import load_params
from stages.report import p_text, update_readme
from stages.stats import ALPHA, groups_p_value, holm

RESULTS_FILE = Path("benchmarks/results/onednn.json")
SETTINGS = ("0", "1")  # TF_ENABLE_ONEDNN_OPTS: off, on
DEFAULT = "import stages.environment as e; print(e.environment(0)['onednn'])"


def default_onednn() -> bool:
    """Whether TensorFlow turns oneDNN on here when TF_ENABLE_ONEDNN_OPTS is unset."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    command = [sys.executable, "-c", f"import stages.tf_quiet; {DEFAULT}"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return result.stdout.split()[-1] == "True"


def measure_variant(variant: str, rounds: int, timed_epochs: int, limit: int | None) -> dict:
    """Each process's median seconds per epoch with oneDNN off and on, over rounds that
    alternate the order."""
    processes: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
    for round_index in range(rounds):
        order = SETTINGS if round_index % 2 == 0 else SETTINGS[::-1]
        for setting in order:
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
            result = measure_in_subprocess(variant, "project", timed_epochs, limit, env)
            if result["onednn"] != (setting == "1"):
                raise SystemExit(f"TF_ENABLE_ONEDNN_OPTS={setting} left oneDNN {result['onednn']}")
            processes[setting].append(round(statistics.median(result["seconds"]), 3))
    off, on = (statistics.median(processes[setting]) for setting in SETTINGS)
    return {
        "variant": variant,
        "epochs_timed": timed_epochs,
        "off_seconds": processes["0"],
        "on_seconds": processes["1"],
        "off_seconds_per_epoch": round(off, 3),
        "on_seconds_per_epoch": round(on, 3),
        "on_over_off": round(on / off, 3),
    }


def with_verdicts(rows: list[dict]) -> list[dict]:
    """Each variant's verdict on oneDNN: Welch's t-test of the processes' log epoch seconds,
    off against on, Holm-adjusted over the variants: `faster`, `slower`, or `no difference
    shown` at ALPHA."""
    logs = [[[math.log(s) for s in r[f"{side}_seconds"]] for side in ("off", "on")] for r in rows]
    adjusted = holm([groups_p_value(groups) if len(groups[0]) > 1 else None for groups in logs])
    return [
        r | {"p_value": None if p is None else round(p, 4), "verdict": verdict(r, p)}
        for r, p in zip(rows, adjusted, strict=True)
    ]


def verdict(row: dict, p_value: float | None) -> str:
    if p_value is None or p_value >= ALPHA:
        return "no difference shown"
    return "faster" if row["on_seconds_per_epoch"] < row["off_seconds_per_epoch"] else "slower"


def markdown(results: dict[str, dict]) -> str:
    """One row per CPU and variant: seconds per epoch with oneDNN off and on, and their ratio."""
    lines = [
        "| CPU | TensorFlow's default there | Variant | s/epoch, oneDNN off | s/epoch, on "
        "| on / off | With oneDNN (Holm-adjusted p) |",
        "|--|--|--|--:|--:|--:|--|",
    ]
    for cpu, result in sorted(results.items()):
        default = "on" if result["default_onednn"] else "off"
        for r in result["rows"]:
            p_value = "" if r["p_value"] is None else f" (p {p_text(r['p_value'])})"
            lines.append(
                f"| {cpu} | {default} | {r['variant']} | {r['off_seconds_per_epoch']:.2f} "
                f"| {r['on_seconds_per_epoch']:.2f} | {r['on_over_off']:.2f} "
                f"| {r['verdict']}{p_value} |"
            )
    where = "; ".join(
        f"{cpu}: {' '.join(r['machine']['cpu_flags'])}, {r['machine']['cores']} cores, "
        f"{r['machine']['date']}, commit {r['machine']['commit']}, {r['rounds']} processes a "
        f"setting, {r['rows'][0]['epochs_timed']} timed epochs each"
        for cpu, r in sorted(results.items())
    )
    return (
        "\n".join(lines)
        + "\n\nEach process gives the median of its timed epochs, validation included; the "
        "table gives the median of the processes, and Welch's t-test compares their log "
        f"seconds, off against on, Holm-adjusted over a CPU's variants at α = {ALPHA} ({where}).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    parser.add_argument("--rounds", type=positive_int, default=4)
    parser.add_argument("--timed-epochs", type=positive_int, default=2)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)  # the tests' few samples
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file")
    args = parser.parse_args()

    variants = args.variants or list(load_params().models)
    where = machine()
    rows = with_verdicts(
        [measure_variant(v, args.rounds, args.timed_epochs, args.limit) for v in variants]
    )
    result = {"machine": where, "default_onednn": default_onednn(), "rounds": args.rounds}
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[where["cpu"]] = result | {"rows": rows}
    write_json(args.output, results)
    text = markdown(results)
    if args.doc:
        update_readme(args.doc, text, block="onednn-benchmark")
    print(text)


if __name__ == "__main__":
    main()
