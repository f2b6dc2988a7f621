"""videocontrast.fileio: files are written whole under a fresh name and renamed, never through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from videocontrast.fileio import SymlinkRefusedError, atomic_write, atomic_write_text, open_append, temporary_sibling


def test_a_link_at_the_name_is_replaced_and_its_target_kept(tmp_path):
    victim, name = tmp_path / "victim", tmp_path / "out.json"
    victim.write_text("keep me")
    name.symlink_to(victim)
    atomic_write_text(name, "new")
    assert victim.read_text() == "keep me"
    assert not name.is_symlink() and name.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim"]  # no temporary left


def test_a_temporary_name_swapped_for_a_link_is_never_written_through(tmp_path):
    """Someone who can write in the folder replaces the temporary file by a link while it is written: the
    content goes to the file that was created (by descriptor), the victim is untouched, and the rename is
    refused, so the name keeps its old content."""
    victim, name = tmp_path / "victim", tmp_path / "out.bin"
    victim.write_bytes(b"keep me")
    name.write_bytes(b"old")

    def write(f):
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".out.bin.tmp")]
        tmp.unlink()
        tmp.symlink_to(victim)
        f.write(b"new")

    with pytest.raises(OSError, match="replaced while"):
        atomic_write(name, write)
    assert victim.read_bytes() == b"keep me" and name.read_bytes() == b"old"


def test_a_failed_write_leaves_nothing(tmp_path):
    name = tmp_path / "out.txt"

    def write(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(name, write)
    assert list(tmp_path.iterdir()) == []


def test_the_file_gets_the_mode_open_would_give(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    with temporary_sibling(tmp_path / "x") as (fd, tmp):
        os.write(fd, b"x")
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o666 & ~umask


def test_appending_refuses_a_link(tmp_path):
    victim, name = tmp_path / "victim", tmp_path / "metrics.jsonl"
    victim.write_text("keep me\n")
    name.symlink_to(victim)
    with pytest.raises(SymlinkRefusedError, match="metrics.jsonl"):
        open_append(name, "metrics file")
    assert victim.read_text() == "keep me\n"


def test_evaluation_results_reports_and_plots_are_not_written_through_links(tmp_path):
    """results.json of linear/knn/finetune/retrieve and every plot go through fileio (a reviewer found
    results.json and finetune.json written through a planted link after the run files were fixed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from videocontrast.eval.run import write_results
    from videocontrast.fileio import save_figure

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    for name in ("results.json", "plot.png"):
        (tmp_path / name).symlink_to(victim)
    write_results(tmp_path, {"top1": 0.5})
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "plot.png", dpi=50)
    assert victim.read_text() == "keep me"
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"top1": 0.5' in (tmp_path / "results.json").read_text()
