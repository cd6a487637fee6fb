"""Real pip, uv and the package index: a lock installs exactly or fails in one line, and
`make lock` resolves pyproject.toml to the committed locks."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, documented_message, run
from tests.test_makefile import pins
from tools.install import LOCKED, PIPELINE_LOCK, UV_LOCK

pytestmark = pytest.mark.slow  # real processes and downloads: runs after the unit-level tests


def one_package_lock(folder: Path, name: str, hashes: list[str]) -> Path:
    """A project folder with requirements/uv.txt and a lock of one package of the pipeline's."""
    (folder / "requirements").mkdir(parents=True)
    shutil.copy(REPO / UV_LOCK, folder / UV_LOCK)
    version, _ = pins(PIPELINE_LOCK)[name]
    lines = [f"{name}=={version} \\"] + [f"    --hash=sha256:{h} \\" for h in hashes]
    (folder / "one.txt").write_text("\n".join(lines).rstrip(" \\") + "\n")
    return folder / "one.txt"


def install(folder: Path, lock: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tools.install", ".venv", lock.name]
    return run(command, cwd=folder, check=False)


def test_a_lock_installs_exactly_with_its_hashes(tmp_path: Path) -> None:
    lock = one_package_lock(tmp_path, "six", pins(PIPELINE_LOCK)["six"][1])
    result = install(tmp_path, lock)
    assert result.returncode == 0, result.stderr
    python = str(tmp_path / ".venv/bin/python")
    listed = run([python, "-m", "pip", "list", "--format=json"], cwd=tmp_path).stdout
    installed = {package["name"] for package in json.loads(listed)}
    assert installed - {"pip", "setuptools"} == {"six", "uv"}  # venv's own seeds stay
    tag = sys.implementation.cache_tag
    [site] = (tmp_path / ".venv/lib").glob("python3.*/site-packages")
    assert (site / f"__pycache__/six.{tag}.pyc").is_file()  # compiled once, at install


def test_a_file_that_does_not_match_its_hash_fails_in_one_line(tmp_path: Path) -> None:
    lock = one_package_lock(tmp_path, "six", ["0" * 64])
    result = install(tmp_path, lock)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    version = pins(PIPELINE_LOCK)["six"][0]
    documented = documented_message("python.md", "error: installing requirements/pipeline.txt")
    example = "installing requirements/pipeline.txt: a file downloaded for zict==3.0.0 "
    ours = f"installing {lock.name}: a file downloaded for six=={version} "
    assert line == documented.replace(example, ours)
    assert not (tmp_path / ".venv").exists()


def test_make_lock_resolves_pyproject_to_the_committed_locks(tmp_path: Path) -> None:
    """uv, isolated from this machine's pip and uv settings, keeps every committed pin."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    result = run([sys.executable, "-m", "tools.install", "--lock"], cwd=tmp_path)
    assert result.stdout.splitlines() == [f"wrote {lock}" for lock in LOCKED]
    for lock in LOCKED:
        assert (tmp_path / lock).read_text() == (REPO / lock).read_text(), lock


def test_dvc_parses_its_yaml_files_with_ruamel_yamls_c_parser() -> None:
    """The lock holds ruamel.yaml.clib (an extra of ruamel.yaml since 0.19.1), which DVC's safe
    loads of dvc.yaml and dvc.lock use; without it each `dvc exp run` parses in pure Python."""
    from ruamel.yaml import YAML

    assert "ruamel-yaml-clib" in pins(PIPELINE_LOCK)
    assert YAML(typ="safe").Parser.__module__ == "ruamel.yaml.clib._ruamel_yaml"
