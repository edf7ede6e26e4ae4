"""One command-line vocabulary: every sub-command has --json, documents its exit status and
explains every option; the JSON outputs are valid JSON."""

from __future__ import annotations

import argparse
import json

import pytest

from refopt.cli import build_parser, main


def subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("name", list(subcommands()))
def test_every_subcommand_has_json_an_exit_status_and_help_for_each_option(name):
    sp = subcommands()[name]
    assert any("--json" in a.option_strings for a in sp._actions), name
    assert sp.epilog and "Exit status" in sp.epilog, name
    assert all(a.help for a in sp._actions if a.dest != "help"), [a.dest for a in sp._actions if not a.help]


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("refopt ")


@pytest.mark.parametrize("argv, key", [
    (["list", "--json"], "rules"),
    (["run", "adam", "rosenbrock", "--steps", "3", "--json"], "runs"),
    (["vectors", "--check", "--rule", "sgd", "--json"], "match"),
    (["reproduce", "diffgrad", "--no-plots", "--json"], "experiments"),
    (["explain", "adam", "--steps", "2", "--json"], None),
])
def test_json_outputs_are_json(argv, key, capsys):
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    if key is not None:
        assert key in data


@pytest.mark.parametrize("name", ["explain", "run", "train", "verify", "collab", "fed"])
def test_hyper_parameters_are_given_with_hyper_everywhere(name):
    sp = subcommands()[name]
    assert any("--hyper" in a.option_strings for a in sp._actions), name


def test_collab_and_fed_take_hyper_with_their_short_flags_as_aliases(capsys):
    from refopt.cli.collab import build
    from refopt.cli.fed import options

    parse = build_parser().parse_args
    _, _, kw = build(parse(["collab", "--hyper", "lr=0.3", "--hyper", "momentum=0.9"]))
    assert kw["lr"] == 0.3 and kw["momentum"] == 0.9
    _, _, kw = build(parse(["collab", "--lr", "0.3"]))
    assert kw["lr"] == 0.3
    with pytest.raises(ValueError, match="--lr or --hyper lr=..., not both"):
        build(parse(["collab", "--lr", "0.3", "--hyper", "lr=0.2"]))
    with pytest.raises(ValueError, match="--hyper beta: not a hyper-parameter"):
        build(parse(["collab", "--hyper", "beta=0.9"]))
    kw = options(parse(["fed", "--hyper", "lr_local=0.01", "--hyper", "server_momentum=0.5"]))
    assert kw["lr_local"] == 0.01 and kw["server_momentum"] == 0.5
    assert options(parse(["fed", "--lr-local", "0.01"]))["lr_local"] == 0.01
    with pytest.raises(ValueError, match="--lr-local or --hyper lr_local"):
        options(parse(["fed", "--lr-local", "0.01", "--hyper", "lr_local=0.02"]))
