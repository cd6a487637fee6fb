"""Shared helpers: run stages and DVC in subprocesses, serve files on 127.0.0.1, edit params."""

import contextlib
import functools
import http.server
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from filelock import FileLock
from ruamel.yaml import YAML

import benchmarks.pipeline
from stages.files import parse_yaml

REPO = Path(__file__).resolve().parents[1]
# A fenced block of Markdown (indented too, inside a list item): its language and its text.
FENCED = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.M | re.S)
BIN = Path(sys.executable).parent


SHARED_SETUPS = ("tiny_project", "seed_study")  # see `built_once`


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The unit-level tests first, then the real-process ones marked `slow`, so that a broken
    behaviour shows in the first minutes. Within each part, the first file to use a shared
    setup goes first, as it builds it, and the other files of that part that use it go last,
    so that the other worker finds it built rather than waiting for it. A stable sort:
    pytest-randomly's shuffle (applied before this hook) holds within each group."""
    items.sort(key=is_slow)
    ranks = file_ranks(items)
    items.sort(key=lambda item: (is_slow(item), ranks[item.path]))


def is_slow(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


def file_ranks(items: list[pytest.Item]) -> dict[Path, int]:
    """Each file's rank within its part, the unit-level files then the slow ones, in the order
    of `items`: 0 if it is the first to use a shared setup (it builds it); 2 if it uses one
    that an earlier file of its part builds (it might wait for it); 1 otherwise. A setup that
    the unit-level part builds is there when the slow part starts, as that builder runs first."""
    uses: dict[Path, set[str]] = {}
    slow_files = set()
    for item in items:
        uses.setdefault(item.path, set()).update(set(SHARED_SETUPS) & set(item.fixturenames))
        if is_slow(item):
            slow_files.add(item.path)
    built_before: set[str] = set()  # by the unit-level part, once in the slow part
    built: set[str] = set()  # by earlier files of the part at hand
    in_slow_part = False
    ranks = {}
    for path, setups in uses.items():
        if path in slow_files and not in_slow_part:
            in_slow_part, built_before, built = True, built, set()
        needed = setups - built_before
        ranks[path] = 0 if needed - built else 2 if needed else 1
        built |= needed
    return ranks


def subprocess_env() -> dict[str, str]:
    """The environment for stages and DVC: this venv first on PATH, the repo importable."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the stages' own defaults, as users get them
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    return env


def run(
    command: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command in the stages' environment, plus `env`; by default fail on a non-zero exit."""
    result = subprocess.run(
        command, cwd=cwd, env={**subprocess_env(), **(env or {})}, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def run_stage(stage: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", f"stages.{stage}", *args], cwd=cwd, check=check)


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd=cwd, check=check)


def output_bytes(project: Path, outputs: list[str]) -> dict[str, bytes]:
    """The bytes of each of a stage's output files, by path."""
    return {path: (project / path).read_bytes() for path in outputs}


def rerun_outputs(
    project: Path, stage: list[str], outputs: list[str], overrides: dict | None = None
) -> dict[str, bytes]:
    """Run `python -m stages.<stage[0]> <stage[1:]>` on the tiny settings plus `overrides`;
    return the bytes of its outputs."""
    write_params(project, {**TINY_SETTINGS, **(overrides or {})})
    run_stage(*stage, cwd=project)
    return output_bytes(project, outputs)


def documented_message(doc: str, start: str) -> str:
    """The one line of a console block in docs/`doc` that starts with `start`: the tests that
    provoke a message compare it with this, so that the docs show what the code prints."""
    blocks = [body for _, body in FENCED.findall((REPO / "docs" / doc).read_text())]
    [line] = [line for block in blocks for line in block.splitlines() if line.startswith(start)]
    return line


# What each placeholder of a documented line's form stands for.
PLACEHOLDERS = {
    "RUNS": r"\d+",
    "RECORDED": r"\d+",
    "NAME": r"\S+",
    "ACCURACY": r"[\d.]+",
    "WORKER": r"\S+",
    "S": r"[\d.]+",
    "P": r"\d+",
    "MM:SS": r"[\d:]+",
}


def documented_form(doc: str, start: str) -> re.Pattern:
    """The documented line that starts with `start`, its placeholders (PLACEHOLDERS) read as
    the values they stand for."""
    names = "|".join(re.escape(re.escape(name)) for name in PLACEHOLDERS)
    escaped = re.escape(documented_message(doc, start))
    pattern = re.sub(rf"\b({names})\b", lambda m: PLACEHOLDERS[m[1].replace("\\", "")], escaped)
    return re.compile(pattern)


def repo_params() -> dict[str, Any]:
    return parse_yaml((REPO / "params.yaml").read_text())


def yaml_text(data: Any) -> str:
    """YAML 1.2 in block style, keys in their order, as DVC writes `-S` overrides back."""
    stream = io.StringIO()
    YAML().dump(data, stream)
    return stream.getvalue()


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        params = params[key]
    params[last] = value


def write_params(folder: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Write the repo's params.yaml into `folder` with dotted-key overrides applied."""
    params = repo_params()
    for dotted, value in overrides.items():
        set_key(params, dotted, value)
    (folder / "params.yaml").write_text(yaml_text(params))
    return params


def copy_project(destination: Path) -> Path:
    """Copy the pipeline's source into `destination` as a fresh git repo, without any outputs."""
    benchmarks.pipeline.copy_project(REPO, destination)
    run(["git", "config", "user.email", "test@example.com"], cwd=destination)
    run(["git", "config", "user.name", "test"], cwd=destination)
    return destination


def assert_fails_cleanly(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 1, a last stderr line `error: ...` naming every fragment, and no traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ")
    for fragment in fragments:
        assert fragment in last_line


@contextlib.contextmanager
def local_server(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for the duration of the block; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its base URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    with local_server(functools.partial(QuietHandler, directory=str(folder))) as base:
        yield folder, base


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


SPLIT_SETTINGS = {"fetch.source": "mirror", "models.small.epochs": 1}


@pytest.fixture(scope="session")
def split_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with the real MNIST fetched (from the mirror) and split, no model trained."""
    project = copy_project(tmp_path_factory.mktemp("split"))
    write_params(project, SPLIT_SETTINGS)
    dvc("repro", "split", cwd=project)
    return project


@pytest.fixture
def split_copy(split_project: Path, tmp_path: Path) -> Path:
    """A private copy of `split_project`, for tests that train or change files in it."""
    return Path(shutil.copytree(split_project, tmp_path / "project", symlinks=True))


# One thread a training process: the pipeline runs beside another pytest worker, and the queued
# experiments follow docs/scaling.md, which sets `train.threads: 1` for `dvc queue start -j 2`.
TINY_SETTINGS = {
    "fetch.source": "mirror",
    "train.threads": 1,
    "models.small.epochs": 1,
    "models.wide_dropout.epochs": 2,
    "models.wide.epochs": 1,
    "models.cnn.epochs": 1,
    # Narrower than the real ones: most of the suite's time is training, not what it tests.
    "models.wide_dropout.hidden_units": [64, 64],
    "models.wide.hidden_units": [64, 64],
    "models.cnn.conv_filters": [8, 16],
    "models.cnn.hidden_units": [32],
}


def commit_all(project: Path, message: str) -> str:
    """Commit everything in the project's workspace; return the commit's hash."""
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-q", "-m", message], cwd=project)
    return run(["git", "rev-parse", "HEAD"], cwd=project).stdout.strip()


def built_once(
    name: str,
    build: Callable[[Path], Any],
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
) -> tuple[Path, Any]:
    """Build a read-only session fixture once for all of pytest-xdist's workers.

    The first worker that needs it builds it (`build(project)` returns what to keep beside it)
    in the run's temporary folder, which the workers share; a file lock holds the others until
    it is there. Returns the project and what `build` returned.
    """
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the run's folder, above each worker's own
    folder, built = root / name, root / f"{name}.json"
    with FileLock(root / f"{name}.lock"):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)  # from a worker whose build failed
            kept = build(folder / "project")
            built.write_text(json.dumps(kept))
    return folder / "project", json.loads(built.read_text())


@pytest.fixture(scope="session", autouse=True)
def study_clones(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The clones that study tasks keep (tools/task.py) in this run's temporary folder."""
    os.environ["STUDY_CLONES"] = str(tmp_path_factory.mktemp("clones"))


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The whole pipeline run once with one or two epochs a variant, and committed to git.

    Built once per run (`built_once`) and copied for each worker, which runs DVC in it; tests
    that change it work on `tiny_copy` instead.
    """

    def run_pipeline(project: Path) -> None:
        copy_project(project)
        write_params(project, TINY_SETTINGS)
        # Without the repo's 2016-recipe runs: small's keep their fingerprint under these params,
        # and from another CPU they would outnumber a test's own runs in the report's like-group.
        (project / "reports/recipe_2016.json").write_text("[]\n")
        dvc("repro", cwd=project)
        commit_all(project, "tiny pipeline")

    built, _ = built_once("tiny", run_pipeline, tmp_path_factory, worker_id)
    folder = tmp_path_factory.mktemp("tiny") / "project"
    return Path(shutil.copytree(built, folder, symlinks=True))


@pytest.fixture
def tiny_copy(tiny_project: Path, tmp_path: Path) -> Path:
    """A private copy of `tiny_project`: its git history, DVC cache and outputs."""
    return Path(shutil.copytree(tiny_project, tmp_path / "project", symlinks=True))


SEEDS = ("8", "9")
VARIANTS = ("wide",)


def seed_study_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.seed_study", *args]


def read_records(project: Path, name: str = "reports/seeds.json") -> list[dict]:
    return json.loads((project / name).read_text())


def experiments(project: Path) -> dict[str, dict]:
    """`dvc exp show --json`: each experiment of HEAD by name, with its params and metrics."""
    shown = json.loads(dvc("exp", "show", "--json", cwd=project).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            revision = experiment["revs"][0]
            found[revision["name"]] = revision["data"]
    return found


@pytest.fixture(scope="session")
def seed_study(
    tiny_project: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Path:
    """The seed study of one variant over two seeds, in a copy of the tiny pipeline."""

    def run_study(project: Path) -> None:
        shutil.copytree(tiny_project, project, symlinks=True)
        (project / "reports/seeds.json").unlink()
        command = seed_study_command("--seeds", *SEEDS, "--variants", *VARIANTS, "--jobs", "2")
        first, *finished, last = run(command, cwd=project).stdout.splitlines()
        assert first == "2 runs to do, 0 recorded"
        assert documented_form("studies.md", "RUNS runs to do").fullmatch(first)
        assert len(finished) == 2  # one line a finished run, in the documented form
        for line in finished:
            assert documented_form("studies.md", "NAME: test accuracy").fullmatch(line), line
        assert last == documented_message("studies.md", "wrote reports/")

    return built_once("seeds", run_study, tmp_path_factory, worker_id)[0]


@pytest.fixture
def ctrl_c_enabled() -> Iterator[None]:
    """Python's own Ctrl-C handling here and in child processes, also when pytest was started
    with SIGINT ignored (as a background job), which children would inherit."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def run_processes(project: Path) -> list[psutil.Process]:
    """The study runs of `project` on any worker (`python -m tools.run` with the project as
    its source), and everything they started: DVC and the stages."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "tools.run" in cmdline and str(project.resolve()) in " ".join(cmdline):
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended since
                found += [process, *process.children(recursive=True)]
    return found


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of the processes that still run: not ended, nor a zombie."""
    running = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running
