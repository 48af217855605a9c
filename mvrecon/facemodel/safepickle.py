"""Reading pickled model files (FLAME ``.pkl``, FaceVerse / landmark ``.npy`` dicts) WITHOUT
executing code from them and without chumpy.

:class:`SafeUnpickler` resolves only an allow-list of globals: numpy's array and scalar
reconstructors, ``numpy.dtype``, a latin-1 ``_codecs.encode``, a few inert builtins, and stand-ins
for chumpy ``Ch`` and scipy sparse matrices that merely record their pickled state. Anything else
(``os.system``, ``subprocess``, ``builtins.eval``, arbitrary classes...) raises, before any of it
could be called. After loading, :func:`plain` turns the stand-ins into numpy arrays (a ``Ch``
becomes its stored ``x`` value) and scipy sparse matrices built from their stored arrays.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import MAX_MODEL_BYTES, open_regular, read_file_bytes


class _Recorded:
    """A stand-in object: keeps the pickled state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class ChStub(_Recorded):
    """chumpy.ch.Ch: a plain Ch stores its value under ``x``."""


class SparseStub(_Recorded):
    fmt = ""


def _sparse(fmt: str) -> type:
    return type(f"{fmt}_matrix_stub", (SparseStub,), {"fmt": fmt})


def _latin1_encode(obj: Any, encoding: str = "utf-8") -> bytes:
    # Python 3 pickles of bytes (protocol 2) call _codecs.encode(str, 'latin1')
    if not isinstance(obj, str) or encoding.lower() not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError("refused _codecs.encode call")
    return obj.encode(encoding)


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    # copyreg._reconstructor (protocol 0/1 object pickles), limited to our stand-ins
    if not (isinstance(cls, type) and issubclass(cls, _Recorded) and base is object):
        raise pickle.UnpicklingError("refused copyreg._reconstructor call")
    return cls.__new__(cls)


_SPARSE = {f"{f}_matrix": _sparse(f) for f in ("csc", "csr", "coo")}
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("copy_reg", "_reconstructor"): _safe_reconstructor,
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("chumpy.ch", "Ch"): ChStub,
}
# numpy's private reconstructors (not in its type stubs), under numpy 1's and numpy 2's module names
_multiarray = importlib.import_module("numpy.core.multiarray")
_numeric = importlib.import_module("numpy.core.numeric")
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = _multiarray.scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _numeric._frombuffer
for _b in ("builtins", "__builtin__"):
    for _n, _obj in (
        ("set", set),
        ("frozenset", frozenset),
        ("slice", slice),
        ("complex", complex),
        ("object", object),
    ):
        _ALLOWED[(_b, _n)] = _obj
for _cls, _stub in _SPARSE.items():
    fmt = _cls[:3]
    for _mod in (f"scipy.sparse.{fmt}", f"scipy.sparse._{fmt}", "scipy.sparse"):
        _ALLOWED[(_mod, _cls)] = _stub


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that only reconstructs data (see the module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load '{module}.{name}' (only array data is read)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def _sparse_from(stub: SparseStub, plain: Any) -> Any:
    import scipy.sparse as sp

    st: dict[str, Any] = stub.state if isinstance(stub.state, dict) else {}
    shape = tuple(st.get("_shape", st.get("shape", ())))
    if stub.fmt in ("csc", "csr"):
        cls = sp.csc_matrix if stub.fmt == "csc" else sp.csr_matrix
        return cls((plain(st["data"]), plain(st["indices"]), plain(st["indptr"])), shape=shape)
    return sp.coo_matrix((plain(st["data"]), (plain(st["row"]), plain(st["col"]))), shape=shape)


#: Deepest nesting of containers a model pickle may have (FLAME's is 3).
MAX_DEPTH = 100
#: Most objects a pickle may expand to, shared references counted at every use: a few hundred
#: bytes of references to references would otherwise expand to exabytes.
MAX_OBJECTS = 1_000_000


class _Plain:
    """:func:`plain` over one object graph: each object converted once (memoised by identity),
    with the depth and the expanded size bounded."""

    def __init__(self) -> None:
        self.memo: dict[int, tuple[Any, int, Any]] = {}  # id -> (result, expanded size, source kept alive)

    def __call__(self, obj: Any, depth: int = 0) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(f"containers nested more than {MAX_DEPTH} deep")
        hit = self.memo.get(id(obj))
        if hit is not None:
            return hit[0], hit[1]
        out, size = self._convert(obj, depth)
        if size > MAX_OBJECTS:
            raise pickle.UnpicklingError(f"shared references expand to more than {MAX_OBJECTS} objects")
        self.memo[id(obj)] = (out, size, obj)
        return out, size

    def _all(self, items: Any, depth: int) -> tuple[list[Any], int]:
        out, total = [], 1
        for v in items:
            r, n = self(v, depth + 1)
            out.append(r)
            total += n
            if total > MAX_OBJECTS:
                raise pickle.UnpicklingError(f"shared references expand to more than {MAX_OBJECTS} objects")
        return out, total

    def _convert(self, obj: Any, depth: int) -> tuple[Any, int]:
        if isinstance(obj, ChStub):
            st = obj.state if isinstance(obj.state, dict) else {}
            if "x" not in st:
                raise pickle.UnpicklingError("a chumpy object without stored data (a derived expression)")
            x, n = self(st["x"], depth + 1)
            return np.asarray(x), n + 1
        if isinstance(obj, SparseStub):
            return _sparse_from(obj, lambda v: self(v, depth + 1)[0]), 1
        if isinstance(obj, dict):
            keys, nk = self._all(obj.keys(), depth)
            vals, nv = self._all(obj.values(), depth)
            return dict(zip(keys, vals)), nk + nv
        if isinstance(obj, (list, tuple)):
            items, n = self._all(obj, depth)
            return (items if isinstance(obj, list) else tuple(items)), n
        if isinstance(obj, np.ndarray) and obj.dtype == object:
            if obj.ndim == 0:
                v, n = self(obj.item(), depth + 1)
                return v, n + 1
            flat, n = self._all(obj.reshape(-1), depth)
            try:
                return np.array(flat).reshape(obj.shape), n
            except ValueError:
                out = np.empty(len(flat), dtype=object)
                out[:] = flat
                return out.reshape(obj.shape), n
        return obj, 1


def plain(obj: Any) -> Any:
    """Replace stand-ins by numpy arrays / scipy sparse matrices, recursively. Objects shared in
    the pickle are converted once; more than :data:`MAX_DEPTH` levels or an expansion to more than
    :data:`MAX_OBJECTS` objects is an ``UnpicklingError``."""
    return _Plain()(obj)[0]


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (Python 2 pickles decoded as latin-1)."""
    return plain(SafeUnpickler(io.BytesIO(data), encoding="latin1").load())


def load_pickle(path: str | Path) -> Any:
    """Safely unpickle a file; anything refused or malformed is one :class:`InputError`."""
    path = Path(path)
    data = read_file_bytes(path, "file", MAX_MODEL_BYTES)
    try:
        return safe_loads(data)
    except pickle.UnpicklingError as e:
        raise InputError(f"unsafe or unsupported pickle content: {e}", path) from None
    except (
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        MemoryError,
        RecursionError,
        OverflowError,
    ) as e:
        raise InputError(f"not a readable pickle ({e.__class__.__name__}: {str(e)[:200]})", path) from None


def load_npy(path: str | Path) -> Any:
    """Read a ``.npy``: plain arrays with numpy; object arrays (a pickled dict, as FaceVerse and
    FLAME landmark files use) through :class:`SafeUnpickler`. A 0-d object array is unwrapped."""
    path = Path(path)
    f = open_regular(path, "file", MAX_MODEL_BYTES)
    with f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as e:
            raise InputError(f"not a .npy file ({e})", path) from None
        if not dtype.hasobject:
            f.seek(0)
            try:
                return np.load(f, allow_pickle=False)
            except (ValueError, MemoryError, OverflowError) as e:
                raise InputError(f"truncated or malformed .npy ({e})", path) from None
        payload = f.read()
    try:
        return safe_loads(payload)
    except pickle.UnpicklingError as e:
        raise InputError(f"unsafe or unsupported pickle content: {e}", path) from None
    except (
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        MemoryError,
        RecursionError,
        OverflowError,
    ) as e:
        raise InputError(f"not a readable .npy object array ({e.__class__.__name__}: {e})", path) from None
