"""A study that fails or is stopped: Ctrl-C, SIGTERM, SIGHUP, a failed run, a second study,
the user's own DVC queue beside it, bad input. Each fails in one line, keeps the finished runs
and leaves no run behind; each runs the real stages on the tiny pipeline in a copy, on a real
LocalCluster."""

import contextlib
import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stages.files import parse_yaml
from stages.fingerprint import installed_libraries
from tests.conftest import (
    BIN,
    REPO,
    assert_fails_cleanly,
    commit_all,
    copy_project,
    dvc,
    read_records,
    run,
    seed_study_command,
    subprocess_env,
    yaml_text,
)
from tools.cluster import RUN_FAILED, STAGE_POLL, check_libraries, stage_module, stages_timed
from tools.experiments import Run

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

GUARD_SECONDS = 600  # against a study that hangs, not a timing check


def study_copy(tiny_project: Path, tmp_path: Path) -> Path:
    """A copy of the tiny pipeline without study records, committed as a user would."""
    project = Path(shutil.copytree(tiny_project, tmp_path / "project", symlinks=True))
    (project / "reports/seeds.json").unlink()
    commit_all(project, "no study yet")
    return project


def start_study(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        seed_study_command(*args), cwd=project, env=subprocess_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def run_processes(project: Path) -> list[psutil.Process]:
    """The study runs of `project` on any worker (`python -m tools.cluster` with the project as
    its source), and everything they started: DVC and the stages."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "tools.cluster" in cmdline and str(project.resolve()) in " ".join(cmdline):
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended since
                found += [process, *process.children(recursive=True)]
    return found


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


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of the processes that still run: not ended, nor a zombie."""
    running = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running


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
    process.send_signal(signal.SIGINT)
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


@pytest.mark.usefixtures("ctrl_c_enabled")
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])  # SIGINT: above
def test_a_signal_mid_training_stops_every_run_and_keeps_the_records_file(
    tiny_project: Path, tmp_path: Path, signal_number: int
) -> None:
    project = study_copy(tiny_project, tmp_path)
    records = project / "reports/seeds.json"
    records.write_text("[]\n")  # a records file the study must leave intact
    commit_all(project, "an empty records file")
    process = start_study(project, "--seeds", "8", "9", "10", "--variants", "wide", "--jobs", "2")
    wait_until(lambda: training(project), process)
    runs = run_processes(project)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "error: interrupted: 0 record(s) kept" in stderr.splitlines()[-1]
    _, left = psutil.wait_procs(runs, timeout=30)
    assert alive(left) == []  # the training stopped with the study
    assert json.loads(records.read_text()) == []
    assert experiment_names(project) == []


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
    command = [sys.executable, "-m", "tools.cluster", run_, json.dumps(source), "--threads", "1"]
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
    assert stage_module(["python", "-m", "tools.cluster", "{}"]) == ""
