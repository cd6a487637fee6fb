"""The verdict after every `dvc repro`: each branch at its boundary, the correction across the
variants, and the committed run read from Git's HEAD of a real project."""

import dataclasses
import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from scipy.stats import t

from stages.files import parse_yaml
from stages.fingerprint import commit_reader, read_workspace
from stages.records import pool
from stages.reproduction import (
    Run,
    bonferroni,
    committed_run,
    correction_line,
    read_run,
    verdict,
    verdict_lines,
    verdicts,
)
from tests.conftest import REPO, TINY_SETTINGS, write_params
from tests.test_docs_figures import committed, committed_text
from tests.test_records import record

SEEDS = [0.9855, 0.9851, 0.9856, 0.9853, 0.9854]
CONTENT = {
    "stages": [{"cmd": "python -m stages.train wide"}],
    "files": {"stages/training.py": "ab"},
    "params": {"models.wide": {"dropout": 0.0}, "train.strategy": "default"},
    "libraries": {"tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6"},
}
FACTORS = ("a CPU (sse4_2 avx avx2 fma)", 1, "3.11")


def a_run(accuracy: float = 0.9854, md5: str | None = "new", factors=FACTORS) -> Run:
    return Run(accuracy, md5, json.loads(json.dumps(CONTENT)), factors)


def interval(confidence: float = 0.95) -> tuple[float, float]:
    n, mean, std = len(SEEDS), statistics.mean(SEEDS), statistics.stdev(SEEDS)
    return t.interval(confidence, n - 1, loc=mean, scale=std * math.sqrt(1 + 1 / n))


def test_reproduced_inside_the_prediction_interval_and_differs_just_outside_it() -> None:
    low, high = interval()
    committed = a_run(md5="old")
    for accuracy, expected in [
        (low + 1e-9, "reproduced"),
        (high - 1e-9, "reproduced"),
        (low - 1e-9, "differs"),
        (high + 1e-9, "differs"),
    ]:
        entry = verdict(a_run(accuracy), committed, SEEDS, 0.95)
        assert entry["verdict"] == expected, accuracy
        assert entry["interval"] == pytest.approx([low, high], rel=1e-12)
    entry = verdict(a_run(0.98), committed, SEEDS, 0.95)
    mean, std = statistics.mean(SEEDS), statistics.stdev(SEEDS)
    assert entry["difference_pp"] == pytest.approx(100 * (0.98 - mean))
    assert entry["standard_deviations"] == pytest.approx((0.98 - mean) / std)
    assert "outside" in verdict_lines({"wide": entry}).splitlines()[0]


def test_the_intervals_are_bonferroni_corrected_over_the_variants_that_have_one() -> None:
    assert bonferroni(1) == 0.95
    assert bonferroni(4) == pytest.approx(0.9875)
    assert bonferroni(0) == 0.95  # no interval: nothing to correct
    wider_low, _ = interval(0.975)
    low, _ = interval(0.95)
    between = (wider_low + low) / 2  # outside the 95 % interval, inside the 97.5 % one
    assert verdict(a_run(between), a_run(md5="old"), SEEDS, 0.95)["verdict"] == "differs"
    assert verdict(a_run(between), a_run(md5="old"), SEEDS, 0.975)["verdict"] == "reproduced"

    records = [record(f"r{i}", accuracy=value) for i, value in enumerate(SEEDS)]
    pools = pool({"wide": records, "small": records[:1], "cnn": records}, "test_accuracy")
    runs = {v: a_run(between) for v in pools}
    entries = verdicts(runs, {v: a_run(md5="old") for v in pools}, pools, "test_accuracy")
    assert {v: e["verdict"] for v, e in entries.items()} == {
        "wide": "reproduced",  # at 97.5 %: two variants have an interval
        "small": "unstudied",
        "cnn": "reproduced",
    }
    assert entries["wide"]["confidence"] == pytest.approx(0.975)
    assert correction_line(entries).startswith(
        "Each interval holds one new run at 97.50 % (Bonferroni over the 2 variant(s) with one)"
    )


def test_identical_bytes_need_no_interval_and_win_over_any_change() -> None:
    changed = dataclasses.replace(a_run(md5="same"), fingerprint={**CONTENT, "params": {}})
    assert verdict(changed, a_run(md5="same"), [], 0.95)["verdict"] == "identical"
    entry = verdict(a_run(0.5, md5="same"), a_run(md5="same"), SEEDS, 0.95)
    assert entry["verdict"] == "identical" and entry["inside"] is False  # the evidence stays
    assert verdict(a_run(md5=None), a_run(md5=None), SEEDS, 0.95)["verdict"] == "reproduced"


def test_changed_code_params_or_libraries_give_no_verdict_and_say_what_changed() -> None:
    run_ = a_run()
    run_.fingerprint["params"]["models.wide"] = {"dropout": 0.3}
    run_.fingerprint["files"]["stages/training.py"] = "cd"
    run_.fingerprint["libraries"]["keras"] = "3.16.0"
    entry = verdict(run_, a_run(md5="old"), SEEDS, 0.95)
    assert entry["verdict"] == "changed"
    assert entry["changes"] == [
        "models.wide.dropout 0.0 → 0.3",
        "stages/training.py",
        "keras 3.15.1 → 3.16.0",
    ]
    assert (
        verdict_lines({"wide": entry})
        .splitlines()[0]
        .endswith(
            "no verdict: models.wide.dropout 0.0 → 0.3; stages/training.py; keras 3.15.1 → 3.16.0"
        )
    )
    new_variant = verdict(a_run(), None, SEEDS, 0.95)
    assert (new_variant["verdict"], new_variant["changes"]) == (
        "changed",
        ["no committed run at HEAD"],
    )


def test_a_run_is_judged_by_the_pooled_records_or_where_groups_differ_by_its_own_group() -> None:
    like = [record(f"l{i}", accuracy=a, cpu="a CPU") for i, a in enumerate(SEEDS)]
    other = [record(f"o{i}", accuracy=a, cpu="another CPU") for i, a in enumerate(SEEDS)]
    far = [record(f"f{i}", accuracy=a - 0.01, cpu="another CPU") for i, a in enumerate(SEEDS)]
    unlike_run = a_run(factors=("a third CPU (sse4_2 avx avx2 fma)", 1, "3.11"))
    for records, run_, verdict_, like_count in [
        (like + other, a_run(), "reproduced", len(like)),  # pooled: all ten judge it
        (like + other, unlike_run, "reproduced", 0),  # pooled, none like it: the line says so
        (like + far, a_run(), "reproduced", len(like)),  # apart: its own group alone
        (like + far, unlike_run, "unstudied", 0),  # apart, and no group of its own
    ]:
        pools = pool({"wide": records}, "test_accuracy")
        entry = verdicts({"wide": run_}, {"wide": a_run(md5="old")}, pools, "test_accuracy")
        assert (entry["wide"]["verdict"], entry["wide"]["seeds_like_this_run"]) == (
            verdict_,
            like_count,
        )
        unlike = "none of this run's CPU, threads and Python" in verdict_lines(entry)
        assert unlike is (verdict_ == "reproduced" and like_count == 0)
    assert pool({"wide": like + far}, "test_accuracy")["wide"].apart
    assert not pool({"wide": like + other}, "test_accuracy")["wide"].apart


def test_no_current_records_and_one_record_give_no_verdict_two_give_one() -> None:
    committed = a_run(md5="old")
    assert verdict(a_run(), committed, [], 0.95)["verdict"] == "unstudied"
    assert verdict(a_run(), committed, SEEDS[:1], 0.95)["verdict"] == "unstudied"
    assert verdict(a_run(), committed, SEEDS[:2], 0.95)["verdict"] == "reproduced"
    line = verdict_lines({"new": verdict(a_run(), committed, [], 0.95)})
    assert "no verdict: 0 seed-study record(s) for a run like this, 2 needed" in line
    assert correction_line({}).startswith("No variant has seed-study records")


def test_the_committed_run_is_read_from_head_and_an_edit_shows_as_a_change(
    tiny_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_copy)
    committed = committed_run("wide", commit_reader("HEAD"))
    assert committed == read_run("wide", read_workspace)  # nothing changed since the commit
    write_params(tiny_copy, TINY_SETTINGS | {"models.wide.dropout": 0.1})
    now = read_run("wide", read_workspace)
    entry = verdict(dataclasses.replace(now, model_md5="retrained"), committed, [], 0.95)
    assert (entry["verdict"], entry["changes"]) == ("changed", ["models.wide.dropout 0.0 → 0.1"])
    assert committed_run("small", commit_reader("HEAD")) == read_run("small", read_workspace)
    assert committed_run("new", commit_reader("HEAD")) is None  # a variant HEAD does not have
    assert committed_run("wide", commit_reader("no-such-revision")) is None
    (tiny_copy / "dvc.lock").unlink()
    assert read_run("wide", read_workspace).model_md5 is None  # no lock: nothing is identical
    shutil.rmtree(tiny_copy / ".git")
    assert committed_run("wide", commit_reader("HEAD")) is None  # not a Git checkout


def test_the_readmes_words_on_the_committed_run_hold_for_the_committed_results() -> None:
    """The README: the committed run at 2 threads on the seed study's CPU kind, the study's ten
    seeds at 1 thread and three at 2, pooled, and `wide_dropout`'s committed run below every
    seed-study run, the 2-thread ones included, and outside its interval."""
    readme = " ".join((REPO / "README.md").read_text().split())
    for claim in (
        "The committed run trained at 2 threads on the seed study's kind of CPU; the study ran "
        "ten seeds at 1 thread and three at 2, and the report finds no difference between the "
        "two thread groups, so it pools them",
        "`wide_dropout`'s committed run lies below every one of its seed-study runs, the 2-thread "
        "ones included, and outside the interval (a test checks both): no thread effect, but "
        f"seed {parse_yaml((REPO / 'params.yaml').read_text())['train']['seed']} drawing lower "
        "than any of the thirteen.",
    ):
        assert claim in readme
    # HEAD's files: a `make repro` on another CPU rewrites the workspace's.
    entries = committed("reports/reproduction.json")
    names = {r["name"] for r in json.loads(committed_text("HEAD", "reports/seeds_current.json"))}
    records = json.loads(committed_text("HEAD", "reports/seeds.json"))
    counted = [r for r in records if r["name"] in names]
    assert len(counted) == len(names)
    trained = [committed(f"history/{v}.json")["environment"] for v in entries]
    kinds = {(r["environment"]["cpu"], tuple(r["environment"]["cpu_flags"])) for r in counted}
    assert {(e["cpu"], tuple(e["cpu_flags"]), e["threads"]) for e in trained} == {
        (*kind, 2) for kind in kinds
    }
    assert len(kinds) == 1
    for variant in entries:
        threads = [r["threads"] for r in counted if r["variant"] == variant]
        assert (threads.count(1), threads.count(2), len(threads)) == (10, 3, 13), variant
    series = {v: [r for r in counted if r["variant"] == v] for v in entries}
    assert not [v for v, p in pool(series, "test_accuracy").items() if p.apart]
    wide_dropout = [r["test_accuracy"] for r in counted if r["variant"] == "wide_dropout"]
    assert entries["wide_dropout"]["test_accuracy"] < min(wide_dropout)
    assert entries["wide_dropout"]["inside"] is False
