"""The suite itself: the order in which `make test` runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, file_ranks, is_slow
from tools.mutations import MUTATIONS, Mutation

TEST_FILE = """
import os
import pytest
{mark}

@pytest.mark.parametrize("case", range({cases}))
def test_case(case):
    with open(os.environ["ORDER_LOG"], "a") as log:
        log.write(f"{{os.environ['PYTEST_XDIST_WORKER']}} {{__name__}} {slow}\\n")
"""


def test_the_unit_level_tests_run_before_the_slow_ones(request: pytest.FixtureRequest) -> None:
    """In every random order, no unmarked test comes after one marked `slow`."""
    slow = [is_slow(item) for item in request.session.items]
    assert slow == sorted(slow)


def test_each_part_starts_with_the_files_that_build_the_shared_setups(
    request: pytest.FixtureRequest,
) -> None:
    """The unit-level part starts with a file that builds the tiny pipeline; the slow part
    with the file that builds the seed study (see `file_ranks`)."""
    items = request.session.items
    unit = [item for item in items if not is_slow(item)]
    slow = [item for item in items if is_slow(item)]
    assert {"tiny_project"} & fixtures_of(unit) <= fixtures_of(first_files(unit, 1))
    assert {"seed_study"} & fixtures_of(slow) <= fixtures_of(first_files(slow, 1))


class FakeItem:
    """What `file_ranks` reads of a pytest item: its file, its fixtures, its `slow` mark."""

    def __init__(self, path: str, fixtures: tuple[str, ...], slow: bool) -> None:
        self.path, self.fixturenames, self.slow = Path(path), list(fixtures), slow

    def get_closest_marker(self, name: str) -> str | None:
        return name if name == "slow" and self.slow else None


def test_a_file_goes_last_only_for_a_setup_that_its_own_part_builds() -> None:
    """The slow part reuses the tiny pipeline that the unit-level part built: no wait, no
    reason to go last; a study fixture built in the slow part sends its other users last."""
    items = [
        FakeItem("unit_builds_tiny.py", ("tiny_project",), slow=False),
        FakeItem("unit_plain.py", (), slow=False),
        FakeItem("unit_reuses_tiny.py", ("tiny_project",), slow=False),
        FakeItem("slow_builds_study.py", ("tiny_project", "seed_study"), slow=True),
        FakeItem("slow_uses_tiny.py", ("tiny_project",), slow=True),
        FakeItem("slow_reuses_study.py", ("tiny_project", "seed_study"), slow=True),
        FakeItem("slow_plain.py", (), slow=True),
    ]
    ranks = {path.name: rank for path, rank in file_ranks(items).items()}
    assert ranks == {
        "unit_builds_tiny.py": 0,
        "unit_plain.py": 1,
        "unit_reuses_tiny.py": 2,
        "slow_builds_study.py": 0,
        "slow_uses_tiny.py": 1,
        "slow_reuses_study.py": 2,
        "slow_plain.py": 1,
    }


def fixtures_of(items: list[pytest.Item]) -> set[str]:
    return set().union(*(item.fixturenames for item in items))


def first_files(items: list[pytest.Item], count: int) -> list[pytest.Item]:
    """The items of the first `count` files, in the order of `items`."""
    paths = list(dict.fromkeys(item.path for item in items))[:count]
    return [item for item in items if item.path in paths]


def test_each_file_is_wholly_unit_level_or_wholly_slow(request: pytest.FixtureRequest) -> None:
    """A worker takes whole files, so a file with both kinds would run its slow tests early."""
    kinds: dict[Path, set[bool]] = {}
    for item in request.session.items:
        kinds.setdefault(item.path, set()).add(is_slow(item))
    assert {path.name: kind for path, kind in kinds.items() if len(kind) > 1} == {}


def test_each_worker_takes_whole_files_and_the_unit_level_ones_first(tmp_path: Path) -> None:
    """`make test`'s options (pyproject.toml) with this suite's hooks, on a suite of six files:
    the slow files hold the most tests, which pytest-xdist would otherwise send out first."""
    for number in range(3):
        (tmp_path / f"test_unit{number}.py").write_text(TEST_FILE.format(mark="", cases=1, slow=0))
        slow_file = TEST_FILE.format(mark="pytestmark = pytest.mark.slow", cases=4, slow=1)
        (tmp_path / f"test_slow{number}.py").write_text(slow_file)
    log = tmp_path / "order.log"
    command = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml")]
    command += ["--rootdir", str(tmp_path), "-p", "tests.conftest", "-p", "no:cacheprovider"]
    env = {**os.environ, "ORDER_LOG": str(log), "PYTHONPATH": str(REPO)}
    result = subprocess.run([*command, str(tmp_path)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = [line.split() for line in log.read_text().splitlines()]
    assert len(runs) == 15
    workers = {worker for worker, _, _ in runs}
    for module in {module for _, module, _ in runs}:
        assert len({worker for worker, name, _ in runs if name == module}) == 1, module
    for worker in workers:
        slow = [flag == "1" for ran_on, _, flag in runs if ran_on == worker]
        assert slow == sorted(slow), worker


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda mutation: mutation.name)
def test_every_mutation_still_applies_and_names_real_tests(mutation: Mutation) -> None:
    """`python -m tools.mutations` (not part of `make test`) finds its text once, and its tests."""
    assert (REPO / mutation.path).read_text().count(mutation.old) == 1
    for test in mutation.tests:
        path, _, name = test.partition("::")
        source = (REPO / path).read_text()
        assert not name or f"def {name.split('[')[0]}(" in source, test
