"""Issue 9, section 4: small things a new user tripped over (license, `pytest -m slow`, help texts, README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from videocontrast.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def test_license_file_matches_pyproject():
    text = (REPO / "LICENSE").read_text()
    license_ = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert license_ == {"text": "MIT"}
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 videocontrast authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_pytest_m_slow_selects_the_slow_tests_and_a_plain_run_skips_them():
    readme = (REPO / "README.md").read_text()
    assert "`pytest -m slow`" in readme  # the command the README gives
    proc = _pytest("-m", "slow", "--collect-only", "-q")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    selected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert any(line.startswith("tests/test_slow.py::") for line in selected), proc.stdout[-2000:]
    assert not any(line.startswith("tests/test_cli.py::") for line in selected)  # only the slow ones
    plain = _pytest("-q", "-rs", "tests/test_slow.py")
    assert plain.returncode == 0, plain.stdout[-2000:]
    assert re.search(r"\d+ skipped", plain.stdout) and "pytest -m slow" in plain.stdout


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return sub.format_help()


@pytest.mark.parametrize("command, flag", [("pretrain", "--method"), ("pretrain", "--epochs"),
                                           ("search", "-k"), ("embed", "--clips"), ("ablate", "--epochs")])
def test_flags_say_what_they_do_and_their_default(command, flag):
    text = " ".join(_help(command).split())
    m = re.search(rf"(?:^| ){re.escape(flag)} [A-Z{{][^ ]*\s+(.*?)(?: -|$)", text)
    assert m and "default" in m.group(1), text


def test_pretrain_help_names_the_module_the_readme_uses():
    text = _help("pretrain")
    assert "-m videocontrast pretrain" in text and "videocontrast.cli" not in text


def test_readme_tells_cpu_only_users_how_to_get_the_cpu_build_first():
    readme = (REPO / "README.md").read_text()
    quick = readme[readme.index("## Quickstart"):readme.index("## What `videocontrast demo` does")]
    cpu = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in quick and quick.index(cpu) < quick.rindex("pip install -e .")
    assert "videocontrast export" in readme
