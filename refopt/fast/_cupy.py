"""The CuPy fast path: one fused CUDA kernel per step and parameter array.

The kernel body is the rule's traced program (:mod:`refopt.fast._trace`) printed as CUDA C,
one statement per operation of the reference, inside a ``cupy.ElementwiseKernel``: the step
reads ``p``, ``g`` and the state slots once and writes the new values once -- the minimum
traffic of a step (28 bytes per float32 parameter for Adam and AdaBelief: read p, g, m, v,
write p, m, v; 36 for diffGrad, which also reads and writes the previous gradient).

Rounding.  NVRTC contracts ``a*b + c`` into one fused multiply-add by default, which rounds
once instead of twice.  ``fma=False`` compiles with ``--fmad=false``: with CUDA's default
correctly rounded division and square root, every ``+ - * / sqrt`` then rounds exactly as the
reference's NumPy/CuPy operations do, and the kernel equals ``rule.step`` bit for bit (``exp``,
in diffGrad, is within CUDA's documented 2 ulp instead).  ``fma=True`` is faster by a few
percent at most -- the step is memory-bound -- and stays within the vectors' tolerance.

Kernels are compiled once per program (the traced source, the dtype and the FMA choice) and
cached.  This module is one of refopt's explicit fast paths: it imports CuPy, lazily.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["step", "kernel_source"]


def _cupy():
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - exercised only without CuPy
        raise ImportError("the CuPy fast path needs CuPy: pip install 'refopt[cupy]'") from exc
    return cupy


def kernel_source(prog) -> tuple[str, str, str]:
    """(in_params, out_params, body) of the ElementwiseKernel for a traced program."""
    ins = [f"T {name}" for name in prog.arrays] + [f"float64 c_{name}" for name in prog.scalars]
    outs = [f"T out_{name}" for name, _ in prog.outputs]
    return ", ".join(ins), ", ".join(outs), prog.c_body()


@lru_cache(maxsize=256)
def _kernel(in_params: str, out_params: str, body: str, fma: bool, name: str):
    cupy = _cupy()
    options = () if fma else ("--fmad=false",)
    return cupy.ElementwiseKernel(in_params, out_params, body, name=f"refopt_{name}", options=options)


def step(rule, prog, ps, gs, slots, coefficients, *, fma: bool, targets=None):
    """New parameters and slots (lists over leaves), one kernel launch per leaf.

    ``targets``: per leaf, the arrays to write into (``{"p": ..., "s_<slot>": ...}``), or None.
    """
    import numpy as np

    cupy = _cupy()
    in_params, out_params, body = kernel_source(prog)
    kernel = _kernel(in_params, out_params, body, fma, rule.name)
    names = rule.slots()
    new_p, new_s = [], []
    for i, (p, g, s, c) in enumerate(zip(ps, gs, slots, coefficients)):
        scalars = [np.float64(getattr(c, k)) for k in prog.scalars]  # doubles, as Python floats are
        if targets is not None:
            outs = [targets[i][name] for name, _ in prog.outputs]
        else:
            outs = [cupy.empty(p.shape, dtype=p.dtype) for _ in prog.outputs]
        kernel(p, g, *(s[k] for k in names), *scalars, *outs)
        new_p.append(outs[0])
        new_s.append(dict(zip(names, outs[1:])))
    return new_p, new_s
