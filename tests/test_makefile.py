"""The Makefile picks the newest supported Python on PATH, or refuses in one line; the locks."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.locks import lock_file, pins, supported_versions

FAKE_PYTHON = """#!/bin/sh
case "$*" in
  *version_info*) echo {version} ;;
  *) echo python{version} ;;
esac
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The Makefile and the lock files in a folder of their own, and a `bin` with no Python."""
    shutil.copy(REPO / "Makefile", tmp_path)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "id").symlink_to(shutil.which("id"))
    return tmp_path


def fake_python(folder: Path, version: str) -> Path:
    """A `python3.X` that answers the Makefile's two questions as CPython `version` would."""
    path = folder / "bin" / f"python{version}"
    path.write_text(FAKE_PYTHON.format(version=version))
    path.chmod(0o755)
    return path


def make_install(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`make install` with only `folder/bin` on PATH (`-n` in `args` prints, runs nothing)."""
    command = [shutil.which("make"), "install", *args]
    env = {"PATH": str(folder / "bin")}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)


def test_make_takes_the_newest_supported_python_on_path(folder: Path) -> None:
    for version in ("3.10", "3.11", "3.12"):
        fake_python(folder, version)
    result = make_install(folder, "-n")
    assert result.returncode == 0, result.stderr
    assert "python3.12 -m venv .venv" in result.stdout
    assert "-r requirements/3.12.lock" in result.stdout


def test_make_takes_the_python_it_is_given(folder: Path) -> None:
    fake_python(folder, "3.13")
    given = fake_python(folder, "3.11")
    result = make_install(folder, "-n", f"PYTHON={given}")
    assert f"{given} -m venv .venv" in result.stdout
    assert "-r requirements/3.11.lock" in result.stdout


def test_without_a_supported_python_make_says_so_in_one_line(folder: Path) -> None:
    fake_python(folder, "3.10")
    result = make_install(folder)
    assert result.returncode != 0
    assert result.stdout == "" and not (folder / ".venv").exists()
    [line] = result.stderr.splitlines()
    assert "no python3.13, python3.12 or python3.11 runs here" in line
    assert "make install PYTHON=/path/to/python3.12" in line


def test_an_unsupported_python_is_refused_in_one_line(folder: Path) -> None:
    old = fake_python(folder, "3.10")
    fake_python(folder, "3.12")
    result = make_install(folder, f"PYTHON={old}")
    assert result.returncode != 0
    assert result.stdout == "" and not (folder / ".venv").exists()
    [line] = result.stderr.splitlines()
    assert f"{old} is Python 3.10, not 3.11, 3.12 or 3.13" in line


def test_the_makefile_and_the_locks_cover_what_pyproject_admits() -> None:
    makefile = (REPO / "Makefile").read_text()
    listed = re.search(r"^PYTHONS := (.+)$", makefile, re.MULTILINE).group(1).split()
    assert sorted(listed) == supported_versions() == ["3.11", "3.12", "3.13"]
    for version in supported_versions():
        lines = lock_file(version).read_text().split()
        assert lines and all(re.fullmatch(r"[\w.-]+==[\w.]+", line) for line in lines)
        assert "tensorflow==2.21.0" in lines and "torch==2.13.0" in lines


def test_a_pip_report_becomes_pins_without_the_project_triton_or_a_local_label() -> None:
    report = {
        "install": [
            {"metadata": {"name": "torch", "version": "2.13.0+cpu"}},
            {"metadata": {"name": "mnist-dvc", "version": "0.1.0"}},
            {"metadata": {"name": "Absl-py", "version": "2.3.1"}},
            {"metadata": {"name": "triton", "version": "3.7.1"}},
        ]
    }
    assert pins(report) == ["Absl-py==2.3.1", "torch==2.13.0"]
