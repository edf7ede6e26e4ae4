"""``refopt reproduce [diffgrad|adabelief|clipping|all]``: the papers' toy experiments.

Each experiment runs the published protocol (or, where a paper does not publish one, a
reconstructed protocol that is labelled as such), prints the paper's reported outcome beside
refopt's, and writes plots when matplotlib is installed.  Where each experiment's protocol and
expected numbers come from is said next to it below, and printed with its table: the authors'
code and its outputs (diffGrad's notebook, AdaBelief's Beale animation, the MoNNA repository's
reproduce scripts), or a construction of refopt's own where the paper publishes no synthetic
problem (Pan & Li's sharp-coordinate quadratics).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .. import diagnostics, functions, rules, transforms
from ..run import run as run_rule
from . import _progress
from ._plot import contour, have_matplotlib, pyplot

EXPERIMENTS = ("diffgrad", "adabelief", "clipping", "sharpness", "monna", "fedfix")  # "all": the five papers, in this order
SLOW = ("monna", "sharpness")  # minutes at full size: "all" runs them in a quick mode unless --full
QUICK_MONNA = dict(seeds=1, steps=200, noisy_steps=100)  # about 20 s on two cores; verdicts need the full run


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rerun the papers' toy experiments and compare with what they report",
        description="Rerun each paper's toy experiment with its published protocol, print the paper's "
        "reported outcome beside refopt's, and write plots when matplotlib is installed.",
        epilog="Exit status: 0 when every checked row agrees with the source, 1 when a row DIFFERS, "
        "2 on bad usage (an unknown option value, a plot folder that cannot be written).",
    )
    p.add_argument("experiment", nargs="?", default="all", choices=(*EXPERIMENTS, "all"),
                   help="one experiment, or all of them (default; about 2 minutes on two cores, with MoNNA's grid and "
                   "Pan & Li's transformer in a quick mode: fewer seeds and steps, numbers without verdicts; --full "
                   "runs them at full size)")
    p.add_argument("--full", action="store_true",
                   help="with all: run MoNNA's grid (--seeds, --steps; several minutes) and the transformer sharpness "
                   "study (--seeds) at full size instead of the quick mode")
    p.add_argument("--out", metavar="DIR", default="refopt-reproduce", help="folder for the plots (default ./refopt-reproduce)")
    p.add_argument("--no-plots", action="store_true", help="print the tables only")
    p.add_argument("--seeds", type=int, default=3,
                   help="monna and sharpness: seeds per configuration (default 3; MoNNA's paper used 5)")
    p.add_argument("--steps", type=int, default=600, help="monna: steps per run (default 600, the paper's MNIST)")
    p.add_argument("--convention", choices=("all", "code"), default="all",
                   help="monna: receive sets of the paper's algorithm (all-to-all) or of its code (n-f received), "
                   "which produced the paper's figures")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: every experiment's rows (what the source reports, what refopt gets, "
                   "the verdict), notes and plots")
    _progress.add_flag(p)


@dataclass
class Row:
    """One line of a comparison table: what the source reports, what refopt gets, and a verdict."""

    what: str
    reported: str
    refopt: str
    ok: bool | None  # None: the source reports nothing checkable


@dataclass
class Outcome:
    title: str
    protocol: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    def as_dict(self) -> dict:
        verdict = {True: "agrees", False: "DIFFERS", None: None}
        return {"title": self.title, "protocol": self.protocol, "passed": self.passed,
                "rows": [{"what": r.what.strip(), "source_reports": r.reported, "refopt": r.refopt,
                          "verdict": verdict[r.ok]} for r in self.rows],
                "notes": list(self.notes), "plots": list(self.plots)}

    def render(self) -> str:
        w1 = max(len(r.what) for r in self.rows)
        w2 = max(len(r.reported) for r in self.rows)
        w3 = max(len(r.refopt) for r in self.rows)
        mark = {True: "agrees", False: "DIFFERS", None: "-"}
        lines = [self.title, "", self.protocol, "",
                 f"  {'':<{w1}}  {'source reports':<{w2}}  {'refopt':<{w3}}  verdict",
                 f"  {'-' * w1}  {'-' * w2}  {'-' * w3}  -------"]
        lines += [f"  {r.what:<{w1}}  {r.reported:<{w2}}  {r.refopt:<{w3}}  {mark[r.ok]}" for r in self.rows]
        lines += [""] + [f"  note: {n}" for n in self.notes]
        lines += [f"  plot: {p}" for p in self.plots]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# diffGrad (Dubey et al. 2020, arXiv 1909.11015): F1-F3, refopt.functions diffgrad_f*
# ---------------------------------------------------------------------------------------

# x after 299 updates of the official notebook's update loop (shivram1987/diffGrad
# diffGrad_analytical.ipynb @ 73233ba, whose output figures show these trajectories); the
# true-F2 pair is not published: it is the same loop with the exact derivative of F2
# (mhaut/AngularGrad analytical/main.py), which the paper's claim is about.
DIFFGRAD_REPORTED = {
    ("diffgrad_f1", "adam"): 0.200115, ("diffgrad_f1", "diffgrad"): -0.300071,
    ("diffgrad_f2_notebook", "adam"): 0.000177, ("diffgrad_f2_notebook", "diffgrad"): -0.8121,
    ("diffgrad_f2", "adam"): 0.000090, ("diffgrad_f2", "diffgrad"): -0.642963,
    ("diffgrad_f3", "adam"): 0.000510, ("diffgrad_f3", "diffgrad"): 0.013565,
}


def diffgrad_experiment(out: str | None) -> Outcome:
    lr, beta1, beta2, eps, updates = 0.1, 0.95, 0.999, 1e-8, 299
    # the notebook's Adam puts ε inside the root, its diffGrad after the bias correction
    optimizers = {
        "adam": rules.adam(lr=lr, betas=(beta1, beta2), eps=eps, eps_mode="inside_sqrt"),
        "diffgrad": rules.diffgrad(lr=lr, betas=(beta1, beta2), eps=eps),
    }
    rows, paths = [], {}
    for name in ("diffgrad_f1", "diffgrad_f2_notebook", "diffgrad_f2", "diffgrad_f3"):
        f = functions.get(name)
        for label, rule in optimizers.items():
            x = np.asarray(run_rule(rule, f, np.array([-1.0]), updates).x)[:, 0]
            paths[(name, label)] = x
            reported = DIFFGRAD_REPORTED[(name, label)]
            final = float(x[-1])
            rows.append(Row(f"{name:<21} {label:<8}", f"x = {reported:+.6f}",
                            f"x = {final:+.6f}, f = {float(f.value(x[-1:])):.4g}", abs(final - reported) <= 1e-3))
    notes = [
        "F1: Adam overshoots into the local basin (x = 0.2), diffGrad settles in the global one (x = -0.3).",
        "diffgrad_f2_notebook is the function whose derivative the official notebook coded "
        "(x cos 8x + sin 8x + 3x², missing a factor 8): the published F2 figure shows it, not F2.",
        "With the true F2 the paper's claim holds: diffGrad reaches the global minimum near -0.643.",
        "F3 does not discriminate the two methods with this protocol.",
    ]
    outcome = Outcome(
        "diffGrad (Dubey et al., TNNLS 2020): synthetic functions F1, F2, F3",
        f"protocol (official notebook): x0 = -1, lr {lr}, β1 {beta1}, β2 {beta2}, ε {eps}, {updates} updates; "
        "Adam with ε inside the root as the notebook codes it",
        rows, notes,
    )
    if out:
        plt = pyplot()
        fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
        titles = {"diffgrad_f1": "F1", "diffgrad_f2_notebook": "F2 as the notebook coded it (published figure)",
                  "diffgrad_f2": "F2 (true gradient)", "diffgrad_f3": "F3"}
        for ax, name in zip(axes.ravel(), titles):
            for label in optimizers:
                ax.plot(paths[(name, label)], label=label)
            ax.set_title(titles[name], fontsize=9)
            ax.set_ylabel("x")
            ax.axhline(functions.get(name).minimizers[0][0], color="gray", lw=0.6, ls="--", label="global minimizer")
            ax.legend(fontsize=7)
        for ax in axes[1]:
            ax.set_xlabel("iteration")
        fig.suptitle(f"diffGrad vs Adam, x0 = -1, lr {lr}, β1 {beta1}, {updates} updates", fontsize=10)
        fig.tight_layout()
        outcome.plots.append(_save(fig, out, "diffgrad.png"))
        plt.close(fig)
    return outcome


# ---------------------------------------------------------------------------------------
# AdaBelief (Zhuang et al. 2020, arXiv 2010.07468): toy 2-D problems of Fig. 3, refopt.functions
# ---------------------------------------------------------------------------------------

# End points read off the last of the 500 frames of the official animation
# (juntang-zhuang/Adabelief-Optimizer imgs/Beale2.gif), to about ±0.05.
BEALE_REPORTED = {"adabelief": (3.0, 0.5), "adam": (2.1, 0.15), "sgdm": (-0.95, -0.4)}
ADABELIEF_PANELS = ("abs_sum", "abs_rotated", "quad_rotated", "abs_scaled", "log_beale", "rosenbrock")


def adabelief_experiment(out: str | None) -> Outcome:
    steps = 500
    optimizers = {
        "adabelief": rules.adabelief(lr=1e-2),
        "adam": rules.adam(lr=1e-2),
        "sgdm": rules.sgd(lr=5e-3, momentum=0.9),
    }
    rows, paths, winners = [], {}, {}
    for name in ADABELIEF_PANELS:
        f = functions.get(name)
        x0 = np.asarray(f.start, dtype=np.float64)
        minimizer = np.asarray(f.minimizers[0])
        ends = {}
        for label, rule in optimizers.items():
            rule_here = rule
            if name == "abs_scaled" and label != "sgdm":  # the third-party reading of panel (d)
                rule_here = rule.replace(betas=(0.3, 0.3))
            with np.errstate(over="ignore", invalid="ignore"):
                result = run_rule(rule_here, f, x0, steps)
            path = np.asarray(result.x)
            paths[(name, label)] = path
            ends[label] = float(np.linalg.norm(path[-1] - minimizer))
        if name == "log_beale":
            for label, (bx, by) in BEALE_REPORTED.items():
                end = paths[(name, label)][-1]
                ok = bool(np.hypot(end[0] - bx, end[1] - by) <= 0.1)
                rows.append(Row(f"{name:<12} {label:<9}", f"ends near ({bx:+.2f}, {by:+.2f})",
                                f"ends at ({end[0]:+.3f}, {end[1]:+.3f})", ok))
        else:
            best = winners[name] = min(ends, key=ends.get)
            rows.append(Row(f"{name:<12} closest", "AdaBelief fastest (caption, unverified)",
                            f"{best}; distances " + ", ".join(f"{k} {v:.2g}" for k, v in ends.items()),
                            None))
    others = {label: [n for n, w in winners.items() if w == label] for label in optimizers}
    notes = [
        "Beale: the official animation's objective is log(1 + Beale)/10 (its z-range); refopt found that "
        "500 steps with AdaBelief and Adam at lr 1e-2 and SGD (momentum 0.9) at lr 5e-3 reproduce all three "
        "published end points, while plain Beale reproduces none for SGD. This protocol is refopt's "
        "reconstruction: the paper publishes no learning rates.",
        "Other panels: the paper publishes no protocol and the start points are third-party readings, so these "
        "rows are observations, not checks. Closest to the optimum after the run: "
        + "; ".join(f"{label} on {', '.join(names)}" for label, names in others.items() if names) + ".",
        "abs_scaled uses β1 = β2 = 0.3 for the adaptive methods, a third-party reading of panel (d).",
    ]
    outcome = Outcome(
        "AdaBelief (Zhuang et al., NeurIPS 2020): toy problems of Fig. 3",
        f"protocol: {steps} steps from each function's start; AdaBelief (ε 1e-16) and Adam at lr 1e-2, "
        "SGD with momentum 0.9 at lr 5e-3",
        rows, notes,
    )
    if out:
        plt = pyplot()
        fig, axes = plt.subplots(2, 3, figsize=(14, 8.5))
        for ax, name in zip(axes.ravel(), ADABELIEF_PANELS):
            f = functions.get(name)
            contour(ax, f, {label: paths[(name, label)] for label in optimizers},
                    title=f"{name}, start {f.start}, {steps} steps")
        fig.suptitle("AdaBelief vs Adam vs SGD with momentum: trajectories on log-scaled contours (square: start, "
                     "star: optimum, dot: end)", fontsize=11)
        fig.tight_layout()
        outcome.plots.append(_save(fig, out, "adabelief.png"))
        plt.close(fig)
    return outcome


# ---------------------------------------------------------------------------------------
# Pan & Li (2023, arXiv 2306.00204): coordinate-wise clipping on sharp-coordinate quadratics.
# The quadratics are refopt's construction (refopt.functions.SharpQuadratic), not the paper's;
# the expected values were computed independently in float64 NumPy when they were designed.
# ---------------------------------------------------------------------------------------

CLIP_REPORTED = {  # (S, Δ*) per direction at x0
    "sharp_st1b": {"-g": (967.278, 17.544), "-C.01(g)": (20.8172, 79.292), "-C.1(g)": (20.3516, 80.314),
                   "-sign(g)": (10.99, 107.60)},
    "sharp_st2": {"-g": (967.278, 17.544), "-C.01(g)": (992.002, 16.659), "-C.1(g)": (866.821, 14.512),
                  "-sign(g)": (472.524, 10.183)},
}
MULTISTEP_REPORTED = {  # best final loss after 200 steps over the lr grid
    "sharp_st1b": {"gd": 272.757, "clipped gd": 1.2e-63, "sign": 0.2505, "adam": 2.602e-7, "clipped adam": 2.443e-7},
    "sharp_st2": {"gd": 272.757, "clipped gd": 496.476, "sign": 459.055, "adam": 185.346},
}


def _directions(f, x):
    g = f.grad(x)
    clip = lambda c: transforms.clip_top_fraction(g, c)[0]  # noqa: E731
    return {"-g": -g, "-C.01(g)": -clip(0.01), "-C.1(g)": -clip(0.1), "-sign(g)": -np.sign(g)}


def clipping_experiment(out: str | None) -> Outcome:
    rows, measured = [], {}
    for name in ("sharp_st1b", "sharp_st2"):
        f = functions.get(name)
        x = np.asarray(f.start, dtype=np.float64)
        for label, v in _directions(f, x).items():
            red = diagnostics.model_reduction(f, x, v)
            s, delta = float(red.sharpness), float(red.reduction)
            measured[(name, label)] = (s, delta)
            rs, rd = CLIP_REPORTED[name][label]
            ok = abs(s - rs) <= 1e-3 * rs and abs(delta - rd) <= 1e-3 * rd
            rows.append(Row(f"{name:<10} {label:<9}", f"S {rs:9.4f}  Δ* {rd:8.3f}", f"S {s:9.4f}  Δ* {delta:8.3f}", ok))
    s_g, d_g = measured[("sharp_st1b", "-g")]
    s_c, d_c = measured[("sharp_st1b", "-C.01(g)")]
    rows.append(Row("ST-1b: clipping lowers S", "more than 10x", f"{s_g / s_c:.1f}x", s_g / s_c > 10))
    rows.append(Row("ST-1b: clipping raises Δ*", "yes (4.5x)", f"{d_c / d_g:.2f}x", d_c > d_g))
    r_g = measured[("sharp_st2", "-g")][1]
    r_c = measured[("sharp_st2", "-C.01(g)")][1]
    rows.append(Row("ST-2 (rotated): advantage gone", "Δ* falls", f"{r_c / r_g:.2f}x", r_c < r_g))

    # multi-step: best final loss over the lr grid 10^(j/4), j = -16..4, 200 steps, all lrs at once
    lrs = 10.0 ** (np.arange(-16, 5) / 4.0)
    grid = lrs[:, None]
    optimizers = {
        "gd": rules.sgd(lr=grid),
        "clipped gd": rules.clipped_sgd(lr=grid, clip_fraction=0.01, batch_axes=1),
        "sign": rules.signsgd(lr=grid),
        "adam": rules.adam(lr=grid),
        "clipped adam": rules.clipped_adam(lr=grid, clip_fraction=0.5, batch_axes=1),
    }
    curves = {}
    for name in ("sharp_st1b", "sharp_st2"):
        f = functions.get(name)
        x0 = np.tile(np.asarray(f.start, dtype=np.float64), (len(lrs), 1))
        for label, rule in optimizers.items():
            if label not in MULTISTEP_REPORTED[name]:
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                result = run_rule(rule, f, x0, 200)
            loss = np.asarray(result.loss)
            final = np.where(np.asarray(result.diverged), np.inf, loss[-1])
            best = int(np.argmin(final))
            curves[(name, label)] = (loss[:, best], lrs[best])
            reported = MULTISTEP_REPORTED[name][label]
            # values that collapse toward 0 depend on rounding: only their order is checked
            ok = None if reported < 1e-10 else bool(abs(final[best] - reported) <= 1e-3 * reported)
            rows.append(Row(f"{name:<10} {label:<12} 200 steps", f"best loss {reported:.4g}",
                            f"{final[best]:.4g} (lr {lrs[best]:.4g})", ok))
    st1b = {k: curves[("sharp_st1b", k)][0][-1] for k in MULTISTEP_REPORTED["sharp_st1b"]}
    st2 = {k: curves[("sharp_st2", k)][0][-1] for k in MULTISTEP_REPORTED["sharp_st2"]}
    rows.append(Row("ST-1b order", "clipped gd < gd; adam ≈ clipped adam",
                    f"clipped gd {st1b['clipped gd']:.2g} vs gd {st1b['gd']:.4g}",
                    bool(st1b["clipped gd"] < 1e-3 * st1b["gd"])))
    rows.append(Row("ST-2 order", "clipped gd > gd (no advantage)",
                    f"clipped gd {st2['clipped gd']:.4g} vs gd {st2['gd']:.4g}", bool(st2["clipped gd"] > st2["gd"])))
    notes = [
        "S = vᵀHv/‖v‖² (directional sharpness) and Δ* = <g,v>²/(2vᵀHv) (best one-step decrease along v) at x0.",
        "ST-1b is the paper's regime: 10 of 1000 coordinates are sharp and carry the gradient, but not the loss.",
        "ST-2 rotates the same spectrum off the coordinate axes: coordinate-wise clipping loses its advantage.",
        "Multi-step rows: only orderings are checked, not the exact tiny values (clipped GD collapses toward 0).",
        "The sharp-coordinate quadratics are refopt's construction (the paper has no synthetic problem); the "
        "'source reports' column holds values computed independently when they were designed.",
    ]
    outcome = Outcome(
        "Coordinate-wise clipping (Pan & Li 2023): sharp-coordinate quadratics",
        "protocol (refopt's construction, refopt.functions.SharpQuadratic): d = 1000, 10 coordinates of "
        "curvature 1000; directions at x0; "
        "200 steps at the best lr of 10^(j/4), j = -16..4",
        rows, notes,
    )
    if out:
        plt = pyplot()
        fig, axes = plt.subplots(1, 4, figsize=(19, 4.8))
        labels = list(CLIP_REPORTED["sharp_st1b"])
        ticks = {"-g": "−g", "-C.01(g)": "−C₀.₀₁(g)", "-C.1(g)": "−C₀.₁(g)", "-sign(g)": "−sign(g)"}
        pos = np.arange(len(labels))
        for name, shift, color in (("sharp_st1b", -0.2, "tab:blue"), ("sharp_st2", 0.2, "tab:gray")):
            what = "ST-1b (sharp coordinates)" if name == "sharp_st1b" else "ST-2 (rotated control)"
            axes[0].bar(pos + shift, [measured[(name, k)][0] for k in labels], width=0.4, label=what, color=color)
            axes[1].bar(pos + shift, [measured[(name, k)][1] for k in labels], width=0.4, label=what, color=color)
        for ax, title, ylabel in ((axes[0], "directional sharpness along v (lower is flatter)", "S = vᵀHv / ‖v‖²"),
                                  (axes[1], "best one-step decrease along v (higher is better)", "Δ* = ⟨g,v⟩² / (2 vᵀHv)")):
            ax.set_xticks(pos, [ticks[k] for k in labels])
            ax.set_xlabel("direction v at x0")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=7)
        axes[0].set_yscale("log")
        for ax, name, title in ((axes[2], "sharp_st1b", "ST-1b: loss at each optimizer's best lr"),
                                (axes[3], "sharp_st2", "ST-2 (rotated): loss at each optimizer's best lr")):
            for (fname, label), (loss, lr) in curves.items():
                if fname == name:  # each problem on its own axis: the scales differ by 60 decades
                    ax.plot(np.maximum(loss, 1e-300), label=f"{label} (lr {lr:.3g})")
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel("loss f(x_t)")
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle("Coordinate-wise clipping on sharp-coordinate quadratics (ST-1b) and the rotated control (ST-2); "
                     "C_c(g): every coordinate of g clipped at the magnitude of its top-c fraction", fontsize=10)
        fig.tight_layout()
        outcome.plots.append(_save(fig, out, "clipping.png"))
        plt.close(fig)
    return outcome


# ---------------------------------------------------------------------------------------
# Pan & Li (2023, arXiv 2306.00204) on a transformer: the directional sharpness of SGD's, Adam's,
# sign and clipped directions along an Adam trajectory of refopt's small decoder-only model on
# refopt's character corpus (refopt.problems.transformer; the paper used larger models and text).
# ---------------------------------------------------------------------------------------

SHARPNESS_CHECKPOINTS = (100, 250, 500)
SHARPNESS_DIRECTIONS = ("-g", "-C_0.1(g)", "adam", "clipped adam", "-sign(g)", "adam, no momentum")
QUICK_SHARPNESS = dict(seeds=1, checkpoints=(50, 100))


def sharpness_experiment(out: str | None, seeds: int = 3, checkpoints: tuple = SHARPNESS_CHECKPOINTS,
                         quick: bool = False, tick=None) -> Outcome:
    from .. import problems
    from .._threads import blas_threads

    problem = problems.get("transformer")
    lr, batch, fixed_batch = 1e-2, 16, 64
    adam = rules.adam(lr=lr)
    shadows = {"clipped adam": rules.clipped_adam(lr=lr), "adam, no momentum": rules.adam(lr=lr, betas=(0.0, 0.999))}
    steps = max(checkpoints)
    # per (seed, checkpoint, direction): (S, Δ*, top-1% share of vᵀHv)
    m: dict = {}
    with blas_threads(1), np.errstate(over="ignore", invalid="ignore"):
        for seed in range(seeds):
            theta = np.asarray(problem.init(seed), dtype=np.float64)
            state = adam.init(theta)
            shadow_states = {k: r.init(theta) for k, r in shadows.items()}
            Xf, yf = problem.example_batch(fixed_batch, seed=10**6 + seed)
            f = problem.on_batch(Xf, yf)
            for k in range(1, steps + 1):
                X, y = problem.example_batch(batch, seed=(seed << 32) + k)
                g = problem.grad(theta, X, y)
                for name, r in shadows.items():  # shadows: moment buffers fed the trajectory's gradients
                    _, shadow_states[name] = r.step(theta, g, shadow_states[name])
                theta, state = adam.step(theta, g, state)
                if tick is not None and k % 50 == 0:
                    tick()
                if k not in checkpoints:
                    continue
                gf = f.grad(theta)
                dirs = {
                    "-g": -gf,
                    "-C_0.1(g)": -transforms.clip_top_fraction(gf, 0.1)[0],
                    "adam": -adam.trace(theta, gf, state)[2]["update"],
                    "clipped adam": -shadows["clipped adam"].trace(theta, gf, shadow_states["clipped adam"])[2]["update"],
                    "-sign(g)": -np.sign(gf),
                    "adam, no momentum": -shadows["adam, no momentum"].trace(
                        theta, gf, shadow_states["adam, no momentum"])[2]["update"],
                }
                for name, v in dirs.items():
                    red = diagnostics.model_reduction(f, theta, v, g=gf)
                    top = diagnostics.top_fraction_contribution(f, theta, v, 0.01)
                    m[(seed, k, name)] = (float(red.sharpness), float(red.reduction), float(top.share))

    def spread(direction, what):
        vals = [m[(s, k, direction)][what] for s in range(seeds) for k in checkpoints]
        return min(vals), max(vals)

    rows = []
    for name in SHARPNESS_DIRECTIONS:
        (s0, s1), (d0, d1), (c0, c1) = spread(name, 0), spread(name, 1), spread(name, 2)
        rows.append(Row(f"{name:<18} S, Δ*, top-1% share", "-",
                        f"S {s0:.3g}..{s1:.3g}  Δ* {d0:.3g}..{d1:.3g}  share {c0:.2f}..{c1:.2f}", None))
    every = [(s, k) for s in range(seeds) for k in checkpoints]
    judged = None if quick else True
    for other in ("adam", "-sign(g)", "-C_0.1(g)", "clipped adam"):
        ratios = [m[(s, k, "-g")][0] / m[(s, k, other)][0] for s, k in every]
        ok = all(r > 1 for r in ratios)
        rows.append(Row(f"S(-g) > S({other})", "at every point", f"ratio {min(ratios):.3g}..{max(ratios):.3g}",
                        ok if judged else None))
    shares = [m[(s, k, "-g")][2] for s, k in every]
    rows.append(Row("top 1% of coordinates carry gᵀHg", "most of it", f"share {min(shares):.2f}..{max(shares):.2f}",
                    all(x > 0.5 for x in shares) if judged else None))
    d_ratio = [m[(s, k, "adam")][1] / m[(s, k, "-g")][1] for s, k in every]
    c_ratio = [m[(s, k, "-g")][0] / m[(s, k, "-C_0.1(g)")][0] for s, k in every]
    notes = [
        *(["QUICK MODE (refopt reproduce all): one seed, checkpoints 50 and 100, no verdict is judged; "
           "`refopt reproduce sharpness` runs the full protocol and judges it."] if quick else []),
        "S = vᵀHv/‖v‖² (directional sharpness), Δ* = <g,v>²/(2vᵀHv) (the best one-step decrease of the quadratic "
        "model along v) and the share of vᵀHv carried by the top 1% of |v_i|, all on one fixed batch of "
        f"{fixed_batch} windows, with exact Hessian-vector products (problem.hvp).",
        "Directions at each checkpoint: -g; -C_0.1(g) (every coordinate clipped at the magnitude of the top 10%); "
        "Adam's next update; the next update of clipped Adam (clip fraction 0.5, refopt's default) and of Adam with "
        "β1 = 0 (Adam's scaling without momentum), both run as shadows fed the trajectory's gradients; -sign(g).",
        f"Not part of the claim, reported as measured: clipping lowers S(-g) by {min(c_ratio):.2g}..{max(c_ratio):.2g}x; "
        f"Δ*(Adam) / Δ*(-g) = {min(d_ratio):.2g}..{max(d_ratio):.2g}: at this size Adam's direction does not reliably "
        "promise a larger one-step decrease than SGD's, although its sharpness is far lower.",
        "For -sign(g) every |v_i| is 1, so the top-1% set (|v_i| ≥ τ, ties included) is every coordinate and its "
        "share is 1 by construction.",
        "BLAS runs on one thread (the model multiplies 32-wide matrices).",
    ]
    outcome = Outcome(
        "Pan & Li (2023): directional sharpness along an Adam trajectory of a small transformer",
        f"protocol: refopt's 1-layer decoder (width 32, 2 heads, context 64, {problem.dim} parameters) on refopt's "
        f"character corpus; Adam lr {lr}, batch {batch}, {steps} steps; measured at steps {', '.join(map(str, checkpoints))}; "
        f"seeds 0..{seeds - 1}",
        rows, notes)
    if out:
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
        pos = np.arange(len(SHARPNESS_DIRECTIONS))
        for j, k in enumerate(checkpoints):
            width = 0.8 / len(checkpoints)
            vals = [[m[(s, k, d)][0] for s in range(seeds)] for d in SHARPNESS_DIRECTIONS]
            axes[0].bar(pos + (j - (len(checkpoints) - 1) / 2) * width, [np.mean(v) for v in vals], width,
                        yerr=[np.std(v) for v in vals] if seeds > 1 else None, label=f"step {k}")
            shares_k = [[m[(s, k, d)][2] for s in range(seeds)] for d in SHARPNESS_DIRECTIONS]
            axes[1].bar(pos + (j - (len(checkpoints) - 1) / 2) * width, [np.mean(v) for v in shares_k], width,
                        label=f"step {k}")
        for ax, title, ylabel in ((axes[0], "directional sharpness (log; bars: mean over seeds ± std)",
                                   "S = vᵀHv / ‖v‖²"),
                                  (axes[1], "share of vᵀHv on the top 1% of coordinates", "share")):
            ax.set_xticks(pos, SHARPNESS_DIRECTIONS, rotation=20, fontsize=8)
            ax.set_xlabel("direction v")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=7)
        axes[0].set_yscale("log")
        axes[1].axhline(0.5, color="black", lw=0.8, ls="--")
        fig.suptitle(f"Pan & Li on refopt's small transformer: Adam trajectory, lr {lr}, batch {batch}, "
                     f"{seeds} seed(s)", fontsize=10)
        fig.tight_layout()
        outcome.plots.append(_save(fig, out, "sharpness.png"))
        plt.close(fig)
    return outcome


# ---------------------------------------------------------------------------------------
# MoNNA (Farhadkhani et al., ICML 2023, arXiv 2209.10931): robust collaborative learning; the
# setup of the authors' reproduce.py (LPD-EPFL/robust-collaborative-learning @ 3425aa1)
# ---------------------------------------------------------------------------------------

MONNA_ALGORITHMS = ("monna", "nna", "mocwtm", "bridge")
MONNA_ATTACKS = ("alie", "optimal_foe", "sign_flipping", "label_flipping")


def monna_experiment(out: str | None, seeds: int = 3, steps: int = 600, convention: str = "all",
                     quick: bool = False, tick=None, noisy_steps: int | None = None) -> Outcome:
    from .. import problems
    from .._threads import blas_threads
    from ..collaborative import monna_lr, simulate
    from .collab import ATTACKS, SCENARIOS

    if seeds < 1 or steps < 1:
        raise ValueError(f"--seeds and --steps must be positive; got {seeds} and {steps}")
    data = problems.load_dataset("digits")
    problem = problems.softmax_regression(data[0].shape[1], 10)
    common = dict(nodes=26, steps=steps, lr=monna_lr, alpha=1.0, batch_size=25, eval_every=max(1, steps // 30),
                  convention=convention)

    def final(algorithm, attack, setting=None):
        name, params = ATTACKS[attack]
        accs, spreads, curves = [], [], []
        for seed in range(1, seeds + 1):
            byz = 0 if name is None else 5
            with np.errstate(over="ignore", invalid="ignore"), blas_threads(1):
                r = simulate(algorithm, problem, data, byzantine=byz, f=5 if byz else 0, attack=name,
                             attack_params=params, seed=seed, **(setting or common))
            if tick is not None:
                tick()
            accs.append(r.accuracy[-1])
            spreads.append(float(np.mean(r.spread[len(r.spread) // 2:])))
            curves.append(np.asarray(r.accuracy))
        return float(np.mean(accs)), float(np.std(accs)), float(np.mean(spreads)), np.asarray(curves), r.eval_steps

    ref, ref_sd, _, ref_curves, eval_steps = final("dsgd", "none")
    table = {(alg, att): final(alg, att) for att in MONNA_ATTACKS for alg in MONNA_ALGORITHMS}
    judged = not quick and seeds > 1  # a verdict needs a seed spread to be judged against
    rows = [Row("paper scenario: D-SGD, no attack (reference)", "-", f"accuracy {ref:.3f} ± {ref_sd:.3f}", None)]
    for att in MONNA_ATTACKS:
        m, m_sd, m_spread, _, _ = table[("monna", att)]
        n, n_sd, n_spread, _, _ = table[("nna", att)]
        # judged against the seed spread: "tracks" within max(0.02, the two spreads), "below" by more
        # than the two spreads together (and at least 0.01)
        rows.append(Row(f"{att:<15} MoNNA vs D-SGD", "tracks D-SGD", f"{m:.3f} ± {m_sd:.3f} ({m - ref:+.3f})",
                        bool(m >= ref - max(0.02, m_sd + ref_sd)) if judged else None))
        rows.append(Row(f"{att:<15} NNA (no momentum)", "below MoNNA" if att in ("alie", "optimal_foe") else "-",
                        f"{n:.3f} ± {n_sd:.3f} ({n - m:+.3f} vs MoNNA)",
                        bool(m - n > max(0.01, m_sd + n_sd)) if att in ("alie", "optimal_foe") and judged else None))
        for alg in ("mocwtm", "bridge"):
            a, a_sd, _, _, _ = table[(alg, att)]
            rows.append(Row(f"{att:<15} {alg}", "-", f"{a:.3f} ± {a_sd:.3f}", None))
    # the noisy scenario (refopt collab --scenario noisy): batch 1, constant lr, where the honest
    # disagreement is gradient noise that momentum damps
    noisy = {**common, **{k: v for k, v in SCENARIOS["noisy"].items()}, "eval_every": 10}
    if noisy_steps is not None:
        noisy["steps"] = noisy_steps
    nref, nref_sd, _, _, _ = final("dsgd", "none", noisy)
    nm, nm_sd, _, _, _ = final("monna", "alie", noisy)
    nn, nn_sd, _, _, _ = final("nna", "alie", noisy)
    rows.append(Row("noisy scenario: D-SGD, no attack (reference)", "-", f"accuracy {nref:.3f} ± {nref_sd:.3f}", None))
    rows.append(Row("noisy: MoNNA under ALIE", "tracks D-SGD", f"{nm:.3f} ± {nm_sd:.3f} ({nm - nref:+.3f})",
                    bool(nm >= nref - max(0.02, nm_sd + nref_sd)) if judged else None))
    rows.append(Row("noisy: NNA under ALIE", "below MoNNA by more than the seed spread",
                    f"{nn:.3f} ± {nn_sd:.3f} ({nn - nm:+.3f} vs MoNNA)",
                    bool(nm - nn > max(0.01, nm_sd + nn_sd)) if judged else None))
    spread_note = ", ".join(
        f"{att}: MoNNA {table[('monna', att)][2]:.2g} / NNA {table[('nna', att)][2]:.2g}" for att in ("alie", "optimal_foe"))
    notes = [
        *(["QUICK MODE (refopt reproduce all): one seed and 200 steps, so no verdict is judged; "
           "`refopt reproduce monna` (or `all --full`) runs the grid at full size and judges it."] if quick else []),
        "Stand-in for the paper's MNIST CNN: softmax regression on the bundled 8x8 digits (1438 training images), "
        "the paper's 26 nodes, 5 Byzantine, batch 25, lr 0.75/(1 + ⌊t/50⌋), β 0.99, Dirichlet α = 1; accuracy is "
        f"the mean over honest nodes after {steps} steps, mean ± std over seeds 1..{seeds}.",
        "Verdicts are judged against the seed spread (mean ± std over the seeds): 'tracks D-SGD' is within "
        "max(0.02, the two stds) of the reference, 'below MoNNA' is lower by more than max(0.01, the two stds "
        "together); with one seed nothing is judged.",
        f"Noisy scenario (refopt collab --scenario noisy): batch 1, constant lr {SCENARIOS['noisy']['lr']}, "
        f"{noisy['steps']} steps, the same nodes, data split and softmax model. There the honest spread is gradient "
        "noise, which MoNNA's momentum damps, and ALIE hides in it less; in the paper scenario (batch 25) the spread "
        "is mostly data heterogeneity, which momentum cannot damp, so the paper's NNA-vs-MoNNA gap need not appear "
        "with this convex model: the rows marked DIFFERS, if any, say where it does not.",
        f"Honest spread (mean ‖θ_i − θ̄‖² over the second half of training): {spread_note}. The paper's argument "
        "is that momentum shrinks this spread, which is where ALIE and FOE hide; the claim was shown for a CNN on "
        "MNIST, and a smaller convex problem need not show the same gap (the verdict rows say whether it does).",
        "MoNNA's β = 0.99 momentum starts from zero, so short runs favour NNA; judge the verdicts at the default "
        "600 steps.",
        "ALIE and FOE are line-searched against the defender's own mixing, as in the paper's code.",
    ]
    outcome = Outcome(
        "MoNNA (Farhadkhani et al., ICML 2023): robust collaborative learning under attack",
        f"protocol: the paper's MNIST grid at CPU size ({seeds} seed(s), {steps} steps, receive sets "
        f"'{convention}'; see notes)", rows, notes)
    if out:
        plt = pyplot()
        fig, axes = plt.subplots(1, len(MONNA_ATTACKS), figsize=(17, 4.4), sharey=True)
        band = seeds > 1
        everything = [ref_curves] + [table[k][3] for k in table]
        tail = np.concatenate([c[:, len(eval_steps) // 3:].ravel() for c in everything])
        low, high = float(np.nanmin(tail)), float(np.nanmax(tail))  # zoom on where the curves settle
        for ax, att in zip(axes, MONNA_ATTACKS):
            ax.plot(eval_steps, ref_curves.mean(axis=0), color="black", lw=1.2, ls="--", label="D-SGD, no attack")
            for alg in MONNA_ALGORITHMS:
                curves = table[(alg, att)][3]
                mean = curves.mean(axis=0)
                line, = ax.plot(eval_steps, mean, lw=1.6 if alg in ("monna", "nna") else 1.0, label=alg)
                if band:
                    sd = curves.std(axis=0)
                    ax.fill_between(eval_steps, mean - sd, mean + sd, color=line.get_color(), alpha=0.15, lw=0)
            ax.set_title(f"attack: {att}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylim(max(0.0, low - 0.05), min(1.0, high + 0.02))
        axes[0].set_ylabel("test accuracy (mean over honest nodes)")
        axes[0].legend(fontsize=7, loc="lower right")
        spread = f"mean ± std over seeds 1..{seeds} (bands)" if band else "one seed (no spread: use --seeds)"
        fig.suptitle(f"MoNNA's grid on digits: 26 nodes, 5 Byzantine, Dirichlet α = 1, {steps} steps; {spread}; "
                     f"y-axis zoomed", fontsize=10)
        fig.tight_layout()
        outcome.plots.append(_save(fig, out, "monna.png"))
        plt.close(fig)
    return outcome


def _save(fig, out: str, name: str) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    return path


def _fedfix(out):
    from .fed import fedfix_experiment

    return fedfix_experiment(out)


RUNNERS = {"diffgrad": diffgrad_experiment, "adabelief": adabelief_experiment, "clipping": clipping_experiment,
           "sharpness": sharpness_experiment, "monna": monna_experiment, "fedfix": _fedfix}


def run(args) -> int:
    chosen = EXPERIMENTS if args.experiment == "all" else (args.experiment,)
    quick = args.experiment == "all" and not args.full
    out = None
    if not args.no_plots:
        if have_matplotlib():
            out = args.out
        else:
            print("(no plots: matplotlib is not installed; pip install 'refopt[plot]')\n",
                  file=sys.stderr if args.json else sys.stdout)
    failed, results = [], []
    bar = _progress.Bar(None, "reproduce", _progress.wanted(args), unit=" runs")
    for name in chosen:
        start = time.perf_counter()
        bar.describe(f"reproduce {name}")
        if name == "monna":
            size = dict(quick=True, **QUICK_MONNA) if quick else dict(seeds=args.seeds, steps=args.steps)
            outcome = RUNNERS[name](out, convention=args.convention, tick=bar.update, **size)
        elif name == "sharpness":
            size = dict(quick=True, **QUICK_SHARPNESS) if quick else dict(seeds=args.seeds)
            outcome = RUNNERS[name](out, tick=bar.update, **size)
        else:
            outcome = RUNNERS[name](out)
        bar.update()
        if args.json:
            results.append({"experiment": name, **outcome.as_dict(), "seconds": time.perf_counter() - start})
        else:
            print(outcome.render())
            print(f"  ({time.perf_counter() - start:.1f} s)\n")
        if not outcome.passed:
            failed.append(name)
    bar.close()
    if args.json:
        print(json.dumps({"passed": not failed, "experiments": results}, ensure_ascii=False, allow_nan=False))
        return 1 if failed else 0
    if failed:
        print(f"refopt reproduce: {', '.join(failed)} differ from the reported outcome (rows marked DIFFERS)")
        return 1
    return 0
