"""Which training videos an evaluation learns from: a validation split and label subsets, both drawn by source
group (:mod:`.groups`).

* **Validation split** (:func:`validation_split`): a fraction of the training videos, whole source groups at a
  time, about that fraction of every class, chosen by seed. The test split is never touched.
* **Label subsets** (:func:`label_subset`): N videos per class, or a fraction of each class, from the training
  videos left after the validation split; chosen by seed from the videos' paths alone, so every encoder of one
  dataset and seed gets the same subset, and the subsets of one seed are nested (1 per class inside 5 inside 10).

:func:`plan_subsets` writes both as split files in the run folder (``labelled_split.txt``, ``val_split.txt``:
UCF101's trainlist format, ``Class/file.avi <1-based label>`` a line, paths relative to the dataset root) with
``subsets.json`` recording the settings, and reuses them when the same settings come again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..fileio import atomic_write_text
from .reports import warn_once
from ..names import DEFAULT_VAL_FRACTION  # `--val` without a value
from .datasets import VideoDataset
from .groups import GROUP_RULE, relative_path, source_groups
from .splits import VideoRecord

VAL_SPLIT = "val_split.txt"
LABELLED_SPLIT = "labelled_split.txt"
SUBSETS_JSON = "subsets.json"

def restrict(ds: VideoDataset, keep: set[str]) -> VideoDataset:
    """A copy of ``ds`` with only the records whose path is in ``keep``, cropped to the same frame box (the
    whole dataset's typical aspect ratio, not the subset's)."""
    records = [r for r in ds.records if r.path in keep]
    out = VideoDataset(records, ds.classes, ds.views_fn, decode_size=ds.decode_size, transform=ds.transform,
                       seed=ds.seed, strict=ds.strict, aspect=ds.frame_box, on_bad=ds.on_bad)
    out.missing, out.missing_files = ds.missing, ds.missing_files
    return out




# ----------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class SubsetSpec:
    """What to carve out of the training videos; zeros mean off (every training video, labelled, no split)."""

    val_fraction: float = 0.0
    labels_per_class: int = 0
    label_fraction: float = 0.0
    seed: int = 0
    labelled: str = ""  # a list file of the training videos whose labels may be used (e.g. `curate select`'s queue)

    @property
    def active(self) -> bool:
        return bool(self.val_fraction or self.labels_per_class or self.label_fraction or self.labelled)

    def check(self) -> None:
        """Raises ValueError (one line, naming the flag) for a value no subset can have."""
        if self.labelled and (self.labels_per_class or self.label_fraction):
            raise ValueError("--labelled and --labels-per-class/--label-fraction both given; choose one")
        if self.labelled and not Path(self.labelled).is_file():
            raise FileNotFoundError(f"--labelled '{self.labelled}' is not a file; give a list file (a path a line, "
                                    "e.g. the queue.txt `videocontrast curate select` writes)")
        if self.labels_per_class and self.label_fraction:
            raise ValueError("--labels-per-class and --label-fraction both given; choose one")
        if self.labels_per_class < 0 or self.labels_per_class != int(self.labels_per_class):
            raise ValueError(f"--labels-per-class {self.labels_per_class}: must be a whole number >= 1")
        if not 0 <= self.label_fraction <= 1:
            raise ValueError(f"--label-fraction {self.label_fraction:g}: must be in (0, 1] (e.g. 0.1 for 10%)")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"--val {self.val_fraction:g}: must be in (0, 1) (e.g. 0.2 for 20% of the training "
                             "videos)")

    def settings(self, dataset: str) -> dict[str, Any]:
        out = {"dataset": dataset, "seed": self.seed, "val_fraction": self.val_fraction,
               "labels_per_class": self.labels_per_class, "label_fraction": self.label_fraction}
        if self.labelled:  # the list's content, not only its name: an edited list is another subset
            data = Path(self.labelled).read_bytes()
            out.update(labelled=str(Path(self.labelled).resolve()), labelled_sha1=hashlib.sha1(data).hexdigest())
        return out


def parse_count(flag: str, text: str | None) -> int:
    """``--labels-per-class``'s value, checked here (not by argparse) so that a bad one is one line."""
    if text is None:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{flag} {text!r}: must be a whole number >= 1") from None
    if value < 1:
        raise ValueError(f"{flag} {value}: must be at least 1 (leave the flag out to use every label)")
    return value


def parse_fraction(flag: str, text: str | None, *, closed: bool) -> float:
    """A fraction in (0, 1] (``closed``) or (0, 1)."""
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    ok = value > 0 and (value <= 1 if closed else value < 1)
    if not ok:
        raise ValueError(f"{flag} {text}: must be a fraction in (0, {'1]' if closed else '1)'} "
                         f"(e.g. {'0.1' if closed else '0.2'})")
    return value


# ----------------------------------------------------------------------------- choosing


def validation_split(labels: Sequence[int], groups: Sequence[str], fraction: float, seed: int,
                     classes: Sequence[str] = (), *, held_out: str = "validation",
                     remedy: str = "add videos of other sources or leave out --val") -> np.ndarray:
    """The indices (sorted) of a validation split of about ``fraction`` of each class, whole source groups only.

    Groups are visited in an order drawn from ``seed`` (over their sorted names, so the order of ``labels``
    does not matter); a group joins while it brings each of its classes nearer to its target
    (``max(1, round(fraction * n_c))``) and leaves each at least one training video. The test split a folder
    without train/ and test/ is given (:func:`plan_test_split`) is drawn the same way: ``held_out`` and
    ``remedy`` word its error.

    Raises:
        ValueError: a class that ends with no validation video (all its videos in one source group) or no
            training video, named.
    """
    labels = np.asarray(labels, dtype=np.int64)
    names = sorted(set(groups))
    members: dict[str, list[int]] = {g: [] for g in names}
    for i, g in enumerate(groups):
        members[g].append(i)
    present, n = np.unique(labels, return_counts=True)
    total = dict(zip(present.tolist(), n.tolist()))
    target = {c: max(1, int(np.floor(fraction * k + 0.5))) for c, k in total.items()}
    taken = {c: 0 for c in total}
    chosen: list[int] = []
    for j in np.random.default_rng([int(seed), 0x5A1]).permutation(len(names)):
        idx = members[names[j]]
        counts = dict(zip(*[a.tolist() for a in np.unique(labels[idx], return_counts=True)]))
        if all((taken[c] == 0 or taken[c] + k / 2 <= target[c]) and taken[c] + k < total[c]
               for c, k in counts.items()):
            chosen += idx
            for c, k in counts.items():
                taken[c] += k
    for c in sorted(total):
        if taken[c] == 0:
            name = classes[c] if c < len(classes) else str(c)
            raise ValueError(f"a {held_out} split grouped by source leaves class '{name}' no {held_out} video (its "
                             f"{total[c]} video(s) come from one source group, which training keeps); "
                             f"{remedy}")
    return np.array(sorted(chosen), dtype=np.int64)


def label_subset(labels: Sequence[int], keys: Sequence[str], seed: int, per_class: int = 0, fraction: float = 0.0,
                 classes: Sequence[str] = ()) -> np.ndarray:
    """Indices (sorted) of a class-balanced subset: ``per_class`` videos of each class present, or
    ``max(1, round(fraction * n_c))``. Each class's videos are ordered by ``keys`` (their paths) and then by a
    permutation drawn from ``(seed, class)``, and the subset takes the first ones: it depends on the paths and
    the seed only, and a smaller subset of one seed lies inside a larger one.

    Raises:
        ValueError: ``per_class`` above a class's count (named, with its count).
    """
    labels = np.asarray(labels, dtype=np.int64)
    chosen: list[int] = []
    for c in np.unique(labels).tolist():
        idx = sorted(np.flatnonzero(labels == c).tolist(), key=lambda i: keys[i])
        k = per_class if per_class else max(1, int(np.floor(fraction * len(idx) + 0.5)))
        if k > len(idx):
            name = classes[c] if c < len(classes) else str(c)
            raise ValueError(f"--labels-per-class {per_class}: class '{name}' has only {len(idx)} training "
                             f"video(s){' after the validation split' if per_class else ''}; choose at most "
                             f"{len(idx)}")
        order = np.random.default_rng([int(seed), 0x1AB, c]).permutation(len(idx))
        chosen += [idx[i] for i in order[:k]]
    return np.array(sorted(chosen), dtype=np.int64)


# ----------------------------------------------------------------------------- the plan of one run


@dataclass
class Subsets:
    """The training videos an evaluation uses (``train``: record paths, labelled) and, with a validation split,
    the videos it is scored on instead of the test split (``val``)."""

    train: set[str]
    val: set[str]
    groups: dict[str, str]  # record path -> source group, for every training video
    summary: dict[str, Any] = field(default_factory=dict)  # recorded in results.json under "subsets"

    @property
    def has_val(self) -> bool:
        return bool(self.val)

    def describe_val(self) -> str:
        s = self.summary
        return (f"{s['val_videos']} videos, {100 * s['val_fraction']:g}% of train grouped by source"
                if self.val else "")


def _read_split(path: Path, by_rel: Mapping[str, VideoRecord], what: str) -> list[VideoRecord]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        rel = line.split()[0]
        rec = by_rel.get(rel.lower())
        if rec is None:
            raise ValueError(f"'{path}' line {n} lists '{rel}', which is not a training video of this dataset; "
                             f"remove {path.parent / SUBSETS_JSON} and the split files to choose {what} again")
        out.append(rec)
    return out


def _write_split(path: Path, records: Sequence[VideoRecord], root: str | os.PathLike) -> None:
    lines = sorted(f"{relative_path(r, root)} {r.label + 1}" for r in records)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def plan_subsets(records: Sequence[VideoRecord], classes: Sequence[str], root: str | os.PathLike, dataset: str,
                 spec: SubsetSpec, out_dir: str | os.PathLike | None) -> Subsets:
    """The training/validation videos of ``spec`` over the training ``records``, written to (or, with the same
    settings, read back from) ``out_dir``.

    Raises:
        ValueError: a bad setting; a class a split leaves empty; ``out_dir`` holding subsets of other settings, or
            split files without their ``subsets.json``.
    """
    spec.check()
    root = Path(root)
    groups = source_groups(records, root, dataset)
    by_path = {r.path: g for r, g in zip(records, groups)}
    if not spec.active:
        out = Path(out_dir) if out_dir is not None else None
        if out is not None and (out / SUBSETS_JSON).is_file():
            _refuse(out, json.loads((out / SUBSETS_JSON).read_text()).get("settings"), spec.settings(dataset))
        return Subsets({r.path for r in records}, set(), by_path)
    settings = spec.settings(dataset)
    out = Path(out_dir) if out_dir is not None else None
    rels = [relative_path(r, root) for r in records]
    by_rel = {rel.lower(): r for rel, r in zip(rels, records)}
    stored = _stored(out, settings, by_rel) if out is not None else None
    if stored is not None:
        labelled, val = stored
    else:
        labels = np.array([r.label for r in records], dtype=np.int64)
        val_idx = (validation_split(labels, groups, spec.val_fraction, spec.seed, classes)
                   if spec.val_fraction else np.zeros(0, dtype=np.int64))
        rest = np.setdiff1d(np.arange(len(records)), val_idx)
        if spec.labels_per_class or spec.label_fraction:
            pick = label_subset(labels[rest], [rels[i] for i in rest], spec.seed, spec.labels_per_class,
                                spec.label_fraction, classes)
            rest = rest[pick]
        if spec.labelled:
            rest = np.intersect1d(rest, listed_records(records, root, Path(spec.labelled), classes))
        labelled, val = [records[i] for i in rest], [records[i] for i in val_idx]
        if spec.labelled:
            _check_listed(records, labelled, classes, spec.labelled)
        else:
            _check_classes(records, labelled, classes)
    summary: dict[str, Any] = {**settings, "train_videos": len(records), "labelled_videos": len(labelled),
                               "grouping": GROUP_RULE}
    if out is not None:
        summary["labelled_split"] = str(out / LABELLED_SPLIT)
        if val:
            summary["val_split"] = str(out / VAL_SPLIT)
    summary["val_videos"] = len(val)
    if val:
        summary["val_source_groups"] = len({by_path[r.path] for r in val})
    if out is not None and stored is None:
        out.mkdir(parents=True, exist_ok=True)
        _write_split(out / LABELLED_SPLIT, labelled, root)
        if val:
            _write_split(out / VAL_SPLIT, val, root)
        atomic_write_text(out / SUBSETS_JSON, json.dumps({"settings": settings, **summary}, indent=2) + "\n")
    return Subsets({r.path for r in labelled}, {r.path for r in val}, by_path, summary)


# ----------------------------------------------------------------------------- a folder's own test split

SPLIT_JSON = "split.json"  # beside train.txt and test.txt: the settings a folder's own split was drawn with
TRAIN_LIST, TEST_LIST = "train.txt", "test.txt"


@dataclass(frozen=True)
class TestSplit:
    """A test split drawn for a folder of class subfolders without train/ and test/ (or read back)."""

    folder: Path  # holds TRAIN_LIST, TEST_LIST and SPLIT_JSON
    videos: int  # labelled videos split
    test_videos: int
    made: bool  # drawn now (False: read back from ``folder``)

    @property
    def test_file(self) -> Path:
        return self.folder / TEST_LIST


def plan_test_split(records: Sequence[VideoRecord], classes: Sequence[str], root: str | os.PathLike, seed: int,
                    fraction: float, folder: str | os.PathLike) -> TestSplit:
    """A test split of the labelled ``records`` (about ``fraction`` of each class, whole name groups as
    :func:`source_group` finds them, drawn from ``seed`` like :func:`validation_split`), written to ``folder`` as
    ``train.txt`` / ``test.txt`` (UCF101's list format) with ``split.json``; read back instead when ``folder``
    holds one of the same settings, so a rerun tests on the same videos even after videos were added.
    Unlabelled videos (files beside the class folders) stay on the training side.

    Raises:
        ValueError: a class too small to split (named); ``folder`` holding a split of other settings, or list files
            without their ``split.json``.
    """
    folder, root = Path(folder), Path(root)
    settings = {"seed": int(seed), "test_fraction": float(fraction)}
    meta = folder / SPLIT_JSON
    if meta.is_file():
        try:
            stored = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"'{meta}' cannot be read ({e}); remove {folder} to split the folder again") from None
        old = stored.get("settings") if isinstance(stored, dict) else None
        if old != settings:
            raise ValueError(f"'{meta}' records a test split drawn with {old} and this run asks for {settings}; "
                             f"pass the same train.seed and data.test_fraction, or remove {folder} to split again")
        return TestSplit(folder, int(stored.get("videos", 0)), int(stored.get("test_videos", 0)), made=False)
    for name in (TRAIN_LIST, TEST_LIST):
        if (folder / name).exists():
            raise ValueError(f"'{folder / name}' exists without '{meta}' (which records how it was drawn); remove "
                             "it, or choose another --out")
    labelled = [r for r in records if r.label >= 0]
    labels = np.array([r.label for r in labelled], dtype=np.int64)
    test_idx = validation_split(labels, source_groups(labelled, root, "folder"), fraction, seed, classes,
                                held_out="test", remedy="add videos of other sources to it, or give the folder "
                                "train/ and test/ subfolders")
    chosen = {labelled[i].path for i in test_idx}
    test = [r for r in labelled if r.path in chosen]
    _check_classes(labelled, [r for r in labelled if r.path not in chosen], classes, "test",
                   "lower data.test_fraction")
    folder.mkdir(parents=True, exist_ok=True)
    _write_split(folder / TRAIN_LIST, [r for r in records if r.path not in chosen], root)
    _write_split(folder / TEST_LIST, test, root)
    summary = {"settings": settings, "root": str(root), "videos": len(labelled), "test_videos": len(test),
               "grouping": GROUP_RULE}
    atomic_write_text(meta, json.dumps(summary, indent=2) + "\n")
    return TestSplit(folder, len(labelled), len(test), made=True)


def listed_records(records: Sequence[VideoRecord], root: Path, list_file: Path,
                   classes: Sequence[str]) -> np.ndarray:
    """The rows of ``records`` a list file names (``path [label]`` a line; relative paths against the list's
    folder, then the dataset root), sorted. Lines naming no training video are said in one warning.

    Raises:
        ValueError: the list names none of the training videos.
    """
    from .discover import read_list_file

    by_real = {os.path.realpath(r.path): i for i, r in enumerate(records)}
    found, missing = set(), []
    lines = read_list_file(list_file)
    for n, path, _ in lines:
        p = Path(path).expanduser()
        tries = [p] if p.is_absolute() else [list_file.parent / p, root / p]
        row = next((by_real[r] for r in map(os.path.realpath, tries) if r in by_real), None)
        if row is None:
            missing.append(f"line {n}: {path}")
        else:
            found.add(row)
    if not found:
        raise ValueError(f"--labelled '{list_file}' names none of the {len(records)} training videos "
                         f"({len(lines)} lines; first: {missing[0] if missing else 'none'}); list training videos of "
                         "this dataset, by absolute path or relative to the list or the dataset root")
    if missing:
        warn_once(f"labelled:{list_file}", f"--labelled '{list_file}': {len(missing)} of {len(lines)} lines name no "
                  f"training video and are left out (first: {missing[0]})")
    return np.array(sorted(found), dtype=np.int64)


def _check_listed(records: Sequence[VideoRecord], labelled: Sequence[VideoRecord], classes: Sequence[str],
                  list_file: str) -> None:
    """A chosen queue may miss a class (it is then never predicted): said once; fewer than 2 classes is an error."""
    left = {r.label for r in labelled}
    if len(left) < 2:
        raise ValueError(f"--labelled '{list_file}' holds training videos of {len(left)} class; a classifier needs "
                         "labelled videos of two classes or more")
    absent = sorted({r.label for r in records} - left)
    if absent:
        names = ", ".join(classes[c] if c < len(classes) else str(c) for c in absent[:5])
        warn_once(f"labelled-classes:{list_file}", f"--labelled '{list_file}' holds no training video of "
                  f"{len(absent)} class(es) ({names}{', ...' if len(absent) > 5 else ''}): they cannot be predicted")


def _check_classes(records: Sequence[VideoRecord], labelled: Sequence[VideoRecord], classes: Sequence[str],
                   held_out: str = "validation", remedy: str = "lower --val") -> None:
    left = {r.label for r in labelled}
    for c in sorted({r.label for r in records} - left):
        name = classes[c] if c < len(classes) else str(c)
        raise ValueError(f"the {held_out} split leaves class '{name}' no training video; {remedy}")


def _refuse(out: Path, old: Any, new: Mapping[str, Any]) -> None:
    if old != new:
        def show(s: Any) -> str:
            return ", ".join(f"{k}={v}" for k, v in s.items() if k != "dataset") if isinstance(s, dict) else repr(s)
        raise ValueError(f"'{out / SUBSETS_JSON}' records the subsets of other settings ({show(old)}) than this run "
                         f"asks for ({show(new)}); pass the same flags, or choose another --out")


def _stored(out: Path, settings: Mapping[str, Any], by_rel: Mapping[str, VideoRecord]
            ) -> tuple[list[VideoRecord], list[VideoRecord]] | None:
    meta = out / SUBSETS_JSON
    if not meta.is_file():
        for name in (LABELLED_SPLIT, VAL_SPLIT):
            if (out / name).exists():
                raise ValueError(f"'{out / name}' exists without '{meta}' (which records how it was chosen); remove "
                                 "it, or choose another --out")
        return None
    try:
        stored = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"'{meta}' cannot be read ({e}); remove it and the split files beside it") from None
    _refuse(out, stored.get("settings") if isinstance(stored, dict) else None, settings)
    labelled = _read_split(out / LABELLED_SPLIT, by_rel, "the labelled subset")
    val = _read_split(out / VAL_SPLIT, by_rel, "the validation split") if settings["val_fraction"] else []
    return labelled, val
