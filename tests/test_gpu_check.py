"""bench/gpu_check.py in smoke mode on the CPU (the GPU run itself needs a GPU): every sub-check runs, the JSON has
every expected key, a failing or hanging sub-check is reported without stopping the others; and, without running
anything (--print-config), that its default settings are the thesis preset's and that a shape flag overrides them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
                                "precision", "peak_mem", "preset", "batch", "workers", "steps", "pipeline_steps",
                                "budgets_s", "total_s"}
    m = res["meta"]
    assert m["preset"] == "ucf101-simclr" and m["smoke"] is True  # the default preset, shrunk
    assert (m["backbone"], m["clip"], m["batch"], m["workers"], m["precision"]) == ("r3d_small", "4x32x32", 4, 1,
                                                                                    "fp32")
    assert m["train_files"] == m["pipeline_steps"] * m["batch"]  # the measured epoch is a whole one
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


@pytest.fixture(scope="module")
def gpu_check():
    """bench/gpu_check.py imported in this process (its --print-config runs nothing: no subprocess needed)."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def print_config(gpu_check, capsys, *argv: str) -> dict:
    assert gpu_check.main(["--print-config", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_default_settings_are_the_thesis_preset(gpu_check, capsys, monkeypatch):
    from videocontrast.config import load_config

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = print_config(gpu_check, capsys)
    s, cfg = out["settings"], out["config"]
    thesis = load_config("ucf101-simclr", ["data.root=UCF101"])  # what the preset says, read from it
    assert s["preset"] == "ucf101-simclr" and s["smoke"] is False and s["from_flags"] == []
    assert (s["backbone"], s["clip_len"], s["size"], s["decode_size"], s["batch"], s["workers"]) == (
        thesis.model.backbone, thesis.data.clip_len, thesis.data.size, thesis.data.decode_size,
        thesis.optim.batch_size, thesis.data.num_workers) == ("hara_r3d_18", 16, 224, 240, 128, 8)
    assert s["clip"] == "16x224x224" and s["batch_per_process"] == 128 and s["precision"] == "bf16"
    assert s["compile"] is True
    # the run's Config is the preset's, on the synthetic dataset at the decode size
    assert cfg["preset"] == "ucf101-simclr" and cfg["model"]["backbone"] == "hara_r3d_18"
    assert cfg["method"] == {**cfg["method"], "name": "simclr", "temperature": thesis.method.temperature}
    assert (cfg["optim"]["name"], cfg["optim"]["batch_size"], cfg["aug"]["max_shift"]) == ("adam", 128, 8)
    assert (cfg["data"]["dataset"], cfg["data"]["synthetic_size"], cfg["data"]["num_workers"]) == ("synthetic", 240, 8)
    # a whole pipeline epoch of the global batch, and every check within the 8 minutes with start-up
    assert s["pipeline_steps"] == 16 and cfg["train"]["max_steps_per_epoch"] == 16
    assert s["time_limit_s"] == 480 and sum(out["budgets_s"].values()) <= 480 - 40


def test_shape_flags_override_the_preset(gpu_check, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    s = print_config(gpu_check, capsys, "--backbone", "r3d_18", "--size", "112", "--decode-size", "128",
                     "--batch", "64", "--workers", "4")["settings"]
    assert (s["backbone"], s["clip"], s["decode_size"], s["batch"], s["workers"]) == (
        "r3d_18", "16x112x112", 128, 64, 4)
    assert s["preset"] == "ucf101-simclr" and s["precision"] == "bf16"  # the rest is still the preset's
    assert sorted(s["from_flags"]) == ["backbone", "batch", "decode_size", "size", "workers"]
    # --batch is the global batch: under torchrun each process gets its share
    monkeypatch.setenv("WORLD_SIZE", "4")
    s = print_config(gpu_check, capsys, "--smoke", "--batch", "16")["settings"]
    assert (s["backbone"], s["batch"], s["batch_per_process"], s["world_size"]) == ("r3d_small", 16, 4, 4)
    # a shorter time limit (gpu_check.sh's first of two passes) scales the budgets down to fit
    monkeypatch.delenv("WORLD_SIZE")
    out = print_config(gpu_check, capsys, "--time-limit", "240")
    assert sum(out["budgets_s"].values()) <= 240 - gpu_check.RESERVE_S
