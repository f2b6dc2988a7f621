"""Finding video files on disk: a folder walk by extension that follows linked class folders (not link loops),
names the entries it cannot use and why, and a per-process memory of each file's probed header."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Sequence


from .decode import VideoDecodeError, VideoInfo, probe_video
from .reports import warn_once


VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov")


# Probe results of this process, keyed by path, size and modification time: evaluation builds its loaders
# several times per run (linear, kNN, retrieval; pretrained and random init) and probes each file once.
_PROBES: dict[tuple[str, int, int], VideoInfo | VideoDecodeError] = {}


def try_probe(path: str) -> VideoInfo | VideoDecodeError:
    """:func:`probe_video`'s result or its error, remembered in this process while the file is unchanged (a
    dataset built later over the same paths reads no header twice)."""
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _PROBES:
        return _PROBES[key]
    try:
        result: VideoInfo | VideoDecodeError = probe_video(path)
    except VideoDecodeError as e:
        result = e
    if key is not None:
        _PROBES[key] = result
    return result


def require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist or is not a folder; expected {what} there")


def _unusable(path: str) -> str | None:
    """Why a directory entry with a video name is not a readable regular file, or None when it is one."""
    try:
        st = os.stat(path)  # follows symbolic links
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"broken symbolic link (its target {target} does not exist)"
        return f"cannot access file ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _walk_videos(root: Path, skipped: list[dict[str, str]] | None = None):
    """Yield the path of every video file under ``root`` (by extension, case-insensitive; one directory walk).

    Symbolic links to folders are followed (a class folder linked from elsewhere is found), except a link back to
    one of its own ancestors (a loop) or to a folder inside ``root`` (walked anyway). Entries that are not
    readable regular files -- symlink loops, broken links, folders that cannot be listed, a folder loop -- are
    not yielded; with ``skipped`` each is appended to it as ``{"path", "reason"}``.
    """
    def skip(path: str, reason: str) -> None:
        if skipped is not None:
            skipped.append({"path": path, "reason": reason})

    def onerror(err: OSError) -> None:
        skip(str(err.filename), f"cannot list folder ({err.strerror})")

    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        here = os.path.realpath(dirpath)
        keep = []
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
                    skip(full, f"symbolic link loop (the folder link leads back to {target})")
                    continue
                if target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep):
                    continue  # a folder inside root: its videos are listed where they are
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_EXTENSIONS):
                full = os.path.join(dirpath, name)
                reason = _unusable(full)
                if reason is None:
                    yield full
                else:
                    skip(full, reason)


def scan_videos(root: Path) -> dict[str, str]:
    """Every video under ``root``: lower-case relative posix path -> real path.

    Lower-casing resolves UCF101's quirk (folder ``HandstandPushups``, files ``v_HandStandPushups_*``)
    and split files whose case differs from the disk. Entries that are not readable files (symlink
    loops, broken links) are warned about once.
    """
    skipped: list[dict[str, str]] = []
    disk = {Path(os.path.relpath(full, root)).as_posix().lower(): full for full in _walk_videos(root, skipped)}
    for entry in skipped:
        warn_once(f"unreadable:{entry['path']}", f"skipping {entry['path']}: {entry['reason']}")
    return disk


def find_videos(root: str | os.PathLike, skipped: list[dict[str, str]] | None = None) -> list[Path]:
    """Every video file under ``root`` (recursively, following folder links), sorted; for unlabeled collections
    (``embed``).

    Args:
        skipped: if given, entries with a video name that cannot be used are appended to it as dicts with
            ``path`` and ``reason`` (a symbolic link loop, a broken link, a folder that cannot be listed or a
            folder link back to its own ancestor), for the caller to report; they are never silently lost.

    Raises:
        FileNotFoundError: ``root`` is not a folder, or holds no usable video.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--root '{root}' is not a folder of videos")
    found: list[dict[str, str]] = []
    paths = sorted(Path(p) for p in _walk_videos(root, found))
    if skipped is not None:
        skipped.extend(found)
    if not paths:
        extra = f" ({len(found)} unusable entries: {some_names([f['path'] + ': ' + f['reason'] for f in found])})" \
            if found else ""
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) found under '{root}'{extra}")
    return paths


def read_list_file(source: str | os.PathLike) -> list[tuple[int, str, str]]:
    """``(line number, path, label)`` of a list file: ``path [label]`` a line (a last word that is not a video
    file name is the label; a path may hold spaces), ``#`` comments and blank lines skipped, a UTF-8 byte order
    mark not part of the first path. What ``embed --root LIST``, ``--labelled`` and ``curate``'s lists share."""
    out = []
    with open(source, encoding="utf-8-sig", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) == 2 and not parts[1].lower().endswith(VIDEO_EXTENSIONS):
                out.append((n, parts[0], parts[1]))
            else:
                out.append((n, line, ""))
    return out


def some_names(names: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` names, then how many more."""
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")
