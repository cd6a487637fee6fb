"""Create a venv holding exactly a lock, every file checked against its hash; write the locks.

    python -m tools.install VENV LOCK    # make install, make bench
    python -m tools.install --lock       # make lock

The first runs with the chosen CPython and its standard library alone: `venv` makes the
environment, pip installs uv from requirements/uv.txt (hash-checked), and `uv pip sync
--require-hashes --compile-bytecode` installs the lock as it is, resolving nothing, with every
module compiled once (where PYTHONDONTWRITEBYTECODE is set, as in many containers, each process
would otherwise compile TensorFlow's: 10 s instead of 4 s an import here). A failure removes the
half-made venv and ends in one line: the cause, and what to do.

`--lock` resolves pyproject.toml with uv into universal locks for every Python that it admits,
with every file's hash, reading no pip or uv configuration (the public index alone); uv keeps
the pins already in a lock wherever they still fit, so the committed results hold.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

LOCKS = Path("requirements")
UV_LOCK = LOCKS / "uv.txt"
PIPELINE_LOCK = LOCKS / "pipeline.txt"
# Each lock: the extras it holds, and what it is held to. triton (GPU kernels for
# torch.compile, pulled in by PyPI's PyTorch) is left out: the CPU-only peer never uses it, and
# on Python 3.13 loading it beside TensorFlow segfaults.
LOCKED = {
    PIPELINE_LOCK: ["pyproject.toml", "--extra", "cpu", "--extra", "dev"],
    LOCKS / "bench.txt": ["pyproject.toml", "--extra", "cpu", "--extra", "dev", "--extra", "bench"],
    UV_LOCK: [str(LOCKS / "uv.in")],
}
RESOLVE = ["--universal", "--python-version", "3.11", "--generate-hashes", "--no-config"]


class InstallError(Exception):
    """An install that failed; the message is one line."""


def cause(output: str) -> str:
    """The one line that says why pip or uv failed, from everything it printed."""
    mismatch = re.search(r"Hash mismatch for `([^`]+)`", output) or re.search(
        r"THESE PACKAGES DO NOT MATCH THE HASHES.*?\n\s+(\S+) from", output, re.DOTALL
    )
    if mismatch:
        return f"a file downloaded for {mismatch[1]} does not match its hash in the lock"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith(("cause:", "error:", "ERROR:"))]
    last = (reasons or lines or ["it failed with no output"])[-1]
    return re.sub(r"^(cause|error|ERROR): ", "", last)


def run(command: list[str], what: str, hint: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise InstallError(f"{what}: {cause(result.stdout + result.stderr)} {hint}")


def install(folder: Path, lock: Path) -> None:
    """Make `folder` a venv of this Python holding exactly `lock`."""
    for needed in (UV_LOCK, lock):
        if not needed.is_file():
            raise InstallError(f"{needed} is missing (hint: run from the project's root)")
    shutil.rmtree(folder, ignore_errors=True)
    venv.create(folder, with_pip=True)
    python = str(folder / "bin" / "python")
    hint = "(hint: check the network; `make lock` re-resolves a lock)"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--require-hashes", "--no-deps", "-r", str(UV_LOCK)], f"installing {UV_LOCK}", hint)
    uv = [str(folder / "bin" / "uv"), "pip", "sync", "--quiet", "--require-hashes"]
    uv += ["--compile-bytecode"]
    run([*uv, "--python", python, str(lock)], f"installing {lock}", hint)


def isolated() -> dict[str, str]:
    """This environment without pip's or uv's settings, and pip reading no configuration file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    return env | {"PIP_CONFIG_FILE": os.devnull}


def write_locks() -> None:
    """Resolve every lock with uv; the bench and uv locks are held to the pipeline's pins."""
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        raise InstallError(f"{uv} is missing (hint: `make lock` runs in the `make install` venv)")
    for lock, inputs in LOCKED.items():
        held = [] if lock == PIPELINE_LOCK else ["--constraint", str(PIPELINE_LOCK)]
        command = [str(uv), "pip", "compile", "--quiet", *RESOLVE, *inputs, *held, "-o", str(lock)]
        command += ["--no-emit-package", "triton", "--custom-compile-command", "make lock"]
        result = subprocess.run(command, env=isolated(), capture_output=True, text=True)
        if result.returncode != 0:
            raise InstallError(f"resolving {lock}: {cause(result.stderr)}")
        print(f"wrote {lock}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("venv", type=Path, nargs="?")
    parser.add_argument("lock", type=Path, nargs="?")
    parser.add_argument("--lock", dest="write", action="store_true", help="write the locks")
    args = parser.parse_args()
    if not args.write and not (args.venv and args.lock):
        parser.error("give VENV and LOCK, or --lock")
    if args.write:
        try:
            write_locks()
        except InstallError as error:
            sys.exit(f"error: {error}")
        return
    try:
        install(args.venv, args.lock)
    except InstallError as error:
        shutil.rmtree(args.venv, ignore_errors=True)
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        shutil.rmtree(args.venv, ignore_errors=True)
        sys.exit("interrupted: the venv was removed (hint: run the same command again)")


if __name__ == "__main__":
    main()
