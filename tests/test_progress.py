"""Progress bars: on stderr, drawn by tqdm, shown on a terminal or when --progress asks, never
under --json unless asked, never on MPI ranks other than 0; stdout stays the result."""

from __future__ import annotations

import argparse
import builtins
import json

import pytest

from refopt.cli import _progress, main


def args(**kw):
    return argparse.Namespace(**{"progress": None, "json": False, **kw})


def test_the_rule_of_when_a_bar_is_drawn(monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(_progress.sys.stderr, "isatty", lambda: True, raising=False)
    assert _progress.wanted(args())
    assert not _progress.wanted(args(json=True))  # quiet under --json ...
    assert _progress.wanted(args(json=True, progress=True))  # ... unless asked
    assert not _progress.wanted(args(progress=False))
    assert not _progress.wanted(args(progress=True), rank=1)  # only rank 0 draws
    monkeypatch.setattr(_progress.sys.stderr, "isatty", lambda: False, raising=False)
    assert not _progress.wanted(args()) and _progress.wanted(args(progress=True))


def test_asking_for_a_bar_without_tqdm_gives_the_install_hint(monkeypatch):
    real = builtins.__import__

    def no_tqdm(name, *a, **kw):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("No module named 'tqdm'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    assert not _progress.wanted(args())  # not asked: silently no bar
    with pytest.raises(ImportError, match=r"pip install 'refopt\[progress\]'"):
        _progress.wanted(args(progress=True))


def test_a_forced_bar_goes_to_stderr_and_stdout_stays_the_result(capsys):
    pytest.importorskip("tqdm")
    assert main(["collab", "--steps", "5", "--nodes", "6", "--byzantine", "1", "--json", "--progress"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["algorithm"] == "monna"  # stdout: the JSON alone
    assert "monna under" in err  # stderr: the bar
    assert main(["vectors", "--check", "--rule", "sgd", "--progress"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "refopt vectors: 1 file(s) match what refopt generates" and "vectors --check" in err


def test_the_bar_follows_the_run_hook():
    pytest.importorskip("tqdm")
    with _progress.Bar(10, "x", True) as bar:
        for k in range(1, 11):
            bar.step(k, 10)
        assert bar._bar.n == 10
    assert bar._bar is None
    with _progress.Bar(10, "x", False) as off:
        off.step(3, 10)  # a no-op
        off.update()


def test_the_federated_simulator_reports_every_server_step():
    from refopt import federated

    seen = []
    result = federated.simulate("fedfix", "quadratic", horizon=10, delta_t=0.5, progress=lambda n, N: seen.append((n, N)))
    assert seen and [n for n, _ in seen] == list(range(1, result.server_steps + 1))
    assert {N for _, N in seen} == {result.server_steps}
    with pytest.raises(TypeError, match="progress must be a callable"):
        federated.simulate("fedfix", "quadratic", horizon=10, delta_t=0.5, progress=3)


def test_fed_plot_shows_the_model_against_the_optimum_and_the_fixed_point(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from refopt.cli import _plot

    figures = []
    real = _plot.pyplot

    def keep():
        plt = real()
        original = plt.subplots

        def subplots(*a, **kw):
            fig, axes = original(*a, **kw)
            figures.append(fig)
            return fig, axes

        monkeypatch.setattr(plt, "subplots", subplots)
        return plt

    monkeypatch.setattr("refopt.cli.fed.pyplot", keep)
    path = tmp_path / "fed.png"
    assert main(["fed", "--horizon", "30", "--plot", str(path)]) == 0
    assert path.stat().st_size > 10_000
    (fig,) = figures
    assert fig._suptitle.get_text().startswith("fedfix on quadratic, 10 clients")
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert {"federated optimum", "predicted fixed point (theory)"} <= set(labels)
