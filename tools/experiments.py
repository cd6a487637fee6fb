"""Study runs as DVC experiments: one run's `dvc exp run`, in the foreground, and its record.

A run trains one variant with one seed (and, in a sweep, a recipe's overrides) as a named
experiment of the current commit, with targets that rerun only that variant's stages:

    dvc exp run -n seed-cnn-s3 -S train.seed=3 -S train.threads=1 evaluate@cnn

Its record is read back from the experiment's Git commit, with the fingerprint of the code,
params and libraries it ran (stages/fingerprint.py). A study writes each record as its run
finishes, so nothing finished is lost, and a rerun does only the runs that are missing or stale.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from stages.errors import StageError
from stages.files import parse_yaml
from stages.fingerprint import (
    STUDIED_STAGES,
    commit_reader,
    fingerprint,
    git,
    recorded_libraries,
    with_overrides,
)
from stages.paths import metrics_file, training_file
from tools.task import LOG_LINES

NEEDED_STAGES = ("fetch", "split")  # whose outputs every run reads; the rest it makes itself


@dataclass(frozen=True)
class Source:
    """Where a worker clones the project from and sends its experiment back to."""

    origin: str  # a Git URL, or the head's own folder on one machine
    libraries: dict[str, str]  # the head's installed_libraries(), which every worker must have
    cache: str = ""  # on one machine, the head's DVC cache, which the clones share


@dataclass(frozen=True)
class Run:
    """One training run: a variant, a seed and, with a recipe, the `models.<variant>` keys it
    sets; a `seed` study's run is evaluated on the test set, a `sweep`'s never."""

    variant: str
    seed: int
    recipe: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    study: Literal["seed", "sweep"] = "seed"

    @property
    def name(self) -> str:
        """The experiment's name, which says what it is: seed-cnn-s3, seed-wide-2016-s4,
        sweep-wide-adam-s1."""
        recipe = f"-{self.recipe}" if self.recipe else ""
        return f"{self.study}-{self.variant}{recipe}-s{self.seed}"

    @property
    def evaluates(self) -> bool:
        return self.study == "seed"

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages that the run runs, which its fingerprint covers."""
        return STUDIED_STAGES if self.evaluates else ("train",)

    def settings(self, threads: int) -> dict[str, Any]:
        """The params that this run sets, as dotted keys."""
        return {
            "train.seed": self.seed,
            "train.threads": threads,
            **{f"models.{self.variant}.{key}": value for key, value in self.overrides.items()},
        }

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        """params.yaml as parsed, with the recipe's overrides applied."""
        return with_overrides(params, self.variant, self.overrides)


def threads_per_run(jobs: int) -> int:
    """Each of `jobs` runs at a time gets its share of this process's cores."""
    return max(1, len(os.sched_getaffinity(0)) // jobs)


def override(key: str, value: Any) -> str:
    """A `-S` argument: strings as they are, other values as JSON (numbers, booleans, lists)."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value)}"


def exp_run_command(run: Run, threads: int) -> list[str]:
    """The `dvc exp run` of one run: its name, its params as -S and its variant's last stage."""
    settings = [arg for k, v in run.settings(threads).items() for arg in ("-S", override(k, v))]
    target = f"evaluate@{run.variant}" if run.evaluates else f"train@{run.variant}"
    return ["dvc", "exp", "run", "-n", run.name, *settings, target]


def venv_env() -> dict[str, str]:
    """This environment with this Python's folder first on PATH, so that the stages' `python`
    is this venv's whether it is activated or not."""
    venv = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": os.pathsep.join([venv, os.environ["PATH"]])}


def dvc(
    *args: str, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run DVC from this Python; unless `check` is off, fail with its last error line; fail
    after `timeout` seconds, when given."""
    command = [sys.executable, "-m", "dvc", *args]
    env = {**venv_env(), "GIT_TERMINAL_PROMPT": "0"}
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise StageError(
            f"`dvc {' '.join(args[:3])}` took more than {timeout:.0f} s", "check the remote"
        ) from None
    if check and result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise StageError(f"`dvc {' '.join(args[:3])}` failed: {lines[-1]}", "run it to see why")
    return result


def head_commit() -> str:
    return git("rev-parse", "HEAD").decode().strip()


def experiment_ref(base: str, name: str) -> str:
    """Where DVC keeps experiment `name` of the commit `base`."""
    return f"refs/exps/{base[:2]}/{base[2:]}/{name}"


def experiment_names(base: str) -> set[str]:
    """The names of the experiments of the commit `base`, in one Git call."""
    refs = git("for-each-ref", "--format=%(refname)", experiment_ref(base, ""))
    return {ref.rsplit("/", 1)[-1] for ref in refs.decode().split()}


def experiment_commit(base: str, name: str) -> str | None:
    """The commit of experiment `name` of `base`, or None when there is none."""
    refs = git("for-each-ref", "--format=%(objectname)", experiment_ref(base, name))
    return refs.decode().strip() or None


def read_record(run: Run, base: str) -> dict[str, Any] | None:
    """The record of the run's experiment of `base`, read from its commit; None when none ran.

    It holds the validation result (and the test accuracy for a seed-study run), the threads it
    ran on, the machine, the seconds that training took, and the fingerprint of what it ran.
    """
    commit = experiment_commit(base, run.name)
    if commit is None:
        return None
    read = commit_reader(commit)
    training = json.loads(read(str(training_file(run.variant))))
    record = {
        "name": run.name,
        "variant": run.variant,
        "seed": run.seed,
        **({"recipe": run.recipe, "overrides": run.overrides} if run.recipe else {}),
        "val_accuracy": training["validation"]["kept_accuracy"],
        "best_epoch": training["validation"]["best_epoch"],
        "kept_epoch": training["validation"]["kept_epoch"],
    }
    if run.evaluates:
        record["test_accuracy"] = json.loads(read(str(metrics_file(run.variant))))["test"][
            "accuracy"
        ]
    params = parse_yaml(read("params.yaml"))
    return {
        **record,
        "threads": training["environment"]["threads"],
        "train_seconds": training["timing"]["seconds"],
        "fingerprint": fingerprint(
            run.variant, params, read, recorded_libraries(training["environment"]), run.stages
        ),
        "base": base,
        "experiment": commit,
        "environment": training["environment"],
    }


def run_experiment(run: Run, threads: int) -> dict[str, Any]:
    """Run one experiment here, in the foreground, and return its record: a worker's task."""
    result = dvc(*exp_run_command(run, threads)[1:], check=False)
    if result.returncode != 0:
        show_log(run.name, (result.stdout + result.stderr).splitlines())
        raise run_failed(run.name)
    record = read_record(run, head_commit())
    if record is None:
        raise StageError(f"dvc exp run made no experiment {run.name}", "run it to see why")
    return record


class RunFailed(StageError):
    """A run that failed on its own (its code or params), not for want of a worker or a remote."""


def show_log(name: str, log: list[str]) -> None:
    """The failed run's last log lines, on stderr, each after the run's name."""
    for line in log[-LOG_LINES:] or ["(it printed nothing)"]:
        print(f"  {name} | {line}", file=sys.stderr)


def run_failed(name: str) -> RunFailed:
    """The one-line error that names a failed run (its log shown above it)."""
    return RunFailed(
        f"experiment {name} failed (its last lines are above)",
        "fix the cause and run the same command again: it does only what is missing or stale",
    )
