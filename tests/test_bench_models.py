"""refopt bench's models section: the small transformer's training step against torch eager."""

from __future__ import annotations

import pytest

from refopt import bench


def test_models_section_times_the_same_model_as_torch():
    pytest.importorskip("torch")
    report = bench.run("numpy", sections=["models"], quick=True)
    (row,) = report["rows"]
    assert row["case"] == "transformer step" and row["peer"].startswith("torch eager")
    assert "note" not in row, row["note"]  # the two losses agreed before timing
    assert row["ratio"] > 0 and row["seconds_spread"]["repeats"] == 3
    assert row["target"] == "within 1.5x of torch eager" and isinstance(row["met"], bool)
