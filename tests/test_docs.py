"""What a new user relies on: the license metadata, `pytest -m slow`, flags' help, and the README's facts that can
break (the Quickstart's commands, its install order, its length, the links of README.md and docs/)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from videocontrast.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# The first line of a license file -> its SPDX identifier.
LICENSE_TITLES = {"MIT License": "MIT", "Apache License": "Apache-2.0", "BSD 3-Clause License": "BSD-3-Clause",
                  "BSD 2-Clause License": "BSD-2-Clause", "ISC License": "ISC"}


def test_pyproject_license_agrees_with_the_license_file():
    license_ = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    spdx = license_ if isinstance(license_, str) else license_.get("text")
    first = next(line.strip() for line in (REPO / "LICENSE").read_text().splitlines() if line.strip())
    assert LICENSE_TITLES.get(first) == spdx, (first, license_)


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_pytest_m_slow_selects_the_slow_tests_and_a_plain_run_skips_them():
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


def test_pretrain_help_shows_a_runnable_module():
    text = _help("pretrain")
    assert "-m videocontrast pretrain" in text and "videocontrast.cli" not in text


def _quickstart() -> str:
    text = README.read_text()
    start = text.index("## Quickstart")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _code_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", markdown, flags=re.S | re.M)


def _commands(text: str) -> list[list[str]]:
    """Each non-comment shell line that runs pytest, split into words."""
    return [shlex.split(line) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#") and "pytest" in line]


def test_quickstart_runs_the_test_command_ci_runs():
    ci = _commands((REPO / ".ci" / "run").read_text())
    assert len(ci) == 1, ci
    readme = [cmd for block in _code_blocks(_quickstart()) for cmd in _commands(block)]
    assert ci[0] in readme, (ci, readme)


def test_quickstart_installs_the_cpu_build_before_the_package():
    cpu = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    blocks = [b for b in _code_blocks(_quickstart()) if cpu in b]
    assert blocks, "no Quickstart command installs PyTorch's CPU build"
    assert all(cpu in b and b.index(cpu) < b.find("pip install -e .") for b in blocks), blocks


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)  # links inside code are not links
    targets = re.findall(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("doc", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_to_files_that_exist(doc):
    missing = [t for t in _relative_links(doc) if not (doc.parent / t.split("#")[0]).exists()]
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"
