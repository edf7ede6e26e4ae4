"""``refopt verify``: check another implementation of an update rule against refopt's golden vectors.

Host-side package: it drives targets with NumPy arrays, so it imports NumPy directly; torch,
jax and optax are imported only inside their adapters, when such a target is asked for.

    report = refopt.verify.verify("torch.optim.Adam")            # a built-in adapter
    report = refopt.verify.verify("my_port:make", rule="adam")   # a factory make(**hyper) -> step
    report.passed, report.text(), report.as_dict()

What happens, for each group of ``specs/vectors/<rule>.json`` (one hyper-parameter
configuration, one dtype) that the target can be given:

1. every case's gradients are fed to the target step by step, starting from ``params0``,
   the target keeping its own parameters and state;
2. at every recorded step its parameters (and its state, when it exposes it under refopt's
   slot names) are compared with the expected values under the case's tolerance class;
3. per case the report gives the first diverging step, the quantity and element, the largest
   absolute, relative and ulp errors, and the verdict;
4. when a case fails, :mod:`refopt.verify._identify` re-runs refopt on the same inputs with
   every option variant, preset and known bug of the rule and names the one the target matches
   (or the nearest).

Bad usage -- an unknown target or rule, a factory or step that raises, params of the wrong
shape or dtype, a vectors file that fails its schema -- raises :class:`VerifyError`, a
ValueError with a one-line message (``refopt verify`` exits 2 with it).
"""

from __future__ import annotations

from ._core import Case, CaseResult, Report, verify
from ._data import Tolerance, VerifyError, errors
from ._bugs import KnownBug, catalogue
from ._identify import identify, known_bugs
from ._targets import adapter_names, invert, resolve

__all__ = ["verify", "Report", "CaseResult", "Case", "VerifyError", "Tolerance", "errors", "adapter_names",
           "invert", "resolve", "identify", "known_bugs", "catalogue", "KnownBug"]
