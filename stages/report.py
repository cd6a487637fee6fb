"""Stage report: compare the variants in reports/summary.md, reports/history.csv and a chart.

The summary holds the committed run beside the seed study (reports/seeds.json, written by
`python -m tools.seed_study`; only the records whose fingerprint matches today's code, params
and libraries count, and of those only the largest group of like runs: one thread count,
instruction set and Python minor; reports/seeds_current.json hands them to the seeds chart);
against 2016, each variant's verdict (above, below or within noise) with its intervals;
McNemar's exact test and Welch's test between each pair of variants, each p with its Holm
adjustment; and the machine that trained each variant. `python -m stages.report --readme
README.md` also copies the tables into the README.
"""

import argparse
import csv
import io
import itertools
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest, t, ttest_ind

from stages.errors import StageError, run_stage
from stages.files import parse_yaml, read_json, write_json, write_text
from stages.fingerprint import (
    commit_reader,
    current_fingerprint,
    installed_libraries,
    read_workspace,
)
from stages.history import HISTORY_COLUMNS, read_history
from stages.params import PARAMS_FILE, Params, load_params
from stages.paths import (
    CHART_FILE,
    HISTORY_TABLE_FILE,
    RECIPE_2016_FILE,
    REPORTS_DIR,
    SEEDS_CURRENT_FILE,
    SEEDS_FILE,
    SUMMARY_FILE,
    history_file,
    metrics_file,
    plots_dir,
    training_file,
)
from stages.plots import plot_validation_accuracy
from stages.records import SEED_FIELDS, Pool, factors_text, pool, read_records
from stages.reproduction import (
    committed_run,
    correction_line,
    read_run,
    reason,
    verdict_lines,
    verdicts,
)
from stages.stats import (
    ALPHA,
    holm,
    mean_interval,
    mean_std,
    prediction_interval,
    probability_above,
)

SEEDS_HINT = "run `python -m tools.seed_study`"
RECIPE_2016_COMMAND = "python -m tools.seed_study --recipe-2016"
RECIPE_2016_HINT = f"run `{RECIPE_2016_COMMAND}`"
RECIPE_2016 = " (2016's recipe)"  # its series' names: the variant's and this
# Not in stages/paths.py, which train and evaluate import: a change there stales every record.
REPRODUCTION_FILE = REPORTS_DIR / "reproduction.json"  # each variant's verdict against HEAD
# Below it, a p-value rests on tails further out than ten seeds (or one test set) can show.
P_FLOOR = 0.001
# The verdicts of a variant against its 2016 figure.
ABOVE, BELOW, WITHIN = "above 2016", "below 2016", "within noise of 2016"
VALUE = "test_accuracy"  # what the seed study's statistics and the verdicts compare
# The tables that `--readme` copies; the pooling table stays in reports/summary.md.
README_BLOCKS = (
    "reproduction",
    "results",
    "noise",
    "against2016",
    "recipe2016",
    "significance",
    "environment",
)


def percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def current_records(
    records: list[dict[str, Any]], fingerprints: dict[str, str], seeds: list[int]
) -> list[dict[str, Any]]:
    """The records of the declared `seeds` made by today's code, params and libraries of their
    variant."""
    return [
        r
        for r in records
        if r["fingerprint"] == fingerprints.get(r["variant"], "-") and r["seed"] in seeds
    ]


def stale_line(records: list[dict[str, Any]], current: list[dict[str, Any]], hint: str) -> str:
    """One line naming the records left out of every statistic, or nothing when none is."""
    stale = [r for r in records if r not in current]
    if not stale:
        return ""
    variants = ", ".join(sorted({r["variant"] for r in stale}))
    return (
        f"{len(stale)} seed-study record(s) of {variants} left out: made by other code, params "
        f"or libraries than today's, or of a seed outside report.seeds ({hint} to redo them)\n"
    )


def chart_records(
    current: list[dict[str, Any]], variants: list[str], references: dict[str, float]
) -> list[dict[str, Any]]:
    """The current records' test accuracies with each variant's 2016 figure, for the chart.

    A variant without a current record gets one row without a seed or an accuracy, so that the
    chart still shows it and its 2016 figure (DVC draws no chart for an empty file).
    """
    keys = ("name", "variant", "seed", "test_accuracy")
    rows = [{k: r[k] for k in keys} for r in current]
    studied = {row["variant"] for row in rows}
    rows += [dict.fromkeys(keys) | {"variant": v} for v in variants if v not in studied]
    return [{**row, "reference": references.get(row["variant"])} for row in rows]


def series(
    records: list[dict[str, Any]], variants: Any, suffix: str = ""
) -> dict[str, list[dict[str, Any]]]:
    """Each variant's records, a series of its own (named `variant` + `suffix`)."""
    return {v + suffix: [r for r in records if r["variant"] == v] for v in variants}


def seed_cells(accuracies: list[float], reference: float | None) -> list[str]:
    """Seeds, mean ± std, min – max and the mean's Δ vs 2016; dashes when there is no study."""
    if not accuracies:
        return ["–"] * 4
    mean, std = mean_std(accuracies)
    delta = f"{100 * (mean - reference):+.2f} pp" if reference is not None else "–"
    return [
        str(len(accuracies)),
        f"{100 * mean:.2f} ± {100 * std:.2f} %",
        f"{100 * min(accuracies):.2f} – {100 * max(accuracies):.2f} %",
        delta,
    ]


def summary_table(
    metrics: dict[str, dict],
    training: dict[str, dict],
    seeds: dict[str, list[float]],
    references: dict[str, float],
) -> str:
    """One row per variant: the committed run, the seed study, the 2016 figure and the cost."""
    lines = [
        "| Variant | Parameters | MFLOPs / image | Test accuracy | Seeds | Seed mean ± std "
        "| Seed range | 2016 | Δ mean vs 2016 | Best epoch | Epochs | Training time "
        "| Images / s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for variant, result in metrics.items():
        reference = references.get(variant)
        count, spread, extremes, delta = seed_cells(seeds[variant], reference)
        cells = [
            variant,
            f"{result['params']:,}",
            f"{result['flops_per_image'] / 1e6:.2f}",
            percent(result["test"]["accuracy"]),
            count,
            spread,
            extremes,
            percent(reference) if reference is not None else "–",
            delta,
            str(result["validation"]["best_epoch"]),
            str(result["training"]["epochs"]),
            f"{training[variant]['timing']['seconds']:.0f} s",
            f"{training[variant]['timing']['samples_per_second']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_predictions(variant: str) -> np.ndarray:
    """The (actual, predicted) rows that evaluate wrote for DVC's confusion matrix."""
    path = plots_dir(variant) / "predictions.csv"
    if not path.exists():
        raise StageError(f"{path} is missing", "run `dvc repro` to evaluate every variant")
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """Test digits only A got right, only B got right, and McNemar's exact two-sided p-value."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    p_value = binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return only_a, only_b, float(p_value)


def noise_band(accuracies: list[float]) -> float | None:
    """How far a single run's accuracy moves from another's with only the seed changed, at 95 %.

    The difference of two runs has standard deviation s·√2, with s estimated from n seeds, so
    the band is t(n−1)·s·√2; None without two seeds.
    """
    if len(accuracies) < 2:
        return None
    return float(t.ppf(0.975, len(accuracies) - 1)) * statistics.stdev(accuracies) * math.sqrt(2)


def noise_line(seeds: dict[str, list[float]]) -> str:
    """The README's noise rule: each variant's band, with its seeds and t."""
    bands = [
        f"`{variant}` ±{100 * band:.2f} pp ({len(values)} seeds, "
        f"t = {t.ppf(0.975, len(values) - 1):.2f})"
        for variant, values in seeds.items()
        if (band := noise_band(values)) is not None
    ]
    if not bands:
        return "No seed study is current: `python -m tools.seed_study` gives the noise bands.\n"
    return f"Noise bands of a single run's `test.accuracy`: {', '.join(bands)}.\n"


def pooling_table(pools: dict[str, Pool]) -> str:
    """Per series, its groups of CPU kind, threads and Python, whether their means differ
    (Welch; Welch's ANOVA for more than two; Holm across the series) and what counts."""
    lines = [
        "| Series | Groups: CPU (instruction sets), threads, Python: records | Test of the groups "
        "| p (Holm) | Counted |",
        "|---|---|---|--:|---|",
    ]
    for name, series_pool in pools.items():
        if not series_pool.records:
            continue
        groups = "; ".join(f"{factors_text(k)}: {len(g)}" for k, g in series_pool.groups.items())
        test = {0: "–", 1: "–", 2: "Welch"}.get(len(series_pool.tested), "Welch's ANOVA")
        cells = [name, groups, test, p_cell(series_pool), counted(series_pool)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def p_cell(series_pool: Pool) -> str:
    if series_pool.p_value is None:
        return "–"
    return f"{p_text(series_pool.p_value)} ({p_text(series_pool.holm_p)})"


def counted(series_pool: Pool) -> str:
    """What the statistics count of a series, and why."""
    kept, total = len(series_pool.counted), len(series_pool.records)
    if len(series_pool.groups) == 1:
        return f"all {total}"
    if series_pool.apart:
        return f"{kept} of {total}: the groups differ, the largest alone"
    text = f"{kept} pooled" if len(series_pool.tested) > 1 else f"{kept} of {total}"
    left = total - kept
    return text + (f"; {left} in groups too small to test left out" if left else "")


def seeds_cell(entry: dict[str, Any]) -> str:
    """The seeds behind a verdict, and how many ran with the run's CPU, threads and Python."""
    seeds, like = entry["seeds"], entry["seeds_like_this_run"]
    return str(seeds) if like == seeds else f"{seeds} ({like} like this run)"


def reproduction_table(entries: dict[str, dict[str, Any]]) -> str:
    """Each variant's verdict with its evidence (stages/reproduction.py), and the correction
    that its intervals carry."""
    lines = [
        "| Variant | Verdict | Test accuracy | Committed run | Seeds | Interval, one new run "
        "| From the seed mean | Why |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for variant, entry in entries.items():
        committed = entry["committed_test_accuracy"]
        interval, offset = "–", "–"
        if entry["interval"] is not None:
            low, high = entry["interval"]
            where = "inside" if entry["inside"] else "outside"
            interval = f"{100 * low:.2f} – {100 * high:.2f} % ({where})"
            offset = f"{entry['difference_pp']:+.2f} pp"
            if entry["standard_deviations"] is not None:
                offset += f" ({entry['standard_deviations']:+.1f} sd)"
        cells = [
            variant,
            entry["verdict"],
            percent(entry["test_accuracy"]),
            "–" if committed is None else percent(committed),
            seeds_cell(entry),
            interval,
            offset,
            reason(entry) if entry["verdict"] in ("identical", "changed", "unstudied") else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{correction_line(entries)}\n"


def welch(a: list[float], b: list[float]) -> tuple[str, float | None]:
    """Welch's t-test of two seed means: the difference with its 95 % interval, and p."""
    if len(a) < 2 or len(b) < 2:
        return "–", None
    result = ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(0.95)
    delta = statistics.mean(a) - statistics.mean(b)
    return (
        f"{100 * delta:+.2f} pp [{100 * interval.low:+.2f}, {100 * interval.high:+.2f}]",
        float(result.pvalue),
    )


def p_text(p_value: float | None) -> str:
    """A p-value to two digits, and below P_FLOOR only that it is below."""
    if p_value is None:
        return "–"
    return f"< {P_FLOOR:g}" if p_value < P_FLOOR else f"{p_value:.2g}"


def significance_table(correct: dict[str, np.ndarray], seeds: dict[str, list[float]]) -> str:
    """Each pair of variants: McNemar on the committed run's test predictions, Welch on the
    seed study's means; each test's p with its Holm adjustment over the table's pairs."""
    pairs = list(itertools.combinations(correct, 2))
    tests = [mcnemar(correct[a], correct[b]) for a, b in pairs]
    welches = [welch(seeds[a], seeds[b]) for a, b in pairs]
    mcnemar_holm = holm([p_value for _, _, p_value in tests])
    welch_holm = holm([p_value for _, p_value in welches])
    lines = [
        "| A vs B | Only A right | Only B right | McNemar p (Holm) | Δ test accuracy "
        "| Δ seed mean [95 % CI] | Welch p (Holm) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for index, (a, b) in enumerate(pairs):
        only_a, only_b, p_value = tests[index]
        delta = (only_a - only_b) / correct[a].size
        difference, welch_p = welches[index]
        welch_cell = p_text(welch_p)
        if welch_p is not None:
            welch_cell += f" ({p_text(welch_holm[index])})"
        lines.append(
            f"| {a} vs {b} | {only_a} | {only_b} | {p_text(p_value)} "
            f"({p_text(mcnemar_holm[index])}) | {100 * delta:+.2f} pp | {difference} "
            f"| {welch_cell} |"
        )
    return "\n".join(lines) + "\n"


def against_reference(values: list[float], reference: float, confidence: float) -> str:
    """ABOVE where the interval for one new run lies above `reference`, BELOW where the interval
    for the mean lies below it (both at `confidence`), else WITHIN: noise cannot tell them apart."""
    if prediction_interval(values, confidence)[0] > reference:
        return ABOVE
    if mean_interval(values, confidence)[1] < reference:
        return BELOW
    return WITHIN


def probability_text(probability: float) -> str:
    """A probability in percent, to the 0.1 % that ten seeds can support at either end."""
    if probability > 0.999:
        return "> 99.9 %"
    if probability < 0.001:
        return "< 0.1 %"
    return f"{100 * probability:.1f} %"


def against_2016_table(seeds: dict[str, list[float]], references: dict[str, float]) -> str:
    """Each 2016 variant's seeds against its figure as 2016 gave it: the verdict, both intervals
    it rests on (Bonferroni over the variants) and the probability that one new run clears it."""
    studied = {v: seeds[v] for v in references if len(seeds.get(v, [])) >= 2}
    if not studied:
        return "No seed study is current: `python -m tools.seed_study` gives these verdicts.\n"
    confidence = 1 - ALPHA / len(studied)
    level = f"{100 * confidence:.1f} %"
    lines = [
        f"| Variant | Seeds | Seed mean ± std | 2016 | Mean, {level} interval "
        f"| One new run, {level} interval | One new run above 2016 | Verdict |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for variant, values in studied.items():
        reference = references[variant]
        mean, std = mean_std(values)
        mean_low, mean_high = mean_interval(values, confidence)
        low, high = prediction_interval(values, confidence)
        lines.append(
            f"| {variant} | {len(values)} | {100 * mean:.2f} ± {100 * std:.2f} % "
            f"| {percent(reference)} | {100 * mean_low:.2f} – {100 * mean_high:.2f} % "
            f"| {100 * low:.2f} – {100 * high:.2f} % "
            f"| {probability_text(probability_above(values, reference))} "
            f"| {against_reference(values, reference, confidence)} |"
        )
    return (
        "\n".join(lines)
        + f"\n\n`{ABOVE}`: the interval for one new run lies above the figure; `{BELOW}`: the "
        f"interval for the mean lies below it; otherwise `{WITHIN}`, with the probability that "
        f"one new run clears the figure (the same t model). Each interval at {level}: "
        f"Bonferroni over the {len(studied)} variant(s), so that all verdicts hold together at "
        f"{100 * (1 - ALPHA):.0f} %.\n"
    )


def recipe_2016_table(
    today: dict[str, list[float]], recipe: dict[str, list[float]], references: dict[str, float]
) -> str:
    """Each 2016 variant trained with today's recipe and with 2016's over the same seeds:
    Welch's test of the means, Holm over the variants."""
    studied = [v for v in references if len(today.get(v, [])) >= 2 and len(recipe.get(v, [])) >= 2]
    if not studied:
        return f"No 2016-recipe study is current: `{RECIPE_2016_COMMAND}` gives it.\n"
    tests = [welch(today[v], recipe[v]) for v in studied]
    adjusted = holm([p_value for _, p_value in tests])
    lines = [
        "| Variant | 2016 figure | Seeds | 2016's recipe, mean ± std | Today's, mean ± std "
        "| Today's − 2016's [95 % CI] | Welch p (Holm) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for variant, (difference, p_value), holm_p in zip(studied, tests, adjusted, strict=True):
        old_mean, old_std = mean_std(recipe[variant])
        new_mean, new_std = mean_std(today[variant])
        lines.append(
            f"| {variant} | {percent(references[variant])} | {len(recipe[variant])} "
            f"| {100 * old_mean:.2f} ± {100 * old_std:.2f} % "
            f"| {100 * new_mean:.2f} ± {100 * new_std:.2f} % | {difference} "
            f"| {p_text(p_value)} ({p_text(holm_p)}) |"
        )
    return "\n".join(lines) + "\n"


def environment_table(training: dict[str, dict]) -> str:
    """The machine and libraries that trained each variant, from the train stage's records."""
    lines = [
        "| Variant | CPU | Instruction sets | Threads / cores | TensorFlow | Keras | NumPy "
        "| oneDNN | Op determinism |",
        "|---|---|---|--:|---|---|---|---|---|",
    ]
    for variant, record in training.items():
        env = record["environment"]
        lines.append(
            f"| {variant} | {env['cpu']} | {' '.join(env['cpu_flags'])} | "
            f"{env['threads']} / {env['cores']} | {env['tensorflow']} | {env['keras']} | "
            f"{env['numpy']} | {'on' if env['onednn'] else 'off'} | "
            f"{'on' if env['op_determinism'] else 'off'} |"
        )
    return "\n".join(lines) + "\n"


def history_csv(histories: dict[str, np.ndarray]) -> str:
    """Every variant's history in one long table with a `variant` column, for DVC plots."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("variant", *HISTORY_COLUMNS))
    for variant, history in histories.items():
        for row in history:
            writer.writerow(
                (
                    variant,
                    int(row["epoch"]),
                    *(repr(float(row[c])) for c in HISTORY_COLUMNS[1:]),
                )
            )
    return buffer.getvalue()


def readme_block(name: str) -> re.Pattern:
    """The text between `<!-- name:start -->` and `<!-- name:end -->` lines."""
    return re.compile(rf"(<!-- {name}:start -->\n)(.*?)(<!-- {name}:end -->)", re.DOTALL)


def update_readme(readme: Path, text: str, block: str) -> None:
    """Replace the marked block of the README with `text`."""
    content = readme.read_text()
    pattern = readme_block(block)
    if not pattern.search(content):
        raise StageError(
            f"{readme} has no <!-- {block}:start --> ... <!-- {block}:end --> block",
            "add the two markers where the text belongs",
        )
    write_text(readme, pattern.sub(lambda match: match[1] + text + match[3], content))


@dataclass(frozen=True)
class Studies:
    """Both studies' records, those of today's fingerprint and seeds, and how they pool."""

    records: list[dict[str, Any]]
    recipe_records: list[dict[str, Any]]
    fresh: list[dict[str, Any]]
    fresh_2016: list[dict[str, Any]]
    pools: dict[str, Pool]


def read_studies(params: Params) -> Studies:
    """reports/seeds.json and reports/recipe_2016.json, judged by today's fingerprints."""
    variants, recipes = list(params.models), params.report.recipe_2016
    raw_params = parse_yaml(PARAMS_FILE.read_text())
    libraries = installed_libraries()
    fingerprints = {v: current_fingerprint(v, raw_params, libraries) for v in variants}
    recipe_fingerprints = {
        v: current_fingerprint(v, raw_params, libraries, recipes[v]) for v in recipes
    }
    if not SEEDS_FILE.exists():
        raise StageError(f"{SEEDS_FILE} is missing", SEEDS_HINT)
    records = read_records(SEEDS_FILE, SEEDS_HINT, SEED_FIELDS)
    recipe_records = read_records(RECIPE_2016_FILE, RECIPE_2016_HINT, SEED_FIELDS)
    fresh = current_records(records, fingerprints, params.report.seeds)
    fresh_2016 = current_records(recipe_records, recipe_fingerprints, params.report.seeds)
    pools = pool(series(fresh, variants) | series(fresh_2016, recipes, RECIPE_2016), VALUE)
    return Studies(records, recipe_records, fresh, fresh_2016, pools)


def reproduction_now(variants: list[str], pools: dict[str, Pool]) -> dict[str, dict[str, Any]]:
    """Each variant's verdict: the workspace's run against HEAD's and the seed study."""
    runs = {v: read_run(v, read_workspace) for v in variants}
    head = commit_reader("HEAD")  # one reader, so that each file of HEAD is read once
    committed = {v: committed_run(v, head) for v in variants}
    return verdicts(runs, committed, {v: pools[v] for v in variants}, VALUE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", type=Path, help="also copy the tables into this README")
    parser.add_argument(
        "--verdicts", action="store_true", help="only print the verdicts against HEAD as it is"
    )
    args = parser.parse_args()

    params = load_params()
    variants = list(params.models)
    hint = "run `dvc repro` to evaluate every variant"
    metrics = {variant: read_json(metrics_file(variant), hint) for variant in variants}
    training = {variant: read_json(training_file(variant), hint) for variant in variants}
    studies = read_studies(params)
    reproduction = reproduction_now(variants, studies.pools)
    if args.verdicts:  # also after a commit that left the report's deps as they were
        print(verdict_lines(reproduction), end="")
        return

    histories = {variant: read_history(history_file(variant)) for variant in variants}
    correct = {v: np.equal(*read_predictions(v).T) for v in variants}
    pools, recipes = studies.pools, params.report.recipe_2016
    counted_records = [r for v in variants for r in pools[v].counted]
    current = [r for r in studies.fresh if r in counted_records]  # in the file's order
    seeds = {v: [r[VALUE] for r in pools[v].counted] for v in variants}
    seeds_2016 = {v: [r[VALUE] for r in pools[v + RECIPE_2016].counted] for v in recipes}
    references = params.report.reference_accuracy

    tables = {
        "reproduction": reproduction_table(reproduction),
        "results": summary_table(metrics, training, seeds, references),
        "noise": noise_line(seeds),
        "pooling": pooling_table(pools),
        "against2016": against_2016_table(seeds, references),
        "recipe2016": recipe_2016_table(seeds, seeds_2016, references),
        "significance": significance_table(correct, seeds),
        "environment": environment_table(training),
    }
    stale = stale_line(studies.records, studies.fresh, SEEDS_HINT) + stale_line(
        studies.recipe_records, studies.fresh_2016, RECIPE_2016_HINT
    )
    write_text(
        SUMMARY_FILE,
        "# Results\n\n## Did this run reproduce the committed one?\n\n{reproduction}\n"
        "## Results\n\n{results}\n{stale}## Against 2016\n\n{against2016}\n"
        "## What today's recipes add\n\n{recipe2016}\n"
        "## Is a difference real?\n\n{noise}\n{pooling}\n{significance}\n"
        "## Environment\n\n{environment}".format(**tables, stale=stale and stale + "\n"),
    )
    write_json(REPRODUCTION_FILE, reproduction)
    write_json(SEEDS_CURRENT_FILE, chart_records(current, variants, references))
    write_text(HISTORY_TABLE_FILE, history_csv(histories))
    plot_validation_accuracy(histories, CHART_FILE)
    if args.readme:
        for block in README_BLOCKS:
            update_readme(args.readme, tables[block], block)
    print(f"wrote {SUMMARY_FILE} and {REPRODUCTION_FILE}\n{stale}", end="")
    print(verdict_lines(reproduction), end="")


if __name__ == "__main__":
    run_stage(main)
