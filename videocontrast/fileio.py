"""Writing into folders a user (or someone else) may have planted names in: never through a symbolic link.

Every file a run writes is written whole under a temporary name in its folder (created exclusively, so a planted
link at that name is never followed) and renamed over its name: readers see the old file or the new one, never
half of one, and a symlink planted at the name is replaced, its target untouched. A file that is appended to
(``metrics.jsonl``) cannot be renamed over at each line, so a symlink there is refused and the file is opened with
``O_NOFOLLOW``. It sits below config, data and engine, which all write files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "open_append", "refuse_symlink",
           "temporary_sibling", "TMP_MARK"]

TMP_MARK = ".tmp"  # in the name of every temporary file written here: `.NAME.tmpXXXX`
# mkstemp creates files 0600; what is written here gets the mode open() would give it (0666 less the umask),
# read once at import, as os.umask can only be read by setting it
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class SymlinkRefusedError(ValueError):
    """A file a run appends to is a symbolic link; the message (one line) names it. A ``ValueError``, so the
    command line reports it in one line."""


def refuse_symlink(path: str | os.PathLike, what: str = "file") -> None:
    """Raise :class:`SymlinkRefusedError` when ``path`` is a symbolic link (a file written through it would
    overwrite wherever it points)."""
    p = Path(path)
    if p.is_symlink():
        raise SymlinkRefusedError(f"{what} '{p}' is a symbolic link (to '{os.readlink(p)}'); videocontrast does not "
                                  "write through links: remove the link or choose another folder")


@contextlib.contextmanager
def temporary_sibling(path: str | os.PathLike) -> Iterator[tuple[int, Path]]:
    """A new, empty file next to ``path`` (``.NAME.tmpXXXX``, created with ``O_EXCL``: never an existing file or
    link), as ``(open descriptor, name)``; renamed over ``path`` when the block ends normally and removed when it
    raises. Write through the descriptor, never by reopening the name: someone who can write in the folder could
    put a link at the name in between, and the rename is refused when the name is no longer this file."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}")
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # on the descriptor, for the same reason
        yield fd, tmp
        mine, there = os.fstat(fd), os.lstat(tmp)
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            raise OSError(f"'{tmp}' was replaced while videocontrast wrote it; '{path}' is left as it was")
        os.replace(tmp, path)  # atomic on POSIX and Windows; replaces a link at `path`, not its target
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.lstat(tmp)):
                tmp.unlink()
        raise
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], fsync: bool = False) -> Path:
    """Write ``path`` whole through ``write(f)`` (``f`` a binary file), atomically: see :func:`temporary_sibling`.
    ``fsync``: flushed to the disk before the rename (a checkpoint must survive a power cut)."""
    path = Path(path)
    with temporary_sibling(path) as (fd, _):
        with os.fdopen(os.dup(fd), "r+b") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def open_append(path: str | os.PathLike, what: str = "file") -> IO[str]:
    """``path`` opened for appending text, refusing a symbolic link (:class:`SymlinkRefusedError`)."""
    refuse_symlink(path, what)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        if Path(path).is_symlink():  # planted between the check and the open
            refuse_symlink(path, what)
        raise e
    return os.fdopen(fd, "a")


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """``fig.savefig`` into ``path`` atomically (the format from its suffix): a plot is a file a run writes too."""
    path = Path(path)
    fmt = savefig_kwargs.pop("format", None) or path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs))
