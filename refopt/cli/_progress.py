"""Progress bars for the long commands, drawn by tqdm (the optional extra ``refopt[progress]``).

Host-side CLI helper.  One rule everywhere: a bar goes to stderr, so stdout stays the result;
it is shown when stderr is a terminal, never under ``--json`` (unless ``--progress`` asks for
it), never on an MPI rank other than 0, and forced with ``--progress``.  Without tqdm the bars
are simply not drawn -- except when ``--progress`` asks for them, which fails with the install
hint.
"""

from __future__ import annotations

import sys
from typing import Any


def add_flag(parser) -> None:
    """``--progress`` / ``--no-progress`` on a sub-command (default: a bar on a terminal)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                       help="draw a progress bar on stderr even when it is not a terminal or with --json "
                       "(needs tqdm: pip install 'refopt[progress]')")
    group.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                       help="never draw a progress bar")


def wanted(args: Any, *, rank: int = 0) -> bool:
    """Whether this command draws bars: ``--progress`` forces, ``--no-progress``, ``--json``, a
    non-terminal stderr or a rank other than 0 turn them off."""
    forced = getattr(args, "progress", None)
    if rank != 0 or forced is False:
        return False
    if forced:
        _tqdm()  # the user asked: fail with the hint when tqdm is missing
        return True
    return not getattr(args, "json", False) and sys.stderr.isatty() and _have_tqdm()


def _have_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install 'refopt[progress]'") from None
    return tqdm


class Bar:
    """A tqdm bar when ``show``, else a no-op with the same methods.

    ``Bar(total, desc, show)``; ``bar.update(n)``, ``bar.step(k, total)`` (the ``progress(k,
    steps)`` hook of :func:`refopt.run` and the simulators), ``bar.describe(text)``, ``bar.close()``;
    usable as a context manager.
    """

    def __init__(self, total: int | None, desc: str, show: bool, unit: str = "it"):
        self._bar = _tqdm()(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                            mininterval=0.5) if show else None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def step(self, k: int, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(k - self._bar.n)

    __call__ = step

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
