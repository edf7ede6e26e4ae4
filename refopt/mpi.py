"""Run the collaborative and federated simulators on one process or on N MPI ranks, with the same numbers.

Host-side module: it moves array buffers between processes, so (like :mod:`refopt._array`) it
imports NumPy; mpi4py is optional and imported only when a run is launched under ``mpiexec``.

The one idea: a *communicator* object
-------------------------------------
A simulator takes ``comm=`` and calls a handful of methods on it. Two implementations:

``LocalComm`` (serial; ``rank = 0``, ``size = 1``)
    every collective is the identity: :meth:`LocalComm.allgather_rows` returns the blocks it
    was given, unchanged. A serial run is therefore *literally* the 1-rank case of the same
    code path, and gives the same bits as before this module existed.
``MPIComm`` (wraps an ``mpi4py`` communicator)
    the same calls done with MPI collectives (``Allgatherv`` for arrays, pickled
    ``allgather`` for the small error-agreement messages).

Why the numbers do not depend on the number of ranks
----------------------------------------------------
* **Work split**: the honest nodes (collaborative) or the clients (federated) are split into
  contiguous blocks, :func:`partition`: rank r owns indices ``offsets[r] .. offsets[r+1]−1``;
  block sizes differ by at most one (the first ``n mod size`` ranks get the extra one). Each
  rank computes only per-node (per-client) quantities of its block.
* **Random draws**: every rank owns the *same* seeded generator and makes the *full-size*
  draws (all h nodes' mini-batch indices, every receive subset, the attack's randomness), then
  uses its slice; so the random stream never depends on the partition. (The federated clients
  draw from per-client streams, which only their owner consumes, in the same order as serially.)
* **No floating-point reduction in MPI**: MPI reduction operators would change the order of a
  sum. The per-node arrays are *all-gathered* in node order, and every cross-node reduction
  (a mean over nodes, the mixing, the server's weighted sum) is then computed on every rank,
  exactly as the serial code computes it. Gathering copies values, it never rounds.
* **Per-node kernels**: a node's gradient is a stacked (batched) matrix product over the node
  axis, which NumPy evaluates matrix by matrix, so a node's row has the same bits whatever the
  size of the block it is computed in. (Kernels that fold the node axis into one BLAS call,
  e.g. torch's ``matmul`` with a broadcast operand, may not: bit identity is guaranteed and
  tested for the NumPy backend.)

Errors (no rank left hanging)
-----------------------------
* :meth:`MPIComm.agreed` wraps argument checking and set-up: it ends with one collective in
  which every rank reports whether it failed. If any did, *every* rank raises (a rank that
  failed raises its own error, the others a :class:`RankError` naming the failed rank), the
  error is marked agreed, and :func:`run_cli` lets rank 0 alone print it (exit status 2).
* :meth:`MPIComm.guard` wraps the simulation loop: an exception on any rank prints
  ``refopt: rank r of N failed: ...`` with the traceback on stderr and calls ``MPI.Abort(1)``,
  which ends every rank (the other ranks are blocked in a collective and could not otherwise
  learn about it).
* Launched under ``mpiexec`` with more than one rank but without mpi4py: every rank raises
  :class:`MPIUnavailableError` with the install hint; rank 0 prints it, no MPI call is made.

How a run knows it is under MPI (:func:`from_environment`)
----------------------------------------------------------
``REFOPT_MPI=0`` forces a serial run and ``REFOPT_MPI=1`` an MPI one; otherwise a run is under
MPI when the launcher set ``PMI_SIZE``/``PMI_RANK`` (MPICH, Intel MPI, MVAPICH), ``OMPI_COMM_WORLD_SIZE``
(Open MPI) or ``PMIX_RANK`` (PMIx launchers such as ``srun --mpi=pmix``).

CUDA-aware transfers (CuPy)
---------------------------
Arrays with ``__cuda_array_interface__`` are handed to the uppercase mpi4py methods directly
when the MPI library is CUDA-aware (after synchronizing the current stream), and staged through
host memory otherwise. CUDA-awareness cannot be queried portably; it is taken from
``REFOPT_MPI_CUDA_AWARE=1|0`` or, failing that, from the switches of the common GPU-aware
builds (``MPICH_GPU_SUPPORT_ENABLED=1`` on Cray MPICH, ``MV2_USE_CUDA=1`` on MVAPICH2-GDR,
``MPIR_CVAR_ENABLE_GPU=1`` on MPICH) and Open MPI's ``MPIX_Query_cuda_support()``; the default
is host staging, which is always correct. (Untested here: no GPU on the development machine.)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import Any, Sequence

import numpy as np

from . import _array

__all__ = [
    "LocalComm",
    "MPIComm",
    "MPIUnavailableError",
    "RankError",
    "from_environment",
    "launched_under_mpi",
    "local",
    "partition",
    "available_memory",
    "check_memory",
    "resolve",
    "run_cli",
]

INSTALL_HINT = "pip install 'refopt[mpi]' (mpi4py and an MPI library from the package index), or build mpi4py against the site's MPI"


class MPIUnavailableError(RuntimeError):
    """Launched under ``mpiexec`` with several ranks, but mpi4py cannot be imported."""


class RankError(RuntimeError):
    """Raised on the ranks that did not fail, when another rank failed during an agreed phase."""


def partition(n: int, size: int, *, what: str = "items", where: str = "partition") -> list[int]:
    """Offsets of ``size`` contiguous blocks of ``n`` indices, sizes differing by at most one.

    Returns ``offsets`` of length ``size + 1``: rank r owns ``offsets[r] .. offsets[r+1] − 1``.
    The first ``n mod size`` ranks own ``⌈n/size⌉`` indices, the others ``⌊n/size⌋``. An uneven
    split is allowed (the collectives take per-rank counts); more ranks than indices is an error,
    because a rank with nothing to own would only wait.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TypeError(f"{where}: n must be a non-negative int; got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise TypeError(f"{where}: size must be a positive int; got {size!r}")
    if size > n:
        raise ValueError(
            f"{where}: {size} MPI ranks but only {n} {what} to share among them; "
            f"run with at most {n} ranks (mpiexec -n {n})"
        )
    base, extra = divmod(n, size)
    offsets = [0]
    for r in range(size):
        offsets.append(offsets[-1] + base + (1 if r < extra else 0))
    return offsets


def _env_size() -> int | None:
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        value = os.environ.get(var)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def _env_rank() -> int | None:
    for var in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        value = os.environ.get(var)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def launched_under_mpi() -> bool:
    """True when this process was started by an MPI launcher (or ``REFOPT_MPI=1``)."""
    flag = os.environ.get("REFOPT_MPI", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"))


# ---------------------------------------------------------------------------------------
# the serial communicator
# ---------------------------------------------------------------------------------------


class LocalComm:
    """One process: every collective is the identity (see the module docstring)."""

    rank = 0
    size = 1
    local_rank = 0
    is_mpi = False

    def __init__(self):
        self.stats = {"calls": 0, "bytes_sent": 0, "bytes_received": 0, "seconds": 0.0}

    def allgather_rows(self, blocks: Sequence[Any], counts: Sequence[int]) -> list:
        """The full arrays from every rank's row block, in rank order: here, the blocks themselves."""
        return list(blocks)

    @contextlib.contextmanager
    def agreed(self, what: str = ""):
        """Errors raised inside propagate unchanged (nothing to agree on with one process)."""
        yield

    @contextlib.contextmanager
    def guard(self, what: str = ""):
        yield

    def barrier(self) -> None:
        pass

    def __repr__(self):
        return "<refopt LocalComm: serial, 1 rank>"


def local() -> LocalComm:
    """A fresh serial communicator (its own exchange statistics)."""
    return LocalComm()


def resolve(comm: Any, where: str) -> Any:
    """``comm`` checked: None -> a serial LocalComm; an mpi4py communicator is wrapped."""
    if comm is None:
        return LocalComm()
    if isinstance(comm, (LocalComm, MPIComm)):
        return comm
    if type(comm).__module__.startswith("mpi4py"):
        return MPIComm(comm)
    raise TypeError(
        f"{where}: comm must be None (serial), a refopt.mpi communicator or an mpi4py communicator; "
        f"got {type(comm).__name__}"
    )


# ---------------------------------------------------------------------------------------
# the MPI communicator
# ---------------------------------------------------------------------------------------


def _cuda_aware(MPI) -> bool:
    flag = os.environ.get("REFOPT_MPI_CUDA_AWARE", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    for var in ("MPICH_GPU_SUPPORT_ENABLED", "MV2_USE_CUDA", "MPIR_CVAR_ENABLE_GPU"):
        if os.environ.get(var, "").strip() == "1":
            return True
    if "Open MPI" in MPI.Get_library_version():
        try:  # Open MPI's extension, exported by libmpi when built with CUDA
            import ctypes

            fn = getattr(ctypes.CDLL(None, mode=getattr(ctypes, "RTLD_GLOBAL", 0)), "MPIX_Query_cuda_support", None)
            return bool(fn()) if fn is not None else False
        except (OSError, AttributeError):
            return False
    return False


class MPIComm:
    """An mpi4py communicator behind the same small interface as :class:`LocalComm`.

    ``stats`` accumulates what :meth:`allgather_rows` moved: ``calls``, ``bytes_sent`` (this
    rank's block), ``bytes_received`` (everyone else's blocks) and ``seconds`` spent inside the
    MPI call (the exchange itself, not the packing).
    """

    is_mpi = True

    def __init__(self, comm: Any = None):
        from mpi4py import MPI  # optional dependency; only imported for MPI runs

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        try:
            node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
            self.local_rank = node.Get_rank()
            node.Free()
        except Exception:  # pragma: no cover - very old MPI
            self.local_rank = self.rank
        self.cuda_aware = _cuda_aware(MPI)
        self.stats = {"calls": 0, "bytes_sent": 0, "bytes_received": 0, "seconds": 0.0}

    def __repr__(self):
        return f"<refopt MPIComm: rank {self.rank} of {self.size}>"

    # -- arrays ----------------------------------------------------------------------------
    def allgather_rows(self, blocks: Sequence[Any], counts: Sequence[int]) -> list:
        """All-gather row blocks: block i of rank r has shape ``(counts[r], *shape_i)``.

        Returns, on every rank, the arrays ``(sum(counts), *shape_i)`` with rank r's rows at
        ``offsets[r]:offsets[r+1]`` -- the node (client) order. The blocks must share one
        library and dtype; they travel together in one ``Allgatherv`` of a packed
        ``(rows, Σ width_i)`` buffer. The results are fresh C-contiguous arrays of the blocks'
        library, dtype and device.
        """
        counts = [int(c) for c in counts]
        if len(counts) != self.size:
            raise ValueError(f"allgather_rows: counts must have one entry per rank ({self.size}); got {len(counts)}")
        mine = counts[self.rank]
        first = blocks[0]
        for b in blocks:
            if b.shape[0] != mine:
                raise ValueError(f"allgather_rows: rank {self.rank} must send {mine} rows; a block has {b.shape[0]}")
            if b.dtype != first.dtype:
                raise TypeError("allgather_rows: the blocks must share one dtype")
        shapes = [tuple(int(s) for s in b.shape[1:]) for b in blocks]
        widths = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        W = sum(widths)
        total = sum(counts)
        on_host = isinstance(first, np.ndarray)
        device_path = (not on_host) and self.cuda_aware and hasattr(first, "__cuda_array_interface__")
        if on_host or not device_path:
            host = [b if isinstance(b, np.ndarray) else _array.to_numpy(b) for b in blocks]
            send = np.ascontiguousarray(np.concatenate([h.reshape(mine, w) for h, w in zip(host, widths)], axis=1)) \
                if len(host) > 1 else np.ascontiguousarray(host[0].reshape(mine, W))
            recv = np.empty((total, W), dtype=send.dtype)
            self._allgatherv(send, recv, counts, W, send.dtype)
            out = [np.ascontiguousarray(recv[:, o:o + w]).reshape((total,) + s)
                   for o, w, s in zip(np.cumsum([0] + widths[:-1]), widths, shapes)]
            if on_host:
                return out
            return [_array.from_host(o, like=first) for o in out]
        # CUDA-aware path: device buffers straight to MPI (no host copy)
        import cupy  # only reachable with CuPy arrays

        send = cupy.ascontiguousarray(cupy.concatenate([b.reshape(mine, w) for b, w in zip(blocks, widths)], axis=1))
        recv = cupy.empty((total, W), dtype=send.dtype)
        cupy.cuda.get_current_stream().synchronize()
        self._allgatherv(send, recv, counts, W, np.dtype(send.dtype))
        return [cupy.ascontiguousarray(recv[:, o:o + w]).reshape((total,) + s)
                for o, w, s in zip(np.cumsum([0] + widths[:-1]), widths, shapes)]

    def _allgatherv(self, send, recv, counts, W, dtype) -> None:
        from mpi4py.util.dtlib import from_numpy_dtype

        mpitype = from_numpy_dtype(np.dtype(dtype))
        sizes = [c * W for c in counts]
        displs = [int(v) for v in np.cumsum([0] + sizes[:-1])]
        t0 = time.perf_counter()
        self.comm.Allgatherv([send, sizes[self.rank], mpitype], [recv, sizes, displs, mpitype])
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["calls"] += 1
        item = np.dtype(dtype).itemsize
        self.stats["bytes_sent"] += sizes[self.rank] * item
        self.stats["bytes_received"] += (sum(sizes) - sizes[self.rank]) * item

    def barrier(self) -> None:
        self.comm.Barrier()

    # -- errors ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def agreed(self, what: str = ""):
        """Run the block on every rank, then agree: if any rank raised, every rank raises.

        One pickled ``allgather`` of ``None`` or ``(type name, message)`` per rank. A rank that
        failed re-raises its own exception; the others raise :class:`RankError` naming the
        lowest failed rank. Either way the exception carries ``refopt_agreed = True``.
        """
        try:
            yield
        except Exception as exc:
            self._agree(exc, what)
            raise  # pragma: no cover - _agree always raises when given an exception
        else:
            self._agree(None, what)

    def _agree(self, exc, what) -> None:
        status = None if exc is None else (type(exc).__name__, str(exc))
        statuses = self.comm.allgather(status)
        failed = [r for r, s in enumerate(statuses) if s is not None]
        if not failed:
            return
        if exc is not None:
            exc.refopt_agreed = True
            raise exc
        r = failed[0]
        name, message = statuses[r]
        err = RankError(f"rank {r} of {self.size} failed{' in ' + what if what else ''}: {name}: {message}")
        err.refopt_agreed = True
        raise err

    @contextlib.contextmanager
    def guard(self, what: str = ""):
        """Abort every rank (``MPI.Abort(1)``) when this rank raises inside the block."""
        try:
            yield
        except (Exception, KeyboardInterrupt) as exc:
            if getattr(exc, "refopt_agreed", False):
                raise
            self.abort(exc, what)

    def abort(self, exc: BaseException, what: str = "") -> None:
        """Print ``refopt: rank r of N failed ...`` and the traceback on stderr, then MPI.Abort(1)."""
        where = f" in {what}" if what else ""
        msg = f"refopt: rank {self.rank} of {self.size} failed{where}: {type(exc).__name__}: {exc}"
        try:
            # one write, the headline first: the launcher forwards stderr asynchronously and may
            # drop what arrives after MPI_Abort starts tearing the job down
            sys.stderr.write(msg + "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                             + "refopt: aborting all ranks (MPI_Abort)\n")
            sys.stderr.flush()
            time.sleep(0.2)  # let the launcher forward it before the job is torn down
        finally:
            try:
                self.comm.Abort(1)
            finally:
                os._exit(1)  # MPI_Abort does not return; should an implementation return, end this rank anyway


# ---------------------------------------------------------------------------------------
# launching
# ---------------------------------------------------------------------------------------


def from_environment() -> Any:
    """The communicator for this process: MPIComm(COMM_WORLD) under an MPI launcher, else LocalComm.

    Under a launcher with more than one rank and without mpi4py: :class:`MPIUnavailableError`
    (the same on every rank; nothing is communicated). With one rank and no mpi4py the run is
    simply serial.
    """
    if not launched_under_mpi():
        return LocalComm()
    try:
        import mpi4py  # noqa: F401

        from mpi4py import MPI  # noqa: F401
    except ImportError as exc:
        size = _env_size()
        if size is not None and size <= 1:
            return LocalComm()
        shown = "several" if size is None else str(size)
        raise MPIUnavailableError(
            f"launched under an MPI launcher with {shown} ranks, but mpi4py is not importable ({exc}); "
            f"install it: {INSTALL_HINT}. (Set REFOPT_MPI=0 to run serially.)"
        ) from None
    return MPIComm()


def available_memory() -> int | None:
    """Bytes of host memory a new allocation can count on now (Linux ``MemAvailable``; else the free
    physical pages), or None where the system does not say. Shared by the ranks of one node."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(needed: float, what: str, where: str = "") -> None:
    """Refuse (ValueError) a computation whose estimated host memory ``needed`` (bytes, for this
    process) exceeds :func:`available_memory` (a check that an allocation is possible at all, made
    before the work starts; it does not reserve anything)."""
    have = available_memory()
    if have is not None and needed > have:
        raise ValueError(
            f"{where + ': ' if where else ''}{what} needs about {needed / 2**30:.3g} GiB of memory, more than the "
            f"{have / 2**30:.3g} GiB available"
        )


def run_cli(command: str, body) -> int:
    """Run a CLI sub-command ``body(comm) -> int`` serially or on every MPI rank.

    Serial: ``body(LocalComm())``, errors propagate to ``refopt.cli.main`` as always. MPI: an
    agreed error (see :meth:`MPIComm.agreed`) is printed by rank 0 only, as
    ``refopt COMMAND: error: ...``, and every rank returns 2; any other exception aborts every
    rank with the failing rank's message (:meth:`MPIComm.abort`).
    """
    try:
        comm = from_environment()
    except MPIUnavailableError as exc:
        if (_env_rank() or 0) == 0:
            print(f"refopt {command}: error: {exc}", file=sys.stderr)
        return 2
    if not comm.is_mpi:
        return body(comm)
    try:
        return body(comm)
    except (Exception, KeyboardInterrupt) as exc:
        if getattr(exc, "refopt_agreed", False):
            if comm.rank == 0:
                print(f"refopt {command}: error: {exc}", file=sys.stderr)
            return 2
        comm.abort(exc, f"refopt {command}")
        return 1  # pragma: no cover - Abort does not return
