"""The report: its table from metrics, the long history for DVC plots, and the README's copy."""

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t, ttest_ind

from stages.errors import StageError
from stages.fingerprint import STUDIED_STAGES, installed_libraries, recorded_libraries
from stages.fingerprint import fingerprint as fingerprint_of
from stages.report import (
    ABOVE,
    BELOW,
    WITHIN,
    against_2016_table,
    chart_records,
    current_records,
    history_csv,
    holm,
    mcnemar,
    noise_band,
    noise_line,
    p_text,
    prediction_interval,
    probability_text,
    recipe_2016_table,
    stale_line,
    summary_table,
    update_readme,
    welch,
)
from stages.stats import mean_interval, probability_above
from tests.conftest import (
    REPO,
    commit_all,
    output_bytes,
    repo_params,
    rerun_outputs,
    run,
    run_stage,
    write_params,
)


def test_summary_table_puts_the_run_beside_the_seed_study_and_2016() -> None:
    metrics = {
        "small": {
            "test": {"accuracy": 0.9671},
            "params": 9474,
            "flops_per_image": 103_488,
            "validation": {"best_epoch": 40},
            "training": {"epochs": 120},
        },
        "new": {
            "test": {"accuracy": 0.9},
            "params": 10,
            "flops_per_image": 2_500_000,
            "validation": {"best_epoch": 1},
            "training": {"epochs": 2},
        },
    }
    training = {
        "small": {"timing": {"seconds": 150.4, "samples_per_second": 39_893.6}},
        "new": {"timing": {"seconds": 3.0, "samples_per_second": 1234.4}},
    }
    seeds = {"small": [0.966, 0.968, 0.970], "new": []}
    table = summary_table(metrics, training, seeds, {"small": 0.965})
    rows = table.splitlines()
    assert rows[2] == (
        "| small | 9,474 | 0.10 | 96.71 % | 3 | 96.80 ± 0.20 % | 96.60 – 97.00 % | 96.50 % "
        "| +0.30 pp | 40 | 120 | 150 s | 39,894 |"
    )
    assert rows[3] == "| new | 10 | 2.50 | 90.00 % | – | – | – | – | – | 1 | 2 | 3 s | 1,234 |"


def test_only_records_of_todays_fingerprint_count_and_the_rest_are_named_in_one_line() -> None:
    def record(variant: str, seed: int, fingerprint: str, accuracy: float) -> dict:
        name = f"seed-{variant}-s{seed}"
        return {"name": name, "variant": variant, "seed": seed, "fingerprint": fingerprint,
                "test_accuracy": accuracy}  # fmt: skip

    records = [
        record("wide", 1, "a", 0.985),
        record("wide", 2, "b", 0.97),
        record("small", 1, "a", 0.96),
        record("cnn", 1, "b", 0.99),
        record("wide", 3, "a", 0.98),  # current, but of a seed the study does not declare
    ]
    current = current_records(records, {"wide": "a", "small": "c", "cnn": "a"}, [1, 2])
    assert current == records[:1]
    assert current_records(records, {"wide": "a"}, [1, 2, 3]) == [records[0], records[4]]
    assert stale_line(records, current, "run `python -m tools.seed_study`") == (
        "4 seed-study record(s) of cnn, small, wide left out: made by other code, params or "
        "libraries than today's, or of a seed outside report.seeds (run `python -m "
        "tools.seed_study` to redo them)\n"
    )
    assert stale_line(current, current, "-") == ""
    assert chart_records(current, ["small", "wide"], {"wide": 0.9836, "small": 0.965}) == [
        {"name": "seed-wide-s1", "variant": "wide", "seed": 1, "test_accuracy": 0.985,
         "reference": 0.9836},
        {"name": None, "variant": "small", "seed": None, "test_accuracy": None, "reference": 0.965},
    ]  # fmt: skip


def overlay(changes: dict[str, bytes]):
    """A reader of the repo's files, with some files' bytes changed."""
    return lambda path: changes[path] if path in changes else (REPO / path).read_bytes()


def changed_params(dotted: str, value) -> dict:
    params = repo_params()
    *parents, last = dotted.split(".")
    section = params
    for key in parents:
        section = section[key]
    section[last] = value
    return params


LIBRARIES = {"python": "3.11", "tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6"}


def fingerprint(variant: str, params: dict, read, libraries=LIBRARIES, stages=STUDIED_STAGES):
    return fingerprint_of(variant, params, read, libraries, stages)


def test_the_fingerprint_changes_with_what_decides_a_result_and_nothing_else() -> None:
    params = repo_params()
    today = fingerprint("wide", params, overlay({}))
    assert today == fingerprint("wide", repo_params(), overlay({}))
    for library in ("tensorflow", "keras", "numpy"):
        other = {**LIBRARIES, library: LIBRARIES[library] + ".1"}
        assert fingerprint("wide", params, overlay({}), other) != today
    other_python = {**LIBRARIES, "python": "3.13"}  # unlike, not stale (stages/records.py)
    assert fingerprint("wide", params, overlay({}), other_python) == today

    def edited(path: str) -> bytes:
        return (REPO / path).read_bytes() + b"\n# edited\n"

    pipeline = (REPO / "dvc.yaml").read_text()
    deciding = [
        overlay({"stages/training.py": edited("stages/training.py")}),
        overlay({"stages/evaluation.py": edited("stages/evaluation.py")}),
        overlay({"data/split/manifest.json": edited("data/split/manifest.json")}),
        overlay({"dvc.yaml": pipeline.replace("        - stages/tf_quiet.py\n", "", 1).encode()}),
    ]
    for read in deciding:
        assert fingerprint("wide", params, read) != today
    for dotted, value in [("models.wide.dropout", 0.1), ("train.steps_per_execution", 1)]:
        assert fingerprint("wide", changed_params(dotted, value), overlay({})) != today

    not_deciding = [
        overlay({"stages/report.py": edited("stages/report.py")}),
        overlay({"stages/fetch.py": edited("stages/fetch.py")}),
        overlay({"dvc.yaml": pipeline.replace("reports/summary.md:", "reports/s.md:").encode()}),
    ]
    for read in not_deciding:
        assert fingerprint("wide", params, read) == today
    for dotted, value in [("train.seed", 7), ("train.threads", 1), ("models.small.dropout", 0.3)]:
        assert fingerprint("wide", changed_params(dotted, value), overlay({})) == today


def test_a_sweep_runs_fingerprint_covers_training_and_not_evaluation() -> None:
    params = repo_params()
    today = fingerprint("wide", params, overlay({}), stages=("train",))
    assert today != fingerprint("wide", params, overlay({}))
    evaluation = (REPO / "stages/evaluation.py").read_bytes() + b"\n# edited\n"
    training = (REPO / "stages/training.py").read_bytes() + b"\n# edited\n"
    edited = overlay({"stages/evaluation.py": evaluation})
    assert fingerprint("wide", params, edited, stages=("train",)) == today
    assert fingerprint("wide", params, edited) != fingerprint("wide", params, overlay({}))
    edited = overlay({"stages/training.py": training})
    assert fingerprint("wide", params, edited, stages=("train",)) != today


def test_installed_libraries_are_the_versions_a_run_records() -> None:
    """What the head computes without TensorFlow equals what a run records with it."""
    environment = json.loads((REPO / "history/wide.json").read_text())["environment"]
    recorded = recorded_libraries(environment)
    assert set(recorded) == set(LIBRARIES)
    script = (
        "import json, keras, numpy, platform, tensorflow as tf; print(json.dumps({"
        "'python': platform.python_version(), 'tensorflow': tf.__version__, "
        "'keras': keras.__version__, 'numpy': numpy.__version__}))"
    )
    here = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
    )
    assert recorded_libraries(here) == installed_libraries()


def test_mcnemar_counts_discordant_digits_and_gives_the_exact_p_value() -> None:
    correct_a = np.array([True] * 8 + [False] * 2 + [True] * 90)
    correct_b = np.array([False] * 8 + [True] * 2 + [True] * 90)
    only_a, only_b, p_value = mcnemar(correct_a, correct_b)
    assert (only_a, only_b) == (8, 2)
    # Two-sided exact binomial test of 8 of 10 at p = 0.5: 2 * (45 + 10 + 1) / 1024.
    assert p_value == pytest.approx(112 / 1024)
    assert mcnemar(correct_a, correct_a) == (0, 0, 1.0)


def test_the_noise_band_of_a_single_run_is_t_times_s_times_root_two() -> None:
    # Std 0.011547 over 4 seeds; t(3) at 97.5 % is 3.1824 (a t table): 3.1824 · s · √2 = 5.20 pp.
    accuracies = [0.97, 0.99, 0.97, 0.99]
    assert noise_band(accuracies) == pytest.approx(3.18245 * 0.0115470 * math.sqrt(2), rel=1e-5)
    assert noise_band([0.97]) is None
    line = noise_line({"small": accuracies, "cnn": [0.99]})
    assert (
        line
        == "Noise bands of a single run's `test.accuracy`: `small` ±5.20 pp (4 seeds, t = 3.18).\n"
    )
    assert noise_line({"cnn": [0.99]}).startswith("No seed study is current")


def test_the_2016_recipe_table_tests_todays_recipe_against_it_with_welch_and_holm() -> None:
    today = {"small": [0.97, 0.99, 0.97, 0.99], "wide": [0.985, 0.986, 0.984], "cnn": [0.99] * 3}
    old = {"small": [0.95, 0.99, 0.95, 0.99], "wide": [0.98, 0.981, 0.979]}
    references = {"small": 0.965, "wide": 0.9836}
    rows = recipe_2016_table(today, old, references).splitlines()
    assert len(rows) == 4  # header, rule and the two 2016 variants with both studies
    p_small = ttest_ind(today["small"], old["small"], equal_var=False).pvalue
    p_wide = ttest_ind(today["wide"], old["wide"], equal_var=False).pvalue
    assert p_wide < p_small  # Holm: the smaller p times 2, the larger times 1 (at least as big)
    small, wide = rows[2].split(" | "), rows[3].split(" | ")
    assert small[:5] == ["| small", "96.50 %", "4", "97.00 ± 2.31 %", "98.00 ± 1.15 %"]
    assert small[5].startswith("+1.00 pp [")
    assert small[6] == f"{p_small:.2g} ({max(p_small, 2 * p_wide):.2g}) |"
    assert wide[6] == f"{p_wide:.2g} ({2 * p_wide:.2g}) |"
    one_seed = recipe_2016_table(today, {"small": [0.96], "wide": old["wide"]}, references)
    assert len(one_seed.splitlines()) == 3  # small with one seed of 2016's recipe: no test
    assert recipe_2016_table(today, {}, references).startswith("No 2016-recipe study is current")


def test_welch_gives_the_difference_of_seed_means_its_interval_and_p() -> None:
    a = [0.97, 0.99, 0.97, 0.99]  # mean 0.98, variance 0.000133
    b = [0.95, 0.99, 0.95, 0.99]  # mean 0.97, variance 0.000533
    va, vb = 0.0004 / 3 / 4, 0.0016 / 3 / 4  # each mean's variance, s² / n
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)  # Welch–Satterthwaite: 4.41
    half = t.ppf(0.975, df) * se
    p_value = 2 * t.sf(0.01 / se, df)
    difference, p_welch = welch(a, b)
    assert difference == f"+1.00 pp [{100 * (0.01 - half):+.2f}, {100 * (0.01 + half):+.2f}]"
    assert p_welch == pytest.approx(p_value)
    assert welch(a, [0.97]) == ("–", None)


def test_holm_multiplies_the_kth_smallest_p_by_m_minus_k_and_keeps_the_order() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 2 x 0.5 is exactly 1; 0.6 keeps the running max
    assert holm([0.49, 0.6]) == pytest.approx([0.98, 0.98])  # just under the clip
    assert holm([0.01, None, 0.02]) == pytest.approx([0.02, None, 0.02])  # None: no test
    assert holm([]) == []


VALUES = [0.9655, 0.9661, 0.9683, 0.9670, 0.9649]


def test_the_intervals_and_the_probability_match_their_definitions() -> None:
    values = VALUES
    n, mean, std = len(values), statistics.mean(values), statistics.stdev(values)
    one_run = t.interval(0.95, n - 1, loc=mean, scale=std * math.sqrt(1 + 1 / n))
    assert prediction_interval(values) == pytest.approx(one_run, rel=1e-12)
    of_mean = t.interval(0.99, n - 1, loc=mean, scale=std / math.sqrt(n))
    assert mean_interval(values, 0.99) == pytest.approx(of_mean, rel=1e-12)
    scale = std * math.sqrt(1 + 1 / n)
    assert probability_above(values, 0.966) == pytest.approx(t.sf((0.966 - mean) / scale, n - 1))
    assert probability_above(values, mean) == pytest.approx(0.5)
    assert probability_above(values, one_run[0]) == pytest.approx(0.975)  # the same t model
    assert probability_above([0.98, 0.98], 0.98 - 1e-9) == 1.0  # no spread: the value again
    assert probability_above([0.98, 0.98], 0.98) == 0.0


def verdict_of(values: list[float], reference: float, variants: int = 1) -> str:
    """The against-2016 verdict of `values`, in a table of `variants` studied variants."""
    seeds = {f"v{i}": values for i in range(variants)}
    table = against_2016_table(seeds, dict.fromkeys(seeds, reference))
    return table.splitlines()[2].rsplit("|", 2)[1].strip()


def test_above_2016_only_where_the_interval_for_one_new_run_clears_the_figure() -> None:
    low, _ = prediction_interval(VALUES)  # one variant: no correction, 95 %
    assert verdict_of(VALUES, low - 1e-9) == ABOVE
    assert verdict_of(VALUES, low + 1e-9) == WITHIN


def test_below_2016_only_where_the_interval_for_the_mean_lies_under_the_figure() -> None:
    _, high = mean_interval(VALUES)
    assert verdict_of(VALUES, high + 1e-9) == BELOW
    assert verdict_of(VALUES, high - 1e-9) == WITHIN


def test_the_verdicts_intervals_carry_bonferroni_over_the_variants() -> None:
    """Between the 95 % and the 98.3 % interval's lower end: above for one variant, within noise
    for each of three; the header and the note name the level."""
    three = 1 - 0.05 / 3
    reference = (prediction_interval(VALUES)[0] + prediction_interval(VALUES, three)[0]) / 2
    assert verdict_of(VALUES, reference) == ABOVE
    assert verdict_of(VALUES, reference, variants=3) == WITHIN
    reference = (mean_interval(VALUES)[1] + mean_interval(VALUES, three)[1]) / 2
    assert verdict_of(VALUES, reference) == BELOW
    assert verdict_of(VALUES, reference, variants=3) == WITHIN
    table = against_2016_table({v: VALUES for v in "abc"}, dict.fromkeys("abc", 0.96))
    assert "| Mean, 98.3 % interval | One new run, 98.3 % interval |" in table
    assert "Bonferroni over the 3 variant(s)" in table
    assert against_2016_table({"v": VALUES[:1]}, {"v": 0.96}).startswith("No seed study")


def test_every_column_measures_from_the_same_2016_figure() -> None:
    row = against_2016_table({"small": VALUES}, {"small": 0.965}).splitlines()[2]
    mean_low, mean_high = mean_interval(VALUES)
    low, high = prediction_interval(VALUES)
    probability = probability_above(VALUES, 0.965)
    assert row == (
        f"| small | 5 | {100 * statistics.mean(VALUES):.2f} ± "
        f"{100 * statistics.stdev(VALUES):.2f} % | 96.50 % "
        f"| {100 * mean_low:.2f} – {100 * mean_high:.2f} % | {100 * low:.2f} – {100 * high:.2f} % "
        f"| {100 * probability:.1f} % | {WITHIN} |"
    )  # the summary's Δ column measures from the same figure (the summary table's test)


def test_p_values_and_probabilities_stop_at_the_precision_ten_seeds_support() -> None:
    assert p_text(0.001) == "0.001"
    assert p_text(0.000999) == "< 0.001"
    assert p_text(0.0123) == "0.012"
    assert p_text(None) == "–"
    assert probability_text(0.999) == "99.9 %"
    assert probability_text(0.9991) == "> 99.9 %"
    assert probability_text(0.001) == "0.1 %"
    assert probability_text(0.00099) == "< 0.1 %"


def test_history_csv_has_one_row_per_variant_and_epoch() -> None:
    columns = ("epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds")
    history = np.array(
        [(1, 0.9, 0.3, 0.91, 0.29, 1.5), (2, 0.95, 0.2, 0.94, 0.21, 1.2)],
        dtype=[(name, float) for name in columns],
    )
    lines = history_csv({"a": history, "b": history[:1]}).splitlines()
    assert lines[0] == "variant,epoch,accuracy,loss,val_accuracy,val_loss,seconds"
    assert lines[1] == "a,1,0.9,0.3,0.91,0.29,1.5"
    assert [line.split(",")[0] for line in lines[1:]] == ["a", "a", "b"]


def test_update_readme_replaces_only_the_marked_block(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n")
    update_readme(readme, "| new |\n", "results")
    assert (
        readme.read_text() == "intro\n<!-- results:start -->\n| new |\n<!-- results:end -->\nrest\n"
    )
    readme.write_text("no markers")
    with pytest.raises(StageError, match="no <!-- results:start -->"):
        update_readme(readme, "| new |\n", "results")


def committed_results(folder: Path) -> Path:
    """A Git repo in `folder` of HEAD's results and the code that reads them.

    HEAD's, not the workspace's: a local `make repro` rewrites timings there. A Git repo, so
    that the verdicts find the committed run at its HEAD.
    """
    inputs = ["params.yaml", "dvc.yaml", "dvc.lock", "stages", "data/split/manifest.json"]
    inputs += ["README.md", "metrics", "history", "plots", "reports"]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD", *inputs], cwd=REPO, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    run(["git", "init", "-q"], cwd=folder)
    run(["git", "config", "user.email", "test@example.com"], cwd=folder)
    run(["git", "config", "user.name", "test"], cwd=folder)
    commit_all(folder, "the committed results")
    return folder


def test_readme_tables_are_generated_from_the_committed_results(tmp_path: Path) -> None:
    """The report stage, run on the committed results, rewrites the README and summary as is."""
    committed_results(tmp_path)
    committed_readme = (tmp_path / "README.md").read_text()
    committed_summary = (tmp_path / "reports/summary.md").read_text()
    run_stage("report", "--readme", "README.md", cwd=tmp_path)
    assert (tmp_path / "README.md").read_text() == committed_readme
    assert (tmp_path / "reports/summary.md").read_text() == committed_summary


@pytest.mark.parametrize(("figure", "verdict"), [(0.99, BELOW), (0.960, ABOVE)])
def test_small_reads_below_a_2016_figure_of_99_and_above_one_of_96(
    tmp_path: Path, figure: float, verdict: str
) -> None:
    """The committed seed study against another figure for `small`, in a real report stage run
    with today's report code and `report.reference_accuracy.small` changed."""
    project = committed_results(tmp_path)
    shutil.copytree(REPO / "stages", project / "stages", dirs_exist_ok=True)
    write_params(project, {"report.reference_accuracy.small": figure})
    run_stage("report", cwd=project)
    summary = (project / "reports/summary.md").read_text()
    against = summary[summary.index("## Against 2016") :]
    row = next(line for line in against.splitlines() if line.startswith("| small |"))
    assert f"| {100 * figure:.2f} % |" in row
    assert row.endswith(f"| {verdict} |")


def test_readme_is_a_front_door_of_at_most_300_lines() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for linked in re.findall(r"\]\((docs/[\w.]+)\)", readme):
        assert (REPO / linked).exists(), linked


REPRODUCTION = "reports/reproduction.json"
REPORT_OUTPUTS = [
    "reports/summary.md",
    REPRODUCTION,
    "reports/seeds_current.json",
    "reports/history.csv",
    "reports/val_accuracy.png",
]


def reported(project: Path, overrides: dict | None = None) -> dict[str, bytes]:
    return rerun_outputs(project, ["report"], REPORT_OUTPUTS, overrides)


def test_report_is_a_deterministic_function_of_every_variants_results_and_its_params(
    tiny_copy: Path,
) -> None:
    # The pipeline's `dvc repro` ran before its commit: no committed run to compare with then.
    before_commit = json.loads(output_bytes(tiny_copy, REPORT_OUTPUTS)[REPRODUCTION])
    assert {e["verdict"] for e in before_commit.values()} == {"changed"}
    first = reported(tiny_copy)
    assert {e["verdict"] for e in json.loads(first[REPRODUCTION]).values()} == {"identical"}
    assert reported(tiny_copy) == first
    assert reported(tiny_copy, {"train.seed": 7, "split.seed": 7}) == first  # not the report's
    other_reference = reported(tiny_copy, {"report.reference_accuracy.small": 0.5})
    assert other_reference["reports/summary.md"] != first["reports/summary.md"]

    for variant in repo_params()["models"]:
        path = tiny_copy / "metrics" / f"{variant}.json"
        original = path.read_text()
        metrics = json.loads(original)
        metrics["test"]["accuracy"] = 0.123456
        path.write_text(json.dumps(metrics))
        assert reported(tiny_copy)["reports/summary.md"] != first["reports/summary.md"], variant
        path.write_text(original)
