"""Record trajectories of real optimizer implementations, for tests/test_presets.py.

This is a developer tool, not a test: it needs the peers installed (torch, jax + optax, keras,
adabelief-pytorch, torch-optimizer, pytorch-optimizer; old adabelief-pytorch releases from
folders named by REFOPT_ADABELIEF_0_0_5 and REFOPT_ADABELIEF_0_1_0, e.g. made with
``pip install --no-deps --target DIR adabelief-pytorch==0.0.5``).  It runs every case of
CASES in float64 for STEPS steps on a fixed problem and writes
tests/data/peer_trajectories.json with the parameters after every step (exact float64 as hex).

    python tests/peers/record.py              # all peers that import
    python tests/peers/record.py --only optax # one family

Keras runs in a subprocess of its own (KERAS_BACKEND=jax must be set before import).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "peer_trajectories.json"
STEPS = 20

# The problem: g = A θ + B + θ³ + noise_t (non-linear, so weight decay and trajectory coupling matter).
THETA0 = np.array([1.0, -2.0, 0.5, 0.1, -0.7])
A = np.array([3.0, 0.5, 10.0, 1.0, 0.2])
B = np.array([0.5, -1.0, 0.2, 0.0, 0.3])
NOISE = np.random.default_rng(20261128).normal(scale=0.3, size=(STEPS, THETA0.size))


def gradient(theta: np.ndarray, step: int) -> np.ndarray:
    return A * theta + B + theta**3 + NOISE[step]


# (preset name, implementation kwargs) -- kwargs are the implementation's own names.
CASES: list[tuple[str, dict]] = [
    ("torch.optim.SGD", dict(lr=0.01)),
    ("torch.optim.SGD", dict(lr=0.01, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("torch.optim.SGD", dict(lr=0.001, momentum=0.9, nesterov=True, maximize=True)),
    ("torch.optim.Adam", dict(lr=0.01)),
    ("torch.optim.Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("torch.optim.Adam", dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.1, maximize=True)),
    ("torch.optim.AdamW", dict(lr=0.01)),
    ("torch.optim.AdamW", dict(lr=0.01, amsgrad=True, betas=(0.8, 0.99))),
    ("torch.optim.RAdam", dict(lr=0.01)),
    ("torch.optim.RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, betas=(0.9, 0.9))),
    ("torch.optim.RMSprop", dict(lr=0.01)),
    ("torch.optim.RMSprop", dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.1)),
    ("torch.optim.Adagrad", dict(lr=0.1)),
    ("torch.optim.Adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.1, weight_decay=0.1)),
    ("torch.optim.Adadelta", dict()),
    ("torch.optim.Adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.1)),
    ("optax.sgd", dict(learning_rate=0.01)),
    ("optax.sgd", dict(learning_rate=0.01, momentum=0.9, nesterov=True)),
    ("optax.adam", dict(learning_rate=0.01)),
    ("optax.adam", dict(learning_rate=0.01, eps_root=1e-4, b1=0.8)),
    ("optax.adamw", dict(learning_rate=0.01)),
    ("optax.adamw", dict(learning_rate=0.01, weight_decay=0.1)),
    ("optax.amsgrad", dict(learning_rate=0.01)),
    ("optax.amsgrad", dict(learning_rate=0.01, bias_correction_mu=False, bias_correction_nu=False)),
    ("optax.adabelief", dict(learning_rate=0.01)),
    ("optax.adabelief", dict(learning_rate=0.01, eps=1e-8, eps_root=1e-6)),
    ("optax.rmsprop", dict(learning_rate=0.01)),
    ("optax.rmsprop", dict(learning_rate=0.01, eps_in_sqrt=False, centered=True)),
    ("optax.rmsprop", dict(learning_rate=0.01, momentum=0.9, initial_scale=0.1)),
    ("optax.adagrad", dict(learning_rate=0.1)),
    ("optax.adadelta", dict()),
    ("optax.adadelta", dict(learning_rate=0.5, weight_decay=0.1)),
    ("optax.lion", dict(learning_rate=0.01)),
    ("optax.lion", dict(learning_rate=0.01, weight_decay=0.1, b1=0.95)),
    ("keras.optimizers.SGD", dict(learning_rate=0.01)),
    ("keras.optimizers.SGD", dict(learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("keras.optimizers.Adam", dict(learning_rate=0.01)),
    ("keras.optimizers.Adam", dict(learning_rate=0.01, amsgrad=True, weight_decay=0.1)),
    ("keras.optimizers.RMSprop", dict(learning_rate=0.01)),
    ("keras.optimizers.RMSprop", dict(learning_rate=0.01, momentum=0.9, centered=True)),
    ("keras.optimizers.Adagrad", dict(learning_rate=0.1)),
    ("keras.optimizers.Adadelta", dict(learning_rate=1.0)),
    ("adabelief_pytorch.AdaBelief", dict(lr=0.01)),
    ("adabelief_pytorch.AdaBelief", dict(lr=0.01, rectify=False)),
    ("adabelief_pytorch.AdaBelief", dict(lr=0.01, rectify=False, amsgrad=True, weight_decay=0.1)),
    ("adabelief_pytorch.AdaBelief", dict(lr=0.01, weight_decouple=False, weight_decay=0.1, rectify=False, eps=1e-8)),
    ("adabelief_pytorch.AdaBelief", dict(lr=0.01, fixed_decay=True, weight_decay=0.1, degenerated_to_sgd=False)),
    ("adabelief_pytorch.AdaBelief@0.1.0", dict(lr=0.01)),
    ("adabelief_pytorch.AdaBelief@0.1.0", dict(lr=0.01, rectify=False, amsgrad=True, weight_decouple=False, weight_decay=0.1)),
    ("adabelief_pytorch.AdaBelief@0.0.5", dict(lr=0.01)),
    ("adabelief_pytorch.AdaBelief@0.0.5", dict(lr=0.01, rectify=True, weight_decay=0.1)),
    ("adabelief_pytorch.AdaBelief@0.0.5", dict(lr=0.01, amsgrad=True, weight_decouple=True, weight_decay=0.1)),
    ("torch_optimizer.AdaBelief", dict(lr=0.01)),
    ("torch_optimizer.AdaBelief", dict(lr=0.01, rectify=True, amsgrad=True, weight_decay=0.1)),
    ("torch_optimizer.DiffGrad", dict(lr=0.01)),
    ("torch_optimizer.DiffGrad", dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99))),
    ("pytorch_optimizer.AdaBelief", dict(lr=0.01)),
    ("pytorch_optimizer.AdaBelief", dict(lr=0.01, rectify=True, weight_decay=0.1, weight_decouple=False)),
    ("pytorch_optimizer.DiffGrad", dict(lr=0.01)),
    ("pytorch_optimizer.DiffGrad", dict(lr=0.01, weight_decay=0.1)),
    ("torch.optim.NAdam", dict(lr=0.01)),
    ("torch.optim.NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, momentum_decay=0.01, maximize=True)),
    ("torch.optim.NAdam", dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99))),
    ("torch.optim.Adamax", dict(lr=0.01)),
    ("torch.optim.Adamax", dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99))),
    ("optax.sgd", dict(learning_rate=0.01, nesterov=True)),
    ("optax.adam", dict(learning_rate=0.01, nesterov=True)),
    ("optax.adamw", dict(learning_rate=0.01, weight_decay=0.1, nesterov=True)),
    ("optax.nadam", dict(learning_rate=0.01)),
    ("optax.nadam", dict(learning_rate=0.01, eps_root=1e-4, b1=0.8)),
    ("optax.nadamw", dict(learning_rate=0.01, weight_decay=0.1)),
    ("optax.yogi", dict(learning_rate=0.01)),
    ("optax.yogi", dict(learning_rate=0.01, eps=1e-6, b1=0.8)),
    ("optax.adamax", dict(learning_rate=0.01)),
    ("optax.adamax", dict(learning_rate=0.01, eps=1e-3, b2=0.9)),
    ("optax.adamaxw", dict(learning_rate=0.01, weight_decay=0.1)),
    ("keras.optimizers.Nadam", dict(learning_rate=0.01)),
    ("keras.optimizers.Nadam", dict(learning_rate=0.01, weight_decay=0.1, epsilon=1e-8)),
    ("keras.optimizers.Adamax", dict(learning_rate=0.01)),
    ("keras.optimizers.Adamax", dict(learning_rate=0.01, epsilon=1e-3, weight_decay=0.1)),
    ("adabound.AdaBound", dict(lr=0.01)),
    ("adabound.AdaBound", dict(lr=0.01, amsbound=True, weight_decay=0.1, gamma=0.1)),
    ("adabound.AdaBound", dict(lr=0.1, final_lr=0.05, gamma=0.5, betas=(0.9, 0.5))),
    ("torch_optimizer.AdaBound", dict(lr=0.01)),
    ("torch_optimizer.AdaBound", dict(lr=0.01, amsbound=True, weight_decay=0.1, betas=(0.9, 0.5))),
    ("torch_optimizer.Yogi", dict(lr=0.01)),
    ("torch_optimizer.Yogi", dict(lr=0.01, weight_decay=0.1, initial_accumulator=1e-3)),
    ("pytorch_optimizer.AdaBound", dict(lr=0.01)),
    ("pytorch_optimizer.AdaBound", dict(lr=0.01, ams_bound=True, weight_decay=0.1, gamma=2.0, betas=(0.9, 0.5))),
    ("pytorch_optimizer.AdaBound", dict(lr=0.01, weight_decay=0.1, weight_decouple=False, maximize=True)),
    ("pytorch_optimizer.Yogi", dict(lr=0.01)),
    ("pytorch_optimizer.Yogi", dict(lr=0.01, weight_decay=0.1, weight_decouple=False)),
    ("pytorch_optimizer.AdaMax", dict(lr=0.01)),
    ("pytorch_optimizer.AdaMax", dict(lr=0.01, weight_decay=0.1, weight_decouple=True, fixed_decay=True)),
    ("torch.optim.Adafactor", dict()),
    ("torch.optim.Adafactor", dict(lr=0.05, weight_decay=0.1, d=2.0)),
    ("optax.adafactor", dict(learning_rate=0.01)),
    ("optax.adafactor", dict(learning_rate=0.01, multiply_by_parameter_scale=False, weight_decay_rate=0.1)),
    ("torch_optimizer.Adafactor", dict()),
    ("torch_optimizer.Adafactor", dict(lr=0.01, relative_step=False, beta1=0.9, weight_decay=0.1)),
    ("pytorch_optimizer.AdaFactor", dict(betas=(None, 0.999))),
    ("pytorch_optimizer.AdaFactor", dict(lr=0.01, relative_step=False, betas=(None, 0.999), weight_decay=0.1)),
    ("optax.fromage", dict(learning_rate=0.01)),
    ("pytorch_optimizer.Fromage", dict()),
    ("pytorch_optimizer.Fromage", dict(lr=0.1, p_bound=1.0)),
    ("pytorch_optimizer.MSVAG", dict()),
    ("pytorch_optimizer.MSVAG", dict(lr=0.1, beta=0.8)),
]


def _torch_like(factory, kwargs):
    import torch

    # torch keeps some per-step scalars in its default dtype (NAdam's μ product): record in float64
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.nn.Parameter(torch.tensor(THETA0, dtype=torch.float64))
        opt = factory([p], **kwargs)
        out = []
        for step in range(STEPS):
            p.grad = torch.tensor(gradient(p.detach().numpy().copy(), step), dtype=torch.float64)
            opt.step()
            out.append(p.detach().numpy().copy())
    finally:
        torch.set_default_dtype(saved)
    return out


def _load_from(folder_env: str, module: str):
    folder = os.environ.get(folder_env)
    if not folder:
        raise ImportError(f"set {folder_env} to a folder holding that release")
    spec = importlib.util.spec_from_file_location(
        f"_peer_{folder_env}", Path(folder) / module / "AdaBelief.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.AdaBelief


def _torch_factory(name):
    head, _, version = name.partition("@")
    if head.startswith("torch.optim."):
        import torch.optim

        return getattr(torch.optim, head.rsplit(".", 1)[1])
    if head == "adabelief_pytorch.AdaBelief":
        if version == "0.0.5":
            return _load_from("REFOPT_ADABELIEF_0_0_5", "adabelief_pytorch")
        if version == "0.1.0":
            return _load_from("REFOPT_ADABELIEF_0_1_0", "adabelief_pytorch")
        import adabelief_pytorch

        cls = adabelief_pytorch.AdaBelief
        return lambda params, **kw: cls(params, print_change_log=False, **kw)
    module, cls = head.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def _optax(name, kwargs):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    opt = getattr(optax, name.split(".", 1)[1])(**kwargs)
    p = jnp.asarray(THETA0, dtype=jnp.float64)
    state = opt.init(p)
    out = []
    for step in range(STEPS):
        g = jnp.asarray(gradient(np.asarray(p), step))
        updates, state = opt.update(g, state, p)
        p = optax.apply_updates(p, updates)
        out.append(np.asarray(p).copy())
    return out


def _keras(name, kwargs):
    code = (
        "import os, json, sys, numpy as np\n"
        "os.environ['KERAS_BACKEND']='jax'\n"
        "import jax; jax.config.update('jax_enable_x64', True)\n"
        "import keras\n"
        f"sys.path.insert(0, {str(HERE)!r}); import record as R\n"
        f"opt = getattr(keras.optimizers, {name.rsplit('.', 1)[1]!r})(**json.loads({json.dumps(json.dumps(kwargs))}))\n"
        "v = keras.Variable(R.THETA0.copy(), dtype='float64')\n"
        "out=[]\n"
        "for step in range(R.STEPS):\n"
        "    g = keras.ops.convert_to_tensor(R.gradient(np.asarray(v.numpy()), step), dtype='float64')\n"
        "    opt.apply_gradients([(g, v)])\n"
        "    out.append([float(x).hex() for x in np.asarray(v.numpy())])\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [np.array([float.fromhex(x) for x in row]) for row in json.loads(done.stdout.strip().splitlines()[-1])]


_DISTRIBUTIONS = {
    "torch": "torch", "optax": "optax", "keras": "keras", "adabelief_pytorch": "adabelief-pytorch",
    "torch_optimizer": "torch-optimizer", "pytorch_optimizer": "pytorch-optimizer", "adabound": "adabound",
}


def _version(name):
    from importlib import metadata

    if "@" in name:
        return name.partition("@")[2]
    return metadata.version(_DISTRIBUTIONS[name.split(".", 1)[0]])


def run_case(name, kwargs):
    if name.startswith("optax."):
        return _optax(name, kwargs)
    if name.startswith("keras."):
        return _keras(name, kwargs)
    return _torch_like(_torch_factory(name), kwargs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="record only presets whose name starts with this")
    args = ap.parse_args(argv)
    existing = json.loads(OUT.read_text()) if OUT.exists() else {"cases": []}
    kept = {(c["preset"], json.dumps(c["kwargs"], sort_keys=True)): c for c in existing["cases"]}
    for name, kwargs in CASES:
        if args.only and not name.startswith(args.only):
            continue
        try:
            traj = run_case(name, kwargs)
        except Exception as exc:  # a peer that is not installed here
            print(f"skip {name} {kwargs}: {type(exc).__name__}: {exc}".splitlines()[0][:200])
            continue
        kept[(name, json.dumps(kwargs, sort_keys=True))] = {
            "preset": name,
            "kwargs": kwargs,
            "version": _version(name),
            "params": [[float(x).hex() for x in row] for row in traj],
        }
        print(f"ok   {name} {kwargs}")
    order = {(n, json.dumps(k, sort_keys=True)): i for i, (n, k) in enumerate(CASES)}
    cases = sorted(kept.values(), key=lambda c: order.get((c["preset"], json.dumps(c["kwargs"], sort_keys=True)), 1e9))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "about": "float64 trajectories of real implementations; written by tests/peers/record.py",
        "steps": STEPS,
        "theta0": THETA0.tolist(),
        "cases": cases,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
