"""Rule classes and the option variants that the core and property tests run for every rule."""

from __future__ import annotations

import pytest

import refopt as ro
from refopt.rules._base import Choice, Flag, Real, Rule


def rule_cls(name: str) -> type[Rule]:
    """The rule class, or a skip when its module cannot be imported (a rule being written)."""
    try:
        return ro.rules.rule_class(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("refopt.rules."):
            pytest.skip(f"rule {name!r}: module {exc.name} is not importable yet (being written)")
        raise


def switched_on(h: Real) -> float:
    """A small positive value inside the range of a Real whose default is 0."""
    value = 0.1
    if h.high < value or (h.high == value and h.high_open):
        value = h.high / 2
    return value


def variants(cls) -> list[tuple[str, dict]]:
    """(label, hyper-parameters): defaults, each Flag flipped, each other Choice, each 0-default Real on.

    A variant that the rule refuses on its own (nesterov without momentum) is retried with
    every 0-default Real switched on (label suffix "+on"); if that is refused too it is left out.
    """
    on = {h.name: switched_on(h) for h in cls.HYPER if isinstance(h, Real) and h.default == 0}
    out = [("default", {})]
    for h in cls.HYPER:
        if isinstance(h, Flag):
            out.append((f"{h.name}={not h.default}", {h.name: not h.default}))
        elif isinstance(h, Choice):
            out += [(f"{h.name}={c}", {h.name: c}) for c in h.choices if c != h.default]
        elif isinstance(h, Real) and h.default == 0:
            out.append((f"{h.name}={on[h.name]}", {h.name: on[h.name]}))
    kept = []
    for label, kw in out:
        for attempt in (kw, {**on, **kw}):
            try:
                cls(**attempt)
            except ValueError:
                continue
            kept.append((label if attempt is kw else label + "+on", attempt))
            break
    return kept
