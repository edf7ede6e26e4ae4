"""The fast paths (refopt.fast) against the reference: bit for bit on NumPy, vectors, the CUDA source.

* NumPy: for every rule with a fast path and every option variant, float32 and float64,
  several steps on arrays whose size leaves a partial last block, several leaves, block and
  thread counts that cut the arrays differently: the result equals ``rule.step`` exactly.
* The golden vectors (specs/vectors) replayed through the fast path with ``refopt.verify``.
* The CUDA kernel body, compiled as C++ with the host compiler (no FMA contraction) and run
  on the same inputs: equal to the reference bit for bit for rules without exp, within a few
  ulp for diffGrad -- a check of the printed kernel that needs no GPU.
* CuPy itself, when a GPU answers: fma=False equal to the reference, fma=True within the
  vectors' tolerance.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

import refopt as ro
import refopt.fast as fast
import refopt.verify
from refopt.fast import _cupy
from refopt.fast._trace import NotElementwise, trace_leaf

from _variants import rule_cls, variants

FAST_RULES = ["sgd", "adam", "adamw", "amsgrad", "radam", "adabelief", "diffgrad", "rmsprop", "adagrad",
              "adadelta", "lion", "signsgd", "adabound", "amsbound", "yogi", "adamax", "nadam", "msvag"]
EXP_RULES = {"diffgrad"}  # exp is not correctly rounded: compiled kernels meet these within a few ulp


def _variant_cases():
    out = []
    for name in FAST_RULES:
        for label, kw in variants(rule_cls(name)):
            out.append(pytest.param(name, kw, id=f"{name}-{label}"))
    return out


def _trees(rng, dtype, steps):
    shapes = {"w": (3, 1111), "b": (7,), "scalar": ()}
    params = {k: np.asarray(rng.standard_normal(s), dtype=dtype) for k, s in shapes.items()}
    grads = [{k: np.asarray(rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3), dtype=dtype) for k, s in shapes.items()}
             for _ in range(steps)]
    for g in grads[1::3]:  # exact zeros and repeated gradients exercise the edge branches
        g["w"][0, :17] = 0
    return params, grads


def _same(a, b):
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(ro._tree.flatten(a, "a")[0], ro._tree.flatten(b, "b")[0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kw", _variant_cases())
def test_numpy_fast_path_equals_the_reference_bit_for_bit(name, kw, dtype):
    rule = ro.rules.get(name, **kw)
    rng = np.random.default_rng(abs(hash((name, str(kw)))) % 2**32)
    params, grads = _trees(rng, dtype, steps=6)
    fused = fast.fused(rule, block=1024, threads=3)  # 3333 elements: 4 blocks, the last partial
    p_ref = p_fast = params
    s_ref = s_fast = rule.init(params)
    for g in grads:
        p_ref, s_ref = rule.step(p_ref, g, s_ref)
        p_fast, s_fast = fused.step(p_fast, g, s_fast)
        assert p_fast["w"].dtype == dtype
        assert _same(p_ref, p_fast), f"params differ at t={s_ref.t}"
        for slot in s_ref.slots:
            assert _same(s_ref.slots[slot], s_fast.slots[slot]), f"slot {slot} differs at t={s_ref.t}"
        assert s_fast.t == s_ref.t and s_fast.rule == s_ref.rule


@pytest.mark.parametrize("block, threads", [(1024, 1), (2048, 2), (1 << 16, 4)])
def test_block_and_thread_counts_change_no_bit(block, threads):
    rule = ro.rules.adabelief(lr=0.01, weight_decay=0.1, amsgrad=True)
    rng = np.random.default_rng(3)
    p = rng.standard_normal(10_007).astype(np.float32)
    state = rule.init(p)
    ref = rule.step(p, rng.standard_normal(10_007).astype(np.float32), state)
    g = rng.standard_normal(10_007).astype(np.float32)
    want = rule.step(ref[0], g, ref[1])
    got = fast.fused(rule, block=block, threads=threads).step(ref[0], g, ref[1])
    assert np.array_equal(want[0], got[0]) and all(np.array_equal(want[1].slots[k], got[1].slots[k]) for k in want[1].slots)


def test_inputs_are_not_modified_and_out_buffers_are_used():
    rule = ro.rules.adam(lr=0.1)
    fused = fast.fused(rule, block=1024)
    rng = np.random.default_rng(5)
    p = rng.standard_normal(5000)
    g = rng.standard_normal(5000)
    for a in (p, g):
        a.flags.writeable = False  # a write into an input would raise
    state = fused.init(p)
    p1, s1 = fused.step(p, g, state)
    p2, s2 = fused.step(p1, g, s1)
    p3, s3 = fused.step(p2, g, s2, out=(p1, s1))  # p1, s1 are no longer needed: reuse them
    assert p3 is p1 and s3.slots["m"] is s1.slots["m"] and s3.t == 3
    want = rule.step(p2, g, s2)
    assert np.array_equal(p3, want[0])
    g_own = g.copy()
    with pytest.raises(ValueError, match="shares memory"):  # the gradient is never an output
        fused.step(p3, g_own, s3, out=(g_own, s2))
    with pytest.raises(ValueError, match="writeable"):
        fused.step(p3, g, s3, out=(g, s2))
    with pytest.raises(TypeError, match="out must be"):
        fused.step(p3, g, s3, out=p2)


def test_golden_vectors_pass_through_the_fast_path():
    """specs/vectors replayed with refopt.verify, with the fast path as the implementation."""
    for name in ["sgd", "adam", "adabelief", "diffgrad", "radam", "rmsprop", "lion"]:

        def make(**hyper):
            rule = ro.rules.get(name, **hyper)
            fused = fast.fused(rule, block=1024, threads=2)

            def step(params, grads, state):
                state = fused.init(params) if state is None else state
                return fused.step(params, grads, state)

            return step

        report = ro.verify.verify(make, rule=name, identify=False)
        assert report.passed, report.text()
        assert len(report.results) > 10


@pytest.mark.parametrize(
    "rule, match",
    [
        (ro.rules.clipped_sgd(), "pools quantities over the whole parameter tree"),
        (ro.rules.normalized_sgd(), "pools quantities over the whole parameter tree"),
        (ro.rules.clipped_adafactor(), "pools quantities over the whole parameter tree"),
        (ro.rules.adafactor(), "inspects an array's shape"),  # row/column statistics of each array
        (ro.rules.fromage(), "xp.linalg is not an elementwise operation"),  # per-array norms
        (ro.rules.adam(lr=np.array([[1e-3], [1e-2]])), "batched hyper-parameters"),
    ],
)
def test_rules_without_a_fast_path_are_refused_with_the_reason(rule, match):
    ok, why = fast.supports(rule)
    assert not ok and match in why
    with pytest.raises(ValueError, match=match):
        fast.fused(rule)


def test_bad_arguments_and_other_libraries():
    with pytest.raises(ValueError, match="block"):
        fast.fused(ro.rules.adam(), block=10)
    with pytest.raises(ValueError, match="threads"):
        fast.fused(ro.rules.adam(), threads=0)
    with pytest.raises(TypeError, match="fma"):
        fast.fused(ro.rules.adam(), fma="no")
    strict = pytest.importorskip("array_api_strict")
    x = strict.asarray([1.0, 2.0])
    fused = fast.fused(ro.rules.adam())
    with pytest.raises(TypeError, match="NumPy and CuPy"):
        fused.step(x, x, fused.init(x))


def test_the_tracer_records_the_reference_order_and_types():
    prog = trace_leaf(ro.rules.adam(), 3)
    body = prog.c_body()
    lines = body.splitlines()
    # m_t = β1 m + (1-β1) g, each product rounded to T before the sum (no contraction in the source)
    assert lines[:3] == [
        "const T n0 = ((T)(c_beta1)) * s_m;",
        "const T n1 = ((T)(c_one_minus_beta1)) * g;",
        "const T n2 = n0 + n1;",
    ]
    # every output's value first, then every write (an output may be its own input's array)
    assert lines[-6:] == ["const T v_p = n12;", "const T v_s_m = n2;", "const T v_s_v = n6;",
                          "out_p = v_p;", "out_s_m = v_s_m;", "out_s_v = v_s_v;"]
    assert prog.scalars == ["beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "sqrt_bc2", "eps", "step_size"]
    # SGD's first momentum step is a different program (b = g), later steps the same one
    sgd = ro.rules.sgd(momentum=0.9)
    assert trace_leaf(sgd, 1).c_body() != trace_leaf(sgd, 2).c_body() == trace_leaf(sgd, 9).c_body()
    with pytest.raises(NotElementwise):
        trace_leaf(ro.rules.clipped_adam(), 1)


# ---------------------------------------------------------------------------------------------------
# the printed CUDA kernel, compiled for the host
# ---------------------------------------------------------------------------------------------------

_CXX = shutil.which("g++") or shutil.which("c++")

_HARNESS = """
#include <cmath>
using std::sqrt; using std::exp; using std::fabs;
template <typename T>
static void body(long n, const T* p_, const T* g_, const T* const* slots_, const double* coef, T* const* outs) {{
    for (long i = 0; i < n; ++i) {{
        const T p = p_[i]; const T g = g_[i];
{slot_loads}
{coef_loads}
{out_decls}
{body}
{out_stores}
    }}
}}
extern "C" void run_f32(long n, const float* p, const float* g, const float* const* s, const double* c, float* const* o) {{ body<float>(n, p, g, s, c, o); }}
extern "C" void run_f64(long n, const double* p, const double* g, const double* const* s, const double* c, double* const* o) {{ body<double>(n, p, g, s, c, o); }}
"""


def _compile(prog, tmp_path):
    slots = [a for a in prog.arrays if a.startswith("s_")]
    src = _HARNESS.format(
        slot_loads="\n".join(f"        const T {a} = slots_[{i}][i];" for i, a in enumerate(slots)),
        coef_loads="\n".join(f"        const double c_{k} = coef[{i}];" for i, k in enumerate(prog.scalars)),
        out_decls="\n".join(f"        T out_{name};" for name, _ in prog.outputs),
        body="\n".join("        " + line for line in prog.c_body().splitlines()),
        out_stores="\n".join(f"        outs[{i}][i] = out_{name};" for i, (name, _) in enumerate(prog.outputs)),
    )
    (tmp_path / "k.cpp").write_text(src)
    lib = tmp_path / "k.so"
    # -ffp-contract=off: as nvcc's --fmad=false; -fno-fast-math keeps IEEE semantics
    subprocess.run([_CXX, "-O2", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", "-o", str(lib),
                    str(tmp_path / "k.cpp")], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def _run_compiled(lib, prog, rule, p, g, state):
    t = state.t + 1
    c = rule._coefficients(p, t, rule._scalars(t), None, False)
    coef = np.array([float(getattr(c, k)) for k in prog.scalars] or [0.0])
    slots = [np.ascontiguousarray(state.slots[a[2:]]) for a in prog.arrays if a.startswith("s_")]
    outs = [np.empty_like(p) for _ in prog.outputs]
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    arr = lambda xs: (ctypes.c_void_p * max(1, len(xs)))(*[x.ctypes.data for x in xs])  # noqa: E731
    fn = lib.run_f32 if p.dtype == np.float32 else lib.run_f64
    fn(ctypes.c_long(p.size), ptr(p), ptr(g), arr(slots), ptr(coef), arr(outs))
    return outs


@pytest.mark.skipif(_CXX is None or sys.platform != "linux", reason="needs a C++ compiler on Linux")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "name, kw",
    [
        ("adam", {}), ("adam", {"amsgrad": True, "weight_decay": 0.1}), ("adam", {"eps_mode": "inside_sqrt"}),
        ("adam", {"ema": "lerp"}), ("adamw", {}), ("radam", {}), ("adabelief", {}),
        ("adabelief", {"amsgrad": True, "weight_decay": 0.1}), ("diffgrad", {}),
        ("sgd", {"momentum": 0.9, "nesterov": True}), ("rmsprop", {"centered": True, "momentum": 0.5}),
        ("adagrad", {}), ("adadelta", {}), ("lion", {}), ("signsgd", {}),
        ("adabound", {"amsbound": True, "weight_decay": 0.1}), ("adabound", {"eps_root": 1e-15, "step_decay": "sqrt_t"}),
        ("yogi", {}), ("adamax", {"eps_mode": "in_denominator"}), ("nadam", {"schedule": "keras3"}),
    ],
)
def test_printed_kernel_compiled_for_the_host_matches_the_reference(name, kw, dtype, tmp_path):
    rule = ro.rules.get(name, **kw)
    rng = np.random.default_rng(11)
    n = 4099
    p = rng.standard_normal(n).astype(dtype)
    state = rule.init(p)
    libs = {}
    for step in range(7):
        g = (rng.standard_normal(n) * 10.0 ** rng.integers(-4, 4)).astype(dtype)
        g[:5] = 0
        prog = trace_leaf(rule, state.t + 1)
        body = prog.c_body()
        if body not in libs:  # SGD's and RAdam's first steps are programs of their own
            where = tmp_path / f"k{len(libs)}"
            where.mkdir()
            libs[body] = _compile(prog, where)
        got = _run_compiled(libs[body], prog, rule, p, g, state)
        p, state = rule.step(p, g, state)
        want = [p] + [state.slots[name[2:]] for name, _ in prog.outputs[1:]]
        for (label, _), w, x in zip(prog.outputs, want, got):
            if name in EXP_RULES:
                ulp = np.abs(w.astype(np.float64) - x) / np.spacing(np.abs(w).astype(dtype)).astype(np.float64)
                assert np.nanmax(ulp) <= 8, f"{label} at t={state.t}: {np.nanmax(ulp)} ulp"
            else:
                assert np.array_equal(w, x, equal_nan=True), f"{label} differs at t={state.t}"


class _HostElementwiseKernel:
    """cupy.ElementwiseKernel's contract, with the body compiled for the host (a stand-in for tests).

    Array parameters (``T name``) are read element by element, ``float64`` parameters are scalars,
    outputs are assigned element by element; arguments come inputs first, then outputs, as CuPy
    takes them.  The options given are recorded.
    """

    built: list = []

    def __init__(self, in_params, out_params, operation, name="kernel", options=()):
        self.ins = [tuple(p.split()) for p in in_params.split(",")]
        self.outs = [tuple(p.split()) for p in out_params.split(",")]
        self.options = options
        self.name = name
        self.operation = operation
        self.libs = {}
        _HostElementwiseKernel.built.append(self)

    def _lib(self, ctype):
        if ctype not in self.libs:
            arrays = [n for t, n in self.ins if t == "T"]
            scalars = [n for t, n in self.ins if t == "float64"]
            params = ", ".join([f"const {ctype}* {n}_" for n in arrays] + [f"double {n}" for n in scalars]
                               + [f"{ctype}* {n}_" for _, n in self.outs])
            src = "\n".join([
                "#include <cmath>", "using std::sqrt; using std::exp; using std::fabs;",
                f"typedef {ctype} T;",
                f'extern "C" void run(long n, {params}) {{',
                "  for (long i = 0; i < n; ++i) {",
                *[f"    const T& {a} = {a}_[i];" for a in arrays],  # by reference: the worst case in place
                *[f"    T& {o} = {o}_[i];" for _, o in self.outs],
                *("    " + line for line in self.operation.splitlines()),
                "  }", "}",
            ])
            where = Path(tempfile.mkdtemp())
            (where / "k.cpp").write_text(src)
            subprocess.run([_CXX, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(where / "k.so"),
                            str(where / "k.cpp")], check=True, capture_output=True)
            self.libs[ctype] = ctypes.CDLL(str(where / "k.so"))
        return self.libs[ctype]

    def __call__(self, *args):
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        n_in = sum(1 for t, _ in self.ins if t == "T")
        scalars = [a for a in args if not isinstance(a, np.ndarray)]
        assert len(arrays) == n_in + len(self.outs) and len(scalars) == sum(1 for t, _ in self.ins if t == "float64")
        assert all(isinstance(s, np.float64) for s in scalars)  # doubles, as declared
        lib = self._lib("float" if arrays[0].dtype == np.float32 else "double")
        ptrs = [ctypes.c_void_p(np.ascontiguousarray(a).ctypes.data) for a in arrays[:n_in]]
        outs = arrays[n_in:]
        lib.run(ctypes.c_long(arrays[0].size), *ptrs, *[ctypes.c_double(float(s)) for s in scalars],
                *[ctypes.c_void_p(o.ctypes.data) for o in outs])


@pytest.mark.skipif(_CXX is None or sys.platform != "linux", reason="needs a C++ compiler on Linux")
@pytest.mark.parametrize("fma", [False, True])
def test_cupy_step_drives_the_elementwise_kernel_as_cupy_would(monkeypatch, fma):
    """refopt.fast._cupy against a host stand-in of CuPy: argument order, scalar types, outputs, options."""
    fake = types.SimpleNamespace(ElementwiseKernel=_HostElementwiseKernel,
                                 empty=lambda shape, dtype: np.empty(shape, dtype=dtype))
    monkeypatch.setattr(_cupy, "_cupy", lambda: fake)
    _cupy._kernel.cache_clear()
    _HostElementwiseKernel.built.clear()
    try:
        for name, kw in [("adam", {"amsgrad": True, "weight_decay": 0.1}), ("sgd", {"momentum": 0.9}), ("lion", {})]:
            rule = ro.rules.get(name, **kw)
            cache = fast._trace.ProgramCache(rule)
            rng = np.random.default_rng(2)
            p = {"a": rng.standard_normal(300).astype(np.float32), "b": rng.standard_normal((4, 5))}
            state = rule.init(p)
            for step in range(4):  # fresh outputs, fresh outputs, given buffers, in place
                g = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in p.items()}
                xp, ps, gs, slots, _ = rule._check_inputs(p, g, state)
                if step == 3:  # the kernel writes into its own inputs: they are copies of the reference's
                    ps, slots = [q.copy() for q in ps], [{k: a.copy() for k, a in s.items()} for s in slots]
                t = state.t + 1
                coefficients = [rule._coefficients(q, t, rule._scalars(t), None, False) for q in ps]
                targets = {0: None, 1: None, 3: [{"p": q, **{"s_" + k: a for k, a in s.items()}} for q, s in zip(ps, slots)],
                           2: [{n: np.empty_like(q) for n, _ in cache.get(t).outputs} for q in ps]}[step]
                new_p, new_s = _cupy.step(rule, cache.get(t), ps, gs, slots, coefficients, fma=fma, targets=targets)
                p, state = rule.step(p, g, state)
                for i, key in enumerate(p):
                    assert np.array_equal(new_p[i], p[key]), (name, key, step)
                    for slot in rule.slots():
                        assert np.array_equal(new_s[i][slot], state.slots[slot][key]), (name, slot, step)
                    if targets is not None:
                        assert new_p[i] is targets[i]["p"]
        assert {k.options for k in _HostElementwiseKernel.built} == {() if fma else ("--fmad=false",)}
        assert all(k.name.startswith("refopt_") for k in _HostElementwiseKernel.built)
    finally:
        _cupy._kernel.cache_clear()


# ---------------------------------------------------------------------------------------------------
# the compiled CPU engine (Numba), when installed
# ---------------------------------------------------------------------------------------------------

_NUMBA = importlib.util.find_spec("numba") is not None
_COMPILED_CASES = [
    ("adam", {}), ("adam", {"amsgrad": True, "weight_decay": 0.1}), ("adam", {"eps_mode": "inside_sqrt", "ema": "lerp"}),
    ("adamw", {}), ("radam", {}), ("adabelief", {}), ("adabelief", {"amsgrad": True, "weight_decay": 0.1}),
    ("diffgrad", {}), ("sgd", {"momentum": 0.9, "nesterov": True}), ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("adagrad", {}), ("adadelta", {}), ("lion", {}), ("signsgd", {}),
    ("adabound", {"amsbound": True}), ("yogi", {}), ("adamax", {}), ("nadam", {}),
]


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kw", _COMPILED_CASES)
def test_numba_engine_matches_the_reference_bit_for_bit(name, kw, dtype):
    rule = ro.rules.get(name, **kw)
    fused = fast.fused(rule, engine="numba", threads=2)
    rng = np.random.default_rng(13)
    params, grads = _trees(rng, dtype, steps=6)
    p, state = params, rule.init(params)
    for g in grads:
        got_p, got_s = fused.step(p, g, state)  # from the reference's state: one step compared at a time
        p, state = rule.step(p, g, state)
        for want, got in [(p, got_p)] + [(state.slots[k], got_s.slots[k]) for k in state.slots]:
            for key in want:
                w, x = np.asarray(want[key]), np.asarray(got[key])
                assert x.dtype == dtype and x.shape == w.shape
                # exp included: it is NumPy's own, between two compiled loops
                assert np.array_equal(w, x, equal_nan=True), f"{key} differs at t={state.t}"


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
def test_numba_engine_passes_the_golden_vectors():
    for name, hyper in [("adam", {"weight_decay": 0.0, "amsgrad": False, "eps_mode": "after_bias_correction",
                                  "maximize": False, "ema": "multiply_add"}),
                        ("diffgrad", {"weight_decay": 0.0, "eps_mode": "after_bias_correction", "eps_root": 0.0})]:

        def make(**kw):
            fused = fast.fused(ro.rules.get(name, **kw), engine="numba")
            return lambda params, grads, state: fused.step(params, grads, fused.init(params) if state is None else state)

        report = ro.verify.verify(make, rule=name, hyper=hyper, identify=False)
        assert report.passed, report.text()
        assert len(report.results) >= 4


def test_numba_engine_is_named_and_hinted():
    with pytest.raises(ValueError, match="engine must be one of"):
        fast.fused(ro.rules.adam(), engine="c")
    if not _NUMBA:
        with pytest.raises(ImportError, match=r"pip install 'refopt\[numba\]'"):
            fast.fused(ro.rules.adam(), engine="numba")


# ---------------------------------------------------------------------------------------------------
# CuPy, when a GPU answers
# ---------------------------------------------------------------------------------------------------


def _gpu():
    try:
        import cupy

        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu() is None, reason="no GPU answers (CuPy missing or no device)")
@pytest.mark.parametrize("name, kw", _variant_cases())
def test_cupy_kernels_step_in_place(name, kw):
    """out=(params, state) on CuPy: the same arrays come back holding what fresh outputs hold."""
    cupy = _gpu()
    rule = ro.rules.get(name, **kw)
    params, grads = _trees(np.random.default_rng(17), np.float32, steps=4)
    fused = fast.fused(rule)
    to_gpu = lambda t: {k: cupy.asarray(v) for k, v in t.items()}  # noqa: E731
    p_new, s_new = to_gpu(params), fused.init(to_gpu(params))
    p_own, s_own = to_gpu(params), fused.init(to_gpu(params))
    arrays = _arrays(p_own, s_own)
    for g in grads:
        g_gpu = to_gpu(g)
        p_new, s_new = fused.step(p_new, g_gpu, s_new)
        p_own, s_own = fused.step(p_own, g_gpu, s_own, out=(p_own, s_own))
        assert all(x is y for x, y in zip(_arrays(p_own, s_own), arrays, strict=True))
        for want, got in zip(_arrays(p_new, s_new), arrays):
            assert bool(cupy.array_equal(want, got, equal_nan=True))


@pytest.mark.gpu
@pytest.mark.skipif(_gpu() is None, reason="no GPU answers (CuPy missing or no device)")
@pytest.mark.parametrize("fma", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kw", _variant_cases())
def test_cupy_kernels_match_the_reference(name, kw, dtype, fma):
    cupy = _gpu()
    rule = ro.rules.get(name, **kw)
    rng = np.random.default_rng(7)
    params, grads = _trees(rng, dtype, steps=5)
    fused = fast.fused(rule, fma=fma)
    p_ref, s_ref = params, rule.init(params)
    to_gpu = lambda t: {k: cupy.asarray(v) for k, v in t.items()}  # noqa: E731
    p_gpu, s_gpu = to_gpu(params), fused.init(to_gpu(params))
    for g in grads:
        p_ref, s_ref = rule.step(p_ref, g, s_ref)
        p_gpu, s_gpu = fused.step(p_gpu, to_gpu(g), s_gpu)
        for k in p_ref:
            got = cupy.asnumpy(p_gpu[k])
            if fma or name in EXP_RULES:
                np.testing.assert_allclose(got, p_ref[k], rtol=64 * np.finfo(dtype).eps, atol=0)
            else:
                assert np.array_equal(got, p_ref[k], equal_nan=True), k
        if fma or name in EXP_RULES:  # restart from the reference: compare one step at a time
            p_gpu, s_gpu = to_gpu(p_ref), type(s_ref)(s_ref.rule, s_ref.t,
                                                       {k: to_gpu(v) for k, v in s_ref.slots.items()})


@pytest.mark.gpu
@pytest.mark.skipif(_gpu() is None, reason="no GPU answers (CuPy missing or no device)")
@pytest.mark.parametrize("fma", [False, True])
def test_golden_vectors_pass_through_the_cupy_kernels(fma):
    cupy = _gpu()
    for name in ["sgd", "adam", "adabelief", "diffgrad", "radam", "rmsprop", "lion"]:

        def make(**hyper):
            fused = fast.fused(ro.rules.get(name, **hyper), fma=fma)
            box = {}

            def step(params, grads, state):
                p, g = cupy.asarray(params), cupy.asarray(grads)
                box["state"] = fused.init(p) if state is None else box["state"]
                p, box["state"] = fused.step(p, g, box["state"])
                return cupy.asnumpy(p), "opaque"  # the verifier keeps the state it is handed back

            return step

        report = ro.verify.verify(make, rule=name, identify=False)
        assert report.passed, report.text()


def test_kernel_source_names_every_input_and_output():
    prog = trace_leaf(ro.rules.diffgrad(), 2)
    ins, outs, body = _cupy.kernel_source(prog)
    assert ins.startswith("T p, T g, T s_m, T s_v, T s_g_prev, float64 c_beta1")
    assert outs == "T out_p, T out_s_m, T out_s_v, T out_s_g_prev"
    assert "exp(" in body


# ---------------------------------------------------------------------------------------------------
# steps in place (out=(params, state)), every engine
# ---------------------------------------------------------------------------------------------------

def _in_place_cases():
    cases = [pytest.param(name, kw, "numpy", id=f"{name}-{label}-numpy") for name, kw, label in
             ((p.values[0], p.values[1], p.id) for p in _variant_cases())]
    if importlib.util.find_spec("numba") is not None:
        cases += [pytest.param(name, kw, "numba", id=f"{name}-{i}-numba") for i, (name, kw) in enumerate(_COMPILED_CASES)]
    return cases


def _copy_state(state):
    """A state of the same values in arrays of its own (slots that are arrays or trees of arrays)."""
    def own(tree):
        leaves, structure, _ = ro._tree.flatten(tree)
        return ro._tree.unflatten(structure, [a.copy() for a in leaves])

    return ro.rules.State(state.rule, state.t, {k: own(v) for k, v in state.slots.items()})


class _Loops:
    """Records the compiled loops that refopt.fast._numba runs: each name fetched, calls per name."""

    def __init__(self):
        self.fetched, self.calls = [], {}

    def wrap(self, module):
        loops = self

        class Module:
            def __getattr__(self, name):
                fn = getattr(module, name)
                loops.fetched.append(name)

                def counted(*args):
                    loops.calls[name] = loops.calls.get(name, 0) + 1
                    return fn(*args)

                return counted

        return Module()


@pytest.fixture
def numba_loops(monkeypatch):
    from refopt.fast import _numba

    loops, real = _Loops(), _numba._module
    monkeypatch.setattr(_numba, "_module", lambda source: loops.wrap(real(source)))
    return loops


def _arrays(params, state):
    return [*params.values(), *(a for v in state.slots.values() for a in v.values())]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kw, engine", _in_place_cases())
def test_a_step_in_place_equals_the_reference_bit_for_bit(name, kw, engine, dtype):
    """out=(params, state) themselves: the same arrays come back, holding the reference's bits."""
    rule = ro.rules.get(name, **kw)
    rng = np.random.default_rng(abs(hash((name, str(kw), engine))) % 2**32)
    params, grads = _trees(rng, dtype, steps=5)
    fused = fast.fused(rule, engine=engine, block=1024, threads=3)
    p_ref, s_ref = params, rule.init(params)
    p_own, s_own = {k: v.copy() for k, v in params.items()}, _copy_state(s_ref)
    arrays = _arrays(p_own, s_own)
    for g in grads:
        frozen = {k: v.copy() for k, v in g.items()}
        p_ref, s_ref = rule.step(p_ref, g, s_ref)
        p_own, s_own = fused.step(p_own, g, s_own, out=(p_own, s_own))
        assert all(x is y for x, y in zip(_arrays(p_own, s_own), arrays, strict=True))  # the very arrays passed
        assert _same(p_ref, p_own), f"params differ at t={s_ref.t}"
        for slot in s_ref.slots:
            assert _same(s_ref.slots[slot], s_own.slots[slot]), f"slot {slot} differs at t={s_ref.t}"
        assert _same(g, frozen)  # the gradient is only read


def test_numpy_engine_reuses_its_block_buffers_from_step_to_step():
    """Scratch and in-place copy buffers are the thread's own, kept between steps (a fresh set of
    2^16-element buffers every step was faulted in anew), sized to the largest block in use."""
    from refopt.fast import _numpy

    rule = ro.rules.adabelief(lr=0.1)
    fused = fast.fused(rule, threads=1)
    p = np.linspace(-1.0, 1.0, 5000, dtype=np.float32)
    state = fused.init(p)
    want_p, want_s = p, state
    p, state = p.copy(), _copy_state(state)
    seen = []
    for _ in range(3):
        g = np.cos(p * 3.0)
        want_p, want_s = rule.step(want_p, g, want_s)
        p, state = fused.step(p, g, state, out=(p, state))
        buffers = _numpy._SCRATCH.buffers[(np.dtype(np.float32), 5000)]
        seen.append([id(b) for b in buffers["buf"] + list(buffers["in"].values())])
        assert np.array_equal(want_p, p) and all(np.array_equal(want_s.slots[k], state.slots[k]) for k in state.slots)
    assert seen[0] == seen[1] == seen[2] and len(seen[0]) > 3  # the same arrays every step
    assert all(b.size == 5000 for b in buffers["buf"])  # one block of 5000, not 2^16


def test_in_place_is_refused_where_an_output_would_overwrite_another_input():
    rule = ro.rules.adam(lr=0.1)
    fused = fast.fused(rule)
    p = np.linspace(-1.0, 1.0, 4000)
    state = fused.init(p)
    with pytest.raises(ValueError, match="out p for .* shares memory"):  # params passed as their own gradient
        fused.step(p, p, state, out=(p, state))
    shared = ro.rules.State(state.rule, state.t, {"m": state.slots["m"], "v": state.slots["m"]})
    with pytest.raises(ValueError, match="shares memory"):  # one array as two slots
        fused.step(p, np.ones_like(p), shared, out=(p, shared))
    tree = {"a": p, "b": p}
    with pytest.raises(ValueError, match="shares memory"):  # one array as two leaves
        fused.step(tree, {"a": np.ones_like(p), "b": np.ones_like(p)}, fused.init(tree), out=(tree, fused.init(tree)))


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("name, kw", [("diffgrad", {}), ("diffgrad", {"weight_decay": 0.1, "eps_root": 1e-12})])
def test_numba_blocked_program_cuts_blocks_and_threads_anywhere(monkeypatch, numba_loops, name, kw, in_place):
    """diffGrad's exp cuts its program (here because INLINE_EXP is off; float64 always): pieces run
    block by block on threads; small blocks, a partial last block and an uneven share of blocks per
    thread change no bit."""
    from refopt.fast import _numba

    monkeypatch.setattr(_numba, "BLOCK", 1000)
    monkeypatch.setattr(_numba, "INLINE_EXP", False)
    rule = ro.rules.get(name, **kw)
    rng = np.random.default_rng(21)
    p = rng.standard_normal(10_007).astype(np.float32)
    state = rule.init(p)
    for threads in (1, 3, 4):
        fused = fast.fused(rule, engine="numba", threads=threads)
        g = rng.standard_normal(10_007).astype(np.float32)
        want_p, want_s = rule.step(p, g, state)
        if in_place:
            own_p, own_s = p.copy(), _copy_state(state)
            got_p, got_s = fused.step(own_p, g, own_s, out=(own_p, own_s))
            assert got_p is own_p and all(got_s.slots[k] is own_s.slots[k] for k in own_s.slots)
        else:
            got_p, got_s = fused.step(p, g, state)
        assert np.array_equal(want_p, got_p)
        assert all(np.array_equal(want_s.slots[k], got_s.slots[k]) for k in want_s.slots)
        p, state = want_p, want_s
    # 10,007 elements in blocks of 1000: 11 calls of each of the two loops per step, three steps
    assert numba_loops.calls == {"loop0": 33, "loop1": 33}


def _exhaustive_float32_chunks(chunk=1 << 24):
    for start in range(0, 1 << 32, chunk):
        yield np.arange(start, start + chunk, dtype=np.uint32).view(np.float32)


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
def test_compiled_exp_equals_numpys_exp_on_every_float32():
    """refopt.fast._expf.exp_f32 against np.exp on all 2^32 float32 bit patterns: NaNs, infinities,
    subnormal inputs and results, both saturation limits.  Where this NumPy runs another exp
    (no AVX2+FMA3, another architecture) the fast path does not use exp_f32 and there is nothing
    to compare."""
    from concurrent.futures import ThreadPoolExecutor

    from refopt.fast import _expf

    if not _expf.matches_numpy():
        pytest.skip("NumPy's float32 exp here is not its AVX2/AVX-512 kernel: the fast path cuts at np.exp")

    def differences(x):
        with np.errstate(all="ignore"):
            want = np.exp(x)
        bad = np.flatnonzero(want.view(np.uint32) != _expf.exp_array(x).view(np.uint32))
        return [int(b) for b in x.view(np.uint32)[bad[:3]]], int(bad.size)

    with ThreadPoolExecutor(2) as pool:  # both release the GIL
        found = [(first, count) for first, count in pool.map(differences, _exhaustive_float32_chunks()) if count]
    assert not found, f"{sum(c for _, c in found)} inputs differ, e.g. bits {[hex(b) for b in found[0][0]]}"


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
def test_compiled_exp_is_accepted_where_numpy_runs_its_simd_exp():
    """Where NumPy reports its AVX2/AVX-512 exp, the probe must agree: a wrong constant or a split
    fma in exp_f32 fails here (the probe sees most) or in the exhaustive test (all)."""
    from refopt.fast import _expf

    if not _expf.numpy_runs_this_kernel():
        pytest.skip("NumPy's float32 exp here is not its AVX2/AVX-512 kernel")
    assert _expf.agrees_with(np.exp)
    assert _expf.matches_numpy()


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
def test_compiled_exp_is_used_only_where_it_agrees_with_numpy(monkeypatch, numba_loops):
    """The probe tells NumPy's kernel from another exp (here libm-like: float64 exp rounded to
    float32), and a process whose NumPy disagrees keeps np.exp between two loops: same bits."""
    from refopt.fast import _expf

    assert _expf.agrees_with(np.exp) == _expf.matches_numpy()
    assert not _expf.agrees_with(lambda x: np.exp(x.astype(np.float64)).astype(np.float32))
    assert not _expf.agrees_with(lambda x: np.exp(x.astype(np.float64)))  # float64 results: no
    rule = ro.rules.diffgrad(weight_decay=0.01)
    rng = np.random.default_rng(4)
    p = rng.standard_normal(3001).astype(np.float32)
    state = rule.init(p)
    for agrees, loops in [(True, ["loop0_serial"]), (False, ["loop0", "loop1"])]:
        monkeypatch.setattr(_expf, "matches_numpy", lambda agrees=agrees: agrees)
        g = rng.standard_normal(3001).astype(np.float32)
        want_p, want_s = rule.step(p, g, state)
        got_p, got_s = fast.fused(rule, engine="numba", threads=2).step(p, g, state)
        assert np.array_equal(want_p, got_p)
        assert all(np.array_equal(want_s.slots[k], got_s.slots[k]) for k in state.slots)
        assert numba_loops.fetched == loops
        numba_loops.fetched.clear()
        p, state = want_p, want_s


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("parallel_min", [1000, 1 << 30])
def test_numba_diffgrad_float32_is_one_loop_with_numpys_exp(monkeypatch, numba_loops, in_place, parallel_min):
    """float32 diffGrad as one loop that calls exp_f32, in parallel and serially, in place or not,
    on gradients that take exp to its edges: |Δg| of 0, subnormal, 87-104 (subnormal and zero
    exp), huge, inf and NaN -- every bit the reference's."""
    from refopt.fast import _expf, _numba

    if not _expf.matches_numpy():
        pytest.skip("NumPy's float32 exp here is not its AVX2/AVX-512 kernel: the fast path cuts at np.exp")
    monkeypatch.setattr(_numba, "PARALLEL_MIN", parallel_min)
    rule = ro.rules.diffgrad(lr=0.1)
    rng = np.random.default_rng(30)
    n = 5003
    p = rng.standard_normal(n).astype(np.float32)
    state = rule.init(p)
    edges = np.array([0.0, 1e-45, -1e-40, 87.0, -88.5, 100.0, 103.9, -104.0, 3e38, np.inf, -np.inf, np.nan],
                     dtype=np.float32)
    for step in range(3):
        g = rng.standard_normal(n).astype(np.float32) * np.float32(10.0 ** (step - 1))
        at = slice(16 * step, 16 * step + edges.size)  # fresh positions: g_prev finite there
        with np.errstate(all="ignore"):
            g[at] = state.slots["g_prev"][at] + edges  # Δg = the edge values (rounded)
            want_p, want_s = rule.step(p, g, state)
        if in_place:
            own_p, own_s = p.copy(), _copy_state(state)
            got_p, got_s = fast.fused(rule, engine="numba", threads=2).step(own_p, g, own_s, out=(own_p, own_s))
        else:
            got_p, got_s = fast.fused(rule, engine="numba", threads=2).step(p, g, state)
        assert np.isnan(got_p).sum() == 3 * (step + 1)  # each step's inf, -inf and NaN
        assert np.array_equal(want_p, got_p, equal_nan=True)
        assert all(np.array_equal(want_s.slots[k], got_s.slots[k], equal_nan=True) for k in state.slots)
        p, state = want_p, want_s
    loop = "loop0" if parallel_min <= n else "loop0_serial"
    assert numba_loops.fetched == [loop] * 3  # one loop per step, no cut at exp


# ---------------------------------------------------------------------------------------------------
# the reference driver's slices (refopt.rules._base.SLICE): the same bits as whole arrays
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kw", _variant_cases())
def test_the_reference_in_slices_equals_the_reference_on_whole_arrays(monkeypatch, name, kw):
    from refopt.rules import _base

    rule = ro.rules.get(name, **kw)
    rng = np.random.default_rng(abs(hash((name, str(kw), "slices"))) % 2**32)
    params, grads = _trees(rng, np.float32, steps=4)  # w: 3333 elements, 4 slices of 1000 on 3 threads
    monkeypatch.setattr(_base, "SLICE_THREADS", 3)
    sliced = []
    real = _base.Rule._leaf_in_slices
    monkeypatch.setattr(_base.Rule, "_leaf_in_slices", lambda self, xp, p, *a: sliced.append(p.shape) or real(self, xp, p, *a))
    p_whole = p_slices = params
    s_whole = s_slices = rule.init(params)
    for g in grads:
        monkeypatch.setattr(_base, "SLICE", None)
        p_whole, s_whole = rule.step(p_whole, g, s_whole)
        monkeypatch.setattr(_base, "SLICE", 1000)
        p_slices, s_slices = rule.step(p_slices, g, s_slices)
        assert _same(p_whole, p_slices), f"params differ at t={s_whole.t}"
        for slot in s_whole.slots:
            assert _same(s_whole.slots[slot], s_slices.slots[slot]), f"slot {slot} differs at t={s_whole.t}"
        assert p_slices["w"].shape == (3, 1111) and p_slices["w"].dtype == np.float32
    assert sliced == [(3, 1111)] * len(grads)  # "w" only, once per step: the other leaves are small


def test_only_elementwise_rules_are_stepped_in_slices(monkeypatch):
    from refopt.rules import _base

    calls = []
    monkeypatch.setattr(_base, "SLICE", 1000)
    monkeypatch.setattr(_base.Rule, "_leaf_in_slices",
                        lambda self, *a: calls.append(self.name) or self._leaf(*a))
    p = np.linspace(-1, 1, 5000)
    for rule in (ro.rules.adam(), ro.rules.clipped_adam(), ro.rules.adafactor(), ro.rules.fromage()):
        rule.step(p, p * 0.5, rule.init(p))
        rule.trace(p, p * 0.5, rule.init(p))  # a trace keeps whole arrays: its quantities are returned
    assert calls == ["adam"]
    small = np.ones(999)
    ro.rules.adam().step(small, small, ro.rules.adam().init(small))  # not larger than SLICE: whole
    assert calls == ["adam"]


@pytest.mark.skipif(not _NUMBA, reason="Numba is not installed (the numba extra)")
@pytest.mark.parametrize("name, kw", [("adam", {"amsgrad": True}), ("adabelief", {}), ("sgd", {"momentum": 0.9}),
                                      ("lion", {})])
def test_numba_parallel_and_serial_loops_give_the_same_bits(monkeypatch, numba_loops, name, kw):
    """Arrays of PARALLEL_MIN elements or more are shared out among the threads, smaller ones run
    on the calling thread: the same source, the same bits (both checked against the reference)."""
    from refopt.fast import _numba

    rule = ro.rules.get(name, **kw)
    rng = np.random.default_rng(8)
    p = rng.standard_normal(5001).astype(np.float32)
    state = rule.init(p)
    for parallel_min in (1000, 1 << 30):
        monkeypatch.setattr(_numba, "PARALLEL_MIN", parallel_min)
        q, s = p, state
        for _ in range(3):
            g = rng.standard_normal(5001).astype(np.float32)
            want_p, want_s = rule.step(q, g, s)
            own_p, own_s = q.copy(), _copy_state(s)
            got_p, got_s = fast.fused(rule, engine="numba", threads=2).step(own_p, g, own_s, out=(own_p, own_s))
            assert np.array_equal(want_p, got_p) and all(np.array_equal(want_s.slots[k], got_s.slots[k]) for k in s.slots)
            q, s = want_p, want_s
        # 5001 elements: the parallel loop at PARALLEL_MIN = 1000, its serial twin above 5001
        assert numba_loops.fetched == ["loop0" if parallel_min <= 5001 else "loop0_serial"] * 3
        numba_loops.fetched.clear()


# ---------------------------------------------------------------------------------------------------
# recycled output memory (refopt.fast._numpy.recycled_empty) and prompt freeing of a step's inputs
# ---------------------------------------------------------------------------------------------------


def _address(a):
    return a.__array_interface__["data"][0]


def _on_recycled_memory(a, recycler):
    while a is not None:
        if isinstance(a, recycler._Lease):
            return True
        a = a.base
    return False


@pytest.fixture
def recycler(monkeypatch):
    """A fresh, empty recycler (the module's bookkeeping restored afterwards)."""
    from refopt.fast import _numpy

    for name, value in [("_FREE", {}), ("_LEASED_BYTES", 0), ("_PEAK_BYTES", 0)]:
        monkeypatch.setattr(_numpy, name, value)
    return _numpy


def test_recycled_memory_is_reused_only_once_every_view_is_gone(recycler):
    n = 1 << 17  # 512 kB in float32: recycled
    a, b, c = recycler.recycled_empty(n, np.float32, 3)
    assert all(type(x) is np.ndarray and x.shape == (n,) and x.dtype == np.float32 for x in (a, b, c))
    a[:] = 1.0
    view = a.reshape(2, -1)[1]  # a view keeps its block in use
    address_a, address_b = _address(a), _address(b)
    del a, b, c  # b's and c's blocks are free, a's is not; at most half the peak (3 blocks) is kept: b's
    assert recycler.free_bytes() == n * 4 and recycler._LEASED_BYTES == n * 4
    d, e = recycler.recycled_empty(n, np.float32, 2)
    assert address_b in (_address(d), _address(e))  # reused: no fresh mapping
    assert not np.shares_memory(view, d) and not np.shares_memory(view, e)
    assert (view == 1.0).all()  # untouched while in use
    del view
    assert address_a in [_address(x) for x in recycler._FREE[n * 4]]


def test_recycler_keeps_at_most_one_loops_step_and_releases_on_request(recycler):
    n = 1 << 17
    held = recycler.recycled_empty(n, np.float32, 4)  # "step 1"
    for _ in range(5):  # step t's outputs made while step t-1's are held, then those dropped
        new = recycler.recycled_empty(n, np.float32, 4)
        held = new
        assert recycler._LEASED_BYTES == 4 * n * 4 and recycler.free_bytes() == 4 * n * 4
    assert recycler._PEAK_BYTES == 8 * n * 4
    extra = recycler.recycled_empty(n, np.float32, 8)  # in use: 12 blocks, peak 12, may keep 6
    del held, new, extra
    assert recycler.free_bytes() == 6 * n * 4 and recycler._LEASED_BYTES == 0
    assert recycler.release_recycled() == 6 * n * 4 and recycler.free_bytes() == 0 and not recycler._FREE
    small = recycler.recycled_empty(100, np.float64, 2)  # under RECYCLE_MIN_BYTES: plain arrays
    assert all(x.flags.owndata for x in small) and recycler._LEASED_BYTES == 0
    (short,) = recycler.recycled_empty(recycler.RECYCLE_MIN_BYTES // 4 - 1, np.float32, 1)  # 4 bytes short
    (at,) = recycler.recycled_empty(recycler.RECYCLE_MIN_BYTES // 4, np.float32, 1)
    assert short.flags.owndata and not _on_recycled_memory(short, recycler) and _on_recycled_memory(at, recycler)


def test_the_reference_step_recycles_its_outputs_and_frees_its_inputs_without_the_collector(recycler):
    """The usual loop ``p, s = rule.step(p, g, s)``: the arrays of step t-1 are freed as soon as
    they are rebound (no reference cycle holds them until the garbage collector runs), so their
    memory carries step t+1's outputs; the result is the reference's either way."""
    import gc
    import weakref

    from refopt.rules import _base

    rule = ro.rules.diffgrad(lr=0.01)
    rng = np.random.default_rng(3)
    p = rng.standard_normal(3 * _base.SLICE + 5).astype(np.float32)
    g = rng.standard_normal(p.size).astype(np.float32)
    p_fresh, s_fresh = p, rule.init(p)
    p_own, s_own = p, rule.init(p)
    gc.disable()
    try:
        for t in range(4):
            old = weakref.ref(p_own)
            p_own, s_own = rule.step(p_own, g, s_own)
            assert t == 0 or old() is None  # the previous step's output is gone at once
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(recycler, "RECYCLE", False)
                p_fresh, s_fresh = rule.step(p_fresh, g, s_fresh)
            assert type(p_own) is np.ndarray and _on_recycled_memory(p_own, recycler)
            assert not _on_recycled_memory(p_fresh, recycler)
            assert np.array_equal(p_fresh, p_own) and all(np.array_equal(s_fresh.slots[k], s_own.slots[k])
                                                          for k in s_own.slots)
            assert recycler._LEASED_BYTES == 4 * p.nbytes  # p, m, v, g_prev of this step only
    finally:
        gc.enable()
    assert recycler.free_bytes() == 4 * p.nbytes  # one step's outputs kept for the next


def test_steps_on_several_threads_share_the_recycled_memory_safely():
    """Four threads stepping at once, each freeing its outputs for the others' next step: every
    result is the one the thread gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    from refopt.rules import _base

    n = 2 * _base.SLICE + 3

    def loop(seed):
        rule = ro.rules.diffgrad(lr=0.01) if seed % 2 else ro.rules.adam(lr=0.01)
        rng = np.random.default_rng(seed)
        p = rng.standard_normal(n).astype(np.float32)
        state = rule.init(p)
        for _ in range(6):
            p, state = rule.step(p, rng.standard_normal(n).astype(np.float32), state)
        return np.array(p, copy=True), {k: np.array(v, copy=True) for k, v in state.slots.items()}

    alone = [loop(seed) for seed in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(loop, range(4)))
    for (p1, s1), (p2, s2) in zip(alone, together):
        assert np.array_equal(p1, p2) and all(np.array_equal(s1[k], s2[k]) for k in s1)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_threads_work_in_a_forked_child_after_the_parent_used_them():
    """multiprocessing forks by default on Linux: a child must not hand work to the parent's threads
    (they do not exist there, and the step would wait forever)."""
    import multiprocessing

    from refopt.rules import _base

    n = 4 * _base.SLICE  # sliced reference step: the shared worker threads
    p = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    rule = ro.rules.adam(lr=0.1)
    want = rule.step(p, p * 0.5, rule.init(p))[0]  # the parent's pool now has threads
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def child():
        results.put(np.asarray(rule.step(p, p * 0.5, rule.init(p))[0]))

    proc = ctx.Process(target=child)
    proc.start()
    try:
        got = results.get(timeout=60)  # read before joining: the child exits once its result is sent
    except Exception:  # queue.Empty: it hung
        proc.kill()
        pytest.fail("the step in the forked child did not finish within 60 s")
    proc.join(10)
    assert proc.exitcode == 0 and np.array_equal(got, want)
