"""The Makefile picks the newest supported Python on PATH, or refuses in one line; the locks
hold the pipeline (no torch, every file hashed) and install as they are, or fail in one line."""

import ast
import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO, documented_message
from tools.install import LOCKED, PIPELINE_LOCK, UV_LOCK, cause

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
    assert "python3.12 -m tools.install .venv requirements/pipeline.txt" in result.stdout


def test_make_takes_the_python_it_is_given(folder: Path) -> None:
    fake_python(folder, "3.13")
    given = fake_python(folder, "3.11")
    result = make_install(folder, "-n", f"PYTHON={given}")
    assert f"{given} -m tools.install .venv requirements/pipeline.txt" in result.stdout


# The lines docs/python.md shows (make prefixes each with the Makefile's name and line).
NO_PYTHON = ("python.md", "*** no python3.13, python3.12 or python3.11 runs here")
OLD_PYTHON = ("python.md", "*** python3.10 is Python 3.10")


def test_without_a_supported_python_make_says_so_in_one_line(folder: Path) -> None:
    fake_python(folder, "3.10")
    result = make_install(folder)
    assert result.returncode != 0
    assert result.stdout == "" and not (folder / ".venv").exists()
    [line] = result.stderr.splitlines()
    assert re.fullmatch(r"Makefile:\d+: ", line.removesuffix(documented_message(*NO_PYTHON))), line


def test_an_unsupported_python_is_refused_in_one_line(folder: Path) -> None:
    old = fake_python(folder, "3.10")
    fake_python(folder, "3.12")
    result = make_install(folder, f"PYTHON={old}")
    assert result.returncode != 0
    assert result.stdout == "" and not (folder / ".venv").exists()
    [line] = result.stderr.splitlines()
    documented = documented_message(*OLD_PYTHON).replace("*** python3.10 ", f"*** {old} ")
    assert re.fullmatch(r"Makefile:\d+: ", line.removesuffix(documented)), line


def supported_versions() -> list[str]:
    """The CPython minor versions that `requires-python` admits (">=3.A,<3.B")."""
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    first, end = map(int, re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec).groups())
    return [f"3.{minor}" for minor in range(first, end)]


def pins(lock: Path) -> dict[str, str]:
    """Each package of a lock, by normalized name, with its version and its hashes."""
    text = (REPO / lock).read_text()
    entries = re.findall(
        r"^([A-Za-z0-9][\w.-]*)==(\S+)[^\n]*\\\n((?:\s+--hash=sha256:\w+.*\n)+)", text, re.M
    )
    return {
        re.sub(r"[-_.]+", "-", name).lower(): (version, re.findall(r"sha256:(\w+)", hashes))
        for name, version, hashes in entries
    }


def test_the_makefile_names_every_python_that_pyproject_admits() -> None:
    makefile = (REPO / "Makefile").read_text()
    listed = re.search(r"^PYTHONS := (.+)$", makefile, re.MULTILINE).group(1).split()
    assert sorted(listed) == supported_versions() == ["3.11", "3.12", "3.13"]


def test_every_locked_package_is_pinned_with_its_hashes() -> None:
    for lock in LOCKED:
        text = (REPO / lock).read_text()
        requirements = re.findall(r"^[A-Za-z0-9][^\n]*", text, re.MULTILINE)
        assert requirements and len(requirements) == len(pins(lock)), lock
        for _, hashes in pins(lock).values():
            assert hashes and all(len(h) == 64 for h in hashes)


def test_the_pipeline_lock_holds_todays_releases_and_no_torch_or_cuda() -> None:
    locked = pins(PIPELINE_LOCK)
    for name, version in [
        ("tensorflow-cpu", "2.21.0"),
        ("keras", "3.15.1"),
        ("numpy", "2.4.6"),
        ("dvc", "3.67.1"),
        ("ruamel-yaml", "0.19.1"),
    ]:
        assert locked[name][0] == version, name
    heavy = [
        n
        for n in locked
        if n in ("torch", "triton", "tensorflow") or n.startswith(("nvidia-", "cuda-"))
    ]
    assert heavy == []


def test_the_bench_lock_adds_the_pytorch_peer_to_the_same_pins() -> None:
    pipeline, bench = pins(PIPELINE_LOCK), pins(Path("requirements/bench.txt"))
    assert bench["torch"][0] == "2.13.0" and "triton" not in bench
    assert {name: bench[name] for name in pipeline} == pipeline
    assert pins(UV_LOCK) == {"uv": pipeline["uv"]}


def test_nothing_the_suite_runs_can_import_torch() -> None:
    """The suite's venv holds no torch, and no module of the suite, stages or tools imports it."""
    assert importlib.util.find_spec("torch") is None
    for path in [*REPO.glob("tests/*.py"), *REPO.glob("stages/*.py"), *REPO.glob("tools/*.py")]:
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported |= {node.module or "", *(f"{node.module}.{a.name}" for a in node.names)}
        assert not {m for m in imported if m.split(".")[0] == "torch" or "torch_loop" in m}, path


def test_the_cause_of_a_hash_mismatch_is_one_line() -> None:
    uv = (
        "error: Failed to download `zict==3.0.0`\n  cause: Hash mismatch for `zict==3.0.0`\n\n"
        "         Expected:\n           sha256:0000\n\n         Computed:\n           sha256:5796\n"
    )
    pip = (
        "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have "
        "updated the package versions, please update the hashes. Otherwise, examine the package "
        "contents carefully; someone may have tampered with them.\n"
        "    uv==0.13.9 from https://example.invalid/uv.whl:\n        Expected sha256 0000\n"
    )
    expected = "a file downloaded for {} does not match its hash in the lock"
    assert cause(uv) == expected.format("zict==3.0.0")
    assert cause(pip) == expected.format("uv==0.13.9")
    assert cause("Resolved 3 packages\nerror: No interpreter found\n") == "No interpreter found"
