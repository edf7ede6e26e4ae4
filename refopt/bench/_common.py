"""What every benchmark section shares: the timer, the row format, the backend context.

This package is host-side tooling (like ``refopt.cli``): it imports NumPy, and torch or CuPy
when asked for them, to time refopt against its peers in one process.  Nothing in the
library proper imports it.

A section is a module with ``run(ctx) -> list[Row]``.  Every figure it reports is a time
measured in this process next to a peer's time measured in this process, so that the ratio
means something on any machine; absolute seconds are printed too, but only the ratios are
compared with the targets.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


class Timing(float):
    """The best of several timed calls (the float itself), with the spread of all of them:
    ``median`` and ``max`` seconds and the number of ``repeats``.  Rows report the spread so that
    a run whose time swings (page faults, a busy machine) shows it instead of hiding it."""

    median: float
    max: float
    repeats: int

    def __new__(cls, times):
        times = sorted([float(times)] if isinstance(times, (int, float)) else times)  # a number: copy, pickle
        self = super().__new__(cls, times[0])
        self.median = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
        self.max = times[-1]
        self.repeats = len(times)
        return self

    def __reduce__(self):
        return (_timing, (float(self), self.median, self.max, self.repeats))

    def __truediv__(self, k):
        """The same timings per unit of work (``seconds / steps``), spread kept."""
        if not isinstance(k, (int, float)) or isinstance(k, bool):
            return NotImplemented
        return _timing(float(self) / k, self.median / k, self.max / k, self.repeats)


def _timing(best: float, median: float, worst: float, repeats: int) -> Timing:
    t = Timing(best)
    t.median, t.max, t.repeats = median, worst, repeats
    return t


def spread(seconds: Any) -> dict[str, Any] | None:
    """``{"min", "median", "max", "repeats"}`` of a :class:`Timing`, or None for a plain number."""
    if not isinstance(seconds, Timing):
        return None
    return {"min": float(seconds), "median": seconds.median, "max": seconds.max, "repeats": seconds.repeats}


@dataclass
class Row:
    """One measured case.

    ``seconds`` is the best of ``repeat`` timed calls of ``impl``; ``peer`` names what the
    ratio is taken against and ``ratio = peer_seconds / seconds`` (above 1: ``impl`` is that
    many times faster).  ``gbps`` is the achieved memory traffic (minimum bytes the step must
    move / seconds) and ``of_copy`` the same as a fraction of the measured copy bandwidth.
    ``target`` states refopt's performance target for this row in words and ``met`` whether it holds.
    """

    section: str
    case: str
    size: str
    impl: str
    seconds: float
    peer: str | None = None
    peer_seconds: float | None = None
    ratio: float | None = None
    gbps: float | None = None
    of_copy: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(self).items() if v is not None and v != ""}
        for key in ("seconds", "peer_seconds"):
            s = spread(getattr(self, key))
            if s is not None:
                out[f"{key}_spread"] = s
        return out


@dataclass
class Context:
    """The backend a run measures and how hard it tries.

    ``backend``: "numpy", "cupy" or "torch" (torch tensors through refopt's array-API path).
    ``xp``: its namespace (array-api-compat's); ``device``: where arrays are made;
    ``quick``: small sizes and one repeat (used by the tests and ``--quick``);
    ``repeat``: timed calls per case, best taken; ``sync``: waits for queued device work.
    ``copy_gbps``: the measured copy bandwidth (bytes read + written per second), set once.
    ``asarray``: a host NumPy array to this backend, on ``device``.
    """

    backend: str
    xp: Any
    quick: bool = False
    repeat: int = 5
    sync: Callable[[], None] = lambda: None
    copy_gbps: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    asarray: Callable[[Any], Any] = lambda a: a  # a host NumPy array -> an array of this backend
    device: Any = None  # where arrays are made: "cuda"/"cpu" for torch, None (the default) otherwise
    on_timed: Callable[[], None] = lambda: None  # called after each timed case (the CLI's progress bar)

    def time(self, fn: Callable[[], Any], repeat: int | None = None, warmup: int = 1) -> Timing:
        """Best wall time of ``fn()`` over ``repeat`` calls, after ``warmup`` untimed ones, with the
        median and the worst (a :class:`Timing`)."""
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for _ in range(max(1, repeat if repeat is not None else self.repeat)):
                t0 = time.perf_counter()
                fn()
                self.sync()
                times.append(time.perf_counter() - t0)
        finally:
            if gc_was:
                gc.enable()
        self.on_timed()
        return Timing(times)


def ratio_row(section, case, size, impl, seconds, peer, peer_seconds, **extra) -> Row:
    """A row whose ratio is ``peer_seconds / seconds``."""
    return Row(section, case, size, impl, seconds, peer=peer, peer_seconds=peer_seconds,
               ratio=peer_seconds / seconds if seconds > 0 else None, **extra)
