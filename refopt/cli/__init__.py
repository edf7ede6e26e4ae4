"""The ``refopt`` command: one module per sub-command."""

from __future__ import annotations

import argparse
import sys

from . import bench as _bench
from . import collab as _collab
from . import explain as _explain
from . import fed as _fed
from . import listing as _listing
from . import reproduce as _reproduce
from . import run as _run
from . import train as _train
from . import vectors as _vectors
from . import verify as _verify

_COMMANDS = {
    "list": _listing,
    "explain": _explain,
    "run": _run,
    "train": _train,
    "reproduce": _reproduce,
    "collab": _collab,
    "fed": _fed,
    "vectors": _vectors,
    "verify": _verify,
    "bench": _bench,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refopt",
        description="Reference implementations of optimizer update rules: list and explain them, run them on "
        "synthetic functions, reproduce the papers' toy experiments, and check other implementations against them.",
        epilog="Exit status (every command): 0 success; 1 a result that differs (verify: a mismatch, reproduce: a "
        "row that DIFFERS, vectors --check: a byte that differs); 2 bad usage or an input, file or optional extra "
        "the user must fix, with one line on stderr. A traceback is a bug in refopt.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"refopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _COMMANDS.items():
        module.add_parser(sub)
    for name, sp in sub.choices.items():  # every sub-command documents its exit status
        if not sp.epilog:
            sp.epilog = _EXIT.get(name, "Exit status: 0 success; 2 bad usage or an input, file or optional extra to fix "
                                  "(one line on stderr).")
    return parser


_EXIT = {
    "verify": "Exit status: 0 every case passes; 1 a mismatch; 2 bad usage, or a target that raises, exits, hangs or "
              "returns the wrong thing (one line on stderr).",
    "collab": "Exit status: 0 a finished run (a divergence is reported in the output, diverged_at); 2 bad usage, or "
              "work refused before it starts (memory, an output path).",
    "fed": "Exit status: 0 a finished run (a divergence is reported in the output, diverged_at); 2 bad usage, or work "
           "refused before it starts (schedule size, memory, an output path).",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.command].run(args) or 0
    except (ValueError, TypeError) as exc:
        print(f"refopt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader (head, less) closed the pipe: not an error
        sys.stderr.close()
        return 0
    except ImportError as exc:
        if not _optional_extra(exc):
            raise  # refopt's own module failing to import is a bug: keep the traceback
        print(f"refopt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read or written, a full disk: the user's to fix
        print(f"refopt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"refopt {args.command}: error: out of memory{detail}; try a smaller problem", file=sys.stderr)
        return 2


def _optional_extra(exc: ImportError) -> bool:
    """An ImportError the user fixes by installing something: a module outside refopt (an optional
    extra such as matplotlib, torch, cupy, numba, mpi4py) or refopt's own message with a pip hint."""
    name = getattr(exc, "name", None)
    if name:
        return name.split(".")[0] != "refopt"
    return "pip install" in str(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
