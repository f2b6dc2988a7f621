"""serialization (and every path into torch.load): loading a file must never run code from it.

A crafted ``.pt`` whose unpickling would create a marker file is pushed through every way a file reaches
``torch.load``: the evaluation commands, ``embed``, ``search`` (through an index's metadata), the Python API,
``pretrain model.weights=``, and a ``checkpoints/last.pt`` planted in a run folder that ``pretrain --resume``,
``demo`` and ``ablate`` continue. Each must refuse the file with one line naming it, exit code 2, and the
marker must never appear. Checkpoints videocontrast writes must load with the restricted unpickler, and
older ones (NumPy RNG state) must still load without a full unpickle.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from videocontrast.cli import main
from videocontrast.config import ConfigError, load_config

PACKAGE = Path(__file__).resolve().parents[1] / "videocontrast"

# A tiny but real setup (as in test_engine.py): synthetic videos, r3d_small, 4 frames at 16x16.
TINY = ["data.synthetic_videos_per_class=3", "data.synthetic_frames=12", "data.synthetic_size=24",
        "data.clip_len=4", "data.decode_size=20", "data.size=16", "data.num_workers=0", "data.eval_clips=2",
        "aug.max_shift=2", "model.width=8", "model.head_hidden=32", "optim.batch_size=8",
        "optim.warmup_epochs=0", "train.epochs=1", "eval.cv_folds=2"]


class Touch:
    """Pickles as a call of ``Path.touch(marker)``: a full unpickle of the file creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny finished pretraining run, shared by the module: (its last.pt, the synthetic data root)."""
    from videocontrast.engine.train import pretrain

    data = tmp_path_factory.mktemp("data") / "synthetic"
    res = pretrain(load_config("demo", [f"data.root={data}", *TINY]), tmp_path_factory.mktemp("run") / "r",
                   quiet=True)
    return Path(res["checkpoint"]), data


def _trusted_load(path: Path) -> dict:
    """Our own test file: read it however its version needs (a full unpickle is fine for a file we wrote)."""
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(params=["fake", "stealth"])
def evil(request, tmp_path, real_run) -> tuple[Path, Path]:
    """(a booby-trapped .pt, the marker its unpickling would create).

    ``fake``: a small dict shaped like a checkpoint; ``stealth``: a complete real checkpoint (it would load
    and train fine) carrying one extra entry.
    """
    marker = tmp_path / "PWNED"
    if request.param == "fake":
        state = {"version": 1, "model": {"w": torch.zeros(1)}, "config": {}, "payload": Touch(marker)}
    else:
        state = {**_trusted_load(real_run[0]), "payload": Touch(marker)}
    path = tmp_path / "evil" / "model.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path, marker


def test_the_payload_is_live(evil):
    """Sanity: a full unpickle really does create the marker, so the tests below prove something."""
    path, marker = evil
    _trusted_load(path)
    assert marker.exists()


def _plant(run_dir: Path, evil_path: Path) -> None:
    """Put the booby-trapped file where a resumable run keeps its checkpoint."""
    ckpt = run_dir / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(evil_path.read_bytes())


def _cli_args(entry: str, path: Path, data: Path, out: Path) -> tuple[list[str], str]:
    """The command line that makes ``entry`` read ``path``, and the file name the refusal must show."""
    cfg = ["--config", "demo", f"data.root={data}", *TINY]
    if entry in ("linear", "knn", "retrieve", "finetune"):
        return [entry, "--checkpoint", str(path), "--out", str(out), *cfg], str(path)
    if entry == "supervised-planted":  # a cached supervised baseline in the output folder
        planted = out / "supervised" / "checkpoints" / "last.pt"  # the baseline's run folder
        planted.parent.mkdir(parents=True)
        planted.write_bytes(path.read_bytes())
        return ["knn", "--checkpoint", "supervised", "--out", str(out), *cfg], str(planted)
    if entry == "embed":
        return ["embed", "--checkpoint", str(path), "--root", str(data / "test"), "--out", str(out / "i.emb")], \
            str(path)
    if entry == "search":
        from videocontrast.search.embed import TABLE_COLUMNS, write_table

        index = out / "videos.emb"  # an embedding folder whose meta.json points at the planted file
        index.mkdir(parents=True)
        np.save(index / "embeddings.npy", np.eye(2, dtype=np.float32))
        write_table([{c: 0 for c in TABLE_COLUMNS} | {"path": p, "label": "", "fingerprint": ""}
                     for p in ("a.mp4", "b.mp4")], index)
        (index / "meta.json").write_text(json.dumps({"checkpoint": str(path), "clips": 2, "unreadable": []}))
        query = sorted((data / "test").rglob("*.mp4"))[0]
        return ["search", str(index), str(query)], str(path)
    if entry == "pretrain-weights":
        return ["pretrain", "--out", str(out), *cfg, f"model.weights={path}"], str(path)
    if entry == "pretrain-resume":
        _plant(out, path)
        return ["pretrain", "--resume", "--out", str(out), *cfg], str(out / "checkpoints" / "last.pt")
    if entry == "demo":
        _plant(out / "pretrain", path)
        return ["demo", "--out", str(out), f"data.root={data}", *TINY], str(out / "pretrain" / "checkpoints" / "last.pt")
    if entry == "ablate":
        cell = out / "cells" / "temporal-none" / "pretrain"
        _plant(cell, path)
        return ["ablate", "--config", "demo", "--grid", "aug.temporal=none", "--out", str(out), "--eval", "knn",
                f"data.root={data}", *TINY], str(cell / "checkpoints" / "last.pt")
    raise AssertionError(entry)


ENTRIES = ["linear", "knn", "retrieve", "finetune", "supervised-planted", "embed", "search", "pretrain-weights",
           "pretrain-resume", "demo", "ablate"]


def _one_line_error(err: str, command: str, path: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith(f"videocontrast {command}: error: "), lines[0]
    assert path in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("entry", ENTRIES)
def test_cli_refuses_a_booby_trapped_file(entry, evil, real_run, tmp_path, capsys):
    path, marker = evil
    args, shown = _cli_args(entry, path, real_run[1], tmp_path / "out")
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    assert not marker.exists(), f"{entry}: code from the file ran"
    assert code == 2
    line = _one_line_error(err, args[0], shown)
    assert "refus" in line and "pathlib" in line  # says why, naming what the file would have called


def test_python_api_refuses(evil):
    import videocontrast as vc
    from videocontrast.engine.checkpoint import UnsafeCheckpointError, load_checkpoint
    from videocontrast.models import build_backbone

    path, marker = evil
    for load in (vc.load_encoder, load_checkpoint, lambda p: build_backbone("r3d_small", width=8, weights=str(p))):
        with pytest.raises(UnsafeCheckpointError, match=str(path)) as info:
            load(path)
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    assert not marker.exists()


def test_legacy_torch_format_is_refused_too(tmp_path):
    """Files in torch's pre-1.6 (non-zip) format go through the same restricted unpickler."""
    from videocontrast.engine.checkpoint import UnsafeCheckpointError, load_checkpoint

    marker, path = tmp_path / "PWNED", tmp_path / "old.pt"
    torch.save({"model": {}, "config": {}, "x": Touch(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=str(path)):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoints_we_write_need_no_full_unpickle(real_run):
    """Everything in a v2 checkpoint (RNG states included) is tensors and plain Python values."""
    from videocontrast.engine.checkpoint import CHECKPOINT_VERSION, load_checkpoint

    path = real_run[0]
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    state = torch.load(path, map_location="cpu", weights_only=True)  # no allowlist needed
    assert state["version"] == CHECKPOINT_VERSION == 2
    assert load_checkpoint(path)["epoch"] == 1


def _as_version_1(state: dict) -> dict:
    """The layout videocontrast 1 wrote: NumPy RNG state tuple (with an ndarray), NumPy float learning rate."""
    np.random.seed(123)
    random.seed(123)
    old = {**state, "version": 1,
           "rng": {**state["rng"], "python": random.getstate(), "numpy": np.random.get_state()}}
    for group in old["optimizer"]["param_groups"]:
        group["lr"] = np.float64(group["lr"])
    return old


def test_version_1_checkpoint_loads_without_full_unpickle_and_restores_rng(real_run, tmp_path):
    from videocontrast.engine.checkpoint import load_checkpoint, set_rng_state

    v1 = _as_version_1(_trusted_load(real_run[0]))
    expect_np, expect_py = np.random.rand(4), random.random()  # draws right after the saved state
    path = tmp_path / "v1.pt"
    torch.save(v1, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path)  # needs NumPy globals: a real v1 file
    state = load_checkpoint(path)
    assert state["version"] == 2  # upgraded in memory
    np.random.seed(0)
    random.seed(0)
    set_rng_state(state["rng"])
    np.testing.assert_array_equal(np.random.rand(4), expect_np)
    assert random.random() == expect_py
    assert all(type(g["lr"]) is float for g in state["optimizer"]["param_groups"])


def test_version_1_run_resumes(real_run, tmp_path):
    from videocontrast.engine.train import pretrain

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(_as_version_1(_trusted_load(real_run[0])), run / "checkpoints" / "last.pt")
    cfg = load_config("demo", [f"data.root={real_run[1]}", *TINY, "train.epochs=2"])
    res = pretrain(cfg, run, resume=True, quiet=True)
    # loaded and restored (optimiser, RNG), then trained on: more epochs are the one schedule change a resume
    # accepts (the run stored 1 epoch; before issue 9 the requested 2 were silently ignored)
    assert res["epochs"] == 2 and [h["epoch"] for h in res["history"]] == [1, 2]


@pytest.mark.parametrize("case", ["truncated", "garbage", "newer", "state-dict"])
def test_unreadable_checkpoint_is_one_line_not_a_traceback(case, real_run, tmp_path, capsys):
    path = tmp_path / "x.pt"
    if case == "truncated":
        path.write_bytes(real_run[0].read_bytes()[:4000])
    elif case == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif case == "newer":
        torch.save({"version": 99, "model": {}, "config": {}}, path)
    else:  # a plain state dict is external weights for `knn`, but `embed` needs a videocontrast checkpoint
        torch.save({"w": torch.zeros(1)}, path)
    code = main(["embed", "--checkpoint", str(path), "--root", str(real_run[1] / "test"),
                 "--out", str(tmp_path / "i.emb")])
    assert code == 2
    _one_line_error(capsys.readouterr().err, "embed", str(path))


# --- YAML ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["optim: {lr: [1, 2\n", "data:\n  size: 8\n   clip_len: 4\n", "- a\n- b\n",
                                  "\x00\x01binary"])
def test_malformed_yaml_config_is_one_line_naming_the_file(text, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)) as info:
        load_config(str(path))
    assert "\n" not in str(info.value)
    assert main(["knn", "--checkpoint", "random", "--out", str(tmp_path / "o"), "--config", str(path)]) == 2
    _one_line_error(capsys.readouterr().err, "knn", str(path))


def test_yaml_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.yaml"
    path.write_text(f"optim:\n  lr: !!python/object/apply:pathlib.Path.touch [{json.dumps(str(marker))}]\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(str(path))
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config("demo", [f"optim.lr=!!python/object/apply:pathlib.Path.touch [{json.dumps(str(marker))}]"])
    assert not marker.exists()


def test_malformed_yaml_override_is_a_config_error():
    with pytest.raises(ConfigError, match="model.layers"):
        load_config("demo", ["model.layers=[1, 2"])


# --- the package source -------------------------------------------------------------------------------

def _calls(name: str):
    """(file, call node) for every call of ``name`` (dotted, e.g. ``torch.load``) in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path, node


def test_every_torch_load_in_the_package_is_weights_only():
    found = list(_calls("torch.load"))
    assert found
    for path, node in found:
        kw = {k.arg: k.value for k in node.keywords}
        assert "weights_only" in kw and ast.unparse(kw["weights_only"]) == "True", f"{path}:{node.lineno}"
    for bad in ("pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "yaml.full_load"):
        assert not list(_calls(bad)), bad
    for path, node in _calls("np.load"):
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert kw.get("allow_pickle") == "False", f"{path}:{node.lineno}"
