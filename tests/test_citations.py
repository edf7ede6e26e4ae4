"""Every citation in a shipped file resolves for a user.

refopt was written from private reference notes that are not part of the distribution.  A
shipped file (the package, the specs and vectors, the examples, the documentation, the README)
may cite a paper, a public repository file, an issue of a public repository, or refopt's own
documentation, but never one of those notes: a porter pointed to "update-rules.md §4 #6" or to
"the note §3.1" cannot read it.  The test lists every offending line (file:line: what matched) at once.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = ("refopt", "specs", "examples", "docs", "README.md", "pyproject.toml")

# (pattern, what it names); matched case-insensitively, one line at a time
PRIVATE = [
    (r"\b(?:update-rules|clipping|robust-collab|federated|ecosystem|baselines)\.md\b", "a private reference note"),
    (r"shared/reference|\.\./shared", "the private notes' folder"),
    (r"\bthe notes?\b", "'the note(s)', a private reference note"),
    (r"\breference notes\b", "the private reference notes"),
    (r"\bnotes?(?:'s?)?\s*§", "a section of a private note"),
    (r"\bissues? \d+\b", "an issue of refopt's private tracker (cite owner/repo#N for a public one)"),
]
_PATTERNS = [(re.compile(p, re.IGNORECASE), what) for p, what in PRIVATE]


def shipped_files() -> list[pathlib.Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *SHIPPED], cwd=ROOT, check=True,
                                capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file on disk
        listed = [str(p.relative_to(ROOT)) for top in SHIPPED if (ROOT / top).is_dir()
                  for p in (ROOT / top).rglob("*") if p.is_file()]
        listed += [top for top in SHIPPED if (ROOT / top).is_file()]
    return [ROOT / name for name in listed if name and (ROOT / name).is_file()]


def offending_lines(text: str) -> list[tuple[int, str, str]]:
    """``(line number, matched text, what it names)`` of every private citation in ``text``."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern, what in _PATTERNS:
            for match in pattern.finditer(line):
                out.append((number, match.group(0), what))
    return out


def test_the_scan_sees_the_package_specs_and_examples():
    files = {p.relative_to(ROOT).as_posix() for p in shipped_files()}
    assert "README.md" in files and "refopt/__init__.py" in files
    assert any(f.startswith("specs/rules/") for f in files) and any(f.startswith("examples/") for f in files)


@pytest.mark.parametrize(
    "line,bad",
    [
        ("see update-rules.md §4 #6", True),
        ("(clipping.md §5)", True),
        ("../shared/reference/federated.md", True),
        ("Defaults follow ByzFL (note §6.1)", True),
        ("the note's scenario", True),
        ("derived in the notes", True),
        ("contract of issue 5", True),
        ("Kingma & Ba, arXiv 1412.6980, §2", False),
        ("juntang-zhuang/Adabelief-Optimizer#57 (issue #57)", False),
        ("notes = \"ε outside the root\"", False),
        ("specs/rules/adam.toml, discrepancy D23", False),
    ],
)
def test_the_patterns(line, bad):
    assert bool(offending_lines(line)) is bad


def test_no_shipped_file_cites_a_private_note():
    found = []
    for path in shipped_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary data (bundled data sets)
            continue
        for number, matched, what in offending_lines(text):
            found.append(f"{path.relative_to(ROOT).as_posix()}:{number}: {matched!r} ({what})")
    assert not found, (
        f"{len(found)} citation(s) of documents that are not in the distribution; cite the primary source "
        "(paper + section, owner/repo path @ commit or version, owner/repo#issue) or refopt's own docs, "
        "and state what the note derived in refopt's own words:\n" + "\n".join(found)
    )
