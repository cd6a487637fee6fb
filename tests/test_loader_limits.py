"""The mirror loader's limits (stages/fetch.py), each at its boundary: a pickle just inside is
read, one just outside is refused with the one-line error that names the limit.

docs/data.md lists the same limits (a test here checks the two lists agree), and
tools/mutations.py loosens or drops each of them; these tests catch every one.
"""

import pickle
import pickletools
import re
from collections.abc import Callable

import numpy as np
import numpy._core.multiarray as numpy_multiarray
import pytest

from stages import fetch
from stages.errors import StageError
from tests.conftest import REPO

F4_STATE = (3, "<", None, None, None, -1, -1, 0)  # numpy's own BUILD state of dtype("f4")


class Builds:
    """Pickles as a call of `function` with `args`, then BUILD with `state` (None: no BUILD)."""

    def __init__(self, state: object, function: object, *args: object) -> None:
        self.state, self.function, self.args = state, function, args

    def __reduce__(self):
        if self.state is None:
            return (self.function, self.args)
        return (self.function, self.args, self.state)


def dtype(spec: str = "f4", state: object = F4_STATE, align: object = False, copy=True) -> Builds:
    return Builds(state, np.dtype, spec, align, copy)


def array(
    shape: tuple = (2,),
    data: object = None,
    kind: Builds | None = None,
    version: object = 1,
    fortran: object = False,
    reconstruct: tuple = (np.ndarray, (0,), b"b"),
    extra: tuple = (),
) -> Builds:
    """What numpy writes for a float32 array: `_reconstruct`, then BUILD with its state."""
    if data is None:
        data = b"\0" * (int(np.prod(shape)) * 4)
    state = (version, shape, kind or dtype(), fortran, data, *extra)
    return Builds(state, numpy_multiarray._reconstruct, *reconstruct)


def python2_array(**state: object) -> Builds:
    """An array as a Python 2 pickle holds it: its data and `_reconstruct`'s code as text."""
    return array(**({"data": "\0" * 8, "reconstruct": (np.ndarray, (0,), "b")} | state))


def loads(value: object, protocol: int = 4) -> object:
    return fetch.load_numpy_pickle(pickle.dumps(value, protocol=protocol))


def global_named(module: str, name: str, instead_of: str) -> Callable[[], object]:
    """A Python 2 pickle of an array whose global `instead_of` is named `module.name`."""
    text = pickle.dumps(python2_array(), protocol=2)
    original = f"c{instead_of}\n".encode()
    assert text.count(original) == 1
    return lambda: fetch.load_numpy_pickle(text.replace(original, f"c{module}\n{name}\n".encode()))


def renamed(module: str, name: str) -> Callable[[], object]:
    return global_named(module, name, "numpy._core.multiarray\n_reconstruct")


CLOSES_A_MARK = {"TUPLE", "LIST", "DICT", "APPENDS", "SETITEMS", "POP_MARK"}


def built_twice(value: object, build: int) -> Callable[[], object]:
    """A Python 2 pickle of `value` whose `build`-th BUILD (0: the first) comes twice: its
    state, from the MARK that the TUPLE before it closed, is given again."""
    text = pickle.dumps(value, protocol=2)
    marks, closed, builds = [], [], []
    for opcode, _, position in pickletools.genops(text):
        if opcode.name == "MARK":
            marks.append(position)
        elif opcode.name in CLOSES_A_MARK:
            closed.append(marks.pop())
        elif opcode.name == "BUILD":
            builds.append((closed[-1], position))
    start, end = builds[build]
    twice = text[: end + 1] + text[start : end + 1] + text[end + 1 :]
    return lambda: fetch.load_numpy_pickle(twice)


def memo_put(index: int) -> Callable[[], object]:
    """PROTO, BININT1 7, BINPUT `index`, STOP: the third opcode, so index 2 is the highest."""
    return lambda: fetch.load_numpy_pickle(b"\x80\x02K\x07q" + bytes([index]) + b".")


def pixels_times(scale: float) -> np.ndarray:
    """One image row of 784 pixels, k / `scale` for k = 0, 1, ... 255, 0, 1, ..."""
    return (np.arange(784, dtype=np.float32).reshape(1, 784) % 256 / scale).astype(np.float32)


def mnist_parts(**change: object) -> Callable[[], object]:
    """arrays_from_pickle on (train, valid, test) pairs of one image each, with `change`d."""
    parts = {
        "count": 3,
        "pair": 2,
        "images": pixels_times(256),
        "labels": np.array([7], dtype=np.int64),
    } | change
    pair = (parts["images"], parts["labels"], np.zeros(1))[: parts["pair"]]
    value = tuple([pair] * parts["count"])
    return lambda: fetch.arrays_from_pickle(pickle.dumps(value, protocol=4))


# Each limit: the cases just inside (read), and those just outside with what the error names.
Case = Callable[[], object]
LIMITS: dict[str, tuple[list[Case], list[tuple[Case, str]]]] = {
    "names: numpy's _reconstruct": (
        [renamed("numpy._core.multiarray", "_reconstruct"),
         renamed("numpy.core.multiarray", "_reconstruct")],
        [(renamed("numpy._core.multiarray", "scalar"), "refused to load"),
         (renamed("numpy.lib.multiarray", "_reconstruct"), "refused to load")],
    ),
    "names: numpy.dtype": (
        [global_named("numpy", "dtype", "numpy\ndtype")],
        [(global_named("numpy", "dtypes", "numpy\ndtype"), "refused to load"),
         (global_named("numpy.dtypes", "dtype", "numpy\ndtype"), "refused to load")],
    ),
    "names: numpy.ndarray": (
        [global_named("numpy", "ndarray", "numpy\nndarray")],
        [(global_named("numpy", "matrix", "numpy\nndarray"), "refused to load")],
    ),
    "ndarray is never called": (
        [lambda: loads(array())],
        [(lambda: loads(Builds(None, np.ndarray, (2,), "f4")), "refused a direct call")],
    ),
    "dtype spec: plain numbers": (
        [lambda s=s: loads(array(kind=dtype(s), data=b"\0" * 2 * np.dtype(s).itemsize))
         for s in sorted(fetch.PLAIN_DTYPES)],
        [(lambda s=s: loads(array(kind=dtype(s))), "refused numpy.dtype")
         for s in ("f2", "c8", "b1", "V4", "O", "U1", "S4", "M8")],
    ),
    "dtype call: align and copy": (
        [lambda: loads(array(kind=dtype(align=1, copy=0)))],
        [(lambda: loads(array(kind=dtype(align=2))), "refused numpy.dtype"),
         (lambda: loads(array(kind=dtype(copy=2))), "refused numpy.dtype")],
    ),
    "dtype state: 8 fields": (
        [lambda: loads(array(kind=dtype(state=F4_STATE)))],
        [(lambda: loads(array(kind=dtype(state=F4_STATE[:7]))), "refused the dtype state"),
         (lambda: loads(array(kind=dtype(state=(3,)))), "refused the dtype state"),
         (lambda: loads(array(kind=dtype(state=(*F4_STATE, 0)))), "refused the dtype state")],
    ),
    "dtype state: version 3": (
        [lambda: loads(array(kind=dtype(state=(3, *F4_STATE[1:]))))],
        [(lambda v=v: loads(array(kind=dtype(state=(v, *F4_STATE[1:])))),
          "refused the dtype state") for v in (2, 4)],
    ),
    "dtype state: byte order": (
        [lambda o=o: loads(array(kind=dtype(state=(3, o, *F4_STATE[2:]))))
         for o in sorted(fetch.BYTE_ORDERS)],
        [(lambda o=o: loads(array(kind=dtype(state=(3, o, *F4_STATE[2:])))),
          "refused the dtype state") for o in ("S", "!", "")],
    ),
    "dtype state: no subarray, names, fields, size or flags": (
        [lambda: loads(array(kind=dtype(state=F4_STATE)))],
        [(lambda i=i, v=v: loads(array(kind=dtype(state=(*F4_STATE[:i], v, *F4_STATE[i + 1:])))),
          "refused the dtype state")
         for i, v in ((2, ()), (3, ()), (4, {}), (5, 4), (6, 1), (7, 1))],
    ),
    "dtype state: given once": (
        [lambda: loads(python2_array(), protocol=2)],
        [(built_twice(python2_array(), build=0), "refused the dtype state")],
    ),
    "_reconstruct: ndarray": (
        [lambda: loads(array())],
        [(lambda: loads(array(reconstruct=(dtype(), (0,), b"b"))), "refused an array recon")],
    ),
    "_reconstruct: shape (0,)": (
        [lambda: loads(array(reconstruct=(np.ndarray, (0,), b"b")))],
        [(lambda s=s: loads(array(reconstruct=(np.ndarray, s, b"b"))), "refused an array recon")
         for s in ((1,), (0, 0), ())],
    ),
    "_reconstruct: code b": (
        [lambda c=c: loads(array(reconstruct=(np.ndarray, (0,), c))) for c in (b"b", "b")],
        [(lambda c=c: loads(array(reconstruct=(np.ndarray, (0,), c))), "refused an array recon")
         for c in (b"c", b"bb", "B")],
    ),
    "array state: 5 fields": (
        [lambda: loads(array())],
        [(lambda: loads(array(extra=(0,))), "refused the array state"),
         (lambda: loads(Builds((1, (2,), dtype(), False), numpy_multiarray._reconstruct,
                               *array().args)),
          "refused the array state")],
    ),
    "array state: version 1": (
        [lambda: loads(array(version=1))],
        [(lambda v=v: loads(array(version=v)), "refused the array state") for v in (0, 2)],
    ),
    "array state: a dtype given its state": (
        [lambda: loads(array(kind=dtype()))],
        [(lambda: loads(array(kind=dtype(state=None))), "refused the array state"),
         (lambda: loads(Builds((1, (2,), "f4", False, b"\0" * 8),
                               numpy_multiarray._reconstruct, np.ndarray, (0,), b"b")),
          "refused the array state")],
    ),
    "array state: Fortran order a bool": (
        [lambda f=f: loads(array(shape=(2, 2), fortran=f)) for f in (False, True)],
        [(lambda f=f: loads(array(shape=(2, 2), fortran=f)), "refused the array state")
         for f in (2, -1, "F")],
    ),
    "array state: 1 to 4 dimensions": (
        [lambda s=s: loads(array(shape=s)) for s in ((3,), (1, 2, 1, 3))],
        [(lambda s=s: loads(array(shape=s)), "refused the array state")
         for s in ((), (1, 1, 1, 1, 1))],
    ),
    "array state: sizes are whole numbers from 0": (
        [lambda: loads(array(shape=(0, 2))), lambda: loads(array(shape=(1,)))],
        [(lambda s=s, n=n: loads(array(shape=s, data=b"\0" * n)), "refused the array state")
         for s, n in (((-1,), 0), ((0, -1), 0), ((-1, -1), 4), ((True,), 4), ((1.0,), 4))],
    ),
    "array state: data as bytes or Python 2 text": (
        [lambda: loads(array(data=b"\0" * 8)), lambda: loads(python2_array(), protocol=2)],
        [(lambda d=d: loads(array(data=d), protocol=5), "refused the array state")
         for d in (bytearray(8), [0] * 8, 8)],
    ),
    "array state: exactly the bytes its shape needs": (
        [lambda: loads(array(shape=(3,), data=b"\0" * 12))],
        [(lambda n=n: loads(array(shape=(3,), data=b"\0" * n)), "refused the array state")
         for n in (11, 13)],
    ),
    "array state: given once": (
        [lambda: loads(python2_array(), protocol=2)],
        [(built_twice(python2_array(), build=1), "refused the array state")],
    ),
    "stand-ins given their state": (
        [lambda: loads(array())],
        [(lambda: loads(Builds(None, numpy_multiarray._reconstruct, np.ndarray, (0,), b"b")),
          "never given its state"),
         (lambda: loads(dtype(state=None)), "never given its state")],
    ),
    "memo: an index at most the opcodes read": (
        [memo_put(index) for index in (0, 2)],
        [(memo_put(3), "refused a memo index of 3")],
    ),
    "MNIST: three parts": (
        [mnist_parts()],
        [(mnist_parts(count=n), "is not (train, valid, test) pairs") for n in (2, 4)],
    ),
    "MNIST: pairs of images and labels": (
        [mnist_parts()],
        [(mnist_parts(pair=n), "is not (train, valid, test) pairs") for n in (1, 3)],
    ),
    "MNIST: float images of 784 pixels a row": (
        [mnist_parts()],
        [(mnist_parts(images=images), "is not (train, valid, test) pairs") for images in (
            pixels_times(256)[:, :783],
            np.zeros((1, 785), dtype=np.float32),
            pixels_times(256).reshape(1, 28, 28),
            (pixels_times(256) * 256).astype(np.int64),
        )],
    ),
    "MNIST: as many integer labels as images": (
        [mnist_parts(labels=np.array([7], dtype=np.uint8))],
        [(mnist_parts(labels=labels), "is not (train, valid, test) pairs") for labels in (
            np.array([7, 7], dtype=np.int64),
            np.array([], dtype=np.int64),
            np.array([7.0]),
            np.array([[7]], dtype=np.int64),
        )],
    ),
    "MNIST: pixels in steps of 1/256": (
        [mnist_parts()],
        [(mnist_parts(images=pixels_times(512)), "not exact multiples of 1/256")],
    ),
}  # fmt: skip

INSIDE = [(name, case) for name, (inside, _) in LIMITS.items() for case in inside]
OUTSIDE = [(name, case, says) for name, (_, outside) in LIMITS.items() for case, says in outside]


@pytest.mark.parametrize(
    ("limit", "case"), INSIDE, ids=[f"{c[0]} {i}" for i, c in enumerate(INSIDE)]
)
def test_just_inside_each_limit_is_read(limit: str, case: Case) -> None:
    case()


@pytest.mark.parametrize(
    ("limit", "case", "says"), OUTSIDE, ids=[f"{c[0]} {i}" for i, c in enumerate(OUTSIDE)]
)
def test_just_outside_each_limit_is_refused_in_one_line_that_names_it(
    limit: str, case: Case, says: str
) -> None:
    with pytest.raises(StageError, match=re.escape(says)) as refused:
        case()
    assert "\n" not in str(refused.value)


def test_the_inside_cases_read_what_they_hold() -> None:
    """Inside a limit means read as written, not just not refused."""
    loaded = loads(array(shape=(1, 2), data=np.array([[1.5, -2.0]], dtype="<f4").tobytes()))
    np.testing.assert_array_equal(loaded, np.array([[1.5, -2.0]], dtype=np.float32))
    assert loaded.dtype == np.dtype("<f4")
    swapped = loads(array(kind=dtype(state=(3, ">", *F4_STATE[2:])), data=b"?\x80\0\0" * 2))
    np.testing.assert_array_equal(swapped, [1.0, 1.0])
    assert memo_put(2)() == 7
    images = fetch.arrays_from_pickle(pickle.dumps((
        (pixels_times(256), np.array([7])),) * 3, protocol=4))["x_train"]  # fmt: skip
    assert images.shape == (2, 28, 28) and images.dtype == np.uint8
    assert images[0].reshape(784)[255] == 255


def test_docs_data_md_lists_every_limit_that_the_tests_pin() -> None:
    text = (REPO / "docs/data.md").read_text()
    table = text[text.index("<!-- loader-limits:start -->") : text.index("<!-- loader-limits:end")]
    listed = re.findall(r"^\| ([^|]+?) \|", table, re.MULTILINE)[1:]  # the header row aside
    assert listed == list(LIMITS)
