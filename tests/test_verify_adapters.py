"""``refopt verify module:Name``: real optimizer classes and functions verified as they are.

A torch optimizer class, a Keras optimizer class or an optax function is recognised by what it
is; only the arguments its signature names are passed; groups that need an argument it does not
take are skipped and listed, never failed.  A target that raises, exits, hangs or returns the
wrong thing is exit 2 with one line; one that returns NaN is a mismatch (exit 1) at the step it
first does; the JSON report stays valid JSON.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import textwrap

import pytest

import refopt.vectors
from refopt.cli import main
from refopt.verify import VerifyError, verify

_LOAD = refopt.vectors.load


@functools.lru_cache(maxsize=None)
def vectors(rule: str) -> dict:
    return _LOAD(rule)


# a torch.optim.Adam re-implementation that takes only lr, betas and eps (torch's lerp form)
TINY_ADAM = '''
import math
import torch


class TinyAdam(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st["t"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["t"] += 1
                t = st["t"]
                st["exp_avg"].lerp_(p.grad, 1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - b2**t)).add_(group["eps"])
                p.addcdiv_(st["exp_avg"], denom, value=-group["lr"] / (1 - b1**t))


class SwallowingAdam(TinyAdam):
    """Takes anything through **kwargs and refuses what it does not know."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected {sorted(kwargs)}")
        super().__init__(params, lr=lr, betas=betas, eps=eps)


class NotAnOptimizer:
    pass
'''


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "tinyopt.py").write_text(TINY_ADAM)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "tinyopt.py"


def test_a_torch_class_with_fewer_options_passes_what_it_can_express(tiny):
    report = verify("tinyopt:TinyAdam", rule="adam", data=vectors("adam"))
    assert report.passed, report.text()
    assert report.kind == "torch.optim.Optimizer subclass"
    assert report.implementation["follows"] == "torch.optim.Adam"  # torch's names by default
    why = {g: w for g, _, w in report.skipped}
    assert why["adam-g03"] == "tinyopt:TinyAdam takes no argument 'weight_decay' (the group needs weight_decay=0.1)"
    assert why["adam-g05"] == "tinyopt:TinyAdam takes no argument 'amsgrad' (the group needs amsgrad=True)"
    assert {"long_chain", "huge_gradient", "defaults"} <= {f for r in report.results for f in r.case.flags}
    # the same class given by file path
    again = verify(f"{tiny}:TinyAdam", rule="adam", data=vectors("adam"), dtype="float32")
    assert again.passed and again.results


def test_a_class_that_swallows_kwargs_gets_only_its_named_arguments(tiny):
    report = verify("tinyopt:SwallowingAdam", rule="adam", data=vectors("adam"))
    assert report.passed, report.text()
    assert any("takes no argument 'amsgrad'" in w for _, _, w in report.skipped)


def test_a_class_that_is_no_optimizer_is_refused(tiny):
    with pytest.raises(VerifyError, match="neither a torch.optim.Optimizer subclass nor a Keras optimizer"):
        verify("tinyopt:NotAnOptimizer", rule="adam")


def test_like_names_the_conventions_a_port_follows(tiny):
    report = verify("tinyopt:TinyAdam", like="torch.optim.Adam", data=vectors("adam"), dtype="float64")
    assert report.passed and report.implementation["follows"] == "torch.optim.Adam"
    # declared to follow AdamW, the class is taken to decay at AdamW's default λ = 1e-2 without being
    # told: it does not, so it fails where the vectors decay; the groups needing amsgrad are skipped
    report = verify("tinyopt:TinyAdam", like="torch.optim.AdamW", data=vectors("adamw"), dtype="float64")
    assert not report.passed and report.results[0].first["t"] == 1
    assert any("takes no argument 'amsgrad'" in w for _, _, w in report.skipped)
    with pytest.raises(VerifyError, match="contradicts"):
        verify("tinyopt:TinyAdam", rule="sgd", like="torch.optim.Adam")
    with pytest.raises(VerifyError, match="did you mean 'torch.optim.Adam'"):
        verify("tinyopt:TinyAdam", like="torch.optim.Adamm")


def test_keras_and_optax_given_as_module_name():
    if importlib.util.find_spec("keras") is None:  # not importorskip: refopt chooses Keras' backend first
        pytest.skip("keras is not installed")
    report = verify("keras.optimizers:Adam", rule="adam", data=vectors("adam"))
    assert report.passed, report.text()
    assert report.kind == "Keras optimizer class" and report.implementation["package"] == "keras"
    pytest.importorskip("optax")
    report = verify("optax:adabelief", rule="adabelief", data=vectors("adabelief"))
    assert report.passed, report.text()
    assert report.kind == "function returning an optax GradientTransformation"
    assert report.implementation["follows"] == "optax.adabelief"


def test_a_factory_returning_a_transformation_is_run_as_optax(tmp_path, monkeypatch):
    pytest.importorskip("optax")
    (tmp_path / "myoptax.py").write_text("import optax\n\ndef make(lr=1e-3):\n    return optax.sgd(lr)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    report = verify("myoptax:make", rule="sgd", data=vectors("sgd"))
    assert report.passed, report.text()
    assert report.results


# ---------------------------------------------------------------------------------------
# a target that misbehaves
# ---------------------------------------------------------------------------------------

PORTS = '''
import sys, time
import numpy as np


def make(lr=1e-3, momentum=0.0):
    def step(p, g, state):
        b = g if state is None else momentum * state["b"] + g
        return p - lr * b if momentum else p - lr * g, {"b": b, "t": 0 if state is None else state["t"] + 1}
    return step


def nan_at_two(lr=1e-3, momentum=0.0):
    inner = make(lr, momentum)
    def step(p, g, state):
        p, state = inner(p, g, state)
        if state["t"] == 1:
            p = p.copy()
            p.reshape(-1)[-1] = np.nan
        return p, state
    return step


def exits(lr=1e-3):
    def step(p, g, state):
        sys.exit(0)
    return step


def hangs(lr=1e-3):
    def step(p, g, state):
        while True:
            time.sleep(0.01)
    return step


def raises_base(lr=1e-3):
    def step(p, g, state):
        raise GeneratorExit("odd")
    return step


def wrong_shape(lr=1e-3):
    def step(p, g, state):
        return np.zeros(1, dtype=p.dtype), state
    return step
'''


@pytest.fixture
def ports(tmp_path, monkeypatch):
    (tmp_path / "badports.py").write_text(textwrap.dedent(PORTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(refopt.vectors, "load", lambda rule: vectors(rule))


@pytest.mark.parametrize("name, message", [
    ("exits", "called sys.exit(0) at step t=1"),
    ("hangs", "did not finish case sgd-g01-c001 (1 steps) within 0.5 s"),
    ("raises_base", "raised GeneratorExit at step t=1 of case sgd-g01-c001: odd"),
    ("wrong_shape", "returned params of shape (1,)"),
])
def test_a_target_that_misbehaves_is_exit_2_with_one_line(ports, capsys, name, message):
    code = main(["verify", f"badports:{name}", "--rule", "sgd", "--timeout", "0.5", "--dtype", "float64"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("refopt verify: error: ") and "\n" not in err
    assert message in err


def test_nan_from_a_port_is_a_mismatch_at_its_first_step_and_json_stays_valid(ports, capsys):
    code = main(["verify", "badports:nan_at_two", "--rule", "sgd", "--dtype", "float64", "--json"])
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    failed = [c for c in report["cases"] if c["verdict"] == "fail"]
    assert failed and all(c["first_divergence"]["t"] >= 2 for c in failed)  # the first recorded step after 1
    assert any(c["first_divergence"]["t"] == 2 for c in failed)
    assert {c["first_divergence"]["got"] for c in failed} == {"nan"}
    assert all(c["errors"]["params"]["abs"] == "inf" for c in failed)
    code = main(["verify", "badports:nan_at_two", "--rule", "sgd", "--dtype", "float64"])
    text = capsys.readouterr().out
    assert code == 1 and "got nan (abs inf" in text


def test_a_good_port_passes_and_the_json_says_what_ran(ports, capsys):
    assert main(["verify", "badports:make", "--rule", "sgd", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "factory make(**hyper) -> step"
    assert report["implementation"] == {"package": None, "version": None, "follows": None, "known_bugs": []}
    assert report["groups_run"] and all(g["verdict"] == "pass" for g in report["groups_run"])
    assert any("takes no argument 'dampening'" in s["reason"] for s in report["skipped_groups"])
    assert report["side_effects"] == [] and report["identification"] is None


def test_the_json_of_a_preset_names_package_version_and_range(capsys, monkeypatch):
    pytest.importorskip("torch_optimizer")
    monkeypatch.setattr(refopt.vectors, "load", lambda rule: vectors(rule))
    assert main(["verify", "torch_optimizer.DiffGrad", "--json"]) == 0
    impl = json.loads(capsys.readouterr().out)["implementation"]
    assert impl["package"] == "torch-optimizer" and impl["version"] == "0.3.0"
    assert impl["preset"] == "torch_optimizer.DiffGrad" and impl["reproduces"] == "==0.3.0" and impl["in_range"] is True


def test_a_preset_whose_package_is_missing_gives_the_install_hint(monkeypatch, capsys):
    import refopt.verify._targets as T

    monkeypatch.setattr(T.importlib.util, "find_spec", lambda name, *a: None)
    assert main(["verify", "pytorch_optimizer.DiffGrad"]) == 2
    err = capsys.readouterr().err
    assert "pytorch_optimizer is not installed" in err and "pip install pytorch_optimizer" in err


def test_verify_rejects_a_bad_timeout():
    with pytest.raises(VerifyError, match="timeout must be a number of seconds"):
        verify("torch.optim.SGD", timeout=0)
