"""Every snippet of README.md runs as written: each Python block is executed on its own (in a
fresh namespace and an empty working folder), each ``refopt`` command line is parsed by the real
command-line parser (and the quick ones are run), each ``pip install`` names extras that exist,
and each ``python examples/...`` script exists."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from refopt.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
LINES = [line.split("  #")[0].strip() for lang, code in BLOCKS if lang == "bash" for line in code.splitlines()]
LINES = [line for line in LINES if line and not line.startswith("#")]
QUICK = ("list", "explain", "run", "--version")


def _commands(line: str) -> list[list[str]]:
    """The refopt invocations of one shell line (after `&&`, behind `mpiexec -n N`)."""
    out = []
    for part in line.split("&&"):
        words = shlex.split(part)
        if words[:1] == ["mpiexec"]:
            words = words[3:]
        if words[:1] == ["refopt"]:
            out.append(words[1:])
    return out


def test_the_readme_has_snippets():
    assert len(PYTHON) >= 2 and sum(len(_commands(line)) for line in LINES) >= 15


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(PYTHON[index], f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("argv", [argv for line in LINES for argv in _commands(line)], ids=lambda a: " ".join(a)[:60])
def test_refopt_command_parses_and_quick_ones_run(argv, tmp_path, monkeypatch, capsys):
    parser = build_parser()
    if argv == ["--version"]:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 0
        return
    try:
        parser.parse_args(argv)
    except SystemExit as exc:  # argparse rejected the line
        pytest.fail(f"`refopt {' '.join(argv)}` does not parse: {capsys.readouterr().err}")
        raise exc
    if argv[0] in QUICK:
        monkeypatch.chdir(tmp_path)
        if any(a.startswith("--plot") for a in argv):
            pytest.importorskip("matplotlib")
        assert main(argv) == 0, capsys.readouterr().err


def test_pip_lines_name_existing_extras():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])
    named = [m for line in LINES for m in re.findall(r"refopt\[([\w,]+)\]|'\.\[([\w,]+)\]'", line)]
    assert named
    for groups in named:
        for group in ",".join(g for g in groups if g).split(","):
            assert group in extras, group


def test_example_scripts_named_in_the_readme_exist():
    for name in re.findall(r"python (examples/\S+\.py)", README):
        assert (ROOT / name).is_file(), name
