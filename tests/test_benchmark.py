"""The benchmarks' quick modes produce full tables (timings are not asserted)."""

import argparse
import datetime
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

from benchmarks.machine import cpu_kind, with_result
from benchmarks.onednn import (
    benchmark_env,
    cpu_label,
    even_rounds,
    measure_variant,
    onednn_isa,
    verdict,
    with_verdicts,
)
from benchmarks.studies import LATE_LINE, PARTS, STUDY_PARTS, timeline
from benchmarks.train_speed import history_table, with_history
from stages.stats import ALPHA
from tests.conftest import REPO, documented_message, run

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests


def test_quick_benchmark_writes_a_table_of_positive_finite_values(
    split_project: Path, tmp_path: Path
) -> None:
    output = tmp_path / "train_speed.json"
    result = run(
        [
            sys.executable,
            "-m",
            "benchmarks.train_speed",
            "--quick",
            "--timed-epochs",
            "2",
            "--rounds",
            "2",
            "--variants",
            "small",
            "--output",
            str(output),
            "--no-torch",
        ],
        cwd=split_project,
    )
    assert "| small | " in result.stdout and "| – | – |" in result.stdout
    report = json.loads(output.read_text())
    where = report["machine"]  # the table names the CPU, date and commit it was measured on
    assert where["date"] == datetime.date.today().isoformat() and where["cores"] >= 1
    assert re.fullmatch(r"[0-9a-f]{7,}\+?|unknown", where["commit"]), where
    assert f"Measured on {where['cpu']} (" in result.stdout
    assert f"{where['date']}, commit {where['commit']}, Python {where['python']}." in result.stdout
    assert report["quick"] is True
    assert report["rounds"] == 2
    assert not (tmp_path / "train_speed_history.json").exists()  # a quick run is no full run
    assert math.isfinite(report["matmul_ceiling_gflops"]) and report["matmul_ceiling_gflops"] > 0
    assert [row["variant"] for row in report["rows"]] == ["small"]
    for row in report["rows"]:
        for key in (
            "seconds_per_epoch",
            "baseline_seconds_per_epoch",
            "ratio",
            "samples_per_second",
            "gflops",
            "ceiling_fraction",
            "epochs_timed",
        ):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["epochs_timed"] == 2 * 2
        assert not [key for key in row if key.startswith("torch")]
        # Training is part of the epoch; GFLOP/s and samples/s count it alone.
        assert 0 < row["train_seconds_per_epoch"] < row["seconds_per_epoch"]
        assert row["samples_per_second"] == pytest.approx(
            2048 / row["train_seconds_per_epoch"], rel=0.02
        )


def test_quick_profile_ranks_op_types_by_time(split_project: Path, tmp_path: Path) -> None:
    output = tmp_path / "profile_epoch.json"
    command = [sys.executable, "-m", "benchmarks.profile_epoch", "--quick", "--epochs", "2"]
    result = run(command + ["--variants", "wide", "--output", str(output)], cwd=split_project)
    assert "`wide`: median epoch" in result.stdout
    report = json.loads(output.read_text())
    assert f"{report['machine']['date']}, commit {report['machine']['commit']}," in result.stdout
    [wide] = report["variants"]
    ops = wide["ops"]
    assert ops[-1]["op"] == "all other ops"
    assert len({row["op"] for row in ops}) == len(ops)
    # The profile itself: a wide model's time goes mostly to its matrix multiplies.
    top_three = [row["op"] for row in ops[:3]]
    assert any("MatMul" in op for op in top_three), top_three
    assert len(wide["epoch_seconds"]) == 2
    assert all(math.isfinite(s) and s > 0 for s in wide["epoch_seconds"])


def test_study_benchmark_times_a_real_study_on_a_local_cluster(tiny_copy: Path) -> None:
    output = tiny_copy / "studies.json"
    committed = json.loads((REPO / "benchmarks/results/studies.json").read_text())
    elsewhere = {**next(iter(committed.values())), "cpu": "another CPU"}
    output.write_text(json.dumps({"another CPU": elsewhere}))
    seeds = (tiny_copy / "reports/seeds.json").read_bytes()
    command = [sys.executable, "-m", "benchmarks.studies", "--seeds", "7", "--variants", "wide"]
    # Not unbuffered: the study's lines must come as its runs end, also through a pipe.
    unbuffered = {"PYTHONUNBUFFERED": ""}
    result = run([*command, "--jobs", "1", "--output", str(output)], cwd=tiny_copy, env=unbuffered)
    results = json.loads(output.read_text())
    assert results.pop("another CPU") == elsewhere  # another CPU's result is kept as it was
    [(cpu, report)] = results.items()
    assert cpu == report["cpu"] != "another CPU"
    assert (report["runs"], report["jobs"], report["variants"]) == (1, 1, ["wide"])
    for key in ("wall_seconds", "stage_seconds", "training_seconds", "keras_start_seconds"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    # The stages hold the epochs and more (starting TensorFlow, evaluating); the wall time holds
    # the stages and more (DVC, Git, the cluster).
    assert report["training_seconds"] < report["stage_seconds"] < report["wall_seconds"]
    # From the unrounded seconds, which the report rounds to 0.1 s.
    assert report["wall_over_stages_per_job"] == pytest.approx(
        report["wall_seconds"] / report["stage_seconds"], rel=0.01
    )
    assert report["overhead_seconds_per_run"] == pytest.approx(
        report["wall_seconds"] - report["training_seconds"], abs=0.2
    )
    parts = report["overhead_seconds_by_part"]
    assert list(parts) == list(PARTS)
    assert sum(parts.values()) == pytest.approx(report["overhead_seconds_per_run"], abs=0.4)
    assert parts.pop("dispatch") == 0  # one run: no time between two tasks of a worker
    assert all(seconds > 0 for seconds in parts.values())
    # One job and one run: the study's start and end, once, are the last part in all.
    once = report["study_seconds_by_part"]
    assert list(once) == list(STUDY_PARTS) and all(seconds > 0 for seconds in once.values())
    assert sum(once.values()) == pytest.approx(parts["per_study"], abs=0.2)
    assert re.search(
        r"seed-wide-s7: .*; the stages: train [\d.]+ s, evaluate [\d.]+ s", result.stdout
    )
    assert f"| {cpu} | 1 | 1 × " in result.stdout and "| another CPU | 6 | 2 × 1 " in result.stdout
    again = run([*command, "--jobs", "1", "--output", str(output)], cwd=tiny_copy, check=False)
    assert again.returncode != 0 and "nothing ran" in again.stderr
    records = json.loads((tiny_copy / "benchmarks/results/study-records.json").read_text())
    assert [record["name"] for record in records] == ["seed-wide-s7"]
    assert (tiny_copy / "reports/seeds.json").read_bytes() == seeds  # the seed study's own file


def test_the_workers_time_outside_their_tasks_is_told_apart_by_when_each_line_came() -> None:
    # Two workers; `N runs to do` came at 3 s and the study ended at 100 s. Worker a ran two
    # tasks, 5-40 s and 40.5-90 s (each line came as its task ended); worker b one, 6-95 s.
    runs = [
        {"worker": "a", "ended": 40.0, "total": 35.0},
        {"worker": "a", "ended": 90.0, "total": 49.5},
        {"worker": "b", "ended": 95.0, "total": 89.0},
    ]
    parts = timeline(runs, planned=3.0, wall=100.0, jobs=2)
    assert parts == pytest.approx({"head": 6.0, "cluster_start": 5.0, "dispatch": 0.5, "end": 15.0})
    # In all, the workers' time outside their tasks.
    assert sum(parts.values()) == pytest.approx(2 * 100.0 - sum(r["total"] for r in runs))
    # A third worker that got no task waited for the head, then idled to the end.
    parts = timeline(runs, planned=3.0, wall=100.0, jobs=3)
    expected = {"head": 9.0, "cluster_start": 5.0, "dispatch": 0.5, "end": 15.0 + 97.0}
    assert parts == pytest.approx(expected)
    assert sum(parts.values()) == pytest.approx(3 * 100.0 - sum(r["total"] for r in runs))


def test_lines_that_came_late_give_no_timeline() -> None:
    # Worker a's second task seems to start before its first one's line came: by LATE_LINE, a
    # line held back (buffered) until later; just under it, the result's own way to the head.
    def runs(second_started: float) -> list[dict]:
        return [
            {"worker": "a", "ended": 40.0, "total": 35.0},
            {"worker": "a", "ended": 90.0, "total": 90.0 - second_started},
        ]

    parts = timeline(runs(40.0 - LATE_LINE + 0.01), planned=3.0, wall=100.0, jobs=1)
    assert parts["dispatch"] == pytest.approx(-LATE_LINE + 0.01)
    with pytest.raises(SystemExit, match="came late"):
        timeline(runs(40.0 - LATE_LINE - 0.01), planned=3.0, wall=100.0, jobs=1)


def test_a_study_benchmark_replaces_the_result_of_its_own_cpu_only(tmp_path: Path) -> None:
    output = tmp_path / "studies.json"
    output.write_text(json.dumps({"A": {"cpu": "A", "runs": 6}, "B": {"cpu": "B", "runs": 6}}))
    results = with_result(output, {"cpu": "B", "runs": 1})
    assert results == {"A": {"cpu": "A", "runs": 6}, "B": {"cpu": "B", "runs": 1}}
    assert with_result(tmp_path / "none.json", {"cpu": "C"}) == {"C": {"cpu": "C"}}


AVX2 = ["sse4_2", "avx", "avx2", "fma"]


def speed_report(flags: list[str], commit: str, ratio: float | None) -> dict:
    """A train_speed result of one variant, `small`, with or without the PyTorch peer."""
    where = {"cpu": "AMD EPYC", "cpu_flags": flags, "commit": commit, "date": "2026-12-07"}
    row = {"variant": "small", "seconds_per_epoch": 0.5}
    return {"machine": where, "rows": [row | ({"torch_ratio": ratio} if ratio else {})]}


def test_one_model_name_with_and_without_avx512_is_two_cpu_kinds() -> None:
    avx2, avx512 = speed_report(AVX2, "a", 0.7), speed_report([*AVX2, "avx512f"], "a", 0.7)
    assert cpu_kind(avx2["machine"]) == "AMD EPYC (sse4_2 avx avx2 fma)"
    assert cpu_kind(avx512["machine"]) == "AMD EPYC (sse4_2 avx avx2 fma avx512f)"


def test_the_speed_history_keeps_one_result_per_cpu_kind_and_commit(tmp_path: Path) -> None:
    path = tmp_path / "train_speed_history.json"
    assert with_history(path, speed_report(AVX2, "a", 0.7)) == [speed_report(AVX2, "a", 0.7)]
    old, elsewhere = speed_report(AVX2, "a", 0.9), speed_report([*AVX2, "avx512f"], "b", 0.8)
    path.write_text(json.dumps([old, elsewhere]))
    other_commit = speed_report(AVX2, "b", 0.7)  # same CPU kind, another commit: kept beside
    assert with_history(path, other_commit) == [old, elsewhere, other_commit]
    rerun = speed_report(AVX2, "a", 0.6)  # same CPU kind and commit: replaces, and goes last
    assert with_history(path, rerun) == [elsewhere, rerun]


def test_the_speed_history_table_shows_each_cpu_kinds_runs_in_order() -> None:
    history = [
        speed_report(AVX2, "new", 0.76),
        speed_report([*AVX2, "avx512f"], "x", None),
        speed_report(AVX2, "newer", 0.5),
    ]
    rows = history_table(history).splitlines()[2:5]
    assert rows == [
        "| AMD EPYC (sse4_2 avx avx2 fma avx512f) | x, 2026-12-07 | – (0.50 s) |",
        "| AMD EPYC (sse4_2 avx avx2 fma) | new, 2026-12-07 | 0.76 (0.50 s) |",
        "| AMD EPYC (sse4_2 avx avx2 fma) | newer, 2026-12-07 | 0.50 (0.50 s) |",
    ]


def test_the_benchmark_without_its_pytorch_extra_says_so_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.train_speed", "--quick"]
    result = run(command + ["--output", str(tmp_path / "speed.json")], cwd=REPO, check=False)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line == documented_message("python.md", "error: the PyTorch peer needs torch")
    assert not (tmp_path / "speed.json").exists()


def test_the_onednn_benchmark_times_each_setting_and_records_tensorflows_default(
    split_project: Path, tmp_path: Path
) -> None:
    output = tmp_path / "onednn.json"
    committed = json.loads((REPO / "benchmarks/results/onednn.json").read_text())
    elsewhere = next(iter(committed.values()))
    output.write_text(json.dumps({"another CPU": elsewhere}))
    command = [sys.executable, "-m", "benchmarks.onednn", "--variants", "small", "--rounds", "2"]
    command += ["--timed-epochs", "1", "--limit", "512", "--max-isa", "AVX2"]
    result = run([*command, "--output", str(output)], cwd=split_project)
    results = json.loads(output.read_text())
    assert results.pop("another CPU") == elsewhere  # another CPU's result is kept as it was
    [(cpu, report)] = results.items()
    assert cpu == cpu_label(report["machine"], "AVX2")  # beside this CPU's uncapped result
    assert report["max_isa"] == "AVX2" and report["onednn_isa"] == "Intel AVX2"
    # Each process checked that it got the setting (the benchmark fails otherwise), and
    # TensorFlow's default follows its rule: on with AVX512_VNNI, AVX512_BF16 or AMX.
    flags = set(report["machine"]["cpu_flags"])
    assert report["default_onednn"] == bool(flags & {"avx512_vnni", "avx512_bf16", "amx_tile"})
    [row] = report["rows"]
    assert row["variant"] == "small" and row["epochs_timed"] == 1
    assert len(row["off_seconds"]) == len(row["on_seconds"]) == 2  # one process a round each
    assert row["verdict"] in ("faster", "slower", "no difference shown")
    assert 0 <= row["p_value"] <= 1
    off, on = row["off_seconds_per_epoch"], row["on_seconds_per_epoch"]
    assert off > 0 and on > 0 and row["on_over_off"] == pytest.approx(on / off, abs=0.01)
    default = "on" if report["default_onednn"] else "off"
    assert f"| {cpu} | {default} | Intel AVX2 | small | " in result.stdout
    assert "| another CPU | " in result.stdout  # both CPUs' rows, side by side


def test_a_capped_result_is_keyed_apart_from_its_cpus_uncapped_one() -> None:
    where = {"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512f"]}
    assert cpu_label(where, None) == "AMD EPYC (avx2 avx512f)" == cpu_kind(where)
    assert cpu_label(where, "AVX2") == "AMD EPYC (avx2 avx512f), oneDNN capped at AVX2"


def test_onednn_names_its_kernels_instruction_set_and_a_cap_lowers_it_only_from_above() -> None:
    flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)[1].split())
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    avx512_core = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    core = "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions"
    # A cap at AVX512_CORE binds just above it (VNNI, BF16, AMX) and not at or below it.
    assert onednn_isa(env | {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}) == (
        core if avx512_core else "Intel AVX2"
    )
    assert onednn_isa(env | {"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "Intel AVX2"
    # Below every CPU with AVX2: the cap binds wherever the suite runs.
    assert onednn_isa(env | {"ONEDNN_MAX_CPU_ISA": "SSE41"}) == "Intel SSE4.1"
    uncapped = onednn_isa(env)
    assert uncapped.startswith("Intel AVX-512") == avx512_core
    assert (uncapped == core) == (avx512_core and "avx512_vnni" not in flags)


def test_the_benchmarks_environment_carries_its_own_cap_and_no_other_onednn_setting() -> None:
    environ = {"PATH": "/bin", "ONEDNN_MAX_CPU_ISA": "SSE41", "ONEDNN_VERBOSE": "1"}
    assert benchmark_env(environ, None) == {"PATH": "/bin"}
    assert benchmark_env(environ, "AVX2") == {"PATH": "/bin", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_each_timed_process_gets_the_benchmarks_environment_and_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def measured(variant: str, path: str, epochs: int, limit: int | None, env: dict) -> dict:
        calls.append((env["TF_ENABLE_ONEDNN_OPTS"], env["ONEDNN_MAX_CPU_ISA"]))
        return {"onednn": env["TF_ENABLE_ONEDNN_OPTS"] == "1", "seconds": [1.0]}

    monkeypatch.setattr("benchmarks.onednn.measure_in_subprocess", measured)
    row = measure_variant("small", 4, 1, None, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    # Rounds alternate which setting goes first; the cap reaches every process.
    assert [setting for setting, _ in calls] == ["0", "1", "1", "0", "0", "1", "1", "0"]
    assert {cap for _, cap in calls} == {"AVX2"}
    assert row["off_seconds"] == row["on_seconds"] == [1.0] * 4


def test_the_startup_benchmark_times_the_stages_in_a_scratch_folder(
    split_project: Path, tmp_path: Path
) -> None:
    output = tmp_path / "startup.json"
    before = sorted(p.name for p in split_project.iterdir())
    command = [sys.executable, "-m", "benchmarks.startup", "--variants", "small", "--tries", "1"]
    result = run([*command, "--output", str(output)], cwd=split_project)
    [report] = json.loads(output.read_text()).values()
    seconds = report["seconds"]
    assert list(seconds) == ["import keras", "train small", "evaluate small"]
    # Each stage ran to its end: the benchmark fails on a stage's non-zero exit.
    assert all(math.isfinite(s) and s > 0 for s in seconds.values())
    assert sorted(p.name for p in split_project.iterdir()) == before  # no output of its own
    assert "| `import keras` alone | " in result.stdout and "| train small | " in result.stdout


def test_a_onednn_verdict_needs_a_holm_adjusted_p_under_alpha() -> None:
    assert verdict(0.9, ALPHA - 1e-9) == "faster"
    assert verdict(0.9, ALPHA) == "no difference shown"
    assert verdict(1.1, ALPHA - 1e-9) == "slower"
    assert verdict(1.1, None) == "no difference shown"  # one round: no test


def test_onednn_verdicts_pair_each_round_and_adjust_over_the_variants() -> None:
    rows = [
        {"off_seconds": [2.0, 2.1, 1.9, 2.0], "on_seconds": [1.0, 1.1, 0.9, 1.0]},
        {"off_seconds": [1.0, 1.1, 0.9, 1.0], "on_seconds": [2.0, 2.1, 1.9, 2.0]},
        {"off_seconds": [1.0, 1.6, 0.7, 1.2], "on_seconds": [1.1, 0.8, 1.5, 1.0]},
    ]
    judged = with_verdicts(rows)
    # Paired t on log(on / off), df 3: p 5.69e-05 twice and 0.989; Holm multiplies the
    # smallest by 3, the next by 2 (then the running maximum), the largest by 1.
    expected = [3 * 5.6915e-05, 3 * 5.6915e-05, 0.98908]
    assert [r["p_value"] for r in judged] == pytest.approx(expected, rel=1e-3)
    assert [r["verdict"] for r in judged] == ["faster", "slower", "no difference shown"]
    assert judged[0]["on_over_off"] == pytest.approx(0.5, abs=0.01)  # geometric means
    assert with_verdicts([{"off_seconds": [2.0], "on_seconds": [1.0]}])[0]["p_value"] is None


def test_the_onednn_benchmark_takes_an_even_number_of_rounds_only() -> None:
    assert [even_rounds(text) for text in ("2", "4")] == [2, 4]
    for text in ("0", "1", "3", "-2", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected an even number, 2 or more"):
            even_rounds(text)
