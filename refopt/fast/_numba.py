"""The compiled CPU fast path: the traced step as parallel loops, compiled by Numba.

The program that :mod:`refopt.fast._cupy` prints as a CUDA kernel is printed here as Python
loops, one statement per operation of the reference, and compiled with
``numba.njit(parallel=True, fastmath=False)``: every parameter is read and written about once,
and the loops are spread over the cores.  A program with ``exp`` (diffGrad) is cut there: the
pieces are compiled loops and the ``exp`` between them is NumPy's own on the whole array (see
:func:`loop_source`).

Rounding.  ``fastmath=False`` keeps IEEE semantics: LLVM does not contract ``a*b + c`` into a
fused multiply-add, division and square root are correctly rounded, and every coefficient is
rounded to the array's dtype exactly where the reference rounds it (a weak scalar meeting an
array); ``exp`` is NumPy's.  So the result is the reference's, bit for bit, for every rule.

Compiled loops are cached on disk (``$REFOPT_CACHE``, default ``~/.cache/refopt``) when that
directory is writable, so a program compiles once per machine (about a second) rather than once
per process.  This module is one of refopt's explicit fast paths: it imports NumPy, and Numba
(the ``numba`` extra) lazily.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import types
from pathlib import Path

import numpy as np

__all__ = ["step", "loop_source"]

_KERNELS: dict[str, object] = {}


def _numba():
    try:
        import numba
    except ImportError as exc:
        raise ImportError("engine='numba' needs Numba: pip install 'refopt[numba]'") from exc
    return numba


def _expr(n, names) -> str:
    """Python source of node ``n``'s value (``T`` is the array's scalar type inside the loop)."""
    def ref(a, want):
        if a.op == "in":
            text = f"{a.name}[i]"
        elif a.op == "coef":
            text = "c_" + a.name
        elif a.op == "const":
            text = repr(float(a.args[0]))
        else:
            text = names[id(a)]
        if want == "T" and a.kind == "scalar":
            return f"T({text})"  # a weak scalar meeting an array: rounded to T once
        return text

    want = "T" if n.kind == "array" else "double"
    if n.op in ("+", "-", "*", "/"):
        a, b = n.args
        return f"{ref(a, want)} {n.op} {ref(b, want)}"
    if n.op in ("<", "<=", ">", ">="):
        a, b = n.args
        w = "T" if "array" in (a.kind, b.kind) else "double"
        return f"{ref(a, w)} {n.op} {ref(b, w)}"
    if n.op == "neg":
        return f"-{ref(n.args[0], want)}"
    if n.op == "abs":
        return f"abs({ref(n.args[0], want)})"
    if n.op in ("sqrt", "exp"):
        return f"np.{n.op}({ref(n.args[0], want)})"
    if n.op == "sign":  # NumPy's sign: ±1, and x itself for ±0 and NaN
        x = ref(n.args[0], want)
        return f"(T(1) if {x} > 0 else (T(-1) if {x} < 0 else {x}))"
    if n.op in ("maximum", "minimum"):  # NaN-propagating, like NumPy's
        a, b = (ref(x, want) for x in n.args)
        cmp = ">=" if n.op == "maximum" else "<="
        return f"({a} if {a} != {a} else ({b} if {b} != {b} else ({a} if {a} {cmp} {b} else {b})))"
    if n.op == "where":
        cond, a, b = n.args
        return f"({ref(a, want)} if {names[id(cond)]} else {ref(b, want)})"
    raise AssertionError(n.op)  # pragma: no cover - every traced op is printed above


def loop_source(prog):
    """The module source of the compiled step and the schedule that runs it.

    The program is cut at every ``exp`` of an array: each piece becomes one parallel loop
    (``loop0``, ``loop1``, ...) and each ``exp`` is NumPy's, on the whole array between two
    loops -- NumPy's SIMD ``exp`` is both faster than the scalar one a compiled loop calls and
    the reference's own, so the result keeps the reference's bits.  A value that crosses a cut
    is kept in its output array when it is an output, in a temporary array otherwise (an
    ``exp`` whose argument is needed by nothing else runs in place).

    Returns ``(source, schedule, temporaries)``: ``schedule`` lists ``("loop", name, args)`` and
    ``("exp", source_array, result_array)`` in order; ``temporaries`` maps each temporary's name
    to its kind ("array" or "bool").
    """
    nodes = prog.nodes
    names = {id(n): f"n{i}" for i, n in enumerate(nodes)}
    outputs: dict[int, str] = {}
    for name, n in prog.outputs:
        outputs.setdefault(id(n), name)
    uses: dict[int, int] = {}
    for n in nodes:
        for a in n.args:
            uses[id(a)] = uses.get(id(a), 0) + 1

    # pieces between the cuts; an exp's result belongs "between" piece k and k + 1
    cuts = [n for n in nodes if n.op == "exp" and n.kind == "array"]
    pieces: list[list] = [[]]
    for n in nodes:
        if n in cuts:
            pieces.append([])
        elif n.kind != "scalar":
            pieces[-1].append(n)
    piece_of = {id(n): k for k, piece in enumerate(pieces) for n in piece}
    piece_of.update({id(n): k + 0.5 for k, n in enumerate(cuts)})

    # where each value lives between loops
    crossing = {id(a) for n in nodes for a in n.args
                if a.kind != "scalar" and a.op != "in" and piece_of[id(a)] != piece_of.get(id(n))}
    storage: dict[int, str] = {}
    temporaries: dict[str, str] = {}
    for i, n in enumerate(nodes):
        if n.op == "in":
            storage[id(n)] = n.name
        elif id(n) in outputs:
            storage[id(n)] = "out_" + outputs[id(n)]
        elif id(n) in crossing:
            arg = n.args[0] if n in cuts else None
            if arg is not None and uses[id(arg)] == 1 and storage.get(id(arg), "").startswith("t"):
                storage[id(n)] = storage[id(arg)]  # exp in place: its argument has no other reader
            else:
                storage[id(n)] = f"t{i}"
                temporaries[f"t{i}"] = "bool" if n.kind == "bool" else "array"

    scalar_lines = [f"    {names[id(n)]} = {_expr(n, names)}" for n in nodes if n.kind == "scalar"]
    lines = ['"""A refopt update step compiled by Numba (generated by refopt.fast._numba; do not edit)."""',
             "import numba", "import numpy as np", ""]
    schedule = []
    for k, piece in enumerate(pieces):
        body = []
        loaded: set[int] = set()
        for n in piece:
            for a in n.args:  # values from earlier loops (or an exp) are read back from their arrays
                if a.kind != "scalar" and a.op != "in" and piece_of[id(a)] != k and id(a) not in loaded:
                    body.append(f"        {names[id(a)]} = {storage[id(a)]}[i]")
                    loaded.add(id(a))
            body.append(f"        {names[id(n)]} = {_expr(n, names)}")
            if id(n) in storage and n.op != "in":
                body.append(f"        {storage[id(n)]}[i] = {names[id(n)]}")
        if k == len(pieces) - 1:  # outputs that are not a computed array: inputs, coefficients, constants
            for name, n in prog.outputs:
                if n.op == "in":
                    body.append(f"        out_{name}[i] = {n.name}[i]")
                elif n.kind == "scalar":
                    value = _expr_scalar(n) if n.op in ("coef", "const") else names[id(n)]
                    body.append(f"        out_{name}[i] = T({value})")
                elif outputs[id(n)] != name:  # one value, two outputs
                    body.append(f"        out_{name}[i] = {storage[id(n)]}[i]")
        text = "\n".join(body)
        read = set(re.findall(r"\b(\w+)\[i\]", text))
        arrays = [a for a in prog.arrays if a in read and a != "p"]
        stored = sorted(w for w in {*temporaries, *("out_" + nm for nm, _ in prog.outputs)} if w in read)
        used = text + "\n".join(scalar_lines)
        coefficients = ["c_" + c for c in prog.scalars if re.search(rf"\bc_{c}\b", used)]
        args = ["p", *arrays, *coefficients, *stored]
        lines += ["", "@numba.njit(parallel=True, fastmath=False, cache=True)", f"def loop{k}({', '.join(args)}):",
                  "    T = p.dtype.type", *scalar_lines, "    for i in numba.prange(p.shape[0]):", *(body or ["        pass"])]
        schedule.append(("loop", f"loop{k}", args))
        if k < len(cuts):
            schedule.append(("exp", storage[id(cuts[k].args[0])], storage[id(cuts[k])]))
    return "\n".join(lines) + "\n", schedule, temporaries


def _expr_scalar(n) -> str:
    return f"c_{n.name}" if n.op == "coef" else repr(float(n.args[0]))


def _cache_dir() -> Path | None:
    root = Path(os.environ.get("REFOPT_CACHE") or Path.home() / ".cache" / "refopt") / "numba"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".writable"
        probe.touch()
        return root
    except OSError:
        return None


def _module(source: str):
    """The compiled module of ``source`` (loaded once per process, compiled once per machine)."""
    module = _KERNELS.get(source)
    if module is not None:
        return module
    _numba()
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    name = f"refopt_step_{digest}"
    where = _cache_dir()
    if where is not None:  # a real file, so that Numba can cache the machine code beside it
        path = where / f"{name}.py"
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Numba's disk cache finds the functions' module by name
        spec.loader.exec_module(module)
    else:
        module = types.ModuleType(name)
        exec(compile(source.replace("cache=True", "cache=False"), f"<refopt step {digest}>", "exec"), module.__dict__)
    _KERNELS[source] = module
    return module


def _exp(src, dst, threads: int):
    """NumPy's exp from ``src`` into ``dst``, split over threads (NumPy releases the GIL)."""
    from ._numpy import _pool

    n = src.shape[0]
    if threads <= 1 or n < 1 << 17:
        np.exp(src, out=dst)
        return
    edges = [n * j // threads for j in range(threads + 1)]
    list(_pool(threads).map(lambda j: np.exp(src[edges[j]:edges[j + 1]], out=dst[edges[j]:edges[j + 1]]),
                            range(threads)))


def step(rule, prog, ps, gs, slots, coefficients, *, threads: int | None, targets=None, scratch=None):
    """New parameters and slots (lists over leaves): the compiled loops (and NumPy's exp) per leaf.

    ``scratch``: a dict in which the temporaries between loops are kept from one step to the
    next (the caller's, one per thread), or None for fresh ones.
    """
    numba = _numba()
    source, schedule, temporaries = loop_source(prog)
    module = _module(source)
    names = rule.slots()
    new_p, new_s = [], []
    previous = numba.get_num_threads()
    workers = min(threads, numba.config.NUMBA_NUM_THREADS) if threads is not None else previous
    numba.set_num_threads(workers)
    try:
        for i, (p, g, s, c) in enumerate(zip(ps, gs, slots, coefficients)):
            if targets is not None:
                outs = {name: targets[i][name] for name, _ in prog.outputs}
            else:
                outs = {name: np.empty(p.shape, dtype=p.dtype) for name, _ in prog.outputs}
            env = {name: np.ascontiguousarray(a).reshape(-1) for name, a in
                   [("p", p), ("g", g), *(("s_" + k, s[k]) for k in names)]}
            env.update({"out_" + name: a.reshape(-1) for name, a in outs.items()})
            env.update({"c_" + k: float(getattr(c, k)) for k in prog.scalars})
            for t, kind in temporaries.items():
                dtype = np.dtype(bool) if kind == "bool" else p.dtype
                key = (t, p.size, dtype)
                if scratch is None:
                    env[t] = np.empty(p.size, dtype=dtype)
                else:
                    env[t] = scratch.get(key)
                    if env[t] is None:
                        env[t] = scratch[key] = np.empty(p.size, dtype=dtype)
            for what, first, second in schedule:
                if what == "loop":
                    getattr(module, first)(*(env[a] for a in second))
                else:
                    _exp(env[first], env[second], workers)
            new_p.append(outs["p"])
            new_s.append({k: outs["s_" + k] for k in names})
    finally:
        numba.set_num_threads(previous)
    return new_p, new_s
