"""Presets against the real implementations they name.

tests/data/peer_trajectories.json holds float64 trajectories recorded from the real packages
(torch.optim 2.13, optax 0.2.8, Keras 3.15, adabelief-pytorch 0.0.5/0.1.0/0.2.1,
torch-optimizer 0.3.0, pytorch_optimizer 4.1.0) by tests/peers/record.py, so every preset is
checked in CI without those packages installed. Where torch is installed, the torch.optim
presets are also re-run live.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import refopt as ro

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
import record  # noqa: E402  (the recorder's problem definition: one source of truth)

DATA = json.loads((HERE / "data" / "peer_trajectories.json").read_text())
CASES = DATA["cases"]


def _kwargs(raw: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def refopt_trajectory(preset: str, kwargs: dict, dtype=np.float64) -> np.ndarray:
    rule = ro.presets.get(preset, **kwargs)
    theta = record.THETA0.astype(dtype)
    state = rule.init(theta)
    out = []
    for step in range(record.STEPS):
        theta, state = rule.step(theta, record.gradient(theta.astype(np.float64), step).astype(dtype), state)
        out.append(theta)
    return np.array(out)


def _ids():
    seen: dict[str, int] = {}
    ids = []
    for c in CASES:
        n = seen.get(c["preset"], 0)
        seen[c["preset"]] = n + 1
        ids.append(f"{c['preset']}-{n}")
    return ids


def test_recording_matches_problem():
    assert DATA["steps"] == record.STEPS
    np.testing.assert_array_equal(DATA["theta0"], record.THETA0)


# presets of packages that are not installed where the peers are recorded, checked elsewhere
NOT_RECORDED = {
    "transformers.Adafactor": "tests/test_baselines_factored.py: the golden values of transformers 5.25.0",
    "optimizers.MSVAG": "tests/test_baselines_factored.py: the AdaBelief repository's numbers (no package)",
    # this recorder runs Keras with floatx float32, where Keras 3.15 mixes float32 state into float64 steps
    "keras.optimizers.Adafactor": "tests/test_baselines_factored.py: live, floatx float64, torch backend",
}


def test_every_preset_is_recorded():
    recorded = {c["preset"] for c in CASES}
    assert sorted(set(ro.presets.names()) - recorded - set(NOT_RECORDED)) == []


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_preset_matches_recorded_implementation(case):
    expected = np.array([[float.fromhex(x) for x in row] for row in case["params"]])
    got = refopt_trajectory(case["preset"], _kwargs(case["kwargs"]))
    # same formula, possibly another evaluation order: agreement to ~1e-13 relative over 20 steps
    scale = np.maximum(np.abs(expected), 1e-3)
    err = np.max(np.abs(got - expected) / scale)
    assert err <= 1e-12, f"{case['preset']} {case['kwargs']} (v{case['version']}): max rel err {err:.3g}"


TORCH_CASES = [c for c in CASES if c["preset"].startswith("torch.optim.")]


@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=[f"live-{i}" for i in range(len(TORCH_CASES))])
def test_torch_presets_live(case):
    pytest.importorskip("torch")
    live = np.array(record.run_case(case["preset"], _kwargs(case["kwargs"])))
    got = refopt_trajectory(case["preset"], _kwargs(case["kwargs"]))
    np.testing.assert_allclose(got, live, rtol=1e-12, atol=1e-14)


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown preset 'torch\.optim\.Adamm'.*'torch\.optim\.Adam'"):
        ro.presets.get("torch.optim.Adamm")


def test_unknown_argument_names_the_implementation_arguments():
    with pytest.raises(TypeError, match=r"torch\.optim\.Adam: unknown argument 'lrr'; did you mean 'lr'"):
        ro.presets.get("torch.optim.Adam", lrr=0.1)


def test_required_argument():
    with pytest.raises(TypeError, match=r"optax\.adam: missing required argument 'learning_rate'"):
        ro.presets.get("optax.adam")


def test_unreproducible_argument_is_refused():
    with pytest.raises(ValueError, match=r"optax\.adam: mu_dtype='bfloat16' is not reproduced"):
        ro.presets.get("optax.adam", learning_rate=0.1, mu_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"adabound\.AdaBound: gamma=1\.5 is not reproduced"):
        ro.presets.get("adabound.AdaBound", gamma=1.5)


def test_a_preset_may_pick_the_rule_from_its_arguments():
    """optax.adam(nesterov=True) is optax's NAdam (a constant μ); optax.sgd ignores nesterov without momentum."""
    assert ro.presets.get("optax.adam", learning_rate=0.1).name == "adam"
    nadam = ro.presets.get("optax.adam", learning_rate=0.1, nesterov=True)
    assert nadam.name == "nadam" and nadam.hyper["schedule"] == "constant"
    assert ro.presets.get("optax.nadam", learning_rate=0.1, nesterov=False).name == "adam"
    sgd = ro.presets.get("optax.sgd", learning_rate=0.1, nesterov=True)
    assert sgd.name == "sgd" and sgd.hyper["momentum"] == 0 and sgd.hyper["nesterov"] is False


def test_defaults_are_the_implementations():
    assert ro.presets.get("keras.optimizers.Adam").hyper["eps"] == 1e-7
    assert ro.presets.get("torch.optim.AdamW").hyper["weight_decay"] == 1e-2
    assert ro.presets.get("optax.adamw", learning_rate=1e-3).hyper["weight_decay"] == 1e-4
    assert ro.presets.describe("torch.optim.SGD").source.startswith("pytorch/pytorch torch/optim/sgd.py")
