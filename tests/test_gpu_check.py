"""bench/gpu_check.py in smoke mode on the CPU (the GPU run itself needs a GPU): every sub-check runs, the JSON has
every expected key, a failing or hanging sub-check is reported without stopping the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ["env", "distributed", "augment", "model_step_eager", "model_step_compiled", "synthetic_data",
          "pipeline_eager", "pipeline_compiled"]
ROW_KEYS = {"check", "status", "reason", "time_s", "clips_per_s", "ratio", "tflops", "peak_mem_gib"}


def run_check(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIDEOCONTRAST_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--smoke",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert out.exists(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def test_smoke_run_passes_with_every_key(tmp_path):
    proc, res = run_check(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(res) >= {"meta", "rows", "failed", "ok", "flops_per_step_per_process"}
    assert res["ok"] is True and res["failed"] == []
    assert set(res["meta"]) >= {"torch", "world_size", "device", "smoke", "backbone", "clip", "batch_per_process",
                                "precision", "peak_mem"}
    assert [r["check"] for r in res["rows"]] == CHECKS
    rows = {r["check"]: r for r in res["rows"]}
    for r in res["rows"]:
        assert set(r) == ROW_KEYS
        assert r["status"] in ("OK", "SKIP")
    assert rows["model_step_compiled"]["status"] == rows["pipeline_compiled"]["status"] == "SKIP"  # compile off
    for name in ("model_step_eager", "pipeline_eager"):
        assert rows[name]["clips_per_s"] > 0 and rows[name]["tflops"] > 0 and rows[name]["peak_mem_gib"] > 0
    assert rows["pipeline_eager"]["ratio"] > 0
    assert res["flops_per_step_per_process"] > 0
    # the summary table is printed at the end
    assert proc.stdout.splitlines()[-2].startswith("pipeline_compiled") and "OK: every check passed" in proc.stdout


def test_failing_and_hanging_checks_are_reported_and_the_rest_runs(tmp_path):
    proc, res = run_check(tmp_path, "--inject-fail", "augment", "--inject-hang", "distributed",
                          "--budget", "distributed=2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {r["check"]: r for r in res["rows"]}
    assert rows["augment"]["status"] == "FAIL" and "injected failure" in rows["augment"]["reason"]
    assert rows["distributed"]["status"] == "FAIL" and "timed out after 2 s" in rows["distributed"]["reason"]
    assert rows["model_step_eager"]["status"] == rows["pipeline_eager"]["status"] == "OK", proc.stdout
    assert res["ok"] is False and res["failed"] == ["distributed", "augment"]
    assert "FAILED: distributed, augment" in proc.stdout
