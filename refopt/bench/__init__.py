"""``refopt bench``: how fast refopt is, as ratios against peers timed in the same process.

    report = refopt.bench.run("numpy")                     # every section
    report = refopt.bench.run("numpy", sections=["steps"], quick=True)
    print(refopt.bench.table(report)); report["rows"]      # the table, or the rows as dicts

Sections (each a module of this package with ``run(ctx) -> list[Row]``):

``steps``
    update steps on one float32 array of 10^4 to 10^7 parameters (10^8 on a GPU): reference
    path, fast path, torch.optim's for-loop / foreach / fused;
``sweep``
    10^4 Adam configurations x 1000 steps on Rosenbrock in one batched run, against separate
    runs and against looping torch optimizers;
``aggregation``
    Krum, NNM + trimmed mean and the geometric median at n = 100, d = 10^6, against per-pair
    loops, results checked equal;
``simulators``
    collaborative (D-SGD, MoNNA under attack) and federated simulator steps per second,
    against per-node loops.

Bandwidth figures divide the minimum bytes a step must move by its time and compare the
result with the copy bandwidth measured at the start of the run (read + write of arrays as
large as the largest step's working set, on all usable cores).

Host-side tooling, like :mod:`refopt.cli`: it imports NumPy, and torch or CuPy when asked for.
"""

from __future__ import annotations

import importlib
import os
import platform
import time
from typing import Any, Iterable

import numpy as np

from ._common import Context, Row, ratio_row

__all__ = ["SECTIONS", "BACKENDS", "Context", "Row", "ratio_row", "make_context", "copy_bandwidth", "run", "table"]

SECTIONS = ("steps", "sweep", "aggregation", "simulators", "models")
BACKENDS = ("numpy", "cupy", "torch")


def make_context(backend: str = "numpy", quick: bool = False, repeat: int = 5) -> Context:
    """A :class:`Context` for ``backend``; a clear error (with the install hint) when it is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1; got {repeat!r}")
    info: dict[str, Any] = {"numpy": np.__version__}
    if backend == "numpy":
        import array_api_compat.numpy as xp

        ctx = Context(backend, xp)
    elif backend == "torch":
        try:
            import torch
        except ImportError:
            raise ValueError("--backend torch needs PyTorch: pip install torch") from None
        import array_api_compat.torch as xp

        info["torch"] = torch.__version__
        device = "cuda" if torch.cuda.is_available() else "cpu"
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        ctx = Context(backend, xp, sync=sync, device=device,
                      asarray=lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device))
    else:
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # ImportError, or CUDA missing/unusable
            raise ValueError(f"--backend cupy needs CuPy and a GPU (pip install 'refopt[cupy]'): {exc}") from None
        if count < 1:
            raise ValueError("--backend cupy: CuPy sees no GPU")
        import array_api_compat.cupy as xp

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["cupy"] = cupy.__version__
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        ctx = Context(backend, xp, sync=cupy.cuda.Device().synchronize, asarray=cupy.asarray)
    try:
        import torch

        info.setdefault("torch", torch.__version__)
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    ctx.quick = quick
    ctx.repeat = 1 if quick else repeat
    ctx.info = {**info, **machine()}
    return ctx


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(), "platform": platform.platform()}


def copy_bandwidth(ctx: Context) -> float:
    """Measured copy bandwidth in GB/s (bytes read + bytes written per second).

    CPU: 4 x 10^7 float32 (160 MB, the working set of a 10^7-parameter Adam step, larger than
    common last-level caches) copied in as many slices as there are usable cores, one thread
    each; GPU: a device-to-device copy of 10^8 float32.
    """
    n = 10**6 if ctx.quick else (10**8 if ctx.backend == "cupy" else 4 * 10**7)
    if ctx.backend == "cupy":
        import cupy

        src = cupy.ones(n, dtype=cupy.float32)
        dst = cupy.empty_like(src)

        def copy():
            dst[...] = src
    else:
        from concurrent.futures import ThreadPoolExecutor

        from ..fast._numpy import default_threads

        src = np.ones(n, dtype=np.float32)
        dst = np.empty_like(src)
        k = default_threads()
        edges = [n * i // k for i in range(k + 1)]
        pool = ThreadPoolExecutor(k)

        def copy():
            list(pool.map(lambda i: np.copyto(dst[edges[i]:edges[i + 1]], src[edges[i]:edges[i + 1]]), range(k)))

    seconds = ctx.time(copy, repeat=3 if ctx.quick else 7)
    return 2 * 4 * n / seconds / 1e9


def run(backend: str = "numpy", sections: Iterable[str] | None = None, quick: bool = False, repeat: int = 5,
        progress=None, on_timed=None) -> dict[str, Any]:
    """Run the sections; returns ``{"backend", "machine", "copy_gbps", "seconds", "rows"}``.

    ``progress``: a callable given each section's name as it starts; ``on_timed``: one called
    after each timed case (the CLI draws its progress bar with them).
    """
    chosen = list(SECTIONS if sections is None else sections)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section {unknown[0]!r}; the sections are {', '.join(SECTIONS)}")
    ctx = make_context(backend, quick=quick, repeat=repeat)
    if on_timed is not None:
        ctx.on_timed = on_timed
    start = time.perf_counter()
    ctx.copy_gbps = copy_bandwidth(ctx)
    rows: list[Row] = []
    for name in chosen:
        if progress is not None:
            progress(name)
        module = importlib.import_module(f"{__name__}.{name}")
        with np.errstate(all="ignore"):
            rows.extend(module.run(ctx))
    return {
        "backend": backend,
        "quick": quick,
        "machine": ctx.info,
        "copy_gbps": ctx.copy_gbps,
        "seconds": time.perf_counter() - start,
        "rows": [r.as_dict() for r in rows],
    }


def _si(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def table(report: dict[str, Any]) -> str:
    """The report as a plain-text table, one block per section (columns sized to their contents)."""
    m = report["machine"]
    lines = [
        f"refopt bench --backend {report['backend']}{' --quick' if report['quick'] else ''}: {m.get('cpu')}, "
        f"{m.get('cores')} cores" + (f", {m['gpu']}" if "gpu" in m else "")
        + f"; numpy {m.get('numpy')}" + (f", torch {m['torch']}" if "torch" in m else ""),
        f"copy bandwidth {report['copy_gbps']:.1f} GB/s (read + write); time = best of the repeats, max/min = "
        f"worst over best (the spread; --json has min/median/max); ratio = peer time / time (above 1: faster than "
        f"the peer)",
    ]
    header = ("case", "size", "impl", "time", "max/min", "ratio", "vs", "GB/s", "%copy", "target")
    right = {"time", "max/min", "ratio", "GB/s", "%copy"}
    sections: dict[str, list] = {}
    for r in report["rows"]:
        target = f"{r['target']}: {'met' if r.get('met') else 'NOT met'}" if r.get("target") else ""
        cells = (
            r["case"], r["size"], r["impl"], _si(r["seconds"]),
            f"{r['seconds_spread']['max'] / r['seconds']:.2f}" if "seconds_spread" in r and r["seconds"] > 0 else "",
            f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "", r.get("peer") or "",
            f"{r['gbps']:.1f}" if r.get("gbps") is not None else "",
            f"{100 * r['of_copy']:.0f}%" if r.get("of_copy") is not None else "", target,
        )
        sections.setdefault(r["section"], []).append((cells, r.get("note", "")))
    for name, rows in sections.items():
        widths = [max(len(h), *(len(c[i]) for c, _ in rows)) for i, h in enumerate(header)]

        def fmt(cells):
            return "  ".join(c.rjust(w) if h in right else c.ljust(w) for c, w, h in zip(cells, widths, header)).rstrip()

        lines += ["", f"[{name}]", fmt(header)]
        for cells, note in rows:
            lines.append(fmt(cells))
            if note:
                lines.append(f"    note: {note}")
    lines.append(f"\n(total {report['seconds']:.0f} s)")
    return "\n".join(lines)
