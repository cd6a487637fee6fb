"""benchmarks.fresh_clone on a small real project (git, make, a venv, DVC's metrics diff): a new
user's environment, each step timed and recorded, a failure recorded and reported as one."""

import json
import sys
from pathlib import Path

import pytest

from benchmarks.fresh_clone import RESULTS_FILE, markdown, verdict_block
from stages.report import readme_block
from tests.conftest import BIN, REPO, assert_fails_cleanly, commit_all, dvc, run

pytestmark = pytest.mark.slow  # real git, make, venv and DVC processes

# The README's commands in miniature: `install` makes a venv holding this DVC, `repro` writes the
# metric ACC, `test` prints a pytest summary and exits TEST_RC.
MAKEFILE = """\
install:
\tenv > $(ENV_OUT)
\t$(BASE_PYTHON) -m venv --without-pip .venv
\tln -s $(DVC) .venv/bin/dvc
repro:
\techo '{"accuracy": $(ACC)}' > metrics/a.json
\tmkdir -p reports history
\techo '{"a": {"verdict": "identical", "test_accuracy": $(ACC), "interval": null}}' \\
\t\t> reports/reproduction.json
\techo '{"environment": {"cpu_flags": ["sse4_2", "avx2"]}}' > history/a.json
test:
\t@echo "=========== 3 passed, 1 warning in 1.23s ==========="
\t@exit $(TEST_RC)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git and DVC repo with the Makefile above, a committed metric of 0.5 and a doc block."""
    folder = tmp_path / "project"
    (folder / "metrics").mkdir(parents=True)
    (folder / "Makefile").write_text(MAKEFILE)
    (folder / "metrics/a.json").write_text('{"accuracy": 0.5}\n')
    (folder / "dvc.yaml").write_text("metrics:\n  - metrics/a.json\n")
    (folder / "doc.md").write_text("<!-- fresh-clones:start -->\n<!-- fresh-clones:end -->\n")
    block = "<!-- fresh-clone-verdicts:start -->\n<!-- fresh-clone-verdicts:end -->\n"
    (folder / "README.md").write_text(block)
    run(["git", "init", "-q"], cwd=folder)
    run(["git", "config", "user.email", "test@example.com"], cwd=folder)
    run(["git", "config", "user.name", "test"], cwd=folder)
    dvc("init", "-q", cwd=folder)
    commit_all(folder, "a project")
    return folder


def fresh_clone(project: Path, accuracy: str = "0.5", test_rc: str = "0"):
    env = {
        "ENV_OUT": str(project / "clone-env.txt"),
        "BASE_PYTHON": sys._base_executable,
        "DVC": str(BIN / "dvc"),
        "ACC": accuracy,
        "TEST_RC": test_rc,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "UV_INDEX_URL": "http://127.0.0.1:9/simple",
        "VIRTUAL_ENV": str(BIN.parent),
    }
    command = [sys.executable, "-m", "benchmarks.fresh_clone", "--doc", "doc.md"]
    command += ["--readme", "README.md"]
    result = run(command, cwd=project, check=False, env=env)
    records = json.loads((project / RESULTS_FILE).read_text())
    return result, records


def test_a_fresh_clone_runs_the_commands_as_a_new_user_and_records_them(project: Path) -> None:
    result, [record] = fresh_clone(project)
    assert result.returncode == 0, result.stderr
    clone_env = dict(
        line.split("=", 1) for line in (project / "clone-env.txt").read_text().splitlines()
    )
    assert [key for key in clone_env if key.startswith(("PIP_", "UV_"))] == ["PIP_CONFIG_FILE"]
    assert clone_env["PIP_CONFIG_FILE"] == "/dev/null" and "VIRTUAL_ENV" not in clone_env
    assert str(BIN) not in clone_env["PATH"].split(":")
    cache = Path(clone_env["XDG_CACHE_HOME"])
    assert cache.parent.name.startswith("fresh-clone-") and not cache.parent.exists()  # removed

    head = run(["git", "rev-parse", "--short", "HEAD"], cwd=project).stdout.strip()
    assert record["commit"] == head and record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert record["packages"] == 0 and "failed" not in record
    assert [record[step]["rc"] for step in ("install", "repro", "metrics", "test")] == [0] * 4
    assert record["metrics_changed"] == [] and record["test_summary"] == "3 passed, 1 warning"
    doc = (project / "doc.md").read_text()
    assert readme_block("fresh-clones").search(doc)[2] == markdown([record])
    assert "| a identical | all identical | 3 passed, 1 warning, " in doc
    verdicts = {"a": {"verdict": "identical", "test_accuracy": 0.5, "interval": None}}
    assert record["verdicts"] == verdicts
    assert f"| {record['date']}, {record['cpu']} (sse4_2 avx2) |" in doc
    block = readme_block("fresh-clone-verdicts").search((project / "README.md").read_text())[2]
    assert block == verdict_block([record])
    assert block.endswith(
        "ended with\n\n```text\na  identical   50.00 %  the model's bytes equal the committed "
        "run's\nNo variant has seed-study records for an interval (`python -m tools.seed_study`)."
        "\n```\n"
    )


def test_a_changed_metric_is_named_and_the_next_record_is_added(project: Path) -> None:
    fresh_clone(project, accuracy="0.5")
    result, records = fresh_clone(project, accuracy="0.5001")
    assert result.returncode == 0, result.stderr
    assert [r["metrics_changed"] for r in records] == [[], ["metrics/a.json:accuracy"]]
    assert "| 1 differ: metrics/a.json:accuracy |" in (project / "doc.md").read_text()


def test_a_failed_step_is_recorded_as_failed_and_exits_1(project: Path) -> None:
    result, [record] = fresh_clone(project, test_rc="1")
    assert_fails_cleanly(result, "`make test` failed in a fresh clone")
    assert "3 passed" in result.stderr  # its last lines
    assert record["failed"] == "make test" and record["test"]["rc"] == 2
    assert "| **failed** (exit 2) in " in (project / "doc.md").read_text()


def test_a_failed_install_runs_nothing_after_it(project: Path) -> None:
    (project / "Makefile").write_text(MAKEFILE.replace("\tenv > $(ENV_OUT)\n", "\tfalse\n"))
    commit_all(project, "install fails")
    result, [record] = fresh_clone(project)
    assert_fails_cleanly(result, "`make install` failed")
    assert record["failed"] == "make install" and "repro" not in record and "venv_mb" not in record
    assert markdown([record]).endswith("| – | not run | – | not compared | not run |\n")
    assert verdict_block([record]).startswith("No fresh clone has recorded verdicts yet")


def test_the_docs_table_is_the_committed_records() -> None:
    doc = (REPO / "docs/python.md").read_text()
    records = json.loads((REPO / RESULTS_FILE).read_text())
    assert readme_block("fresh-clones").search(doc)[2] == markdown(records)
    readme = (REPO / "README.md").read_text()
    assert readme_block("fresh-clone-verdicts").search(readme)[2] == verdict_block(records)
