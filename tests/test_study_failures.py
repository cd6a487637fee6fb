"""A study that fails or is stopped: Ctrl-C, SIGTERM, SIGHUP, a failed run, a second study,
the user's own DVC queue beside it, bad input. Each fails in one line, keeps the finished runs
and leaves no run behind; each runs the real stages on the tiny pipeline in a copy, on a real
LocalCluster."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from stages.files import parse_yaml
from stages.fingerprint import installed_libraries
from tests.conftest import (
    BIN,
    REPO,
    alive,
    assert_fails_cleanly,
    commit_all,
    copy_project,
    dvc,
    read_records,
    run,
    run_processes,
    seed_study_command,
    subprocess_env,
    yaml_text,
)
from tools.experiments import Run
from tools.run import STAGE_POLL, check_libraries, stage_module, stages_timed
from tools.task import RUN_FAILED

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

GUARD_SECONDS = 600  # against a study that hangs, not a timing check


def study_copy(tiny_project: Path, tmp_path: Path) -> Path:
    """A copy of the tiny pipeline without study records, committed as a user would."""
    project = Path(shutil.copytree(tiny_project, tmp_path / "project", symlinks=True))
    (project / "reports/seeds.json").unlink()
    commit_all(project, "no study yet")
    return project


def start_study(project: Path, *args: str) -> subprocess.Popen:
    """The study in a process group of its own, as a terminal starts a command: Ctrl-C there
    reaches the whole group (the head and its LocalCluster's workers)."""
    return subprocess.Popen(
        seed_study_command(*args), cwd=project, env=subprocess_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def ctrl_c(process: subprocess.Popen) -> None:
    """What a terminal sends on Ctrl-C: SIGINT to the foreground process group."""
    os.killpg(process.pid, signal.SIGINT)


def wait_until(condition, process: subprocess.Popen) -> None:  # noqa: ANN001
    deadline = time.monotonic() + GUARD_SECONDS
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)


def training(project: Path) -> bool:
    return any(stage_module(command_line(p)) == "train" for p in alive(run_processes(project)))


def command_line(process: psutil.Process) -> list[str]:
    """The process's command line, or none once it has ended."""
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def experiment_names(project: Path) -> list[str]:
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=project).stdout
    return sorted(ref.rsplit("/", 1)[-1] for ref in refs.split() if "/stash" not in ref)


@pytest.mark.usefixtures("ctrl_c_enabled")
def test_a_second_study_refuses_and_ctrl_c_keeps_the_finished_runs_for_the_rerun(
    tiny_project: Path, tmp_path: Path
) -> None:
    """While the first run trains, a second study in the same project refuses in one line.
    Ctrl-C once the first run is recorded and the second trains: the second stops with the
    study, the first is kept, and the same command does the second."""
    project = study_copy(tiny_project, tmp_path)
    process = start_study(project, "--seeds", "8", "9", "--variants", "wide", "--jobs", "1")
    wait_until(lambda: training(project), process)
    second = run(
        seed_study_command("--seeds", "10", "--variants", "small"), cwd=project, check=False
    )
    assert_fails_cleanly(second, f"another study is running in this project (pid {process.pid})")
    wait_until(lambda: (project / "reports/seeds.json").exists() and training(project), process)
    runs = run_processes(project)
    ctrl_c(process)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "error: interrupted: 1 record(s) kept" in stderr.splitlines()[-1]
    _, left = psutil.wait_procs(runs, timeout=30)
    assert alive(left) == []  # the training stopped with the study
    kept = read_records(project)
    assert [r["name"] for r in kept] == ["seed-wide-s8"]
    assert experiment_names(project) == ["seed-wide-s8"]

    rerun = run(seed_study_command("--seeds", "8", "9", "--variants", "wide"), cwd=project).stdout
    assert "1 runs to do, 1 recorded" in rerun
    records = read_records(project)
    assert [r["name"] for r in records] == ["seed-wide-s8", "seed-wide-s9"]
    assert records[:1] == kept


def second_ctrl_c(process: subprocess.Popen) -> None:
    """Ctrl-C, and again half a second later: while the head stops the runs."""
    ctrl_c(process)
    time.sleep(0.5)
    ctrl_c(process)


def hang_up(process: subprocess.Popen) -> None:
    """What a closed terminal sends: SIGHUP to the foreground process group."""
    os.killpg(process.pid, signal.SIGHUP)


@pytest.mark.usefixtures("ctrl_c_enabled")
@pytest.mark.parametrize(
    "stop",
    [lambda process: process.send_signal(signal.SIGTERM), hang_up, second_ctrl_c],
    ids=["sigterm", "sighup-to-group", "ctrl-c-twice"],
)  # one Ctrl-C: above
def test_a_signal_mid_training_stops_every_run_and_keeps_the_records_file(
    tiny_project: Path, tmp_path: Path, stop: Callable[[subprocess.Popen], None]
) -> None:
    project = study_copy(tiny_project, tmp_path)
    records = project / "reports/seeds.json"
    records.write_text("[]\n")  # a records file the study must leave intact
    commit_all(project, "an empty records file")
    process = start_study(project, "--seeds", "8", "9", "10", "--variants", "wide", "--jobs", "2")
    wait_until(lambda: training(project), process)
    runs = run_processes(project)
    stop(process)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "error: interrupted: 0 record(s) kept" in stderr.splitlines()[-1]
    _, left = psutil.wait_procs(runs, timeout=30)
    assert alive(left) == []  # the training stopped with the study
    assert json.loads(records.read_text()) == []
    assert experiment_names(project) == []


@pytest.mark.usefixtures("ctrl_c_enabled")
def test_ctrl_c_before_the_cluster_starts_ends_in_the_studys_one_line(
    tiny_project: Path, tmp_path: Path
) -> None:
    """Ctrl-C once the study has said what it will do, while its LocalCluster starts."""
    project = study_copy(tiny_project, tmp_path)
    process = start_study(project, "--seeds", "8", "--variants", "wide", "--jobs", "1")
    assert process.stdout.readline() == "1 runs to do, 0 recorded\n"
    ctrl_c(process)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("error: interrupted: 0 record(s) kept")
    assert experiment_names(project) == []


def test_a_users_experiment_named_like_a_run_is_refused_and_never_overwritten(
    tiny_project: Path, tmp_path: Path
) -> None:
    """The user's own `seed-wide-s8` with another dropout: the study refuses in one line and
    leaves it as it was; once removed as the hint says, the same command runs. The sweep's
    uncommitted outputs (docs/tuning.md, reports/sweep.json), which no run reads, are no reason
    to refuse, as docs/studies.md's sequence needs."""
    project = study_copy(tiny_project, tmp_path)
    (project / "docs").mkdir()
    (project / "docs/tuning.md").write_text("# Tuning\n")
    (project / "reports/sweep.json").write_text("[]\n")
    commit_all(project, "the sweep's outputs, committed once")
    dvc("exp", "run", "--temp", "-n", "seed-wide-s8", "-S", "models.wide.dropout=0.3",
        "train@wide", cwd=project)  # fmt: skip
    before = run(["git", "for-each-ref", "refs/exps"], cwd=project).stdout
    with (project / "docs/tuning.md").open("a") as doc:
        doc.write("a sweep's table\n")
    (project / "reports/sweep.json").write_text("[{}]\n")
    command = seed_study_command("--seeds", "8", "--variants", "wide", "--jobs", "1")
    result = run(command, cwd=project, check=False)
    assert_fails_cleanly(
        result, "experiment(s) seed-wide-s8 of commit", "dvc exp remove seed-wide-s8"
    )
    assert run(["git", "for-each-ref", "refs/exps"], cwd=project).stdout == before
    dvc("exp", "remove", "seed-wide-s8", cwd=project)
    assert "1 runs to do, 0 recorded" in run(command, cwd=project).stdout
    assert [r["name"] for r in read_records(project)] == ["seed-wide-s8"]


def test_a_failed_run_sends_no_more_and_names_itself(tiny_project: Path, tmp_path: Path) -> None:
    """Seed 8 fails at once, seed 9 trains only once seed 8 has failed and is kept, seed 10
    never starts."""
    project = study_copy(tiny_project, tmp_path)
    failed = tmp_path / "seed-8-failed"  # outside the workers' clones, which both can see
    training_module = project / "stages/training.py"
    training_module.write_text(
        training_module.read_text().replace(
            "    if not is_chief(params.train):",
            "    if params.train.seed == 8:\n"
            f"        Path({str(failed)!r}).touch()\n"
            "        raise ValueError('seed 8 breaks')\n"
            f"    while not Path({str(failed)!r}).exists():\n"
            "        time.sleep(0.1)\n"
            "    if not is_chief(params.train):",
        )
    )
    commit_all(project, "seed 8 breaks")
    command = seed_study_command("--seeds", "8", "9", "10", "--variants", "wide", "--jobs", "2")
    result = run(command, cwd=project, check=False)
    assert_fails_cleanly(result, "experiment seed-wide-s8 failed")
    assert "seed-wide-s8 | ValueError: seed 8 breaks" in result.stderr
    assert [r["name"] for r in read_records(project)] == ["seed-wide-s9"]  # it finished
    assert experiment_names(project) == ["seed-wide-s9"]  # seed 10 never ran


def test_a_study_beside_the_users_own_dvc_queue_leaves_it_alone(
    tiny_project: Path, tmp_path: Path
) -> None:
    project = study_copy(tiny_project, tmp_path)
    (project / "reports/seeds.json").write_text("[]\n")  # the report stage reads it
    commit_all(project, "an empty records file")
    dvc("exp", "run", "--queue", "-n", "drop1", "-S", "models.wide.dropout=0.1", cwd=project)
    subprocess.run(
        [str(BIN / "dvc"), "queue", "start", "-j", "1"], cwd=project, env=subprocess_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    try:
        study = run(seed_study_command("--seeds", "8", "--variants", "wide"), cwd=project)
        assert "1 runs to do, 0 recorded" in study.stdout
        deadline = time.monotonic() + GUARD_SECONDS
        while "Success" not in (states := dvc("queue", "status", cwd=project).stdout):
            assert "Failed" not in states and time.monotonic() < deadline, states
            time.sleep(2)
    finally:
        dvc("queue", "stop", "--kill", cwd=project, check=False)
    assert experiment_names(project) == ["drop1", "seed-wide-s8"]
    assert [r["name"] for r in read_records(project)] == ["seed-wide-s8"]
    # The queued experiment of docs/scaling.md, with its params and its metrics.
    rows = csv.DictReader(dvc("exp", "show", "--csv", cwd=project).stdout.splitlines())
    [mine] = [row for row in rows if row["Experiment"] == "drop1"]
    assert (mine["models.wide.dropout"], mine["train.threads"]) == ("0.1", "1")
    assert float(mine["metrics/wide.json:test.accuracy"]) > 0.9


def test_uncommitted_changes_fail_in_one_line_before_any_run(
    tiny_project: Path, tmp_path: Path
) -> None:
    project = study_copy(tiny_project, tmp_path)
    with (project / "stages/training.py").open("a") as module:
        module.write("# changed\n")
    result = run(seed_study_command("--seeds", "8"), cwd=project, check=False)
    assert_fails_cleanly(result, "uncommitted changes (stages/training.py", "commit them")
    assert experiment_names(project) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--jobs", "0"), "--jobs 0 is not allowed"),
        (("--jobs", "-2"), "--jobs -2 is not allowed"),
        (("--recipe-2016", "--variants", "cnn"), "--recipe-2016: no 2016 recipe for cnn"),
        (("--recipe-2016", "--variants", "wide", "--jobs", "0"), "--jobs 0 is not allowed"),
        (("--seeds", "8", "8"), "--seeds repeats [8]"),
        (("--seeds", "8", "42"), "--seeds includes 42, the committed run's train.seed"),
        (("--seeds", "4", "3"), "--seeds includes [3], seed(s) of the sweep (sweep.yaml)"),
        (("--variants", "nope"), "unknown variant 'nope'"),
        (("--output", "{bad}"), "bad.json is not valid JSON"),
        (("--output", "{twice}"), "twice.json holds seed-wide-s8 more than once"),
        (("--output", "{partial}"), "partial.json: record 1 has no `variant`"),
    ],
)
def test_bad_input_fails_in_one_line_before_any_run(
    tiny_project: Path, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    record = read_records(REPO)[0] | {"name": "seed-wide-s8"}
    files = {"bad": "[{", "twice": json.dumps([record, record])}
    files["partial"] = json.dumps([{k: v for k, v in record.items() if k != "variant"}])
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(content)
    arguments = [arg.format(**{name: tmp_path / f"{name}.json" for name in files}) for arg in args]
    result = run(seed_study_command(*arguments), cwd=tiny_project, check=False)
    assert_fails_cleanly(result, fragment)
    assert experiment_names(tiny_project) == []  # nothing ever ran in the shared fixture


def test_a_study_without_the_split_fails_before_any_run(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    result = run(seed_study_command("--seeds", "8"), cwd=project, check=False)
    assert_fails_cleanly(result, "the split is missing", "dvc repro split")


def test_a_bad_sweep_space_fails_before_any_run(tiny_project: Path) -> None:
    space = REPO / "tools/sweep.yaml"
    broken = parse_yaml(space.read_text())
    broken["variants"]["nope"] = {"plain": {}}
    path = tiny_project.parent / "broken-space.yaml"
    path.write_text(yaml_text(broken))
    command = [sys.executable, "-m", "tools.sweep", "--space", str(path)]
    assert_fails_cleanly(run(command, cwd=tiny_project, check=False), "variant 'nope'")
    del broken["variants"]["nope"]
    broken["variants"]["wide"]["a..b"] = {}  # not allowed in a Git ref
    path.write_text(yaml_text(broken))
    assert_fails_cleanly(run(command, cwd=tiny_project, check=False), "recipe name 'a..b'")
    assert experiment_names(tiny_project) == []


def test_a_worker_with_other_libraries_than_the_head_fails_the_run_before_it_starts(
    tiny_project: Path,
) -> None:
    """A worker's run with other library versions than the head's would not be like the
    others: it fails in one line naming what differs, before it pulls or trains anything."""
    source = {"origin": str(tiny_project), "cache": "", "libraries": installed_libraries()}
    source["libraries"] = {**source["libraries"], "keras": "2.0.0"}
    run_ = json.dumps({"variant": "wide", "seed": 8})
    command = [sys.executable, "-m", "tools.run", run_, json.dumps(source), "--threads", "1"]
    command += ["--parent", str(os.getpid())]
    result = run(command, cwd=tiny_project, check=False)
    assert result.returncode == RUN_FAILED
    keras = installed_libraries()["keras"]
    assert result.stderr.splitlines() == [
        f"  seed-wide-s8 | this worker runs keras {keras} (head: 2.0.0): install the head's lock "
        "here"
    ]  # the log line that the head shows above its one-line error, as for any failed run
    assert experiment_names(tiny_project) == []
    source["libraries"] = installed_libraries()
    check_libraries(Run("wide", 1), source["libraries"])  # the same versions pass


def test_a_runs_stage_processes_are_timed_by_stage_and_nothing_else(tmp_path: Path) -> None:
    """`python -m stages.NAME` children count, each from its start to its end; other
    children (DVC, Git, a shell around the stage) do not."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages/__init__.py").write_text("")
    (tmp_path / "stages/nap.py").write_text("import time\ntime.sleep(2)\n")
    seconds: dict[str, float] = {}
    with stages_timed(seconds):
        subprocess.run(["sh", "-c", f"{sys.executable} -m stages.nap"], cwd=tmp_path, check=True)
        subprocess.run([sys.executable, "-c", "import time; time.sleep(0.5)"], check=True)
    assert list(seconds) == ["nap"]
    assert 2 - STAGE_POLL <= seconds["nap"] < 4  # its 2 s of sleep, once, seen every STAGE_POLL
    assert stage_module(["python", "-m", "stages.train", "wide"]) == "train"
    assert stage_module(["sh", "-c", "python -m stages.train wide"]) == ""
    assert stage_module(["python", "-m", "tools.run", "{}"]) == ""
