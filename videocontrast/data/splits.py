"""Which videos a dataset has and their labels: UCF101's and HMDB51's official split files, a plain folder of class
subfolders (with or without train/ and test/), each turned into :class:`VideoRecord` rows and class names."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


from ..names import DATASET_NAMES
from .discover import VIDEO_EXTENSIONS, require_dir, scan_videos, some_names
from .reports import first_report

log = logging.getLogger(__name__)


SUBSETS = ("train", "test", "all")


UCF101_SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"


HMDB51_SPLITS_URL = "https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/ (test_train_splits.rar)"


@dataclass
class VideoRecord:
    """One video file and its label (-1 when unlabeled)."""

    path: str
    label: int


def _lines(path: Path) -> list[str]:
    """Non-empty lines of a text file, CRLF or LF, stripped."""
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _resolve(entries: list[tuple[str, int]], disk: dict[str, str], root: Path, list_desc: str,
             require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str]]:
    records, missing = [], []
    for rel, label in entries:
        real = disk.get(rel.replace("\\", "/").lower())
        if real is None:
            missing.append(rel)
        else:
            records.append(VideoRecord(real, label))
    if missing and require_complete:
        raise FileNotFoundError(
            f"{len(missing)} of {len(entries)} videos listed in {list_desc} are missing under {root} "
            f"(e.g. {missing[0]}); download the full dataset or drop require_complete"
        )
    if entries and not records:
        raise FileNotFoundError(
            f"none of the {len(entries)} videos listed in {list_desc} exist under {root} "
            f"(e.g. {entries[0][0]}); is root the folder that holds the class folders?"
        )
    if missing and not quiet:
        message = (f"{len(missing)} of {len(entries)} videos listed in {list_desc} are missing under {root}; using "
                   f"the {len(records)} present. Missing: {some_names(missing)} (`videocontrast data info --json` lists "
                   "them all)")
        if first_report(message):
            log.warning("%s", message)
    return records, missing


def _ucf101(root: Path, splits: Path | None, split: int, subset: str,
            require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str], list[str]]:
    require_dir(root, "the UCF101 class folders (ApplyEyeMakeup/, ..., YoYo/)")
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split}")
    if splits is None:
        candidates = [root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist"]
        splits = next((c for c in candidates if c.is_dir()), candidates[0])
    expected = (f"the official ucfTrainTestlist folder with classInd.txt, trainlist0{split}.txt and "
                f"testlist0{split}.txt; download it from {UCF101_SPLITS_URL} or pass splits=")
    require_dir(splits, expected)
    files = {name: splits / name for name in ("classInd.txt", f"trainlist0{split}.txt", f"testlist0{split}.txt")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; expected {expected}")

    classes: list[str] = []
    for line in _lines(files["classInd.txt"]):
        number, name = line.split(maxsplit=1)
        if int(number) != len(classes) + 1:
            raise ValueError(f"{files['classInd.txt']}: expected class number {len(classes) + 1}, got line {line!r}")
        classes.append(name)
    by_name = {c.lower(): i for i, c in enumerate(classes)}

    def parse(path: Path, labeled: bool) -> list[tuple[str, int]]:
        out = []
        for line in _lines(path):
            parts = line.split()
            rel = parts[0]
            if labeled and len(parts) > 1:
                label = int(parts[1]) - 1  # classInd is 1-based
            else:
                label = by_name.get(rel.replace("\\", "/").split("/")[0].lower(), -1)
            if not 0 <= label < len(classes):
                raise ValueError(f"{path}: line {line!r} names no class of {files['classInd.txt']}")
            out.append((rel, label))
        return out

    entries: list[tuple[str, int]] = []
    descs = []
    if subset in ("train", "all"):
        entries += parse(files[f"trainlist0{split}.txt"], labeled=True)
        descs.append(files[f"trainlist0{split}.txt"].name)
    if subset in ("test", "all"):
        entries += parse(files[f"testlist0{split}.txt"], labeled=False)
        descs.append(files[f"testlist0{split}.txt"].name)
    records, missing = _resolve(entries, scan_videos(root), root, f"{splits}/{'+'.join(descs)}", require_complete,
                                quiet)
    return records, classes, missing


def _hmdb51(root: Path, splits: Path | None, split: int, subset: str,
            require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str], list[str]]:
    require_dir(root, "the HMDB51 class folders (brush_hair/, ..., wave/)")
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 split must be 1, 2 or 3, got {split}")
    suffix = f"_test_split{split}.txt"
    if splits is None:
        names = ["testTrainMulti_7030_splits", "test_train_splits", "splits"]
        candidates = [root / n for n in names] + [root.parent / n for n in names]
        splits = next((c for c in candidates if c.is_dir() and any(c.glob(f"*{suffix}"))), candidates[0])
    expected = (f"the HMDB51 split files <class>{suffix} (lines '<file> <0|1|2>'); "
                f"download them from {HMDB51_SPLITS_URL} or pass splits=")
    require_dir(splits, expected)
    split_files = sorted(splits.glob(f"*{suffix}"))
    if not split_files:
        raise FileNotFoundError(f"{splits} holds no *{suffix} file; expected {expected}")
    classes = [f.name[: -len(suffix)] for f in split_files]
    keep = {"train": {"1"}, "test": {"2"}, "all": {"1", "2"}}[subset]
    entries = []
    for label, (name, path) in enumerate(zip(classes, split_files)):
        for line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}: expected lines '<file> <0|1|2>', got {line!r}")
            if parts[1] in keep:
                entries.append((f"{name}/{parts[0]}", label))
    records, missing = _resolve(entries, scan_videos(root), root, f"{splits}/*{suffix}", require_complete, quiet)
    return records, classes, missing


def _folder_records(folder: Path, classes: list[str]) -> list[VideoRecord]:
    disk = scan_videos(folder)
    index = {c: i for i, c in enumerate(classes)}
    records = []
    for rel, real in sorted(disk.items()):
        top = Path(os.path.relpath(real, folder)).parts
        label = index[top[0]] if len(top) > 1 and top[0] in index else -1
        records.append(VideoRecord(real, label))
    return records


def _class_dirs(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and any(scan_videos(d)))


def has_subset_folders(root: Path) -> bool:
    """Whether ``root`` holds train/ and test/ (its subsets as they are on disk)."""
    return (root / "train").is_dir() and (root / "test").is_dir()


def needs_test_split(root: Path) -> bool:
    """Whether a ``folder`` dataset at ``root`` is labelled (class subfolders) but has no train/ and test/: the
    split that evaluation needs is then drawn for it (:func:`~videocontrast.data.subsets.plan_test_split`)."""
    return root.is_dir() and not has_subset_folders(root) and bool(_class_dirs(root))


def folder_classes(root: Path) -> list[str]:
    """The class subfolders of a ``folder`` dataset (of train/ and test/ together when it has them)."""
    if has_subset_folders(root):
        return sorted(set(_class_dirs(root / "train")) | set(_class_dirs(root / "test")))
    return _class_dirs(root)


def _listed_records(root: Path, lists: Path, subset: str) -> tuple[list[VideoRecord], list[str], list[str]]:
    """The ``subset`` of a folder as the ``train.txt`` / ``test.txt`` in ``lists`` say (lines ``Class/file
    <label>``; the label is read from the class folder, so the lists stay right when a class is added)."""
    files = {"train": [lists / "train.txt"], "test": [lists / "test.txt"],
             "all": [lists / "train.txt", lists / "test.txt"]}[subset]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; expected the train.txt and test.txt that a run wrote "
                                    f"for {root} (or leave data.splits unset to split the folder again)")
    listed = {name: [line.split()[0] for line in _lines(lists / name)] for name in ("train.txt", "test.txt")}
    classes = sorted({rel.replace("\\", "/").split("/")[0] for rels in listed.values() for rel in rels
                      if "/" in rel.replace("\\", "/")})
    index = {c: i for i, c in enumerate(classes)}

    def label(rel: str) -> int:
        parts = rel.replace("\\", "/").split("/")
        return index[parts[0]] if len(parts) > 1 else -1

    entries = [(rel, label(rel)) for path in files for rel in listed[path.name]]
    records, missing = _resolve(entries, scan_videos(root), root, " + ".join(str(p) for p in files), False)
    return records, classes, missing


def _folder(root: Path, subset: str, need_subsets: bool,
            lists: Path | None = None) -> tuple[list[VideoRecord], list[str], list[str]]:
    require_dir(root, "a folder of videos (.avi/.mp4/.mkv/.webm/.mov), optionally in class subfolders"
                 + (" under train/ and test/" if need_subsets else ""))
    has_subsets = has_subset_folders(root)
    if need_subsets and not has_subsets:
        raise FileNotFoundError(
            f"{root} has no train/ and test/ folders; expected the synthetic dataset written by "
            "videocontrast.data.synthetic.generate_synthetic(root) (root/train/<class>/*.mp4, root/test/<class>/*.mp4)"
        )
    if lists is not None and not has_subsets:
        return _listed_records(root, lists, subset)
    classes = folder_classes(root)
    if has_subsets:
        parts = {"train": [root / "train"], "test": [root / "test"], "all": [root / "train", root / "test"]}[subset]
    else:
        parts = [] if subset == "test" else [root]
    records = [r for folder in parts for r in _folder_records(folder, classes)]
    if not records and subset != "test":
        raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}")
    return records, classes, []


def dataset_records(name: str, root: str | os.PathLike, splits: str | os.PathLike | None, split: int, subset: str,
             require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str], list[str]]:
    if name not in DATASET_NAMES:
        raise ValueError(f"dataset must be one of {', '.join(DATASET_NAMES)}, got {name!r}")
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    root = Path(root).expanduser()
    splits_path = Path(splits).expanduser() if splits is not None else None
    if name == "ucf101":
        return _ucf101(root, splits_path, split, subset, require_complete, quiet)
    if name == "hmdb51":
        return _hmdb51(root, splits_path, split, subset, require_complete, quiet)
    return _folder(root, subset, need_subsets=name == "synthetic", lists=splits_path if name == "folder" else None)


def present_classes(records: Sequence[VideoRecord], classes: Sequence[str]) -> list[str]:
    """Names of the classes with at least one of ``records`` (sorted by label)."""
    labels = sorted({r.label for r in records if r.label >= 0})
    return [classes[i] for i in labels if i < len(classes)]
