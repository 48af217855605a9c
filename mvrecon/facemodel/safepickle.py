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

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


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
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = np.core.multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = np.core.multiarray.scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = np.core.numeric._frombuffer
for _b in ("builtins", "__builtin__"):
    for _n, _obj in (("set", set), ("frozenset", frozenset), ("slice", slice), ("complex", complex), ("object", object)):
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


def _sparse_from(stub: SparseStub) -> Any:
    import scipy.sparse as sp

    st = stub.state if isinstance(stub.state, dict) else {}
    shape = tuple(st.get("_shape", st.get("shape", ())))
    if stub.fmt in ("csc", "csr"):
        cls = sp.csc_matrix if stub.fmt == "csc" else sp.csr_matrix
        return cls((plain(st["data"]), plain(st["indices"]), plain(st["indptr"])), shape=shape)
    return sp.coo_matrix((plain(st["data"]), (plain(st["row"]), plain(st["col"]))), shape=shape)


def plain(obj: Any) -> Any:
    """Replace stand-ins by numpy arrays / scipy sparse matrices, recursively."""
    if isinstance(obj, ChStub):
        st = obj.state if isinstance(obj.state, dict) else {}
        if "x" not in st:
            raise pickle.UnpicklingError("a chumpy object without stored data (a derived expression)")
        return np.asarray(plain(st["x"]))
    if isinstance(obj, SparseStub):
        return _sparse_from(obj)
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        if obj.ndim == 0:
            return plain(obj.item())
        flat = [plain(v) for v in obj.reshape(-1)]
        try:
            return np.array(flat).reshape(obj.shape)
        except ValueError:
            out = np.empty(len(flat), dtype=object)
            out[:] = flat
            return out.reshape(obj.shape)
    return obj


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (Python 2 pickles decoded as latin-1)."""
    return plain(SafeUnpickler(io.BytesIO(data), encoding="latin1").load())


def load_pickle(path: str | Path) -> Any:
    """Safely unpickle a file; anything refused or malformed is one :class:`InputError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path) from None
    try:
        return safe_loads(data)
    except pickle.UnpicklingError as e:
        raise InputError(f"unsafe or unsupported pickle content: {e}", path) from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise InputError(f"not a readable pickle ({e.__class__.__name__}: {e})", path) from None


def load_npy(path: str | Path) -> Any:
    """Read a ``.npy``: plain arrays with numpy; object arrays (a pickled dict, as FaceVerse and
    FLAME landmark files use) through :class:`SafeUnpickler`. A 0-d object array is unwrapped."""
    path = Path(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
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
            except ValueError as e:
                raise InputError(f"truncated or malformed .npy ({e})", path) from None
        payload = f.read()
    try:
        return safe_loads(payload)
    except pickle.UnpicklingError as e:
        raise InputError(f"unsafe or unsupported pickle content: {e}", path) from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise InputError(f"not a readable .npy object array ({e.__class__.__name__}: {e})", path) from None
