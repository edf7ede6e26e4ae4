"""Parsing ``--hyper key=value`` arguments."""

from __future__ import annotations

import ast


def parse_hyper(items: list[str] | None) -> dict:
    """``["lr=0.1", "betas=(0.9, 0.99)", "eps_mode=inside_sqrt"]`` -> a dict of Python values.

    Values are Python literals (numbers, tuples, True/False); anything else is taken as a string,
    which is what option values such as ``eps_mode=inside_sqrt`` are.
    """
    out: dict = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--hyper takes key=value; got {item!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        out[key] = value
    return out
