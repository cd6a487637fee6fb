"""A study record's fingerprint: one hash of everything that decides a variant's result.

It covers what DVC would rerun the run's stages for (`train@<variant>`, and for a seed-study
run `evaluate@<variant>`), except what a study sets per run on purpose and records beside the
fingerprint (the seed and the thread count): their definitions in dvc.yaml, the `stages/` code
they depend on, the split's manifest (the hashes of the split files) and their other params;
and the versions of TensorFlow, Keras and NumPy that ran them. A seed-study or sweep record
whose fingerprint differs from today's was made by other code, params or libraries: it is
stale. The Python minor, like the thread count and the CPU, makes runs unlike rather than
stale: statistics pool them where their groups agree (stages/records.py).

A `Reader` reads the files from the workspace (`read_workspace`) or from a Git commit
(`commit_reader`).
"""

import copy
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from stages.errors import StageError
from stages.files import parse_yaml, sha256_bytes
from stages.paths import MANIFEST_FILE

STUDIED_STAGES = ("train", "evaluate")  # a seed-study run's; a sweep run's is train alone
PER_RUN_KEYS = ("train.seed", "train.threads")  # set by a study per run, and recorded
FINGERPRINTED_LIBRARIES = ("tensorflow", "keras", "numpy")  # the lock pins them for every Python

GIT_SECONDS = 300  # for one Git command: a fetch from a remote that does not answer, say
Reader = Callable[[str], bytes]  # a path relative to the project root -> the file's bytes


def stage_definitions(
    pipeline: dict[str, Any], variant: str, stages: tuple[str, ...] = STUDIED_STAGES
) -> list[dict[str, Any]]:
    """The `stages`' foreach bodies of dvc.yaml, with `${key}` set to the variant."""
    bodies = json.dumps([pipeline["stages"][name]["do"] for name in stages])
    return json.loads(bodies.replace("${key}", variant))


def fingerprinted_files(definitions: list[dict[str, Any]]) -> list[str]:
    """The deps that are sources, not another stage's output: code and the split's manifest."""
    deps = {dep for definition in definitions for dep in definition["deps"]}
    return sorted(dep for dep in deps if dep.startswith("stages/") or dep == str(MANIFEST_FILE))


def param_value(params: dict[str, Any], dotted: str) -> Any:
    value = params
    for key in dotted.split("."):
        value = value[key]
    return value


def fingerprint_content(
    variant: str,
    params: dict[str, Any],
    read: Reader,
    libraries: dict[str, str],
    stages: tuple[str, ...] = STUDIED_STAGES,
) -> dict[str, Any]:
    """What the fingerprint hashes: the variant's stage definitions, its source files' hashes,
    its params but PER_RUN_KEYS, and the FINGERPRINTED_LIBRARIES' versions in `libraries`.

    `params` is params.yaml as parsed (with any overrides applied); `read` reads dvc.yaml and
    the source files from the workspace or from a Git commit; `libraries` is
    installed_libraries() for today, recorded_libraries() for a record.
    """
    definitions = stage_definitions(parse_yaml(read("dvc.yaml")), variant, stages)
    keys = {key for d in definitions for key in d.get("params", [])} - set(PER_RUN_KEYS)
    return {
        "stages": definitions,
        "files": {path: sha256_bytes(read(path)) for path in fingerprinted_files(definitions)},
        "params": {key: param_value(params, key) for key in sorted(keys)},
        "libraries": {name: libraries[name] for name in FINGERPRINTED_LIBRARIES},
    }


def fingerprint(
    variant: str,
    params: dict[str, Any],
    read: Reader,
    libraries: dict[str, str],
    stages: tuple[str, ...] = STUDIED_STAGES,
) -> str:
    """The hash of fingerprint_content()."""
    content = fingerprint_content(variant, params, read, libraries, stages)
    return sha256_bytes(json.dumps(content, sort_keys=True).encode())[:16]


def current_fingerprint(
    variant: str,
    params: dict[str, Any],
    libraries: dict[str, str],
    overrides: dict[str, Any] | None = None,
    stages: tuple[str, ...] = STUDIED_STAGES,
) -> str:
    """Today's fingerprint of a run of `variant` with `overrides` (a recipe's keys), from the
    workspace, params.yaml as parsed (`params`) and the installed `libraries`."""
    changed = with_overrides(params, variant, overrides or {})
    return fingerprint(variant, changed, read_workspace, libraries, stages)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprint contents, a phrase each: a param with its two
    values, a source file, a stage's definition in dvc.yaml, a library with its two versions."""
    found = []
    old_params, new_params = flat(old["params"]), flat(new["params"])
    for key in sorted(old_params.keys() | new_params.keys()):
        before, after = param_text(old_params, key), param_text(new_params, key)
        if before != after:
            found.append(f"{key} {before} → {after}")
    files = old["files"].keys() | new["files"].keys()
    found += sorted(path for path in files if old["files"].get(path) != new["files"].get(path))
    if old["stages"] != new["stages"]:
        found.append("the stages' definitions in dvc.yaml")
    for name in FINGERPRINTED_LIBRARIES:
        if old["libraries"][name] != new["libraries"][name]:
            found.append(f"{name} {old['libraries'][name]} → {new['libraries'][name]}")
    return found


def flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys: {"models.wide": {"dropout": 0}} -> models.wide.dropout."""
    found = {}
    for key, value in params.items():
        if isinstance(value, dict):
            found |= flat(value, f"{prefix}{key}.")
        else:
            found[f"{prefix}{key}"] = value
    return found


def param_text(params: dict[str, Any], key: str) -> str:
    return json.dumps(params[key]) if key in params else "(none)"


def with_overrides(params: dict[str, Any], variant: str, overrides: dict[str, Any]) -> dict:
    """params.yaml as parsed, with `overrides` set among models.<variant>'s keys."""
    changed = copy.deepcopy(params)
    changed["models"][variant].update(overrides)
    return changed


def read_workspace(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def git(*args: str) -> bytes:
    """Run Git; fail with its last error line (an unreachable `origin`, say), not a traceback."""
    try:
        result = subprocess.run(
            ["git", *args], capture_output=True, timeout=GIT_SECONDS,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise StageError(
            f"`git {args[0]}` took more than {GIT_SECONDS} s", "check the remote, then run again"
        ) from None
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        cause = next((line for line in lines if line.startswith("fatal:")), lines[-1])
        raise StageError(f"`git {args[0]}` failed: {cause}", "run it to see why")
    return result.stdout


def commit_reader(commit: str) -> Reader:
    """A reader of the project's files at a Git commit (or revision), each read once; a file
    the commit lacks, or no Git checkout, is git's one-line error (a StageError)."""
    return functools.cache(lambda path: git("show", f"{commit}:./{path}"))


def installed_libraries() -> dict[str, str]:
    """The versions that decide results in this Python, read without importing TensorFlow."""
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "tensorflow": first_version("tensorflow", "tensorflow-cpu"),
        "keras": first_version("keras"),
        "numpy": first_version("numpy"),
    }


def first_version(*distributions: str) -> str:
    """The version of the first of `distributions` installed (TensorFlow has several)."""
    for distribution in distributions:
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "none"


def recorded_libraries(environment: dict[str, Any]) -> dict[str, str]:
    """The same versions, from a run's recorded environment (stages/environment.py)."""
    return {
        "python": python_minor(environment["python"]),
        "tensorflow": environment["tensorflow"],
        "keras": environment["keras"],
        "numpy": environment["numpy"],
    }


def python_minor(version: str) -> str:
    """`3.11` of `3.11.7`: what makes two runs' Pythons alike."""
    return ".".join(version.split(".")[:2])
