"""Issue 20: hostile or careless input to embed, search and export (items 4, 7-11, 19, 21, 23, 24).

Each test states what a user would see (exit code, the one line on stderr, the files on disk, the rows of the
table) and checks it against an independent reference: hand-counted rows, NumPy brute-force search over the
embeddings on disk, the features of the weights that were exported.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import videocontrast as vc
from videocontrast.build.components import method_from_config
from videocontrast.cli import build_parser, main
from videocontrast.config import load_config
from videocontrast.search.embed import embed_collection, read_inputs, read_table
from videocontrast.engine.checkpoint import save_checkpoint
from videocontrast.search.query import load_collection

from test_embed import video_setup
from test_export import TINY, make_checkpoint, one_line_error

pytest.importorskip("pyarrow", reason="the table is Parquet: pip install 'videocontrast[search]'")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    return video_setup(tmp_path_factory.mktemp("hostile"), (12, 16, 20, 14, 18), seed0=30, by_class=False)


def _embed(setup, root, out: Path, **kw) -> Path:
    return embed_collection(setup["ckpt"], root, out, clips=2, progress=False, **kw)


def _videos(setup, dest: Path, names: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(setup["videos"] / name, dest / name)
    return dest


def _hits(out: str) -> list[str]:
    """The paths of ``search``'s printed hits."""
    return [line.split()[-1] for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]


def _brute(folder: Path, row: int, k: int) -> list[str]:
    emb = np.load(folder / "embeddings.npy").astype(np.float32)
    paths = list(read_table(folder)["path"])
    return [paths[i] for i in np.argsort(-(emb @ emb[row]), kind="stable")[:k]]


# --- 4: roots from the usable rows only --------------------------------------------------------------------

def test_an_unreadable_manifest_line_does_not_widen_the_roots(setup, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{setup['videos'] / 'v0.mp4'},a\n/etc/passwd,b\n{setup['videos'] / 'v1.mp4'},a\n")
    with pytest.warns(UserWarning, match="/etc/passwd"):
        out = _embed(setup, manifest, tmp_path / "o")
    meta = json.loads((out / "meta.json").read_text())
    assert [u["path"] for u in meta["unreadable"]] == ["/etc/passwd"]
    assert meta["roots"] == [str(setup["videos"].resolve())]  # was ["/"]


def test_rows_in_unrelated_folders_do_not_make_the_root_their_common_ancestor(tmp_path):
    from videocontrast.search.embed import usable_roots
    a, b, nested = tmp_path / "data" / "a", tmp_path / "home" / "b", tmp_path / "data" / "a" / "sub"
    paths = [str(a / "x.mp4"), str(b / "y.mp4"), str(nested / "z.mp4"), str(a / "w.mp4")]
    # commonpath of these would be tmp_path, which holds folders that no row is in
    assert usable_roots(paths) == sorted([str(a.resolve()), str(b.resolve())])


# --- 7: an index built for another table is never used ------------------------------------------------------

def test_reembedding_with_index_none_drops_the_stale_index(setup, tmp_path, capsys):
    videos = _videos(setup, tmp_path / "v", ["v0.mp4", "v1.mp4", "v2.mp4"])
    out = _embed(setup, videos, tmp_path / "o")
    assert (out / "index.faiss").is_file()
    _videos(setup, videos, ["v3.mp4", "v4.mp4"])  # 2 more files, then embed again without an index
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(videos), "--out", str(out),
                 "--clips", "2", "--index", "none"]) == 0
    assert not (out / "index.faiss").exists() and not (out / "index.json").exists()
    capsys.readouterr()
    for row in range(5):
        assert main(["search", str(out), f"row:{row}", "-k", "5"]) == 0
        assert _hits(capsys.readouterr().out) == _brute(out, row, 5)  # the old 3-row index gave 3 wrong rows


def test_a_kill_between_the_table_and_the_index_leaves_no_stale_index(setup, tmp_path, monkeypatch, capsys):
    import videocontrast.search.embed as embed_mod

    videos = _videos(setup, tmp_path / "v", ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4", "v4.mp4"])
    out = _embed(setup, videos, tmp_path / "o")
    (videos / "v4.mp4").unlink()
    (videos / "v3.mp4").unlink()

    def killed(*a, **k):
        raise KeyboardInterrupt  # killed after meta.json, before the new index

    monkeypatch.setattr(embed_mod, "build_index", killed)
    with pytest.raises(KeyboardInterrupt):
        _embed(setup, videos, out)
    assert len(read_table(out)["path"]) == 3
    capsys.readouterr()
    assert main(["search", str(out), "row:0", "-k", "3"]) == 0  # the old 5-row index: IndexError traceback
    assert _hits(capsys.readouterr().out) == _brute(out, 0, 3)


@pytest.mark.parametrize("other", ["larger", "same-size"])
def test_an_index_of_another_table_is_not_used(other, setup, tmp_path, capsys):
    out = _embed(setup, _videos(setup, tmp_path / "v", ["v0.mp4", "v1.mp4", "v2.mp4"]), tmp_path / "o")
    names = ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4", "v4.mp4"] if other == "larger" else ["v2.mp4", "v3.mp4",
                                                                                           "v4.mp4"]
    foreign = _embed(setup, _videos(setup, tmp_path / "w", names), tmp_path / "f")
    for name in ("index.faiss", "index.json"):  # e.g. a folder put together from two copies
        shutil.copy(foreign / name, out / name)
    capsys.readouterr()
    assert main(["search", str(out), "row:0", "-k", "3"]) == 0
    captured = capsys.readouterr()
    assert _hits(captured.out) == _brute(out, 0, 3)
    [note] = captured.err.splitlines()
    assert note.startswith("videocontrast search: not using the index") and str(out / "index.faiss") in note
    with pytest.warns(UserWarning, match="not using the index"):  # the library (and serve): a warning
        assert load_collection(out).index is None


# --- 8: export sidecars -------------------------------------------------------------------------------------

def test_two_exports_with_one_stem_keep_their_own_description(setup, tmp_path, capsys):
    a = setup["ckpt"]
    b = make_checkpoint(tmp_path / "b.pt", "data.clip_len=8", seed=1)  # same network, other clip length
    st, pt = tmp_path / "m.safetensors", tmp_path / "m.pt"
    assert main(["export", str(a), "--out", str(st)]) == 0
    assert main(["export", str(b), "--out", str(pt)]) == 0
    assert (tmp_path / "m.safetensors.json").is_file() and (tmp_path / "m.pt.json").is_file()
    assert not (tmp_path / "m.json").exists()
    assert str(tmp_path / "m.safetensors.json") in capsys.readouterr().out
    ea, eb, ref = vc.load_encoder(st), vc.load_encoder(pt), vc.load_encoder(a)
    assert (ea.clip_len, eb.clip_len) == (4, 8)  # before: m.safetensors loaded with B's clip length 8
    x = torch.randn(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ea(x), ref(x))
    # weights replaced without their description: the SHA-1 in it refuses them, in one line
    shutil.copy(pt, tmp_path / "swap.pt")
    shutil.copy(tmp_path / "m.pt.json", tmp_path / "swap.pt.json")
    assert main(["export", str(a), "--out", str(tmp_path / "a.pt")]) == 0
    shutil.copy(tmp_path / "a.pt", tmp_path / "swap.pt")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "swap.pt"), "--out", str(tmp_path / "again.pt")]) == 2
    line = one_line_error(capsys.readouterr().err, "export")
    assert "swap.pt.json" in line and "SHA-1" in line


def test_an_old_style_description_is_read_only_for_its_own_weights(setup, tmp_path):
    pt = tmp_path / "m.pt"
    assert main(["export", str(setup["ckpt"]), "--out", str(pt)]) == 0
    (tmp_path / "m.pt.json").rename(tmp_path / "m.json")  # as written before the whole-name rule
    assert vc.load_encoder(pt).clip_len == 4
    other = make_checkpoint(tmp_path / "o.pt", "data.clip_len=8", seed=1)
    assert main(["export", str(other), "--out", str(tmp_path / "x.pt")]) == 0
    shutil.copy(tmp_path / "x.pt", pt)  # m.json now names other weights than m.pt holds: not m.pt's description
    from videocontrast.build.encoder import exported_metadata
    assert exported_metadata(pt) is None


# --- 9: duplicate manifest lines ----------------------------------------------------------------------------

def test_duplicate_manifest_lines_give_one_row(setup, tmp_path):
    v = setup["videos"] / "v1.mp4"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{v},x\n{v},y\n{setup['videos'] / 'v2.mp4'},z\n{v},z\n")
    with pytest.warns(UserWarning, match=r"2 duplicate line\(s\) skipped.*line 2 \(= line 1, label 'y' dropped"):
        out = _embed(setup, manifest, tmp_path / "o")
    t = read_table(out)
    assert [Path(p).name for p in t["path"]] == ["v1.mp4", "v2.mp4"] and list(t["label"]) == ["x", "z"]  # was 10
    assert len(np.load(out / "embeddings.npy")) == 2
    # --per-clip, 2 clips, the same file on 2 lines: 2 rows (before: 2 lines x 2 lines x 2 clips = 8)
    manifest.write_text(f"{v},x\n{v},x\n")
    with pytest.warns(UserWarning, match="duplicate"):
        out = _embed(setup, manifest, tmp_path / "pc", per_clip=True)
    assert list(read_table(out)["clip"]) == [0, 1]


# --- 10: relative roots -------------------------------------------------------------------------------------

def test_a_relative_root_stores_absolute_paths(setup, tmp_path, monkeypatch, capsys):
    _videos(setup, tmp_path / "data" / "x", ["v0.mp4", "v1.mp4"])
    (tmp_path / "data" / "list.txt").write_text("x/v0.mp4 a\nx/v1.mp4 b\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", "data/x", "--out", "f.emb",
                 "--clips", "2"]) == 0
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", "data/list.txt", "--out", "l.emb",
                 "--clips", "2"]) == 0
    want = [str(tmp_path / "data" / "x" / f"v{i}.mp4") for i in (0, 1)]
    monkeypatch.chdir(tmp_path / "elsewhere")
    for emb in ("f.emb", "l.emb"):
        folder = tmp_path / emb
        assert sorted(read_table(folder)["path"]) == want
        capsys.readouterr()
        assert main(["search", str(folder), "row:0", "-k", "2", "--prefix", str(tmp_path / "data" / "x")]) == 0
        assert sorted(_hits(capsys.readouterr().out)) == want  # before: nothing, exit 0
        assert all(os.path.isfile(p) for p in load_collection(folder).table["path"])


# --- 11: NaN weights; a label or prefix no row has ---------------------------------------------------------

def test_nan_weights_are_refused_naming_the_file(setup, tmp_path, capsys):
    cfg = load_config("demo", TINY)
    method = method_from_config(cfg)
    with torch.no_grad():
        next(method.parameters()).fill_(float("nan"))
    ckpt = tmp_path / "nan.pt"
    save_checkpoint(ckpt, {"kind": "pretrain", "model": method.state_dict(), "config": cfg.to_dict(), "epoch": 1})
    out = tmp_path / "o"
    assert main(["embed", "--checkpoint", str(ckpt), "--root", str(setup["videos"]), "--out", str(out)]) == 2
    err = "\n".join(x for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if "file/s" not in x)
    line = one_line_error(err, "embed")  # after the progress bar
    assert str(ckpt) in line and "non-finite" in line
    assert not (out / "embeddings.npy").exists()


def test_a_label_or_prefix_that_no_row_has_is_one_line(setup, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("".join(f"{setup['videos'] / f'v{i}.mp4'},{lab}\n" for i, lab in enumerate("abc")))
    out = _embed(setup, manifest, tmp_path / "o")
    capsys.readouterr()
    assert main(["search", str(out), "row:0", "--label", "nosuch"]) == 2
    line = one_line_error(capsys.readouterr().err, "search")
    assert "'nosuch'" in line and "'a', 'b', 'c'" in line
    assert main(["search", str(out), "row:0", "--prefix", str(tmp_path / "nowhere")]) == 2
    line = one_line_error(capsys.readouterr().err, "search")
    assert str(tmp_path / "nowhere") in line and "no row" in line
    assert main(["search", str(out), "row:0", "--label", "b", "-k", "1"]) == 0
    assert _hits(capsys.readouterr().out) == [str(setup["videos"] / "v1.mp4")]


# --- 19: export into a folder, read-only places ---------------------------------------------------------------

def _readonly(tmp_path: Path) -> Path:
    """A folder this process cannot write: chmod 0o555, or as root (whom chmod does not stop) /sys."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    probe = Path("/sys") / ".videocontrast-probe"
    try:
        probe.open("w").close()
    except OSError:
        return Path("/sys")
    probe.unlink()
    pytest.skip("running as root with no read-only folder to write into")


def test_export_into_a_folder_or_a_read_only_place_is_one_line(setup, tmp_path, capsys):
    target = tmp_path / "existing"
    target.mkdir()
    assert main(["export", str(setup["ckpt"]), "--out", str(target)]) == 2
    assert str(target) in one_line_error(capsys.readouterr().err, "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"] and not any(target.iterdir())
    ro = _readonly(tmp_path)
    before = sorted(os.listdir(ro))
    try:
        assert main(["export", str(setup["ckpt"]), "--out", str(ro / "m.pt")]) == 2
        assert str(ro / "m.pt") in one_line_error(capsys.readouterr().err, "export")
        assert sorted(os.listdir(ro)) == before
    finally:
        if ro != Path("/sys"):
            ro.chmod(0o755)


def test_search_html_into_a_read_only_place_is_one_line(setup, tmp_path, capsys):
    out = _embed(setup, _videos(setup, tmp_path / "v", ["v0.mp4", "v1.mp4"]), tmp_path / "o")
    ro = _readonly(tmp_path)
    before = sorted(os.listdir(ro))
    try:
        capsys.readouterr()
        assert main(["search", str(out), "row:0", "--html", str(ro / "page.html")]) == 2
        assert "--html" in one_line_error(capsys.readouterr().err, "search")
        assert sorted(os.listdir(ro)) == before
    finally:
        if ro != Path("/sys"):
            ro.chmod(0o755)


# --- 21: a damaged meta.json -----------------------------------------------------------------------------------

@pytest.mark.parametrize("meta", ["[1, 2, 3]", "not json {", '{"checkpoint": "x"}', "null", "clips-string"])
def test_a_damaged_meta_json_is_one_line(meta, setup, tmp_path, capsys):
    out = _embed(setup, _videos(setup, tmp_path / "v", ["v0.mp4", "v1.mp4"]), tmp_path / "o")
    if meta == "clips-string":
        meta = json.dumps({**json.loads((out / "meta.json").read_text()), "clips": "four"})
    (out / "meta.json").write_text(meta)
    capsys.readouterr()
    assert main(["search", str(out), str(tmp_path / "v" / "v0.mp4")]) == 2
    line = one_line_error(capsys.readouterr().err, "search")
    assert "meta.json" in line and "videocontrast embed" in line
    with pytest.raises(ValueError, match="meta.json"):  # what serve reads the folder with
        load_collection(out)


# --- 23: CSV and list files -------------------------------------------------------------------------------------

def test_csv_quoted_newline_in_a_path(setup, tmp_path):
    odd = tmp_path / "two\nlines.mp4"
    shutil.copy(setup["videos"] / "v0.mp4", odd)
    shutil.copy(setup["videos"] / "v1.mp4", tmp_path / "v1.mp4")
    m = tmp_path / "quoted.csv"
    m.write_text('"two\nlines.mp4",a\nv1.mp4,b\n')
    items, _ = read_inputs(m)
    assert [(i.path, i.label) for i in items] == [(str(odd), "a"), (str(tmp_path / "v1.mp4"), "b")]


def test_csv_header_in_another_order(tmp_path):
    m = tmp_path / "order.csv"
    m.write_text("label,end,path,start\nknit,1.5,v1.mp4,0.5\n")
    [item] = read_inputs(m)[0]
    assert (item.path, item.label, item.start, item.end) == (str(tmp_path / "v1.mp4"), "knit", 0.5, 1.5)


@pytest.mark.parametrize("name, text", [("bom.csv", "path,label\nv1.mp4,b\n"), ("bom.csv", "v1.mp4,b\n"),
                                        ("bom.txt", "v1.mp4 b\n")])
def test_a_utf8_bom_is_not_part_of_the_first_path(name, text, tmp_path):
    m = tmp_path / name
    m.write_bytes(b"\xef\xbb\xbf" + text.encode())
    [item] = read_inputs(m)[0]
    assert (item.path, item.label) == (str(tmp_path / "v1.mp4"), "b")


# --- 24: absurd numbers; a bad file among query videos ---------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [(["search", "x", "y", "-k", "1" + "0" * 20], "-k"),
                                        (["pretrain", "--out", "o", "--epochs", "1" + "0" * 21], "--epochs"),
                                        (["embed", "--checkpoint", "c", "--root", "r", "--out", "o", "--clips",
                                          "1" + "0" * 12], "--clips"),
                                        (["embed", "--checkpoint", "c", "--root", "r", "--out", "o", "--workers",
                                          "1000000"], "--workers"),
                                        (["pretrain", "--out", "o", "--epochs", "1e21"], "--epochs")])
def test_absurd_counts_are_refused_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and ("at most" in err or "whole number" in err)


def test_k_past_the_table_is_cut_with_a_note(setup, tmp_path, capsys):
    out = _embed(setup, _videos(setup, tmp_path / "v", ["v0.mp4", "v1.mp4", "v2.mp4"]), tmp_path / "o")
    capsys.readouterr()
    assert main(["search", str(out), "row:1", "-k", "1000"]) == 0
    captured = capsys.readouterr()
    assert _hits(captured.out) == _brute(out, 1, 3)
    assert "-k 1000 is more than the 3 rows" in captured.err


def test_a_bad_file_in_a_query_folder_is_reported_and_skipped(setup, tmp_path, capsys):
    out = _embed(setup, _videos(setup, tmp_path / "v", ["v0.mp4", "v1.mp4", "v2.mp4"]), tmp_path / "o")
    queries = _videos(setup, tmp_path / "q", ["v0.mp4", "v2.mp4"])
    (queries / "v1.mp4").write_bytes(b"not a video")  # between the two good ones
    capsys.readouterr()
    assert main(["search", str(out), str(queries), "-k", "1"]) == 0
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err) == 1 and str(queries / "v1.mp4") in err[0]
    assert _hits(captured.out) == [str(tmp_path / "v" / "v0.mp4"), str(tmp_path / "v" / "v2.mp4")]
    for good in ("v0.mp4", "v2.mp4"):
        (queries / good).write_bytes(b"neither")
    assert main(["search", str(out), str(queries)]) == 2
    assert "none of the 3 query videos" in one_line_error(capsys.readouterr().err, "search")


# --- 6 (for embed, index and export): no write through a link planted in the output folder -------------------

def _plant(folder: Path, names: list[str], victim: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(victim)


def test_export_never_writes_through_a_planted_link(setup, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "o"
    # the temporary names export used to write by name (found by a reviewer: 14 MB of weights went into the
    # victim), and the final names
    _plant(out, [".m.pt.tmp", ".m.pt.json.tmp", "m.pt.json"], victim)
    assert main(["export", str(setup["ckpt"]), "--out", str(out / "m.pt")]) == 0
    assert victim.read_text() == "keep me"
    assert (out / "m.pt").is_file() and not (out / "m.pt").is_symlink()
    assert not (out / "m.pt.json").is_symlink() and json.loads((out / "m.pt.json").read_text())["format"]
    assert vc.load_encoder(out / "m.pt").clip_len == 4


def test_embed_never_writes_through_a_planted_link(setup, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "o"
    _plant(out, [".embeddings.npy.tmp", "meta.json", ".index.json.tmp", ".index.faiss.tmp", "table.parquet"], victim)
    _plant(out / "parts", ["settings.json"], victim)
    _embed(setup, setup["videos"], out, index_kind="flat")
    assert victim.read_text() == "keep me"
    for name in ("embeddings.npy", "meta.json", "table.parquet", "index.faiss", "index.json"):
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert load_collection(out).index is not None
