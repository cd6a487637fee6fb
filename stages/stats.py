"""The statistics the report's claims rest on: t intervals, tests of groups and Holm's adjustment.

scipy computes every distribution; the functions here only say which one a claim uses.
"""

import math
import statistics
import warnings

from scipy.stats import f_oneway, t, ttest_ind

ALPHA = 0.05  # every test's and every family's error rate


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def prediction_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Where one new run's value falls at `confidence`: mean ± t(n−1)·s·√(1 + 1/n)."""
    n = len(values)
    mean, std = mean_std(values)
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * std * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Where the mean of all runs lies at `confidence`: mean ± t(n−1)·s/√n."""
    n = len(values)
    mean, std = mean_std(values)
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def probability_above(values: list[float], reference: float) -> float:
    """The probability that one new run's value exceeds `reference`, from the same t model as
    the prediction interval: (new − mean) / (s·√(1 + 1/n)) follows t(n−1)."""
    n = len(values)
    mean, std = mean_std(values)
    scale = std * math.sqrt(1 + 1 / n)
    if scale == 0:  # every run gave the same value: a new one gives it too
        return 1.0 if mean > reference else 0.0
    return float(t.sf((reference - mean) / scale, n - 1))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values of one family of tests, in the order given (a None,
    a test that could not run, is left out of the family)."""
    ranked = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p_value, index) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - rank) * p_value))
        adjusted[index] = running
    return adjusted


def groups_p_value(groups: list[list[float]]) -> float:
    """Whether the groups' means differ: Welch's t-test for two groups, Welch's one-way ANOVA
    for more (neither assumes equal variances; for two groups they give the same p).

    A group whose values are all equal (accuracies come in steps of 1e-4, so two runs may tie)
    gives Welch's ANOVA no weight to use: scipy's nan then, and the classic one-way ANOVA, with
    one variance for all groups, decides. All values equal: no difference, p = 1.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # of a zero variance: the nan says it
        if len(groups) == 2:
            p_value = ttest_ind(*groups, equal_var=False).pvalue
        else:
            p_value = f_oneway(*groups, equal_var=False).pvalue
        if math.isnan(p_value):
            p_value = f_oneway(*groups).pvalue
    return 1.0 if math.isnan(p_value) else float(p_value)
