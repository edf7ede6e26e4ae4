"""The one module that knows about array backends.

Everything else in refopt is written against the array API standard and reaches a
namespace through :func:`namespace`.  This module also owns the *host* side of the
library: batched hyper-parameters are kept as float64 NumPy arrays on the host, the
per-step scalars derived from them (bias corrections, rectification terms) are computed
there in float64 exactly as Python floats would be, and :func:`lift` moves them next to
the parameters, rounded once to the parameters' dtype.  That is what makes a batched run
equal to K separate runs: a Python float is a *weak* scalar that is rounded to the
array's dtype at use, and a lifted host value is rounded the same way.
"""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "HostArray",
    "broadcast_shapes",
    "first_violation",
    "is_bool",
    "namespace",
    "device",
    "dtype_name",
    "is_array",
    "is_real_floating",
    "is_scalar",
    "HostGenerator",
    "from_host",
    "host_float64",
    "host_generator",
    "host_power",
    "host_where",
    "lift",
    "to_numpy",
]


HostArray = np.ndarray
"""Type of batched hyper-parameters and of the host scalars derived from them."""


def is_bool(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_))


def broadcast_shapes(*shapes: tuple) -> tuple | None:
    """The broadcast shape, or None when the shapes do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def first_violation(arr: np.ndarray, ok: np.ndarray) -> tuple | None:
    """Index of the first element of the host array ``arr`` where ``ok`` is false (or not finite)."""
    bad = ~(ok & np.isfinite(arr))
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def is_array(x: Any) -> bool:
    """True for an array of any supported library (NumPy, CuPy, torch, JAX, strict)."""
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, (bool, numbers.Number))


def is_scalar(x: Any) -> bool:
    """True for a Python real number (bool excluded), which is what hyper-parameters are."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.generic))


def namespace(*arrays: Any, what: str = "arrays"):
    """The array API namespace shared by ``arrays``; a clear TypeError if they mix libraries."""
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in arrays})
        raise TypeError(
            f"{what} must all come from one array library; got {', '.join(kinds)} ({exc})"
        ) from None


def backend_name(xp: Any) -> str:
    """The library behind an array-API namespace: numpy, cupy, torch, jax, array_api_strict, ..."""
    for name in ("numpy", "cupy", "torch", "jax", "array_api_strict", "dask"):
        if getattr(array_api_compat, f"is_{name}_namespace")(xp):
            return name
    return getattr(xp, "__name__", type(xp).__name__)


def as_array(x: Any) -> Any:
    """``x`` as an array: NumPy turns 0-D results into NumPy scalars, which are not arrays."""
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def writable_contiguous(x: Any) -> bool:
    """True for a C-contiguous array that may be written (NumPy's flags; CuPy's)."""
    flags = getattr(x, "flags", None)
    if flags is None:
        return False
    return bool(flags.c_contiguous) and bool(getattr(flags, "writeable", True))


def may_share_memory(a: Any, b: Any) -> bool:
    """Whether two NumPy or CuPy arrays may overlap in memory (bounds check, no false negatives)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    module = array_api_compat.array_namespace(a)
    if array_api_compat.is_cupy_namespace(module):
        import cupy

        return bool(cupy.may_share_memory(a, b))
    return a is b


def device(x: Any):
    """The device of ``x`` (``"cpu"`` for NumPy)."""
    return array_api_compat.device(x)


def dtype_name(dtype: Any) -> str:
    """A short, library-neutral name such as ``float32``."""
    text = str(dtype)
    for prefix in ("torch.", "array_api_strict.", "jnp.", "numpy.", "cupy."):
        text = text.replace(prefix, "")
    return text.replace("dtype(", "").replace(")", "").replace("'", "")


def is_real_floating(xp: Any, dtype: Any) -> bool:
    return bool(xp.isdtype(dtype, "real floating"))


def host_float64(value: Any, name: str) -> np.ndarray:
    """A batched hyper-parameter as a float64 NumPy array on the host (a copy).

    Accepts an array of any library; integer and boolean arrays are rejected because a
    hyper-parameter is a real number.
    """
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(array_api_compat.to_device(value, "cpu"))
        except Exception:  # libraries without a host conversion fall back to DLPack
            arr = np.from_dlpack(value)
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise TypeError(
            f"{name} must be a real number or an array of real numbers; got an array of dtype {arr.dtype}"
        )
    return np.array(arr, dtype=np.float64, copy=True)


def host_power(base: Any, exponent: int) -> Any:
    """``base ** exponent`` exactly as Python computes it, for a float or a host array.

    NumPy's ``power`` may differ from Python's ``float ** int`` in the last bit (for example
    ``0.999 ** 7``); a batched run must reproduce separate runs bit for bit, so arrays are
    raised element by element with Python's own ``pow``.
    """
    if isinstance(base, np.ndarray) or isinstance(exponent, np.ndarray):  # (NAdam's 0.96^{tψ}: a batched ψ)
        out = np.frompyfunc(pow, 2, 1)(base, exponent).astype(np.float64)
        return out.reshape(np.shape(out))
    return base**exponent


HostGenerator = np.random.Generator
"""Type of the host random generators that seeded algorithms draw from."""


def host_generator(seed: Any = None, rng: Any = None, where: str = "") -> np.random.Generator:
    """The host generator for a seeded draw: ``default_rng(seed)`` or the ``rng`` given (exactly one).

    Array libraries share no random API, so refopt draws on the host and moves the values with
    :func:`from_host`; a seed gives the same draw on every backend.
    """
    if rng is not None and seed is not None:
        raise ValueError(f"{where}: give either seed= or rng=, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"{where}: rng must be a numpy.random.Generator; got {type(rng).__name__}")
        return rng
    if seed is None:
        raise ValueError(
            f"{where} is random: pass seed=<int> (the same draw every call) or "
            "rng=<numpy.random.Generator> (a fresh draw each call)"
        )
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"{where}: seed must be a non-negative int; got {seed!r}")
    return np.random.default_rng(int(seed))


def from_host(values: Any, like: Any, dtype: Any = None) -> Any:
    """Host values (a NumPy array or nested lists) as an array next to ``like``: its namespace and
    device, and its dtype unless ``dtype`` is given (rounded once)."""
    xp = array_api_compat.array_namespace(like)
    return xp.asarray(np.array(values, copy=True), dtype=like.dtype if dtype is None else dtype, device=device(like))


def host_where(cond: Any, a: Any, b: Any) -> Any:
    """``a if cond else b`` for a Python bool, elementwise for host arrays."""
    if isinstance(cond, (bool, np.bool_)):
        return a if cond else b
    return np.where(cond, a, b)


def lift(value: Any, like: Any) -> Any:
    """Bring a host value next to the array ``like``.

    Python numbers stay Python numbers (weak scalars, rounded to ``like``'s dtype at use);
    host float arrays become arrays of ``like``'s namespace, dtype and device; host boolean
    arrays become boolean arrays on that device.
    """
    if isinstance(value, np.ndarray):
        xp = array_api_compat.array_namespace(like)
        # a fresh writeable copy: a batched hyper-parameter is stored read-only, and torch warns
        # about (and may later write through) non-writable NumPy buffers
        if value.dtype == np.bool_:
            return xp.asarray(np.array(value, copy=True), device=device(like))
        return xp.asarray(np.array(value, copy=True), dtype=like.dtype, device=device(like))
    if isinstance(value, np.generic):  # never let a NumPy scalar promote float32 to float64
        return value.item()
    return value


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of an array of any library (for the CLI, tests and reports)."""
    if isinstance(x, np.ndarray):
        return np.array(x, copy=True)
    try:
        return np.array(np.asarray(array_api_compat.to_device(x, "cpu")), copy=True)
    except Exception:
        return np.array(np.from_dlpack(x), copy=True)
