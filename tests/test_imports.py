"""The package's import graph has no cycle, counting imports inside functions too (style rule 9); importing the
config or parsing the command line loads no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "videocontrast"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``name`` imports anywhere in its file (module level and inside functions)."""
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub when it is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import a.b.c` of a non-module attribute: the closest module
                t = t.rpartition(".")[0]
            found.add(t)
            # Importing a.b.c runs a/b/__init__ first: a dependency on that package's own imports too (the
            # root package's __init__ is lazy, and a module's own packages are already being imported).
            parts = t.split(".")
            found.update(".".join(parts[:i]) for i in range(2, len(parts)))
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
    return {t for t in found if t and t not in own_packages}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_relative_imports_resolve(tmp_path):
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # spot checks that the walk sees both import forms and function-level imports
    assert "videocontrast.config" in graph["videocontrast.build.components"]
    assert "videocontrast.dist" in graph["videocontrast.methods.simclr"]
    assert "videocontrast.api" in graph["videocontrast"]  # the lazy import inside __getattr__


def test_no_import_cycle_in_the_package():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 30
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_import_downwards_only():
    """Nothing below the build layer knows about configs, the engine or evaluation; engine never imports
    evaluation code."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    leaves = [n for n in graph if n.startswith(("videocontrast.data", "videocontrast.transforms",
                                                 "videocontrast.models", "videocontrast.methods",
                                                 "videocontrast.losses", "videocontrast.dist",
                                                 "videocontrast.serialization"))]
    above = ("videocontrast.config", "videocontrast.build.components", "videocontrast.engine", "videocontrast.eval",
             "videocontrast.api", "videocontrast.cli")
    for n in leaves:
        assert not any(m.startswith(above) for m in graph[n]), (n, sorted(graph[n]))
    for n in (m for m in graph if m.startswith("videocontrast.engine")):
        assert not any(m.startswith(("videocontrast.eval", "videocontrast.api", "videocontrast.cli")) for m in graph[n]), n


def _loads_torch(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter leaves torch in ``sys.modules``."""
    probe = f"import sys\n{code}\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          cwd=PKG.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] == "True"


def test_the_torch_probe_sees_torch():
    assert _loads_torch("import videocontrast.names, torch")
    assert _loads_torch("import videocontrast as vc; vc.load_encoder")  # the lazy api does load it


def test_the_config_imports_no_torch():
    assert not _loads_torch("import videocontrast.config, videocontrast.names; import videocontrast as vc")
    # validating a config (the device and momentum checks included) needs no torch either
    assert not _loads_torch("from videocontrast.config import load_config; load_config('cpu-small')")


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["pretrain", "--help"], ["reproduce", "--help"],
                                  ["ablate", "--help"], ["pretrain", "--method", "nope", "--out", "x"]])
def test_the_cli_parser_imports_no_torch(argv):
    """``videocontrast --help`` (and a bad flag) answer without importing torch: each handler imports its module."""
    code = f"from videocontrast.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert not _loads_torch(code)


def test_each_name_list_is_one_object():
    """The torch modules import their lists from names.py (one definition), so the old names still work."""
    from videocontrast import export, methods, names, reproduce
    from videocontrast.data import cache, datasets, subsets
    from videocontrast.engine import device, optim
    from videocontrast.methods import moco
    from videocontrast.models import BACKBONES
    from videocontrast.transforms import spatial, temporal

    assert datasets.DATASET_NAMES is names.DATASET_NAMES and cache.CACHE_MODES is names.CACHE_MODES
    assert subsets.DEFAULT_VAL_FRACTION == names.DEFAULT_VAL_FRACTION
    assert device.PRECISIONS is names.PRECISIONS and optim.OPTIMIZERS is names.OPTIMIZERS
    assert methods.METHODS is names.METHODS and methods.BN_MODES is moco.BN_MODES is names.BN_MODES
    assert methods.check_momentum is names.check_momentum
    assert spatial.SPATIAL_MODES is names.SPATIAL_MODES
    assert temporal.TEMPORAL_TRANSFORMS is names.TEMPORAL_TRANSFORMS
    assert export.EXPORT_FORMATS is names.EXPORT_FORMATS and reproduce.SCALES is names.SCALES
    assert tuple(BACKBONES) == names.BACKBONE_NAMES
