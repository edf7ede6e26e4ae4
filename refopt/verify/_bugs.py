"""The catalogue of known bugs and regressions (``specs/known_bugs.toml``) and their emulations.

Host-side module: the emulations re-create buggy arithmetic on NumPy arrays, the way the
buggy release computes it, so that :mod:`refopt.verify._identify` can recognise a target that
follows one.  Each entry of the catalogue names its emulation:

``options``
    refopt options of the rule that compute the same numbers (run through the rule itself);
``function``
    one of :data:`EMULATIONS` below, written out step by step after the cited source;
``detect``
    a property the verifier observes while it runs the target (``gradient-modified``: the
    target wrote into the gradient it was given);
``none``
    why refopt cannot run it (yet).

Versions are compared as release numbers (``4.0.0``, ``0.2.1``); a pre- or post-release
suffix is ignored.  A range is a comma-separated list of PEP 440 comparisons (``>=2.7.0,<4.0.0``,
``==0.1.0``); an empty range means every release.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import specs as _specs
from ..rules._base import State

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SCHEMA = "refopt_known_bugs_v1"
KINDS = ("bug", "regression", "default-change", "side-effect")


# ---------------------------------------------------------------------------------------
# versions
# ---------------------------------------------------------------------------------------


def release(version: str) -> tuple[int, ...]:
    """``"3.11.0"`` -> ``(3, 11, 0)``; ``"2.13.0+cpu"``/``"0.2.1rc1"`` -> the release part."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    if m is None:
        raise ValueError(f"version {version!r} does not start with a release number like 1.2.3")
    parts = tuple(int(x) for x in m.group(1).split("."))
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


_OPS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}


def in_range(version: str, spec: str) -> bool:
    """Whether ``version`` lies in ``spec`` (``">=2.7.0,<4.0.0"``; ``""``: every version)."""
    v = release(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.fullmatch(r"(==|!=|>=|<=|>|<)\s*(\S+)", clause)
        if m is None:
            raise ValueError(f"version range {spec!r}: {clause!r} is not a comparison like '>=1.2' or '==0.1.0'")
        if not _OPS[m.group(1)](v, release(m.group(2))):
            return False
    return True


def describe_range(spec: str) -> str:
    """A range for people: ``">=2.7.0,<4.0.0"`` -> ``"2.7.0 to before 4.0.0"``."""
    if not spec:
        return "every release"
    return ", ".join(
        {"==": "{}", ">=": "{} and later", "<": "before {}", "<=": "up to {}", ">": "after {}", "!=": "not {}"}[m.group(1)]
        .format(m.group(2))
        for m in (re.fullmatch(r"(==|!=|>=|<=|>|<)\s*(\S+)", c.strip()) for c in spec.split(",") if c.strip())
    )


# ---------------------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    package: str  # PyPI name
    affected: str  # version range
    fixed_in: str = ""

    def covers(self, version: str | None) -> bool | None:
        """Whether ``version`` of this package has the bug (None when unknown)."""
        if version is None:
            return None
        try:
            return in_range(version, self.affected)
        except ValueError:
            return None


@dataclass(frozen=True)
class KnownBug:
    id: str
    rule: str
    kind: str
    implementation: str
    summary: str
    computes: str
    versions: str
    sources: tuple
    emulation: dict
    releases: tuple = ()
    targets: tuple = ()

    @property
    def label(self) -> str:
        """``pytorch_optimizer 2.7.0 to before 4.0.0 DiffGrad: no friction ξ, ...``"""
        return f"{self.implementation} ({self.versions}): {self.summary}"

    def affects(self, package: str | None, version: str | None) -> bool:
        """Whether this release of ``package`` is listed as having the bug."""
        return any(_same_package(r.package, package) and r.covers(version) for r in self.releases)

    def as_dict(self) -> dict:
        return {
            "id": self.id, "rule": self.rule, "kind": self.kind, "implementation": self.implementation,
            "summary": self.summary, "computes": self.computes, "versions": self.versions,
            "releases": [{"package": r.package, "affected": r.affected, "fixed_in": r.fixed_in} for r in self.releases],
            "targets": list(self.targets), "sources": list(self.sources), "emulation": dict(self.emulation),
        }


def _same_package(a: str | None, b: str | None) -> bool:
    norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()  # noqa: E731 - PEP 503 normalisation
    return a is not None and b is not None and norm(a) == norm(b)


@functools.lru_cache(maxsize=1)
def catalogue() -> tuple[KnownBug, ...]:
    """Every entry of ``specs/known_bugs.toml``, in file order."""
    path = _specs.specs_dir() / "known_bugs.toml"
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema must be {SCHEMA!r}; got {data.get('schema')!r}")
    out = []
    for raw in data.get("bugs", []):
        releases = tuple(Release(r["package"], r.get("affected", ""), r.get("fixed_in", "")) for r in raw.get("releases", []))
        out.append(KnownBug(raw["id"], raw["rule"], raw["kind"], raw["implementation"], raw["summary"], raw["computes"],
                            raw["versions"], tuple(raw["sources"]), dict(raw["emulation"]), releases,
                            tuple(raw.get("targets", ()))))
    return tuple(out)


def for_rule(rule: str) -> list[KnownBug]:
    """The entries of one rule."""
    return [b for b in catalogue() if b.rule == rule]


def get(bug_id: str) -> KnownBug:
    for b in catalogue():
        if b.id == bug_id:
            return b
    from ..rules._base import suggest

    raise ValueError(suggest(bug_id, [b.id for b in catalogue()], "known bug"))


# ---------------------------------------------------------------------------------------
# emulations: the buggy arithmetic, leaf by leaf
# ---------------------------------------------------------------------------------------
#
# Each emulation is ``(config, case) -> {t: params}`` (None when the configuration is one the
# buggy code path does not take).  ``config`` is the refopt rule of the vectors' group (its
# hyper-parameters are the implementation's arguments); params and gradients may be one array
# or a dict of arrays.  Scalars stay Python floats (math.sqrt, not np.sqrt: a NumPy float64
# scalar would promote a float32 array), so a float32 case is computed in float32.


def _leafwise(step: Callable) -> Callable:
    """Run ``step(hyper, leaf_state, theta, g, t) -> theta`` on every leaf of every step."""

    def run(config, case):
        hyper = config.hyper
        tree = isinstance(case.params0, dict)
        theta = dict(case.params0) if tree else {"": case.params0}
        states: dict = {k: {} for k in theta}
        out = {}
        for t, g in enumerate(case.grads, 1):
            grads = g if tree else {"": g}
            theta = {k: step(hyper, states[k], theta[k], grads[k], t) for k in theta}
            if t in case.recorded:
                out[t] = dict(theta) if tree else theta[""]
        return out

    return run


def _zeros(state: dict, key: str, like: np.ndarray) -> np.ndarray:
    if key not in state:
        state[key] = np.zeros_like(like)
    return state[key]


def _decay(hyper, theta, g):
    """pytorch_optimizer's apply_weight_decay (before the moments): θ(1 - γλ), θ(1 - λ) or g + λθ."""
    lam = hyper["weight_decay"]
    if lam == 0:
        return theta, g
    if not hyper["weight_decouple"]:
        return theta, g + lam * theta
    return theta * (1.0 - (lam if hyper["fixed_decay"] else hyper["lr"] * lam)), g


def _maximize(hyper, g):
    return -g if hyper.get("maximize") else g


@_leafwise
def _po_diffgrad_no_friction(hyper, state, theta, g, t):
    """pytorch_optimizer 2.7.0-3.11.0 DiffGrad, rectify=False: Adam's step with m, no ξ, no √bc2,
    1e-15 inside the root, weight decay skipped (it sits in the rectify branch)."""
    b1, b2 = hyper["betas"]
    g = _maximize(hyper, g)
    m = state["m"] = _zeros(state, "m", g) * b1 + g * (1.0 - b1)
    v = state["v"] = _zeros(state, "v", g) * b2 + (g * g) * (1.0 - b2)
    step_size = hyper["lr"] / (1.0 - b1**t)
    return theta - step_size * (m / (np.sqrt(v + 1e-15) + hyper["eps"]))


@_leafwise
def _po_adabelief_foreach(hyper, state, theta, g, t):
    """pytorch_optimizer 3.10.0-3.11.0 AdaBelief, the foreach path: θ -= γ·m/(√s/√bc2), with ε
    accumulated into s, no 1/bc1 and no outer ε."""
    b1, b2 = hyper["betas"]
    g = _maximize(hyper, g)
    theta, g = _decay(hyper, theta, g)
    m = _zeros(state, "m", g)
    m = state["m"] = m + (g - m) * (1.0 - b1)  # torch._foreach_lerp_
    r = g - m
    s = state["s"] = _zeros(state, "s", g) * b2 + (r * r) * (1.0 - b2) + hyper["eps"]
    return theta - hyper["lr"] * (m / (np.sqrt(s) / math.sqrt(1.0 - b2**t)))


@_leafwise
def _po_adabelief_eps_scaled(hyper, state, theta, g, t):
    """pytorch_optimizer 3.9.0 AdaBelief (and the per-parameter path of 3.10.0-3.11.0),
    rectify=False: θ -= (γ/bc1)·m/((√(s + 1e-15) + ε)/√bc2)."""
    b1, b2 = hyper["betas"]
    g = _maximize(hyper, g)
    theta, g = _decay(hyper, theta, g)
    m = state["m"] = _zeros(state, "m", g) * b1 + g * (1.0 - b1)
    r = g - m
    s = state["s"] = _zeros(state, "s", g) * b2 + (r * r) * (1.0 - b2) + hyper["eps"]
    denom = (np.sqrt(s + 1e-15) + hyper["eps"]) / math.sqrt(1.0 - b2**t)
    return theta - (hyper["lr"] / (1.0 - b1**t)) * (m / denom)


def _only_plain(run: Callable, *, off: tuple = ("rectify", "amsgrad")) -> Callable:
    """The emulation covers the non-rectified, non-amsgrad path only."""

    def guarded(config, case):
        if any(config.hyper.get(k) for k in off):
            return None
        return run(config, case)

    return guarded


def _diffgrad_previous_grad_alias(config, case):
    """diffGrad whose previous gradient is the current one from step 2 on (a stored reference):
    refopt's own step with g_prev overwritten by this step's gradient before the step."""
    p = case.params0
    state = config.init(p)
    out = {}
    for t, g in enumerate(case.grads, 1):
        if t >= 2:
            _, _, trace = config.trace(p, g, state)  # trace["g"]: the gradient ξ sees (after L2, maximize)
            state = State(state.rule, state.t, {**state.slots, "g_prev": trace["g"]})
        p, state = config.step(p, g, state)
        if t in case.recorded:
            out[t] = p
    return out


EMULATIONS: dict[str, Callable] = {
    "diffgrad_previous_grad_alias": _diffgrad_previous_grad_alias,
    "pytorch_optimizer_diffgrad_no_friction": _only_plain(_po_diffgrad_no_friction),
    "pytorch_optimizer_adabelief_foreach": _only_plain(_po_adabelief_foreach),
    "pytorch_optimizer_adabelief_eps_scaled": _only_plain(_po_adabelief_eps_scaled),
}

DETECTIONS = ("gradient-modified",)


def emulation(bug: KnownBug) -> Callable | None:
    """The emulation function ``(config, case) -> {t: params}`` of a ``function`` entry, else None
    (``options`` entries run through the rule itself, see :mod:`refopt.verify._identify`)."""
    name = bug.emulation.get("function")
    return EMULATIONS[name] if name is not None else None


def runnable(bug: KnownBug) -> bool:
    """Whether refopt can compute what the buggy implementation computes."""
    return "function" in bug.emulation or "options" in bug.emulation


def side_effect_bugs(detection: str, rule: str, package: str | None, version: str | None,
                     target: str | None = None) -> list[KnownBug]:
    """The catalogue entries of ``rule`` that explain an observed side effect of this target."""
    out = []
    for b in for_rule(rule):
        if b.emulation.get("detect") != detection:
            continue
        if (target is not None and target.split("@")[0] in b.targets) or b.affects(package, version):
            out.append(b)
    return out


__all__ = ["KnownBug", "Release", "catalogue", "for_rule", "get", "emulation", "runnable", "in_range", "release",
           "describe_range", "EMULATIONS", "DETECTIONS", "side_effect_bugs"]
