"""NumPy's float32 ``exp`` as a Numba function, so that a compiled loop can call it and keep NumPy's bits.

diffGrad's friction ξ = 1 / (1 + exp(-|Δg|)) is the only transcendental among the fast path's
rules.  The reference evaluates it with NumPy's ``exp``; a compiled loop that called libm's
``expf`` instead would differ from it in the last bit now and then, and a fast path that cut
its loop at NumPy's ``exp`` (:func:`refopt.fast._numba.loop_source`) pays a second pass over
memory and the Python between the pieces.  This module writes down the algorithm NumPy's own
``exp`` runs on float32 arrays and compiles it into the loop instead.

The algorithm.  NumPy builds for x86-64 with AVX2+FMA3 or AVX512F (``X86_V3``/``X86_V4`` in
NumPy 2.4's dispatch names) compute float32 ``exp`` with ``simd_exp_FLOAT`` in
``numpy/_core/src/umath/loops_exponent_log.dispatch.c.src`` (numpy/numpy; checked here against
NumPy 2.4.6), for every stride and for in-place calls.  Per element, with every
operation in float32 and every ``fma`` a fused multiply-add (one rounding):

    NaN -> NaN (0x7fc00000);  x >= 88.72283935546875 -> +inf;  x <= -103.97208404541015625 -> 0
    k = x * log2(e);  k = (k + 0x1.8p23) - 0x1.8p23     three roundings (no fma): nearest integer
    r = fma(k, -ln2_hi, x);  r = fma(k, -ln2_lo, r)                Cody & Waite's reduction
    P = p0 + r(p1 + r(p2 + r(p3 + r(p4 + r p5))))    by fma, innermost first
    Q = q0 + r(q1 + r q2)                            by fma
    exp(x) = (P / Q) * 2^k                           one rounding (AVX-512 ``scalef``; the AVX2
                                                     body gets the same by an exponent add, and a
                                                     division by a power of two for subnormals)

with the constants below (``NPY_LOG2Ef``, ``NPY_CODY_WAITE_LOGE_2_HIGHf``/``LOWf``,
``NPY_COEFF_P0_EXPf`` ... ``NPY_COEFF_Q2_EXPf``, ``NPY_RINT_CVT_MAGICf``; NumPy states a
maximum error of 2.52 ulp).  Here ``2^k`` is applied in float64, where ``P/Q · 2^k`` is exact,
and the product rounded to float32 once: the rounding ``scalef`` does, subnormal results
included.

Why the bits agree, and when they are used.  Every step above is an IEEE operation with one
correctly rounded result (LLVM does not contract or reassociate without fast-math, which refopt
never asks for), so the same sequence gives the same bits on any machine.  What can differ is
NumPy: a build or CPU without AVX2+FMA3 (x86-64-v2, ARM, POWER) runs libm's ``expf`` or another
kernel.  :func:`matches_numpy` therefore asks NumPy which kernel its float32 ``exp`` runs and
compares this function with ``np.exp`` in the running process on about a million float32 values
spread over every exponent, plus the edge cases; the fast path compiles it in only when NumPy
runs this kernel and every value agrees bit for bit, and otherwise keeps NumPy's own ``exp``
between two loops.  The tests compare all 2^32 float32 inputs (equal on this project's machine
with both the AVX-512 and, under ``NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL"``, the AVX2
kernel).
"""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["exp_f32", "exp_array", "agrees_with", "matches_numpy", "SOURCE_TAG"]

# Every constant is an np.float32, so that Numba types each operation below as float32 (a Python
# float would promote it to float64 and change the bits); the arithmetic is NumPy's, in float32.
_F = np.float32
LOG2E = _F(1.442695040888963407359924681001892137)  # NPY_LOG2Ef
RINT_MAGIC = _F(12582912.0)  # NPY_RINT_CVT_MAGICf = 0x1.8p23
LN2_HIGH = _F(-6.93145752e-1)  # NPY_CODY_WAITE_LOGE_2_HIGHf (negated ln 2, high part)
LN2_LOW = _F(-1.42860677e-6)  # NPY_CODY_WAITE_LOGE_2_LOWf
P0, P1, P2 = _F(9.999999999980870924916e-01), _F(7.257664613233124478488e-01), _F(2.473615434895520810817e-01)
P3, P4, P5 = _F(5.114512081637298353406e-02), _F(6.757896990527504603057e-03), _F(5.082762527590693718096e-04)
Q0, Q1, Q2 = _F(1.0), _F(-2.742335390411667452936e-01), _F(2.159509375685829852307e-02)
X_MAX = _F(88.72283935546875)  # at or above: +inf
X_MIN = _F(-103.97208404541015625)  # at or below: 0
INF, ZERO = _F(np.inf), _F(0.0)
NAN = np.array([0x7FC00000], dtype=np.uint32).view(np.float32)[0]  # NPY_NANF, whatever NaN came in

#: a tag of this file's text: the generated loops that call :func:`exp_f32` carry it, so that
#: Numba's disk cache (keyed on the loops' own file) compiles them anew when this file changes
SOURCE_TAG = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


@intrinsic
def _fma(typingctx, a, b, c):
    """fma(a, b, c) = a·b + c with one rounding (LLVM's llvm.fma; float32 only)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _float64_from_bits(typingctx, bits):
    """The float64 whose IEEE bit pattern is the int64 ``bits``."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@numba.njit(inline="always", fastmath=False, error_model="numpy")
def exp_f32(x):
    """exp(x) for a float32 ``x``, bit for bit as NumPy's SIMD ``simd_exp_FLOAT`` (see the module)."""
    k = x * LOG2E
    k = (k + RINT_MAGIC) - RINT_MAGIC
    r = _fma(k, LN2_HIGH, x)
    r = _fma(k, LN2_LOW, r)
    num = _fma(P5, r, P4)
    num = _fma(num, r, P3)
    num = _fma(num, r, P2)
    num = _fma(num, r, P1)
    num = _fma(num, r, P0)
    den = _fma(Q2, r, Q1)
    den = _fma(den, r, Q0)
    quotient = num / den
    # 2^k as float64 bits (k in [-150, 128] inside the range; anything finite outside it, where
    # the result is replaced below), the product exact in float64 and rounded to float32 once
    k_int = np.int64(k) if (x > X_MIN and x < X_MAX) else np.int64(0)
    y = np.float32(np.float64(quotient) * _float64_from_bits((k_int + 1023) << 52))
    y = INF if x >= X_MAX else y
    y = ZERO if x <= X_MIN else y
    return NAN if x != x else y


@numba.njit(nogil=True, fastmath=False, error_model="numpy", cache=True)
def _exp_array(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_f32(x[i])


def exp_array(x: np.ndarray) -> np.ndarray:
    """:func:`exp_f32` over a 1-D float32 array (the tests' and the probe's entry point)."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty_like(x)
    _exp_array(x, out)
    return out


def probe_inputs() -> np.ndarray:
    """About a million float32 values: every 4099th bit pattern (all signs, exponents and NaNs),
    the neighbourhoods of the overflow and underflow limits and of the subnormal-result range,
    ±0, ±inf."""
    spread = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32)
    edges = []
    for value in (X_MAX, X_MIN, _F(-87.33654), _F(-87.0), _F(-100.0), _F(1.0), _F(-1.0), _F(0.5)):
        b = int(np.array([value], dtype=np.float32).view(np.uint32)[0])
        edges.append(np.arange(b - 512, b + 512, dtype=np.uint64).astype(np.uint32))
    specials = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x00000001],
                        dtype=np.uint32)
    return np.concatenate([spread, *edges, specials]).view(np.float32)


def agrees_with(exp) -> bool:
    """Whether :func:`exp_f32` equals ``exp`` (a float32 array function) bit for bit on :func:`probe_inputs`."""
    x = probe_inputs()
    with np.errstate(all="ignore"):
        want = np.asarray(exp(x))
    return want.dtype == np.float32 and bool(np.array_equal(want.view(np.uint32), exp_array(x).view(np.uint32)))


def numpy_runs_this_kernel() -> bool:
    """Whether NumPy reports that its float32 ``exp`` runs ``simd_exp_FLOAT`` here: on x86-64 every
    dispatch target above the baseline is that kernel (AVX2+FMA3 or AVX512F; ``X86_V3``/``X86_V4``
    in NumPy 2.4), the baseline is libm's ``expf``.  Asks ``numpy.lib.introspect.opt_func_info``;
    False where it is missing or the machine is not x86-64."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        from numpy.lib.introspect import opt_func_info
    except ImportError:  # pragma: no cover - NumPy 2.0 and later have it
        return False
    current = opt_func_info(func_name="^exp$", signature="float32").get("exp", {}).get("ff", {}).get("current")
    return isinstance(current, str) and not current.startswith("baseline")


@functools.cache
def matches_numpy() -> bool:
    """Whether the fast path may call :func:`exp_f32` for ``np.exp`` in this process: NumPy runs the
    kernel it transcribes (:func:`numpy_runs_this_kernel`) and the probe agrees bit for bit
    (:func:`agrees_with`).  Asked once per process.

    The probe alone would catch another algorithm (libm's ``expf`` differs from this one on a large
    fraction of inputs) but not a near-copy: one constant off by an ulp, or one fused multiply-add
    split in two, changes about a hundred of the 2^32 results.  That is what the exhaustive test is
    for; NumPy's own report keeps a near-copy on another architecture out."""
    return numpy_runs_this_kernel() and agrees_with(np.exp)
