"""A study that fails or is stopped: Ctrl-C, a failed run, bad input. Each fails in one line,
keeps the finished runs and leaves nothing queued; each runs the real stages on the tiny
pipeline in a copy."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.files import parse_yaml
from tests.conftest import (
    REPO,
    assert_fails_cleanly,
    copy_project,
    dvc,
    read_records,
    run,
    seed_study_command,
    subprocess_env,
    yaml_text,
)

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests


def wait_for_records(project: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600  # a guard against a hung queue, not a timing check
    path = project / "reports/seeds.json"
    while not (path.exists() and len(read_records(project)) >= count):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.5)


@pytest.mark.usefixtures("ctrl_c_enabled")
def test_a_study_stopped_by_ctrl_c_keeps_finished_runs_and_the_rerun_does_the_rest(
    tiny_project: Path, tmp_path: Path
) -> None:
    project = Path(shutil.copytree(tiny_project, tmp_path / "project", symlinks=True))
    (project / "reports/seeds.json").unlink()
    command = seed_study_command("--seeds", "1", "2", "--variants", "wide", "--jobs", "1")
    process = subprocess.Popen(
        command, cwd=project, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for_records(project, 1, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert "error: interrupted:" in stderr.decode().splitlines()[-1]
    kept = read_records(project)
    assert len(kept) == 1
    states = dvc("queue", "status", cwd=project).stdout
    assert "Queued" not in states and "Running" not in states

    rerun = run(command, cwd=project).stdout
    assert "1 runs to do, 1 recorded" in rerun
    records = read_records(project)
    assert [r["name"] for r in records] == ["seed-wide-s1", "seed-wide-s2"]
    assert records[:1] == kept


def test_a_failed_run_removes_the_queued_ones_and_names_itself(
    tiny_project: Path, tmp_path: Path
) -> None:
    """Seed 1 fails at once, seed 2 trains slowly while the study notices, seed 3 waits."""
    project = Path(shutil.copytree(tiny_project, tmp_path / "project", symlinks=True))
    (project / "reports/seeds.json").unlink()
    training = project / "stages/training.py"
    training.write_text(
        training.read_text().replace(
            "    if not is_chief(params.train):",
            "    if params.train.seed == 1:\n        raise ValueError('seed 1 breaks')\n"
            "    time.sleep(40)\n"
            "    if not is_chief(params.train):",
        )
    )
    command = seed_study_command("--seeds", "1", "2", "3", "--variants", "wide", "--jobs", "1")
    result = run(command, cwd=project, check=False)
    assert_fails_cleanly(result, "experiment seed-wide-s1 failed")
    assert "seed-wide-s1 | ValueError: seed 1 breaks" in result.stderr
    assert [r["name"] for r in read_records(project)] == ["seed-wide-s2"]  # it finished
    states = dvc("queue", "status", cwd=project).stdout
    assert "seed-wide-s3" not in states  # removed before it started
    listed = dvc("exp", "list", "--name-only", cwd=project).stdout.split()
    assert listed == ["seed-wide-s2"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--jobs", "0"), "--jobs 0 is not allowed"),
        (("--jobs", "-2"), "--jobs -2 is not allowed"),
        (("--seeds", "1", "1"), "--seeds repeats [1]"),
        (("--seeds", "1", "42"), "--seeds includes 42, the committed run's train.seed"),
        (("--variants", "nope"), "unknown variant 'nope'"),
        (("--output", "{bad}"), "bad.json is not valid JSON"),
    ],
)
def test_bad_input_fails_in_one_line_before_any_run(
    tiny_project: Path, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    arguments = [arg.replace("{bad}", str(bad)) for arg in args]
    result = run(seed_study_command(*arguments), cwd=tiny_project, check=False)
    assert_fails_cleanly(result, fragment)
    assert queued_tasks(tiny_project) == []  # nothing was ever queued in the shared fixture


def queued_tasks(project: Path) -> list[str]:
    lines = dvc("queue", "status", cwd=project).stdout.splitlines()[1:]
    return [line for line in lines if line.strip() and "Worker status" not in line]


def test_a_study_without_the_split_fails_before_any_run(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    result = run(seed_study_command("--seeds", "1"), cwd=project, check=False)
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
    assert queued_tasks(tiny_project) == []
