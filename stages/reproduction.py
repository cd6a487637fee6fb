"""The verdict after every `dvc repro`: did each variant's run reproduce the committed one?

Each variant's run in the workspace is set against the committed run, Git's HEAD, and the seed
study's current records that `stages.records.pool` counts for a run of its factors:

- `identical`: its model's md5 in dvc.lock (as DVC writes it when the train stage ends) equals
  the committed dvc.lock's;
- `changed`: its code, params or libraries differ from the committed run's, or there is no
  committed run of it: no verdict, only what changed;
- `unstudied`: fewer than two seed-study records to judge it by: no verdict;
- `reproduced`: its test accuracy lies inside the prediction interval for one new run;
- `differs`: outside it, by so many points and seed standard deviations.

The intervals are Bonferroni-corrected over the variants that have one (each at 1 − 0.05/k), so
that a faithful rerun of all of them reads `differs` anywhere with at most 5 % probability,
whatever the dependence between variants.
"""

import json
from dataclasses import dataclass
from typing import Any

from stages.errors import StageError
from stages.files import parse_yaml
from stages.fingerprint import Reader, differences, fingerprint_content, recorded_libraries
from stages.paths import metrics_file, model_file, training_file
from stages.records import Factors, Pool, factors, record_factors
from stages.stats import ALPHA, mean_std, prediction_interval

SEEDS_COMMAND = "python -m tools.seed_study"


@dataclass(frozen=True)
class Run:
    """One variant's run as the verdict sees it."""

    test_accuracy: float
    model_md5: str | None  # as dvc.lock records it
    fingerprint: dict[str, Any]  # stages.fingerprint.fingerprint_content
    factors: Factors


def read_run(variant: str, read: Reader) -> Run:
    """The variant's run in the files that `read` reads: its metrics, its train record, its
    model's md5 in dvc.lock, and what its fingerprint covers (with the libraries it ran)."""
    metrics = json.loads(read(str(metrics_file(variant))))
    environment = json.loads(read(str(training_file(variant))))["environment"]
    params = parse_yaml(read("params.yaml"))
    try:
        lock = parse_yaml(read("dvc.lock")) or {}
    except (OSError, StageError):  # none in the workspace, or none at the commit
        lock = {}
    return Run(
        test_accuracy=metrics["test"]["accuracy"],
        model_md5=model_md5(lock, variant),
        fingerprint=fingerprint_content(variant, params, read, recorded_libraries(environment)),
        factors=factors(environment, environment["threads"]),
    )


def committed_run(variant: str, read: Reader) -> Run | None:
    """The variant's committed run, None where HEAD has none: outside a Git checkout, before
    the variant was added, or where HEAD's files lack or garble what a run needs."""
    try:
        return read_run(variant, read)
    except (StageError, KeyError, TypeError, ValueError):
        return None


def model_md5(lock: dict[str, Any], variant: str) -> str | None:
    """The md5 of the variant's model in a parsed dvc.lock, None where it has none."""
    stage = (lock.get("stages") or {}).get(f"train@{variant}") or {}
    outs = [out for out in stage.get("outs", []) if out["path"] == str(model_file(variant))]
    return outs[0].get("md5") if outs else None


def bonferroni(judged: int) -> float:
    """The confidence of each of `judged` intervals, so that all hold together at 1 − ALPHA."""
    return 1 - ALPHA / max(judged, 1)


def verdict(
    run: Run, committed: Run | None, seeds: list[float], confidence: float, like: int = 0
) -> dict[str, Any]:
    """One variant's verdict with its evidence: the interval wherever there are seeds for one,
    also for a run that needs none (identical) or gets none (changed); `like` of the seeds ran
    with the run's own CPU kind, threads and Python."""
    entry: dict[str, Any] = {
        "test_accuracy": run.test_accuracy,
        "committed_test_accuracy": committed.test_accuracy if committed else None,
        "seeds": len(seeds),
        "seeds_like_this_run": like,
        "interval": None,
        "changes": [],
    }
    if len(seeds) >= 2:
        low, high = prediction_interval(seeds, confidence)
        mean, std = mean_std(seeds)
        entry |= {
            "interval": [low, high],
            "confidence": confidence,
            "inside": low <= run.test_accuracy <= high,
            "difference_pp": 100 * (run.test_accuracy - mean),
            "standard_deviations": (run.test_accuracy - mean) / std if std else None,
        }
    if committed and run.model_md5 and run.model_md5 == committed.model_md5:
        return {"verdict": "identical"} | entry
    if committed is None:
        return {"verdict": "changed"} | entry | {"changes": ["no committed run at HEAD"]}
    if changes := differences(committed.fingerprint, run.fingerprint):
        return {"verdict": "changed"} | entry | {"changes": changes}
    if entry["interval"] is None:
        return {"verdict": "unstudied"} | entry
    return {"verdict": "reproduced" if entry["inside"] else "differs"} | entry


def verdicts(
    runs: dict[str, Run], committed: dict[str, Run | None], pools: dict[str, Pool], value: str
) -> dict[str, dict[str, Any]]:
    """Every variant's verdict, its interval corrected over the variants that have one."""
    judged_by = {v: pools[v].for_run(run.factors) for v, run in runs.items()}
    confidence = bonferroni(sum(len(records) >= 2 for records in judged_by.values()))
    return {
        v: verdict(
            run,
            committed[v],
            [r[value] for r in judged_by[v]],
            confidence,
            like=sum(record_factors(r) == run.factors for r in judged_by[v]),
        )
        for v, run in runs.items()
    }


def verdict_line(variant: str, entry: dict[str, Any], width: int) -> str:
    """`variant  verdict  accuracy  why`, one line."""
    accuracy = f"{100 * entry['test_accuracy']:.2f} %"
    return f"{variant:<{width}}  {entry['verdict']:<10}  {accuracy}  {reason(entry)}"


def reason(entry: dict[str, Any]) -> str:
    """The verdict's evidence in words."""
    match entry["verdict"]:
        case "identical":
            return "the model's bytes equal the committed run's"
        case "changed":
            return "no verdict: " + "; ".join(entry["changes"])
        case "unstudied":
            return (
                f"no verdict: {entry['seeds']} seed-study record(s) for a run like this, "
                f"2 needed (`{SEEDS_COMMAND}`)"
            )
    low, high = entry["interval"]
    where = "inside" if entry["inside"] else "outside"
    unlike = "" if entry["seeds_like_this_run"] else ", none of this run's CPU, threads and Python"
    text = f"{where} {100 * low:.2f} – {100 * high:.2f} % ({entry['seeds']} seeds{unlike})"
    if entry["verdict"] == "reproduced":
        return text
    deviations = entry["standard_deviations"]
    spread = f", {deviations:+.1f} seed standard deviations" if deviations is not None else ""
    return f"{text}: {entry['difference_pp']:+.2f} pp from the seed mean{spread}"


def correction_line(entries: dict[str, dict[str, Any]]) -> str:
    """Which correction the intervals carry, in one line."""
    judged = [e for e in entries.values() if e["interval"] is not None]
    if not judged:
        return f"No variant has seed-study records for an interval (`{SEEDS_COMMAND}`)."
    confidence = judged[0]["confidence"]
    return (
        f"Each interval holds one new run at {100 * confidence:.2f} % (Bonferroni over the "
        f"{len(judged)} variant(s) with one): a faithful rerun of all of them reads `differs` "
        f"anywhere with at most {100 * ALPHA:.0f} % probability."
    )


def verdict_lines(entries: dict[str, dict[str, Any]]) -> str:
    width = max(map(len, entries), default=0)
    lines = [verdict_line(variant, entry, width) for variant, entry in entries.items()]
    return "\n".join([*lines, correction_line(entries)]) + "\n"
