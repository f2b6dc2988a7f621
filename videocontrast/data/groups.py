"""Source groups: which videos were cut from one source and so must stay on one side of any split.

Clips cut from one source video share a scene, so they must never be on both sides of a fold or of a
validation split (:func:`source_group`). UCF101 ``v_Class_gXX_cYY`` -> ``Class_gXX``; HMDB51
``<source>_<action>_<body>_<camera>_<people>_<view>_<quality>_<n>`` -> ``<source>``; a folder whose root holds a
``clips.csv`` with ``path`` and ``source_group`` columns (paths relative to the root, as in ``fight-detection``)
-> that column; otherwise the file-name rule of :func:`name_prefix_group`.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

from .splits import VideoRecord

SOURCE_CSV = "clips.csv"

_UCF101 = re.compile(r"^v_(?P<group>.+_g\d+)_c\d+$", re.IGNORECASE)
# HMDB51's meta tags after the action: visible body part, camera motion, people, viewpoint, quality, clip number.
_HMDB51_TAGS = re.compile(r"_[a-z]+_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+$", re.IGNORECASE)
# A short clip counter after a separator: `_c03`, `-c3`, `_02`, `-7`, `_clip12`, `_part2`. Four digits or more
# (IMG_1234) are a camera's file number, not a clip of one recording.
_COUNTER = re.compile(r"[_-](?:c|clip|part|seg|segment)?\d{1,3}$", re.IGNORECASE)


def name_prefix_group(stem: str) -> str:
    """The source of a clip by its file name alone: the name without a trailing short clip counter after ``_``
    or ``-`` (``street_03`` and ``street-c4`` -> ``street``; ``v_X_g01_c02`` -> ``v_X_g01``); a name without one
    (``fi001``, ``IMG_1234``) is its own group (see :func:`source_group` for a prefix that is the class folder's
    name)."""
    m = _COUNTER.search(stem)
    return stem[: m.start()] if m and m.start() > 0 else stem


def source_group(relpath: str, dataset: str, listed: Mapping[str, str] | None = None) -> str:
    """The source group of the video at ``relpath`` (posix, relative to the dataset root) of kind ``dataset``;
    ``listed``: the ``clips.csv`` groups (:func:`read_source_csv`), which win when they name the file."""
    if listed:
        group = listed.get(relpath.lower())
        if group:
            return f"csv:{group}"
    if dataset == "synthetic":
        return relpath  # every synthetic video is drawn on its own
    stem = Path(relpath).stem
    if dataset == "ucf101" or stem.lower().startswith("v_"):
        m = _UCF101.match(stem)
        if m:
            return m.group("group")
    if dataset == "hmdb51":
        m = _HMDB51_TAGS.search(stem)
        if m and m.start() > 0:
            source = stem[: m.start()]
            action = Path(relpath).parent.name
            if action and source.lower().endswith("_" + action.lower()):
                source = source[: -len(action) - 1]  # the action precedes the tags
            return source
    group = name_prefix_group(stem)
    # A name without a counter is its own group (its folder kept, so that two classes' `a.mp4` differ), and so is
    # one whose prefix is its folder's name: `fight/fight_012.mp4` numbers files of a class, not clips of a source.
    return relpath if group == stem or group.lower() == Path(relpath).parent.name.lower() else group


def read_source_csv(root: str | os.PathLike) -> dict[str, str]:
    """``root/clips.csv``'s ``source_group`` by lower-case relative path; empty when there is no such file or
    column (a row with an empty group is left to the name rule)."""
    path = Path(root) / SOURCE_CSV
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames or "source_group" not in reader.fieldnames:
            return {}
        return {Path(row["path"].strip().replace("\\", "/")).as_posix().lower(): row["source_group"].strip()
                for row in reader if row.get("path") and (row.get("source_group") or "").strip()}


def relative_path(record: VideoRecord, root: str | os.PathLike) -> str:
    return Path(os.path.relpath(record.path, root)).as_posix()


def source_groups(records: Sequence[VideoRecord], root: str | os.PathLike, dataset: str) -> list[str]:
    """The source group of every record (see the module docstring)."""
    listed = read_source_csv(root)
    return [source_group(relative_path(r, root), dataset, listed) for r in records]


def source_groups_of_paths(paths: Sequence[str], root: str | os.PathLike, dataset: str) -> list[str]:
    """:func:`source_groups` of videos given by their paths (as records hold them)."""
    return source_groups([VideoRecord(p, -1) for p in paths], root, dataset)


GROUP_RULE = ("source groups: UCF101 v_Class_gXX_cYY -> Class_gXX, HMDB51 its source video, clips.csv's "
              "source_group, else the file name less a trailing short clip counter (_NN, -cNN)")
