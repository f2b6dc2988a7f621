"""`--dataset folder` on class subfolders without train/ and test/ (issue 22, "what a newcomer met"): the split is
made for the user (stratified by class, whole name groups, seeded by train.seed), said in one line, written to the
run folder and reused on a rerun; train/ and test/ folders keep working as before.

Every test builds tiny videos and checks what a user sees: exit codes, the printed line, the split files.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from test_data_hostile import TINY, write_video
from videocontrast.cli import main
from videocontrast.data.reports import reset_reports

CLASSES = ("Diving", "Skijet")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Commands without a run folder (knn, linear) keep their split in the cache: a fresh one per test."""
    monkeypatch.setenv("VIDEOCONTRAST_CACHE", str(tmp_path / "cache"))
    reset_reports()


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    """UCF101-like names, no train/ or test/: 2 classes x 5 source groups (gXX) x 2 clips (cYY) = 20 videos."""
    root = tmp_path_factory.mktemp("ucf_like")
    seed = 0
    for name in CLASSES:
        for g in range(1, 6):
            for c in range(1, 3):
                seed += 1
                write_video(root / name / f"v_{name}_g{g:02d}_c{c:02d}.mp4", 32, 24, 10, seed=seed)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _listed(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _group(rel: str) -> str:
    return re.match(r".*_(g\d+)_c\d+", rel).group(1) + rel.split("/")[0]


def test_demo_splits_a_class_folder_by_itself_and_reuses_the_split(class_folder, tmp_path, capsys):
    root = _copy(class_folder, tmp_path / "videos")
    out = tmp_path / "demo"
    args = ["demo", "--dataset", "folder", "--root", str(root), "--out", str(out), *TINY]
    assert main(args) == 0
    said = capsys.readouterr().out
    test_file = out / "splits" / "test.txt"
    test, train = _listed(test_file), _listed(out / "splits" / "train.txt")
    line = (f"no train/ and test/ folders under {root}: split 20 videos by class, {len(test)} for test, grouped by "
            f"name; written to {test_file}")
    assert line in said
    assert len(test) + len(train) == 20 and not set(test) & set(train)
    for name in CLASSES:  # stratified: each class on both sides, about 30% of its 10 videos (groups of 2) held out
        assert 2 <= sum(t.startswith(name + "/") for t in test) <= 4
    assert not {_group(t) for t in test} & {_group(t) for t in train}  # no source group on both sides
    res = json.loads((out / "results.json").read_text())
    assert (res["dataset"]["train_videos"], res["dataset"]["test_videos"]) == (len(train), len(test))

    # A rerun reads the split back, even when a video has come since: the same test videos, not a new draw.
    write_video(root / "Diving" / "v_Diving_g09_c01.mp4", 32, 24, 10, seed=99)
    before = test_file.read_text()
    reset_reports()  # a rerun is a new process
    assert main(args) == 0
    said = capsys.readouterr().out
    assert (f"no train/ and test/ folders under {root}: using the split in {test_file} (20 videos, {len(test)} for "
            "test)") in said
    assert test_file.read_text() == before


def test_eval_command_without_a_run_split_writes_one_and_reads_it_again(class_folder, tmp_path, capsys):
    data = ["--dataset", "folder", "--root", str(class_folder), "--config", "demo", *TINY]
    assert main(["knn", "--checkpoint", "random", *data, "--out", str(tmp_path / "knn1")]) == 0
    said = capsys.readouterr().out
    m = re.search(r"split 20 videos by class, \d+ for test, grouped by name; written to (\S+)", said)
    assert m, said
    first = Path(m.group(1)).read_text()
    reset_reports()  # a new command is a new process
    assert main(["knn", "--checkpoint", "random", *data, "--out", str(tmp_path / "knn2")]) == 0
    assert f"using the split in {m.group(1)}" in capsys.readouterr().out
    assert Path(m.group(1)).read_text() == first
    # a split a run wrote is given back with --splits: read as it is, nothing drawn or said
    reset_reports()
    assert main(["knn", "--checkpoint", "random", *data, "--splits", str(Path(m.group(1)).parent), "--out",
                 str(tmp_path / "knn_given")]) == 0
    assert "no train/ and test/ folders" not in capsys.readouterr().out
    # another seed draws another split, in its own file
    reset_reports()
    assert main(["knn", "--checkpoint", "random", *data, "train.seed=7", "--out", str(tmp_path / "knn3")]) == 0
    m7 = re.search(r"written to (\S+)", capsys.readouterr().out)
    assert m7 and m7.group(1) != m.group(1)


def test_split_is_seeded_stratified_and_keeps_name_groups_whole(class_folder, tmp_path):
    from videocontrast.data.splits import dataset_records
    from videocontrast.data.subsets import plan_test_split

    records, classes, _ = dataset_records("folder", class_folder, None, 1, "all", False)
    a = plan_test_split(records, classes, class_folder, seed=0, fraction=0.3, folder=tmp_path / "a")
    b = plan_test_split(records, classes, class_folder, seed=0, fraction=0.3, folder=tmp_path / "b")
    assert (tmp_path / "a" / "test.txt").read_text() == (tmp_path / "b" / "test.txt").read_text()
    test_lines = (tmp_path / "a" / "test.txt").read_text().splitlines()
    assert a.made and b.made and a.videos == 20 and a.test_videos == len(test_lines)
    seeds = {(tmp_path / f"s{s}" / "test.txt").read_text()
             for s in range(6) if plan_test_split(records, classes, class_folder, s, 0.3, tmp_path / f"s{s}")}
    assert len(seeds) > 1  # the seed draws the groups
    # read back through the dataset layer: train and test as the files say
    test = dataset_records("folder", class_folder, tmp_path / "a", 1, "test", False)[0]
    train = dataset_records("folder", class_folder, tmp_path / "a", 1, "train", False)[0]
    assert len(test) == a.test_videos and len(train) == 20 - a.test_videos and {r.label for r in test} == {0, 1}
    again = plan_test_split(records, classes, class_folder, seed=0, fraction=0.3, folder=tmp_path / "a")
    assert not again.made and again.test_videos == a.test_videos
    with pytest.raises(ValueError, match="train.seed and data.test_fraction"):
        plan_test_split(records, classes, class_folder, seed=1, fraction=0.3, folder=tmp_path / "a")


def test_train_and_test_folders_work_as_before(tmp_path, capsys):
    root = tmp_path / "given"
    for subset, n in (("train", 3), ("test", 2)):
        for name in CLASSES:
            for i in range(n):
                write_video(root / subset / name / f"{name}{i}.mp4", 32, 24, 10, seed=i)
    assert main(["knn", "--checkpoint", "random", "--dataset", "folder", "--root", str(root), "--config", "demo",
                 *TINY, "--out", str(tmp_path / "knn")]) == 0
    said = capsys.readouterr().out
    assert "no train/ and test/ folders" not in said and not (tmp_path / "cache" / "folder-splits").exists()


def test_an_impossible_test_fraction_is_one_line(class_folder, tmp_path, capsys):
    code = main(["knn", "--checkpoint", "random", "--dataset", "folder", "--root", str(class_folder), "--config",
                 "demo", *TINY, "data.test_fraction=1.5", "--out", str(tmp_path / "knn")])
    err = capsys.readouterr().err
    assert code == 2 and "data.test_fraction=1.5" in err and len(err.strip().splitlines()) == 1


def test_a_class_too_small_to_split_is_named(tmp_path, capsys):
    root = tmp_path / "small"
    for i in range(4):
        write_video(root / "Diving" / f"v_Diving_g{i + 1:02d}_c01.mp4", 32, 24, 10, seed=i)
    write_video(root / "Skijet" / "v_Skijet_g01_c01.mp4", 32, 24, 10, seed=9)
    code = main(["knn", "--checkpoint", "random", "--dataset", "folder", "--root", str(root), "--config", "demo",
                 *TINY, "--out", str(tmp_path / "knn")])
    err = capsys.readouterr().err
    assert code == 2 and "'Skijet'" in err and len(err.strip().splitlines()) == 1


def test_one_class_folder_says_where_the_classes_are(tmp_path, capsys):
    root = tmp_path / "nested"
    for name in CLASSES:
        for i in range(3):
            write_video(root / "videos" / name / f"v_{name}_g{i + 1:02d}_c01.mp4", 32, 24, 10, seed=i)
    code = main(["knn", "--checkpoint", "random", "--dataset", "folder", "--root", str(root), "--config", "demo",
                 *TINY, "--out", str(tmp_path / "knn")])
    err = capsys.readouterr().err
    assert code == 2 and "videos" in err and "--root" in err and len(err.strip().splitlines()) == 1
