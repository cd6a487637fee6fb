"""Benchmark: the README's two commands in a fresh clone, as a new user runs them.

    python -m benchmarks.fresh_clone [--python python3.12] [--doc docs/python.md] [--readme FILE]

It clones the current commit into a temporary folder and runs there, with the package
configuration of a new user (no PIP_* or UV_* variable, PIP_CONFIG_FILE=/dev/null, an empty
XDG_CACHE_HOME, no venv on PATH): `make install` (timed alone: an empty cache), `make repro`,
`dvc metrics diff --all` against the committed results, and `make test`. The record, with the
CPU, the Python, the commit and the verdicts that `make repro` ended with, is added to
benchmarks/results/fresh_clones.json; with --doc the table of all records goes into its
`fresh-clones` block, with --readme the newest verdicts into its `fresh-clone-verdicts` block.
A failed step ends the run: its record says so, its last lines go to stderr, and the command
exits 1.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from stages.files import write_json
from stages.report import REPRODUCTION_FILE, update_readme
from stages.reproduction import verdict_lines

RESULTS_FILE = Path("benchmarks/results/fresh_clones.json")
TEST_SUMMARY = re.compile(r"^=+ (\d+ passed.*?) in [\d.]+s", re.MULTILINE)


def new_user_environment(cache: Path) -> dict[str, str]:
    """This process's environment less any pip or uv setting and any active venv."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_")) and key != "VIRTUAL_ENV"
    }
    venv = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
    path = [p for p in environment.get("PATH", "").split(os.pathsep) if not in_venv(Path(p), venv)]
    environment["PATH"] = os.pathsep.join(path)
    return environment | {"PIP_CONFIG_FILE": os.devnull, "XDG_CACHE_HOME": str(cache)}


def in_venv(folder: Path, venv: Path | None) -> bool:
    return venv is not None and (folder == venv or venv in folder.parents)


def step(command: list[str], clone: Path, environment: dict[str, str]) -> dict:
    """Run one command in the clone: its seconds, exit status and output."""
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=clone, env=environment, capture_output=True, text=True, check=False
    )
    seconds = round(time.perf_counter() - started, 1)
    print(f"{' '.join(command)}: exit {result.returncode} in {seconds:.0f} s", flush=True)
    return {"seconds": seconds, "rc": result.returncode, "output": result.stdout + result.stderr}


def changed_metrics(diff_json: str) -> list[str]:
    """The metrics of `dvc metrics diff --all --json` whose new value differs from the old."""
    return sorted(
        f"{path}:{key}"
        for path, metrics in json.loads(diff_json or "{}").items()
        for key, value in metrics.items()
        if value.get("old") != value.get("new")
    )


def venv_facts(clone: Path) -> dict:
    """The venv's Python, its packages and its size on disk."""
    venv = clone / ".venv"
    python = subprocess.run(
        [str(venv / "bin/python"), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    return {
        "python": python,
        "packages": len(list(venv.glob("lib/python3.*/site-packages/*.dist-info"))),
        "venv_mb": round(size / 2**20),
    }


def measure(repo: Path, workdir: Path, make: list[str]) -> dict:
    """Clone `repo` into `workdir` and run the README's commands there; the record."""
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
    ).stdout.strip()
    environment = new_user_environment(workdir / "cache")
    record: dict = {"date": date.today().isoformat(), "cpu": cpu_name(), "commit": commit}
    steps = {
        "install": [*make, "install"],
        "repro": [*make, "repro"],
        "metrics": [str(clone / ".venv/bin/dvc"), "metrics", "diff", "--all", "--json"],
        "test": [*make, "test"],
    }
    for name, command in steps.items():
        done = step(command, clone, environment)
        if name == "install" and done["rc"] == 0:
            record |= venv_facts(clone)
        if name == "repro" and done["rc"] == 0:
            record |= reproduction(clone)
        if name == "metrics" and done["rc"] == 0:
            record["metrics_changed"] = changed_metrics(done["output"])
        elif name == "test":
            summary = TEST_SUMMARY.search(done["output"])
            record["test_summary"] = summary[1] if summary else "no pytest summary"
        record[name] = {"seconds": done["seconds"], "rc": done["rc"]}
        if done["rc"] != 0:
            record["failed"] = " ".join([Path(command[0]).name, *command[1:]])
            record["last_lines"] = done["output"].splitlines()[-20:]
            break
    return record


def reproduction(clone: Path) -> dict:
    """The verdicts that `make repro` printed last, and the instruction sets of the CPU that
    trained, from the clone's reports/reproduction.json and train records; {} without them."""
    verdicts = clone / REPRODUCTION_FILE
    trained = sorted((clone / "history").glob("*.json"))
    if not verdicts.exists() or not trained:
        return {}
    environment = json.loads(trained[0].read_text())["environment"]
    return {"cpu_flags": environment["cpu_flags"], "verdicts": json.loads(verdicts.read_text())}


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", info.read_text(), re.M) if info.exists() else None
    return model[1].strip() if model else "unknown"


def minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


def outcome(record: dict, name: str, text: str) -> str:
    if name not in record:
        return "not run"
    took = minutes(record[name]["seconds"])
    if record[name]["rc"] != 0:
        return f"**failed** (exit {record[name]['rc']}) in {took}"
    return f"{text}, {took}" if text else took


def metrics_text(record: dict) -> str:
    if "metrics_changed" not in record:
        return "not compared"
    changed = record["metrics_changed"]
    return "all identical" if not changed else f"{len(changed)} differ: " + ", ".join(changed)


def cpu_text(record: dict) -> str:
    flags = record.get("cpu_flags")
    return f"{record['cpu']} ({' '.join(flags)})" if flags else record["cpu"]


def verdicts_text(record: dict) -> str:
    verdicts = record.get("verdicts", {})
    return ", ".join(f"{v} {e['verdict']}" for v, e in verdicts.items()) or "–"


def markdown(records: list[dict]) -> str:
    lines = [
        "| Date, CPU | Python | Commit | `make install` | `.venv` | `make repro` | Verdicts "
        "| `dvc metrics diff` | `make test` |",
        "|---|---|---|--:|--:|--:|---|---|---|",
    ]
    for r in records:
        venv = f"{r['venv_mb']:,} MB, {r['packages']} packages" if "venv_mb" in r else "–"
        lines.append(
            f"| {r['date']}, {cpu_text(r)} | {r.get('python', '–')} | {r['commit']} | "
            f"{outcome(r, 'install', '')} | {venv} | {outcome(r, 'repro', '')} | "
            f"{verdicts_text(r)} | {metrics_text(r)} | "
            f"{outcome(r, 'test', r.get('test_summary', ''))} |"
        )
    return "\n".join(lines) + "\n"


def verdict_block(records: list[dict]) -> str:
    """The last lines of `make repro` in the newest fresh clone that gave verdicts."""
    with_verdicts = [r for r in records if "verdicts" in r]
    if not with_verdicts:
        return "No fresh clone has recorded verdicts yet: `python -m benchmarks.fresh_clone`.\n"
    r = with_verdicts[-1]
    return (
        f"A fresh clone of {r['commit']} on {cpu_text(r)}, {r['date']}, Python {r['python']}: "
        f"`make repro` took {minutes(r['repro']['seconds'])} and ended with\n\n```text\n"
        f"{verdict_lines(r['verdicts'])}```\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", help="make's PYTHON=, when not the newest on PATH")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file")
    parser.add_argument("--readme", type=Path, help="also write the newest verdicts here")
    args = parser.parse_args()

    make = ["make"] + ([f"PYTHON={args.python}"] if args.python else [])
    with tempfile.TemporaryDirectory(prefix="fresh-clone-") as workdir:
        record = measure(Path.cwd(), Path(workdir), make)
    records = json.loads(args.output.read_text()) if args.output.exists() else []
    write_json(args.output, [*records, record])
    text = markdown([*records, record])
    if args.doc:
        update_readme(args.doc, text, block="fresh-clones")
    if args.readme:
        update_readme(args.readme, verdict_block([*records, record]), block="fresh-clone-verdicts")
    print(text)
    if "failed" in record:
        print("\n".join(record["last_lines"]), file=sys.stderr)
        sys.exit(
            f"error: `{record['failed']}` failed in a fresh clone of {record['commit']} "
            "(hint: its last lines are above; the record is in the table)"
        )


if __name__ == "__main__":
    main()
