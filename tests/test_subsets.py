"""Training subsets (issue 21): source groups, the validation split, label subsets, their files and bad values."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import write_pattern_video
from videocontrast.cli import main
from videocontrast.data.splits import VideoRecord
from videocontrast.data.groups import read_source_csv, source_group, source_groups
from videocontrast.data.subsets import (LABELLED_SPLIT, SUBSETS_JSON, VAL_SPLIT, SubsetSpec, label_subset,
                                        plan_subsets, validation_split)

CLASSES = ["Archery", "Biking", "Diving"]


def ucf_records(root: Path, groups_per_class=(6, 5, 7), clips=4) -> list[VideoRecord]:
    """UCF101-style names v_Class_gXX_cYY under root/Class/ (files need not exist: nothing is decoded)."""
    return [VideoRecord(str(root / c / f"v_{c}_g{g:02d}_c{k:02d}.avi"), label)
            for label, (c, n) in enumerate(zip(CLASSES, groups_per_class))
            for g in range(1, n + 1) for k in range(1, clips + 1)]


def rel(records, root):
    return {str(Path(r.path).relative_to(root)) for r in records}


# ----------------------------------------------------------------------------- source groups


@pytest.mark.parametrize("relpath, dataset, group", [
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ucf101", "ApplyEyeMakeup_g08"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c05.avi", "ucf101", "ApplyEyeMakeup_g08"),
    # the real UCF101 quirk: folder HandstandPushups, files v_HandStandPushups_*
    ("HandstandPushups/v_HandStandPushups_g01_c02.avi", "ucf101", "HandStandPushups_g01"),
    # HMDB51: <source>_<action>_<body>_<camera>_<people>_<view>_<quality>_<clip>; the source may hold underscores
    ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "hmdb51", "April_09"),
    ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi", "hmdb51", "April_09"),
    ("wave/20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0.avi", "hmdb51", "20060723sfjffbartsinger"),
    # a folder: a short counter after _ or - is a clip of one recording ...
    ("cam/street_03.mp4", "folder", "street"),
    ("cam/street-c4.mp4", "folder", "street"),
    ("Skijet/v_Skijet_g01_c03.mp4", "folder", "Skijet_g01"),  # ucf101-tiny-mp4 is a plain folder
    # ... but no counter, a camera's 4-digit file number or the class folder's own name make a file its own group
    ("train/fight/fi001.mp4", "folder", "train/fight/fi001.mp4"),
    ("a/IMG_1234.mp4", "folder", "a/IMG_1234.mp4"),
    ("fight/fight_012.mp4", "folder", "fight/fight_012.mp4"),
    ("train/left/left_3.mp4", "synthetic", "train/left/left_3.mp4"),
])
def test_source_group_of_hand_written_names(relpath, dataset, group):
    assert source_group(relpath, dataset) == group


def test_clips_csv_source_group_column_wins_over_the_name(tmp_path):
    (tmp_path / "clips.csv").write_text("path,label,source_group,subset\n"
                                        "train/fight/fi001.mp4,fight,0,train\n"
                                        "train/noFight/nofi001.mp4,noFight,0,train\n"
                                        "train/fight/fi002.mp4,fight,7,train\n"
                                        "train/noFight/nofi150.mp4,noFight,,train\n")
    recs = [VideoRecord(str(tmp_path / p), 0) for p in ("train/fight/fi001.mp4", "train/noFight/nofi001.mp4",
                                                         "train/fight/fi002.mp4", "train/noFight/nofi150.mp4",
                                                         "train/fight/unlisted_02.mp4")]
    g = source_groups(recs, tmp_path, "folder")
    assert g[0] == g[1] != g[2]  # one YouTube video's fight and non-fight clips share a group
    assert g[3] == "train/noFight/nofi150.mp4"  # no listed source: its own group
    assert g[4] == "unlisted"  # not in the csv: the name rule
    assert read_source_csv(tmp_path / "nowhere") == {}


# ----------------------------------------------------------------------------- label subsets


def test_label_subset_is_class_balanced_deterministic_and_nested(tmp_path):
    recs = ucf_records(tmp_path)
    labels = [r.label for r in recs]
    keys = [r.path for r in recs]
    five = label_subset(labels, keys, seed=0, per_class=5)
    assert Counter(labels[i] for i in five) == {0: 5, 1: 5, 2: 5}
    np.testing.assert_array_equal(five, label_subset(labels, keys, seed=0, per_class=5))  # same seed: same subset
    assert set(five) != set(label_subset(labels, keys, seed=1, per_class=5))  # another seed: another subset
    assert set(label_subset(labels, keys, seed=0, per_class=2)) <= set(five)  # nested: 2 per class inside 5
    # the subset depends on the paths, not on the order the records come in
    order = np.random.default_rng(3).permutation(len(recs))
    shuffled = label_subset([labels[i] for i in order], [keys[i] for i in order], seed=0, per_class=5)
    assert {keys[order[i]] for i in shuffled} == {keys[i] for i in five}


def test_label_fraction_rounds_per_class_and_keeps_at_least_one(tmp_path):
    recs = ucf_records(tmp_path, groups_per_class=(6, 5, 1), clips=2)  # 12, 10 and 2 videos
    labels = [r.label for r in recs]
    pick = label_subset(labels, [r.path for r in recs], seed=0, fraction=0.1)
    assert Counter(labels[i] for i in pick) == {0: 1, 1: 1, 2: 1}  # round(1.2), round(1.0), max(1, round(0.2))
    pick = label_subset(labels, [r.path for r in recs], seed=0, fraction=0.25)
    assert Counter(labels[i] for i in pick) == {0: 3, 1: 3, 2: 1}  # round(3.0), round(2.5) = 3, round(0.5) = 1


# ----------------------------------------------------------------------------- the validation split


def test_validation_split_keeps_each_source_on_one_side_and_every_class_on_both(tmp_path):
    recs = ucf_records(tmp_path)
    labels = [r.label for r in recs]
    groups = source_groups(recs, tmp_path, "ucf101")
    val = validation_split(labels, groups, 0.2, seed=0, classes=CLASSES)
    train = np.setdiff1d(np.arange(len(recs)), val)
    assert not {groups[i] for i in val} & {groups[i] for i in train}  # no source on both sides
    for c in range(3):
        assert any(labels[i] == c for i in val) and any(labels[i] == c for i in train)
    assert 0.1 <= len(val) / len(recs) <= 0.35  # about 20%, in whole groups of 4
    np.testing.assert_array_equal(val, validation_split(labels, groups, 0.2, seed=0))
    assert set(val) != set(validation_split(labels, groups, 0.2, seed=1))


def test_validation_split_handles_groups_spanning_classes():
    # fight-detection: one YouTube video gives fight and non-fight clips
    labels = [0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1]
    groups = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f", "f"]
    val = validation_split(labels, groups, 0.3, seed=0)
    assert {groups[i] for i in val}.isdisjoint({groups[i] for i in set(range(12)) - set(val)})
    assert {labels[i] for i in val} == {0, 1}


def test_a_large_fraction_still_leaves_every_class_a_training_source(tmp_path):
    recs = ucf_records(tmp_path, groups_per_class=(6, 2, 7))
    labels, groups = [r.label for r in recs], source_groups(recs, tmp_path, "ucf101")
    val = set(validation_split(labels, groups, 0.9, seed=0).tolist())
    for c in range(3):
        assert any(labels[i] == c and i not in val for i in range(len(recs)))  # training keeps each class
        assert any(labels[i] == c and i in val for i in range(len(recs)))
    assert {groups[i] for i in val}.isdisjoint(groups[i] for i in range(len(recs)) if i not in val)


def test_a_class_with_a_single_source_cannot_be_split_and_is_named(tmp_path):
    recs = ucf_records(tmp_path, groups_per_class=(6, 1, 7))
    with pytest.raises(ValueError, match="'Biking' no validation video"):
        plan_subsets(recs, CLASSES, tmp_path, "ucf101", SubsetSpec(val_fraction=0.2), None)


def test_plan_never_puts_a_video_in_two_subsets_and_writes_then_reuses_its_files(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    recs = ucf_records(root)
    spec = SubsetSpec(val_fraction=0.2, labels_per_class=3, seed=0)
    plan = plan_subsets(recs, CLASSES, root, "ucf101", spec, out)
    assert not plan.train & plan.val
    assert {plan.groups[p] for p in plan.train}.isdisjoint({plan.groups[p] for p in plan.val})
    assert Counter(r.label for r in recs if r.path in plan.train) == {0: 3, 1: 3, 2: 3}
    # the files: UCF101 trainlist format, paths relative to the dataset root, 1-based labels
    lines = (out / LABELLED_SPLIT).read_text().splitlines()
    assert len(lines) == 9 and all(line.split()[1] in "123" for line in lines)
    assert {line.split()[0] for line in lines} == rel([r for r in recs if r.path in plan.train], root)
    assert {line.split()[0] for line in (out / VAL_SPLIT).read_text().splitlines()} == \
        rel([r for r in recs if r.path in plan.val], root)
    assert json.loads((out / SUBSETS_JSON).read_text())["labelled_videos"] == 9
    # reused: a dataset that gained videos since keeps the subset the files name
    more = recs + [VideoRecord(str(root / "Archery" / "v_Archery_g09_c01.avi"), 0)]
    again = plan_subsets(more, CLASSES, root, "ucf101", spec, out)
    assert again.train == plan.train and again.val == plan.val
    # other settings in the same folder: refused in one line
    with pytest.raises(ValueError, match="other settings") as e:
        plan_subsets(recs, CLASSES, root, "ucf101", SubsetSpec(val_fraction=0.2, labels_per_class=2), out)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="other settings"):
        plan_subsets(recs, CLASSES, root, "ucf101", SubsetSpec(), out)  # all labels over a folder of subsets
    # a listed video that is no longer a training video
    gone = [r for r in recs if r.path not in plan.train or r.label != 0] + \
        [r for r in recs if r.path in plan.train and r.label == 0][1:]
    with pytest.raises(ValueError, match="not a training video"):
        plan_subsets(gone, CLASSES, root, "ucf101", spec, out)


@pytest.mark.parametrize("spec, message", [
    (SubsetSpec(labels_per_class=50), "class 'Archery' has only 24 training video"),
    (SubsetSpec(labels_per_class=2, label_fraction=0.5), "both given"),
    (SubsetSpec(label_fraction=1.5), "--label-fraction 1.5: must be in \\(0, 1\\]"),
    (SubsetSpec(val_fraction=1.0), "--val 1: must be in \\(0, 1\\)"),
])
def test_bad_subsets_are_one_line_naming_the_problem(tmp_path, spec, message):
    recs = ucf_records(tmp_path, groups_per_class=(6, 5, 7))
    with pytest.raises(ValueError, match=message) as e:
        plan_subsets(recs, CLASSES, tmp_path, "ucf101", spec, None)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- the commands

TINY = ["data.synthetic_videos_per_class=6", "data.synthetic_frames=12", "data.synthetic_size=32",
        "data.clip_len=4", "data.decode_size=24", "data.size=16", "model.width=8", "model.head_hidden=32",
        "optim.batch_size=8", "data.num_workers=0", "eval.cv_folds=2"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return tmp_path_factory.mktemp("data") / "synthetic"


def test_linear_with_two_labels_per_class_and_a_validation_split(synthetic, tmp_path, capsys):
    out = tmp_path / "lin"
    args = ["linear", "--checkpoint", "random", "--config", "demo", "--labels-per-class", "2", "--val",
            "--out", str(out), f"data.root={synthetic}", *TINY]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained on 16 labelled videos (2 per class, seed 0" in printed  # 8 synthetic classes
    assert "validation top-1" in printed and "20% of train grouped by source" in printed
    assert "the test split was not used" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["evaluated_on"] == "validation" and "top1" not in res and 0 <= res["val_top1"] <= 1
    assert res["subsets"]["labels_per_class"] == 2 and res["subsets"]["labelled_videos"] == 16
    assert res["num_train_videos"] == 16  # the probe saw the labelled videos only
    labelled = (out / LABELLED_SPLIT).read_text().splitlines()
    val = (out / VAL_SPLIT).read_text().splitlines()
    assert len(labelled) == 16 and res["val_num_videos"] == len(val) > 0
    assert {line.split()[0] for line in labelled}.isdisjoint(line.split()[0] for line in val)
    assert all(line.startswith("train/") for line in labelled + val)  # never a test video
    # the same command again reuses the files; another encoder (another seed of random init) gets the same subset
    stamp = (out / LABELLED_SPLIT).stat().st_mtime_ns
    assert main(args) == 0
    assert (out / LABELLED_SPLIT).stat().st_mtime_ns == stamp
    other = tmp_path / "other"
    assert main([*args[:-len(TINY) - 3], "--out", str(other), f"data.root={synthetic}", *TINY,
                 "model.width=16"]) == 0
    assert (other / LABELLED_SPLIT).read_text() == (out / LABELLED_SPLIT).read_text()
    # and other settings over that folder: one line, exit 2
    capsys.readouterr()
    assert main([*args[:6], "3", *args[7:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("videocontrast linear: error:") and "other settings" in err and "\n" not in err


@pytest.mark.parametrize("flags, message", [
    (["--labels-per-class", "0"], "--labels-per-class 0: must be at least 1"),
    (["--labels-per-class", "9"], "class 'down' has only 4 training video"),
    (["--label-fraction", "0"], "--label-fraction 0: must be a fraction in (0, 1]"),
    (["--label-fraction", "1.5"], "--label-fraction 1.5: must be a fraction in (0, 1]"),
    (["--val", "1"], "--val 1: must be a fraction in (0, 1)"),
    (["--val", "0"], "--val 0: must be a fraction in (0, 1)"),
    (["--labels-per-class", "2", "--label-fraction", "0.5"], "both given"),
])
def test_bad_subset_flags_are_one_line_and_exit_2(synthetic, tmp_path, capsys, flags, message):
    code = main(["knn", "--checkpoint", "random", "--config", "demo", *flags, "--out", str(tmp_path / "o"),
                 f"data.root={synthetic}", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_val_flag_followed_by_an_override_takes_the_default_fraction(synthetic, tmp_path):
    out = tmp_path / "k"
    assert main(["knn", "--checkpoint", "random", "--config", "demo", "--out", str(out), f"data.root={synthetic}",
                 *TINY, "--val", "eval.knn_k=3"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["subsets"]["val_fraction"] == 0.2 and res["protocol"]["k"] == 3


def test_a_folder_validation_split_keeps_clips_csv_sources_apart(tmp_path):
    """Laid out as ../shared/data/fight-detection: train/<class>/*.mp4 and a clips.csv whose source_group joins
    clips the file names do not (fi001, fi002, ...: each its own group by name), some clips without a group."""
    from videocontrast.data.splits import dataset_records

    root = tmp_path / "fights"
    clip = write_pattern_video(tmp_path / "c.mp4", 8, "libx264")
    rows, group_of = [], {}
    for cls, prefix, n in (("fight", "fi", 30), ("noFight", "nofi", 30)):
        for i in range(1, n + 1):
            rel = f"train/{cls}/{prefix}{i:03d}.mp4"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(clip.read_bytes())
            group = "" if cls == "noFight" and i > 24 else f"yt{cls}{(i - 1) // 3}"  # sources of 3 clips
            rows.append(f"{rel},{cls},{group},train")
            group_of[rel] = group or rel
    (root / "clips.csv").write_text("path,label,source_group,subset\n" + "\n".join(rows) + "\n")
    recs = dataset_records("folder", root, None, 1, "train", False)[0]
    assert len(recs) == 60
    plan = plan_subsets(recs, ["fight", "noFight"], root, "folder", SubsetSpec(val_fraction=0.2, seed=0), None)
    rel = lambda p: Path(p).relative_to(root).as_posix()  # noqa: E731
    val = {group_of[rel(p)] for p in plan.val}
    kept = {group_of[rel(p)] for p in plan.train}
    assert val and not val & kept and len(plan.val) + len(plan.train) == 60
    # whole sources only: each csv group of 3 is in val entirely or not at all
    for g in val:
        assert sum(group_of[rel(p)] == g for p in plan.val) == (1 if g.startswith("train/") else 3)
    assert plan.summary["val_source_groups"] == len(val)
    assert 0.1 <= len(plan.val) / len(recs) <= 0.35
    for cls in ("fight", "noFight"):
        assert any(f"/{cls}/" in p for p in plan.val)  # about that fraction of every class


def test_fight_detection_validation_split_keeps_youtube_sources_apart(shared_data):
    root = shared_data / "fight-detection"
    if not (root / "clips.csv").is_file():
        pytest.skip(f"{root}/clips.csv is absent (../shared/data/fight-detection not installed)")
    from videocontrast.data.splits import dataset_records

    recs = dataset_records("folder", root, None, 1, "train", False)[0]
    plan = plan_subsets(recs, ["fight", "noFight"], root, "folder", SubsetSpec(val_fraction=0.2, seed=0), None)
    csv_group = {Path(k).as_posix(): v for k, v in read_source_csv(root).items()}
    sources = {csv_group.get(Path(p).relative_to(root).as_posix().lower(), p) for p in plan.val}
    kept = {csv_group.get(Path(p).relative_to(root).as_posix().lower(), p) for p in plan.train}
    assert sources and not sources & kept
    assert 0.1 <= len(plan.val) / len(recs) <= 0.35


def test_linear_probe_chooses_c_by_folds_grouped_by_source(monkeypatch):
    import videocontrast.eval.linear as linear_mod
    from videocontrast.eval.linear import linear_probe

    rng = np.random.default_rng(0)
    videos = [(c, g) for c in range(3) for g in range(4) for _ in range(2)]  # 2 videos per source, 4 per class
    rows = [(v, c, g) for v, (c, g) in enumerate(videos) for _ in range(2)]  # 2 clips per video
    train = {"feats": rng.normal(size=(len(rows), 6)) + np.array([[r[1]] for r in rows]),
             "labels": np.array([r[1] for r in rows]), "video_ids": np.array([r[0] for r in rows]),
             "source_groups": np.array([10 * r[1] + r[2] for r in rows])}
    seen = []
    real = linear_mod._fit_select

    def spy(X, y, groups, *args, **kwargs):
        seen.append(groups.copy())
        return real(X, y, groups, *args, **kwargs)

    monkeypatch.setattr(linear_mod, "_fit_select", spy)
    res = linear_probe(train, {k: v for k, v in train.items() if k != "source_groups"}, ["a", "b", "c"],
                       Cs=(0.1, 1.0), cv_folds=3)
    np.testing.assert_array_equal(seen[0], train["source_groups"])  # folds grouped by source, not by video
    assert "grouped by source" in res["protocol"]["selection"]


def test_finetune_and_the_supervised_baseline_train_on_the_labelled_subset_only(synthetic, tmp_path):
    few = ["eval.finetune_epochs=1", "optim.batch_size=4"]
    out = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", "random", "--config", "demo", "--labels-per-class", "1",
                 "--out", str(out), f"data.root={synthetic}", *TINY, *few]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["train_videos"] == 8 and res["subsets"]["labelled_videos"] == 8  # 1 x 8 classes
    assert res["evaluated_on"] == "test" and 0 <= res["top1"] <= 1
    assert len((out / LABELLED_SPLIT).read_text().splitlines()) == 8
    sup = tmp_path / "sup"
    assert main(["knn", "--checkpoint", "supervised", "--config", "demo", "--label-fraction", "0.5",
                 "--out", str(sup), f"data.root={synthetic}", *TINY, *few]) == 0
    trained = json.loads((sup / "supervised" / "finetune.json").read_text())
    assert trained["protocol"]["train_videos"] == 16  # round(0.5 * 4) of each of 8 classes
    assert json.loads((sup / "results.json").read_text())["subsets"]["label_fraction"] == 0.5


def test_ablate_val_scores_every_cell_on_a_validation_split_and_says_so(synthetic, tmp_path):
    out = tmp_path / "abl"
    assert main(["ablate", "--config", "demo", "--grid", "aug.temporal=none,shift", "--epochs", "1", "--eval", "knn",
                 "--val", "--out", str(out), f"data.root={synthetic}", *TINY]) == 0
    table = (out / "results.md").read_text()
    assert table.startswith("Scores on a validation split (20% of each cell's training videos")
    assert "knn_val_top1" in table and "knn_top1 " not in table
    for cell in ("temporal-none", "temporal-shift"):
        assert (out / "cells" / cell / "knn_val" / VAL_SPLIT).is_file()
        assert json.loads((out / "cells" / cell / "cell.json").read_text())["scored_on"] == "validation 0.2"
    # the same grid on the test split: evaluated again (the pretraining kept), the table says so
    pretrained = (out / "cells" / "temporal-none" / "pretrain" / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert main(["ablate", "--config", "demo", "--grid", "aug.temporal=none,shift", "--epochs", "1", "--eval", "knn",
                 "--out", str(out), f"data.root={synthetic}", *TINY]) == 0
    table = (out / "results.md").read_text()
    assert table.startswith("Scores on the test split.") and "knn_top1" in table and "knn_val_top1" not in table
    assert (out / "cells" / "temporal-none" / "pretrain" / "checkpoints" / "last.pt").stat().st_mtime_ns == pretrained
