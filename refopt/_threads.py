"""Deliberate BLAS thread counts for refopt's own experiment loops.

Host-side helper.  The models of ``refopt.problems`` multiply small matrices (width 32, batch 16):
a multithreaded BLAS spends more time waking its threads than computing, and on a busy machine
(two cores shared with other work) it oversubscribes them -- measured: an MLP simulation ten
times slower.  The experiment commands (``refopt reproduce``, ``refopt train``, ``refopt collab``)
therefore run their loops with one BLAS thread unless told otherwise (``--threads N``).

The limit is set through threadpoolctl (the ``experiments`` extra) when it is installed, which
covers OpenBLAS, MKL and BLIS as NumPy loaded them; without it the BLAS keeps its own setting
(``OPENBLAS_NUM_THREADS`` and friends, read when NumPy starts).
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[bool]:
    """Limit the BLAS libraries to ``n`` threads inside the block (None: leave them); yields
    whether a limit is in force."""
    if n is None:
        yield False
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer or None; got {n!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield True
