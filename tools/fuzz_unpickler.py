"""Fuzz the mirror's unpickler with atheris (coverage-guided, libFuzzer): not part of `make test`.

    .venv/bin/uv pip install -c requirements/pipeline.txt "atheris>=2.3"  # the `fuzz` extra
    python -m tools.fuzz_unpickler -runs=5000000

Each input goes through `stages.fetch.arrays_from_pickle`, which must either return MNIST's
arrays or raise StageError (its one-line error). Any other exception stops the run and leaves
the input in `crash-*`; a crash of the process (a signal) does the same. The starting corpus is
numpy's own pickles of small arrays (protocols 2 to 4), written to a temporary folder; other
libFuzzer flags pass through.
"""

import contextlib
import pickle
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports():
    from stages.errors import StageError
    from stages.fetch import arrays_from_pickle


def seeds() -> list[bytes]:
    """numpy's own pickles of (train, valid, test) pairs, tiny, in each protocol it writes."""
    images = np.arange(2 * 784, dtype="f4").reshape(2, 784) / 256
    labels = np.array([3, 7], dtype="i8")
    parts = ((images, labels),) * 3
    return [pickle.dumps(parts, protocol=protocol) for protocol in (2, 3, 4)]


def one_input(data: bytes) -> None:
    with contextlib.suppress(StageError):
        arrays_from_pickle(data)


def main() -> None:
    with tempfile.TemporaryDirectory() as corpus:
        for number, seed in enumerate(seeds()):
            (Path(corpus) / f"seed-{number}").write_bytes(seed)
        atheris.Setup([*sys.argv, corpus], one_input)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
