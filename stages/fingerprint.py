"""A study record's fingerprint: one hash of everything that decides a variant's result.

It covers what DVC would rerun `train@<variant>` and `evaluate@<variant>` for, except what a
study sets per run on purpose and records beside the fingerprint (the seed and the thread
count): their definitions in dvc.yaml, the `stages/` code they depend on, the split's manifest
(the hashes of the split files) and their other params. A seed-study or sweep record whose
fingerprint differs from today's was made by other code or params: it is stale.
"""

import json
from collections.abc import Callable
from typing import Any

from stages.files import parse_yaml, sha256_bytes
from stages.paths import MANIFEST_FILE

STUDIED_STAGES = ("train", "evaluate")
PER_RUN_KEYS = ("train.seed", "train.threads")  # set by a study per run, and recorded

Reader = Callable[[str], bytes]  # a path relative to the project root -> the file's bytes


def stage_definitions(pipeline: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    """The `train` and `evaluate` foreach bodies of dvc.yaml, with `${key}` set to the variant."""
    bodies = json.dumps([pipeline["stages"][name]["do"] for name in STUDIED_STAGES])
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


def fingerprint(variant: str, params: dict[str, Any], read: Reader) -> str:
    """The hash of the variant's stage definitions, source files and params but PER_RUN_KEYS.

    `params` is params.yaml as parsed (with any overrides applied); `read` reads dvc.yaml and
    the source files from the workspace or from a Git commit.
    """
    definitions = stage_definitions(parse_yaml(read("dvc.yaml")), variant)
    keys = {key for d in definitions for key in d.get("params", [])} - set(PER_RUN_KEYS)
    content = {
        "stages": definitions,
        "files": {path: sha256_bytes(read(path)) for path in fingerprinted_files(definitions)},
        "params": {key: param_value(params, key) for key in sorted(keys)},
    }
    return sha256_bytes(json.dumps(content, sort_keys=True).encode())[:16]


def read_workspace(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()
