"""The ``refopt`` command: one module per sub-command."""

from __future__ import annotations

import argparse
import sys

from . import explain as _explain
from . import listing as _listing

_COMMANDS = {"list": _listing, "explain": _explain}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refopt",
        description="Reference implementations of optimizer update rules: list them, explain them step by step.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _COMMANDS.items():
        module.add_parser(sub)
    return parser


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
