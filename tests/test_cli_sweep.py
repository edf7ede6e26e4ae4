"""Every numeric option of every sub-command, with edge values: a report (exit 0 or 1) or one line
of error (exit 2), never a traceback and never a run without end.

The options are read from the parser itself, so a new sub-command or option is swept by default;
a sub-command without a small base command line below fails the coverage test.
"""

from __future__ import annotations

import argparse
import signal

import pytest

from refopt.cli import build_parser, main

EDGE = ("-1", "0", "nan", "inf", "1e300")
# a small, quick command line per sub-command (the swept option is added or replaced)
BASE = {
    "list": ["list"],
    "explain": ["explain", "adam", "--steps", "2"],
    "run": ["run", "adam", "rosenbrock", "--steps", "3"],
    "train": ["train", "softmax_regression", "sgd", "--steps", "3"],
    "reproduce": ["reproduce", "diffgrad", "--no-plots"],
    "collab": ["collab", "--steps", "3", "--nodes", "6", "--byzantine", "1", "--json"],
    "fed": ["fed", "--horizon", "20", "--json"],
    "vectors": ["vectors", "--check", "--rule", "sgd"],
    "verify": ["verify", "torch.optim.SGD", "--dtype", "float64"],
    "bench": ["bench", "--quick", "--section", "sweep"],
}
SKIP = {("bench", "--repeat")}  # bench --repeat N times the whole sweep: swept by tests/test_bench.py


def subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def numeric_options(sp) -> list[str]:
    return [a.option_strings[-1] for a in sp._actions if a.option_strings and a.type in (int, float)]


def cases():
    for name, sp in subcommands().items():
        for option in numeric_options(sp):
            if (name, option) not in SKIP:
                for value in EDGE:
                    yield name, option, value


def test_every_subcommand_has_a_base_command_line():
    assert set(subcommands()) == set(BASE)


@pytest.mark.parametrize("name, option, value", list(cases()), ids=lambda x: str(x))
def test_edge_value_gives_a_report_or_one_line(name, option, value, capsys):
    if name == "verify":
        pytest.importorskip("torch")
    argv = list(BASE[name])
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]

    def stop(signum, frame):
        raise TimeoutError(f"`refopt {' '.join(argv)}` ran past 120 s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(120)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: a value of the wrong type
        code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    assert code in (0, 1, 2), code
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and lines, err
        assert lines[-1].startswith(("refopt ", "usage:")) or "error:" in lines[-1], err
