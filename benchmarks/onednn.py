"""Benchmark: each variant's epochs with TensorFlow's oneDNN ops off and on, on this CPU.

    python -m benchmarks.onednn [--variants cnn ...] [--rounds 4] [--timed-epochs 2]
                                [--max-isa AVX2] [--doc FILE]

TensorFlow turns its oneDNN ops on by default only on CPUs with AVX512_VNNI, AVX512_BF16 or
AMX; `TF_ENABLE_ONEDNN_OPTS=0` or `1` decides it on any CPU. Each measurement is a fresh
process of the train stage's own code path (`python -m benchmarks.train_speed --measure
VARIANT project`), with the variable set one way or the other, in rounds that alternate which
goes first. Each process says whether oneDNN was on in it, and the benchmark records what
TensorFlow does here without the variable. A variant's verdict (`faster`, `slower` or `no
difference shown` with oneDNN) comes from a paired t-test of each round's log(on / off),
Holm-adjusted over the variants.

`--max-isa AVX2` caps oneDNN's kernels at that instruction set (`ONEDNN_MAX_CPU_ISA`) with
oneDNN's ops off and on alike: with them off, Eigen's matrix products still call oneDNN's
sgemm. So an AVX-512 machine runs the kernels that an AVX2 CPU gets (`AVX512_CORE`: those of
an AVX-512 CPU without VNNI or BF16, where TensorFlow leaves oneDNN off too). Its result is
kept beside the uncapped one. A probe asks oneDNN which instruction set it picked, before any
measurement, and the table names it.

Results go to benchmarks/results/onednn.json, one per CPU and cap (a run replaces its own
CPU's and cap's earlier one only), and with --doc all of them into its `onednn-benchmark` block.
"""

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from scipy.stats import ttest_rel

from benchmarks.machine import cpu_kind, machine, with_result
from benchmarks.train_speed import measure_in_subprocess, positive_int
from stages.files import write_json
from stages.params import load_params
from stages.report import p_text, update_readme
from stages.stats import ALPHA, holm

RESULTS_FILE = Path("benchmarks/results/onednn.json")
SETTINGS = ("0", "1")  # TF_ENABLE_ONEDNN_OPTS: off, on
# TensorFlow alone, without stages.tf_quiet, which may set TF_ENABLE_ONEDNN_OPTS.
DEFAULT = "from tensorflow.python.util._pywrap_util_port import IsMklEnabled; print(IsMklEnabled())"
# One oneDNN convolution: with ONEDNN_VERBOSE=1, oneDNN names the instruction set of its kernels.
ISA_PROBE = (
    "import tensorflow as tf; "
    "tf.nn.conv2d(tf.ones([1, 4, 4, 1]), tf.ones([3, 3, 1, 1]), strides=1, padding='SAME')"
)
ISA_LINE = re.compile(r"^onednn_verbose,.*\binfo,cpu,isa:(.+)$", re.MULTILINE)
MAX_ISAS = ("AVX2", "AVX512_CORE")  # oneDNN's names for the caps that --max-isa takes


def default_onednn() -> bool:
    """Whether TensorFlow turns oneDNN on here when TF_ENABLE_ONEDNN_OPTS is unset."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    command = [sys.executable, "-c", DEFAULT]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return result.stdout.split()[-1] == "True"


def benchmark_env(environ: dict[str, str], max_isa: str | None) -> dict[str, str]:
    """`environ` without oneDNN's own settings, which would cap or flood every process
    unrecorded, and with `max_isa` as the cap where given."""
    env = {k: v for k, v in environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ONEDNN_VERBOSE")}
    return env | ({"ONEDNN_MAX_CPU_ISA": max_isa} if max_isa else {})


def onednn_isa(env: dict[str, str]) -> str:
    """The instruction set that oneDNN's kernels use under `env`, as oneDNN names it."""
    env = env | {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", ISA_PROBE]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    named = ISA_LINE.search(result.stdout)
    if result.returncode != 0 or named is None:
        raise SystemExit(f"oneDNN's instruction-set probe failed:\n{result.stderr[-2000:]}")
    return named[1]


def cpu_label(where: dict, max_isa: str | None) -> str:
    """The CPU kind that keys a result, with the cap on oneDNN's kernels where there is one."""
    return cpu_kind(where) + (f", oneDNN capped at {max_isa}" if max_isa else "")


def measure_variant(
    variant: str, rounds: int, timed_epochs: int, limit: int | None, env: dict[str, str]
) -> dict:
    """Each process's median seconds per epoch with oneDNN off and on, over rounds that
    alternate the order, in `env`."""
    processes: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
    for round_index in range(rounds):
        order = SETTINGS if round_index % 2 == 0 else SETTINGS[::-1]
        for setting in order:
            setting_env = env | {"TF_ENABLE_ONEDNN_OPTS": setting}
            result = measure_in_subprocess(variant, "project", timed_epochs, limit, setting_env)
            if result["onednn"] != (setting == "1"):
                raise SystemExit(f"TF_ENABLE_ONEDNN_OPTS={setting} left oneDNN {result['onednn']}")
            processes[setting].append(round(statistics.median(result["seconds"]), 3))
    return {
        "variant": variant,
        "epochs_timed": timed_epochs,
        "off_seconds": processes["0"],
        "on_seconds": processes["1"],
    }


def with_verdicts(rows: list[dict]) -> list[dict]:
    """Each variant's geometric means, their ratio and its verdict on oneDNN: a paired t-test
    of each round's log(on / off), Holm-adjusted over the variants (`faster`, `slower` or `no
    difference shown` at ALPHA)."""
    p_values = [paired_p_value(r["off_seconds"], r["on_seconds"]) for r in rows]
    summaries = []
    for r, p_value in zip(rows, holm(p_values), strict=True):
        off, on = geometric_mean(r["off_seconds"]), geometric_mean(r["on_seconds"])
        summaries.append(
            r
            | {
                "off_seconds_per_epoch": round(off, 3),
                "on_seconds_per_epoch": round(on, 3),
                "on_over_off": round(on / off, 3),
                "p_value": p_value,
                "verdict": verdict(on / off, p_value),
            }  # fmt: skip
        )
    return summaries


def geometric_mean(seconds: list[float]) -> float:
    return math.exp(statistics.mean(math.log(s) for s in seconds))


def paired_p_value(off: list[float], on: list[float]) -> float | None:
    """Student's paired t-test of log(on) against log(off), round by round (each round ran
    both, one after the other); None with a single round."""
    if len(off) < 2:
        return None
    differences = [math.log(b) - math.log(a) for a, b in zip(off, on, strict=True)]
    if len(set(differences)) == 1:  # no spread: the same ratio every round
        return 0.0 if differences[0] else 1.0
    return float(ttest_rel([math.log(s) for s in on], [math.log(s) for s in off]).pvalue)


def verdict(ratio: float, p_value: float | None) -> str:
    """`faster` or `slower` with oneDNN (its geometric mean `ratio`, on over off) where the
    adjusted p is under ALPHA, else `no difference shown`."""
    if p_value is None or p_value >= ALPHA:
        return "no difference shown"
    return "faster" if ratio < 1 else "slower"


def markdown(results: dict[str, dict]) -> str:
    """One row per CPU and variant: seconds per epoch with oneDNN off and on, and their ratio."""
    lines = [
        "| CPU | TensorFlow's default there | oneDNN's kernels | Variant | s/epoch, oneDNN off "
        "| s/epoch, on | on / off | With oneDNN (Holm-adjusted p) |",
        "|--|--|--|--|--:|--:|--:|--|",
    ]
    for cpu, result in sorted(results.items()):
        default = "on" if result["default_onednn"] else "off"
        for r in result["rows"]:
            p_value = "" if r["p_value"] is None else f" (p {p_text(r['p_value'])})"
            lines.append(
                f"| {cpu} | {default} | {result['onednn_isa']} | {r['variant']} "
                f"| {r['off_seconds_per_epoch']:.2f} "
                f"| {r['on_seconds_per_epoch']:.2f} | {r['on_over_off']:.2f} "
                f"| {r['verdict']}{p_value} |"
            )
    where = "; ".join(
        f"{cpu}: {r['machine']['cores']} cores, "
        f"{r['machine']['date']}, commit {r['machine']['commit']}, {r['rounds']} processes a "
        f"setting, {r['rows'][0]['epochs_timed']} timed epochs each"
        for cpu, r in sorted(results.items())
    )
    return (
        "\n".join(lines)
        + "\n\nEach process gives the median of its timed epochs, validation included; the "
        "table gives the geometric mean of the processes, and a paired t-test compares each "
        "round's log(on / off) with 0, Holm-adjusted over a CPU's variants at "
        f"α = {ALPHA} ({where}).\n"
    )


def even_rounds(text: str) -> int:
    """--rounds: an even number, at least 2, so that each setting goes first as often."""
    rounds = int(text) if text.isdigit() else 0
    if rounds < 2 or rounds % 2:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed: expected an even number, 2 or more"
        )
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    parser.add_argument("--rounds", type=even_rounds, default=4, help="2, 4, 6 ...")
    parser.add_argument("--timed-epochs", type=positive_int, default=2)
    parser.add_argument(
        "--max-isa", choices=MAX_ISAS, help="cap oneDNN's kernels at this instruction set"
    )
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)  # the tests' few samples
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file")
    args = parser.parse_args()

    variants = args.variants or list(load_params().models)
    env = benchmark_env(dict(os.environ), args.max_isa)
    where, isa = machine(), onednn_isa(env)
    rows = with_verdicts(
        [measure_variant(v, args.rounds, args.timed_epochs, args.limit, env) for v in variants]
    )
    result = {
        "cpu": cpu_label(where, args.max_isa),
        "machine": where,
        "default_onednn": default_onednn(),
        "max_isa": args.max_isa,
        "onednn_isa": isa,
        "rounds": args.rounds,
        "rows": rows,
    }
    results = with_result(args.output, result)
    write_json(args.output, results)
    text = markdown(results)
    if args.doc:
        update_readme(args.doc, text, block="onednn-benchmark")
    print(text)


if __name__ == "__main__":
    main()
