"""Where and when a benchmark ran, and on which commit: every results file records it."""

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path


def machine() -> dict[str, str | int | list[str]]:
    """The CPU (model and instruction sets), cores, Python, today's date and the commit (`+`
    where a tracked file differs from it)."""
    import stages.tf_quiet  # noqa: F401  (stages.environment imports TensorFlow)
    from stages.environment import cpu

    model, flags = cpu()
    git = ["git", "-C", str(Path(__file__).parent)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "commit": (commit or "unknown") + ("+" if changed else ""),
    }


def cpu_kind(where: dict) -> str:
    """The CPU as the results files key it: its model and the instruction sets that pick
    oneDNN's kernels (one model name covers EPYCs with and without AVX-512)."""
    return f"{where['cpu']} ({' '.join(where['cpu_flags'])})"


def with_result(path: Path, result: dict) -> dict[str, dict]:
    """The results in `path`, one per key `result["cpu"]` (the CPU kind, `cpu_kind`, and for
    the oneDNN benchmark any cap on its kernels), with `result` in place of its key's earlier
    one."""
    results = json.loads(path.read_text()) if path.exists() else {}
    return {**results, result["cpu"]: result}


def measured_on(where: dict) -> str:
    """One sentence naming the machine, date and commit of a result."""
    return (
        f"Measured on {where['cpu']} ({' '.join(where['cpu_flags'])}), {where['cores']} cores, "
        f"{where['date']}, commit {where['commit']}, Python {where['python']}."
    )
