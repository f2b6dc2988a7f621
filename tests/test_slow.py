"""Long end-to-end runs, skipped by default (tests/conftest.py); `pytest -m slow` runs them."""

from __future__ import annotations

import json

import pytest

from videocontrast.cli import main


@pytest.mark.slow
def test_quick_demo_pretraining_beats_random_init(tmp_path):
    """The README's `videocontrast demo --quick` (about 2 minutes on 2 CPU cores): videoSimCLR pretraining on the
    synthetic motion dataset must beat the same network at random initialisation on the linear probe."""
    out = tmp_path / "run"
    assert main(["demo", "--quick", "--out", str(out), f"data.root={tmp_path / 'data'}"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["pretrained"]["linear_top1"] > res["random_init"]["linear_top1"], res["verdict"]
    assert (out / "report.html").is_file()
