"""One lock per supported CPython, in `requirements/`: write them, and check that they install.

`python -m tools.locks write [VERSION ...]` resolves pyproject.toml with its `dev` and `bench`
extras by each version's own interpreter (`python3.X` on PATH) and pip's resolver (a dry run:
nothing is installed). The oldest version is resolved freely; the others are held to its pins,
so that every Python runs the same releases wherever they exist, and adds only what it alone
needs. With versions named, only those are written, against the oldest's lock as it is.

`python -m tools.locks check` needs no other interpreter: for each lock, pip finds a wheel of
every package for that version on Linux x86-64 (glibc 2.35 or newer), and a package published
only as source must build into a pure-Python wheel.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"
EXTRAS = ".[dev,bench]"
# Left out of every lock, which `make install` installs without resolving again (--no-deps).
# triton: GPU kernels for torch.compile, which PyPI's PyTorch (3.12 and 3.13) pulls in; the
# CPU-only peer never uses it, and loading it into a process that holds TensorFlow segfaults.
LEFT_OUT = {"triton"}
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)] + ["manylinux2014_x86_64"]


class LockError(Exception):
    """A lock that cannot be written or does not install; the message is one line."""


def supported_versions(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The CPython minor versions that `requires-python` admits (">=3.A,<3.B"), oldest first."""
    spec = tomllib.loads(pyproject.read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec.replace(" ", ""))
    if not match:
        raise LockError(f"requires-python = {spec!r}: expected the form '>=3.A,<3.B'")
    first, end = map(int, match.groups())
    return [f"3.{minor}" for minor in range(first, end)]


def lock_file(version: str) -> Path:
    return LOCKS / f"{version}.lock"


def pip_report(what: str, python: str, *args: str) -> dict:
    """What `pip install --dry-run` would install, as pip's JSON report; `what` names the
    resolution in an error."""
    command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--disable-pip-version-check", "--report", "-", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        raise LockError(f"{what}: pip says {(lines or ['it failed'])[-1]}")
    return json.loads(result.stdout)


def pins(report: dict) -> list[str]:
    """`name==version` for each package in the report, but the project and `LEFT_OUT`.

    A local version label (`+cpu`) is dropped: `==2.13.0` still takes the CPU build where
    pip finds it, and PyPI's build elsewhere.
    """
    lines = []
    for item in report["install"]:
        metadata = item["metadata"]
        if metadata["name"] != "mnist-dvc" and metadata["name"] not in LEFT_OUT:
            lines.append(f"{metadata['name']}=={metadata['version'].split('+')[0]}")
    return sorted(lines, key=str.lower)


def interpreter(version: str) -> str:
    """`python3.X` from PATH, if it runs (a pyenv shim for an inactive version does not)."""
    python = f"python{version}"
    try:
        subprocess.run([python, "-c", ""], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        raise LockError(
            f"no runnable {python} on PATH to resolve its lock; put one there"
        ) from None
    return python


def write(versions: list[str]) -> None:
    """Resolve and write the locks of `versions`; the oldest supported is resolved freely."""
    oldest = supported_versions()[0]
    for version in sorted(versions, key=lambda v: v != oldest):
        constraints = [] if version == oldest else ["--constraint", str(lock_file(oldest))]
        report = pip_report(f"resolving for {version}", interpreter(version), *constraints, EXTRAS)
        lock_file(version).parent.mkdir(exist_ok=True)
        temporary = lock_file(version).with_suffix(".tmp")
        temporary.write_text("\n".join(pins(report)) + "\n")
        temporary.replace(lock_file(version))
        print(f"{lock_file(version).relative_to(REPO)}: {len(report['install']) - 1} packages")


def target(version: str, folder: Path) -> list[str]:
    """pip's options that resolve for CPython `version` on Linux x86-64, from any interpreter
    (pip asks for a `--target` folder, which a dry run leaves empty)."""
    tag = "cp" + version.replace(".", "")
    options = ["--target", str(folder / "target"), "--python-version", version]
    options += ["--implementation", "cp", "--abi", tag]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def check(version: str) -> int:
    """Check that every package of the lock has a wheel for `version`, or builds into a
    pure-Python one; return how many packages the lock has.

    Without their dependencies: pip evaluates markers for the interpreter that runs it, not
    for `--python-version`, so only each version's own interpreter resolves them (`write`).
    """
    if not lock_file(version).exists():
        raise LockError(f"{lock_file(version).relative_to(REPO)} is missing: run make lock")
    with tempfile.TemporaryDirectory() as folder:
        report = pip_report(
            f"{lock_file(version).name} for CPython {version}", sys.executable,
            *target(version, Path(folder)), "--no-deps", "--prefer-binary",
            "--requirement", str(lock_file(version)),
        )  # fmt: skip
        for item in report["install"]:
            if not item["download_info"]["url"].endswith(".whl"):
                build_pure_python_wheel(item["metadata"], version, Path(folder))
    return len(report["install"])


def build_pure_python_wheel(metadata: dict, version: str, folder: Path) -> None:
    """Build a package that has no wheel for `version`; refuse it unless it is pure Python."""
    pin = f"{metadata['name']}=={metadata['version']}"
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", pin]
    subprocess.run([*command, "--wheel-dir", str(folder)], check=True, capture_output=True)
    built = next(folder.glob(f"{metadata['name'].replace('-', '_')}-*.whl"), None)
    if built is None or not built.name.endswith("-py3-none-any.whl"):
        raise LockError(f"{pin} has no wheel for CPython {version} and is not pure Python")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    writing = commands.add_parser("write", help="resolve and write the locks")
    writing.add_argument("versions", nargs="*", help="only these (default: every supported one)")
    commands.add_parser("check", help="check that every lock resolves to wheels")
    arguments = parser.parse_args()
    try:
        versions = supported_versions()
        if arguments.command == "write":
            unknown = set(arguments.versions) - set(versions)
            if unknown:
                raise LockError(
                    f"not a supported version: {sorted(unknown)}; supported: {versions}"
                )
            write(arguments.versions or versions)
        else:
            for version in versions:
                packages = check(version)
                print(f"{lock_file(version).name}: {packages} packages, wheels or pure Python")
    except LockError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
