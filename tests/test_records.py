"""A study's records file: each run once, every field there with its type, and only like runs
pooled into one statistic."""

import json
import math
from pathlib import Path

import pytest
from scipy.stats import f_oneway, ttest_ind

from stages.errors import StageError
from stages.records import (
    SEED_FIELDS,
    SWEEP_FIELDS,
    Pool,
    factors,
    like_group,
    pool,
    read_records,
    record_factors,
)
from stages.stats import groups_p_value, holm

HINT = "run the study"
AVX2 = ["sse4_2", "avx", "avx2", "fma"]
AVX512 = [*AVX2, "avx512f"]


def record(
    name: str = "seed-wide-s1",
    threads: int = 1,
    flags: list[str] = AVX2,
    python: str = "3.11.7",
    accuracy: float = 0.981,
    cpu: str = "a CPU",
) -> dict:
    return {
        "name": name,
        "variant": "wide",
        "seed": 1,
        "fingerprint": "0123456789abcdef",
        "val_accuracy": 0.98,
        "test_accuracy": accuracy,
        "threads": threads,
        "environment": {"cpu": cpu, "cpu_flags": flags, "python": python},
    }


def written(tmp_path: Path, records: object) -> Path:
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps(records))
    return path


def test_a_well_formed_file_is_read_and_no_file_is_no_records(tmp_path: Path) -> None:
    records = [record("seed-wide-s1"), record("seed-wide-s2")]
    assert read_records(written(tmp_path, records), HINT, SEED_FIELDS) == records
    assert read_records(tmp_path / "none.json", HINT, SEED_FIELDS) == []


def test_a_run_recorded_twice_is_a_one_line_error(tmp_path: Path) -> None:
    path = written(tmp_path, [record("seed-wide-s1"), record("seed-wide-s2"), record()])
    with pytest.raises(StageError, match=r"seeds\.json holds seed-wide-s1 more than once"):
        read_records(path, HINT, SEED_FIELDS)


@pytest.mark.parametrize("field", sorted(SEED_FIELDS))
def test_a_record_without_a_field_names_the_file_the_record_and_the_field(
    tmp_path: Path, field: str
) -> None:
    broken = record("seed-wide-s2")
    del broken[field]
    path = written(tmp_path, [record(), broken])
    with pytest.raises(StageError, match=rf"seeds\.json: record 2 has no `{field}`"):
        read_records(path, HINT, SEED_FIELDS)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("seed", "1", "an integer"),
        ("seed", True, "an integer"),  # JSON true is not a seed
        ("seed", 1.0, "an integer"),
        ("test_accuracy", "0.98", "a number"),
        ("test_accuracy", None, "a number"),
        ("environment", [], "an object"),
        ("name", 1, "a string"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused(
    tmp_path: Path, field: str, value: object, allowed: str
) -> None:
    path = written(tmp_path, [record() | {field: value}])
    with pytest.raises(StageError, match=rf"record 1: `{field}` = .* expected {allowed}"):
        read_records(path, HINT, SEED_FIELDS)


def test_numbers_may_be_whole_and_a_sweep_record_needs_no_test_accuracy(tmp_path: Path) -> None:
    whole = record() | {"test_accuracy": 1, "val_accuracy": 0}
    assert read_records(written(tmp_path, [whole]), HINT, SEED_FIELDS) == [whole]
    sweep = record("sweep-wide-adam-s1") | {"recipe": "adam", "overrides": {}}
    del sweep["test_accuracy"]
    assert read_records(written(tmp_path, [sweep]), HINT, SWEEP_FIELDS) == [sweep]
    with pytest.raises(StageError, match="has no `test_accuracy`"):
        read_records(written(tmp_path, [sweep]), HINT, SEED_FIELDS)


@pytest.mark.parametrize(
    ("content", "message"),
    [("[{", "is not valid JSON"), ("{}", "does not hold a list"), ("[1]", "record 1 is int")],
)
def test_a_file_that_is_not_a_list_of_records_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "seeds.json"
    path.write_text(content)
    with pytest.raises(StageError, match=message):
        read_records(path, HINT, SEED_FIELDS)


def test_only_the_largest_group_of_like_runs_is_pooled_and_the_rest_are_named() -> None:
    one = [record(f"a{i}", threads=1) for i in range(3)]
    two = [record(f"b{i}", threads=2) for i in range(2)]
    other_cpu = [record("c0", threads=1, flags=AVX512)]
    other_python = [record("d0", threads=1, python="3.12.1"), record("d1", python="3.12.1")]
    pooled, line = like_group(two + one + other_cpu + other_python)
    assert pooled == one
    assert line == (
        "3 current records pooled, all trained at 1 thread on sse4_2 avx avx2 fma with Python "
        "3.11; 5 left out as unlike (3 other group(s) of thread count, instruction set and "
        "Python; the largest group is used)."
    )
    patch_release = [record(f"e{i}", python="3.11.9") for i in range(3)]
    assert like_group(one + patch_release)[0] == one + patch_release  # a minor, not a patch
    pooled, line = like_group(one)
    assert pooled == one and "left out" not in line
    assert like_group(two)[1].startswith("2 current records pooled, all trained at 2 threads on")
    assert like_group([]) == ([], "")


def test_a_tie_between_groups_pools_the_fewer_threads() -> None:
    """Two groups of one size: the runs at fewer threads, whichever comes first."""
    one, two = [record("a", threads=1)], [record("b", threads=2)]
    assert like_group(two + one)[0] == one
    assert like_group(one + two)[0] == one
    larger_two = [*two, record("c", threads=2)]
    assert like_group(one + larger_two)[0] == larger_two  # one run more wins over fewer threads


def runs(prefix: str, accuracies: list[float], **environment) -> list[dict]:
    return [record(f"{prefix}{i}", accuracy=a, **environment) for i, a in enumerate(accuracies)]


XEON = runs("x", [0.9850, 0.9855, 0.9860, 0.9852], cpu="Xeon", flags=AVX512)
EPYC = runs("e", [0.9851, 0.9858, 0.9854], cpu="EPYC")  # AVX2 only
EPYC_2 = runs("t", [0.9853, 0.9859], cpu="EPYC", threads=2)
SHIFTED = runs("s", [0.9870, 0.9875, 0.9872], cpu="EPYC")  # far above XEON


def test_the_factors_are_the_cpu_kind_threads_and_python_minor() -> None:
    assert record_factors(XEON[0]) == ("Xeon (sse4_2 avx avx2 fma avx512f)", 1, "3.11")
    assert record_factors(EPYC_2[0]) == ("EPYC (sse4_2 avx avx2 fma)", 2, "3.11")
    assert factors({}, 4) == ("unknown CPU (unknown instruction sets)", 4, "?")
    same_name = record("a", cpu="EPYC", flags=AVX512)  # another kind of the same model name
    assert record_factors(same_name) != record_factors(EPYC[0])


def test_groups_that_agree_are_pooled_and_the_p_value_is_scipys_welch_or_welchs_anova() -> None:
    pools = pool({"two": XEON + EPYC, "three": XEON + EPYC + EPYC_2}, "test_accuracy")
    two, three = pools["two"], pools["three"]
    values = [[r["test_accuracy"] for r in group] for group in (XEON, EPYC, EPYC_2)]
    p_two = ttest_ind(values[0], values[1], equal_var=False).pvalue
    p_three = f_oneway(*values, equal_var=False).pvalue
    assert (two.p_value, three.p_value) == pytest.approx((p_two, p_three), rel=1e-12)
    assert [two.holm_p, three.holm_p] == pytest.approx(holm([p_two, p_three]))
    assert not two.apart and two.counted == XEON + EPYC
    assert not three.apart and three.counted == XEON + EPYC + EPYC_2


def test_groups_that_differ_are_kept_apart_and_a_run_is_judged_by_its_own_group() -> None:
    apart = pool({"wide": XEON + SHIFTED}, "test_accuracy")["wide"]
    assert apart.holm_p < 0.05 and apart.apart
    assert apart.counted == XEON  # the largest group alone
    assert apart.for_run(record_factors(SHIFTED[0])) == SHIFTED
    assert apart.for_run(record_factors(EPYC_2[0])) == []  # no group of its own: no evidence


@pytest.mark.parametrize(("holm_p", "apart"), [(0.0499, True), (0.05, False), (None, False)])
def test_the_groups_are_kept_apart_just_below_five_percent_and_pooled_at_it(
    holm_p: float | None, apart: bool
) -> None:
    groups = {record_factors(XEON[0]): XEON, record_factors(EPYC[0]): EPYC}
    series = Pool(XEON + EPYC, groups, p_value=holm_p, holm_p=holm_p)  # None: not tested
    assert series.apart is apart
    assert series.counted == (XEON if apart else XEON + EPYC)


def test_a_group_needs_two_records_to_be_tested_and_pooled_beside_others() -> None:
    one = runs("o", [0.90], cpu="EPYC")
    lone = pool({"wide": one}, "test_accuracy")["wide"]
    assert lone.counted == one and lone.p_value is None  # a lone group counts, untested
    beside = pool({"wide": XEON + one}, "test_accuracy")["wide"]
    assert beside.tested == [record_factors(XEON[0])] and beside.p_value is None
    assert beside.counted == XEON  # too few to test against XEON: left out
    two = runs("o", [0.9851, 0.9856], cpu="EPYC")
    assert pool({"wide": XEON + two}, "test_accuracy")["wide"].counted == XEON + two
    assert pool({"wide": []}, "test_accuracy")["wide"].counted == []


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's own, on a zero variance
def test_groups_of_tied_runs_are_tested_with_one_variance_for_all() -> None:
    """Two runs of a group may tie (accuracies in steps of 1e-4): Welch's ANOVA gets no weight
    from it, so the classic one-way ANOVA decides; all values equal is no difference at all."""
    tied = [[0.9800, 0.9800], [0.9810, 0.9830], [0.9820, 0.9840]]
    assert math.isnan(f_oneway(*tied, equal_var=False).pvalue)
    assert groups_p_value(tied) == pytest.approx(f_oneway(*tied).pvalue, rel=1e-12)
    assert groups_p_value([[0.98, 0.98], [0.98, 0.98]]) == 1.0
    assert groups_p_value([[0.98, 0.98], [0.99, 0.99]]) == 0.0
    assert groups_p_value([[0.98, 0.98], [0.99, 0.991]]) == pytest.approx(
        ttest_ind([0.98, 0.98], [0.99, 0.991], equal_var=False).pvalue
    )
