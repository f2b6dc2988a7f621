"""Run folders: one writer at a time, resume only with settings that keep the run what it was, nothing left
behind by a killed run, and outputs checked for write access and room before the work starts.

**Lock.** A process writing a run folder holds ``fcntl.flock`` on ``OUT/.videocontrast.lock``. The operating
system drops a flock when its process ends, however it ends (SIGKILL, the OOM killer), so a killed run never
leaves a folder locked and there is no stale-lock guessing (a pid file would need "is that pid alive, on which
host, and is it still the same program?"). The file holds the holder's pid, host, start time and command only so
that the refusal can name it; it is removed when the lock is released (a killed run leaves the file, not the
lock). Loader workers forked by the holder share the lock until they exit, which they do within seconds of their
parent. Without ``fcntl`` (Windows) folders are not locked.

**Resume rule** (:func:`resume_config`). A run continues only with the settings it started with, except:

* ``train.epochs`` may grow (never shrink). The per-iteration cosine schedule is recomputed over the new total, so
  after the resume point the learning rate differs from that of a run started with that many epochs.
* ``train.log_every``, ``save_every``, ``keep_every``, ``knn_every``, ``time_limit_s``, ``device``,
  ``data.num_workers`` and ``data.cache``: how and where the run is carried out, not what it computes (``device``
  can change numerics, not the run's definition; the frame cache gives the frames decoding gives).
* ``eval.*``, ``data.eval_clips`` and ``data.eval_crops``: evaluation settings, not read by training (the kNN
  monitor reads them: its numbers after the resume follow the new settings). A fine-tuning or supervised run's
  ``eval.finetune_*`` (optimiser, lr, epochs, ``finetune_augment``) reach its training as the ``optim.*``,
  ``train.epochs`` and ``aug.*`` of its own config (:func:`~videocontrast.eval.finetune.finetune_config`), which
  this rule governs: more epochs continue it, another optimiser, lr or augmentation is refused (so the augmentation
  never changes in the middle of a run).

Everything else (method, data, augmentation, model, optimiser, ``train.max_steps_per_epoch`` -- it changes the
steps per epoch and so the schedule --, precision, seed, ...) is refused with every differing field named.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl  # POSIX only: on Windows run folders are not locked
except ImportError:  # pragma: no cover
    fcntl = None

from ..config import Config, ConfigError, config_from_dict, load_config
from ..data.cache import CACHE_FILE
from ..fileio import atomic_write_text, refuse_symlink
from .checkpoint import load_checkpoint

LOCK_NAME = ".videocontrast.lock"
# Room every command needs at least (config, metrics, results); a checkpoint's own need is estimated by fit.
MIN_FREE_BYTES = 16 << 20
# Settings that may differ on resume (see the module docstring); train.epochs may only grow.
RESUME_SAFE = ("train.log_every", "train.save_every", "train.keep_every", "train.knn_every", "train.time_limit_s",
               "train.device", "data.num_workers", "data.cache", "data.eval_clips", "data.eval_crops")
RESUME_SAFE_SECTIONS = ("eval.",)
IGNORED = ("preset",)  # a label of where the settings came from, not a setting


class RunFolderError(ValueError):
    """A run folder or output cannot be used as asked (in use, not writable, no room); the message says what to
    do. A ``ValueError``, so the command line reports it in one line."""


class RunInUseError(RunFolderError):
    """Another process holds the folder's lock."""


@dataclass(frozen=True)
class Change:
    """One setting that differs between a stored run and a request."""

    field: str
    stored: Any
    requested: Any

    def __str__(self) -> str:
        return f"{self.field}: stored {_fmt(self.stored)}, requested {_fmt(self.requested)}"


class ResumeConfigError(ConfigError):
    """The requested settings differ from a stored run's in fields that cannot change on resume."""

    def __init__(self, message: str, refused: list[Change]):
        super().__init__(message)
        self.refused = refused


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _flat(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def config_changes(stored: Config, requested: Config) -> list[Change]:
    """Every setting (``section.field``) whose value differs, in config order; ``preset`` is ignored."""
    old, new = dict(_flat(stored.to_dict())), dict(_flat(requested.to_dict()))
    return [Change(k, old.get(k), new.get(k)) for k in dict.fromkeys([*old, *new])
            if k not in IGNORED and old.get(k) != new.get(k)]


def resume_allowed(change: Change) -> bool:
    """Whether ``change`` keeps a resumed run the same run (the rule in the module docstring)."""
    if change.field == "train.epochs":
        return change.requested > change.stored
    return change.field in RESUME_SAFE or change.field.startswith(RESUME_SAFE_SECTIONS)


def refused_changes(stored: Config, requested: Config) -> list[Change]:
    return [c for c in config_changes(stored, requested) if not resume_allowed(c)]


def resume_config(stored: Config, requested: Config, out_dir: str | Path) -> tuple[Config, list[Change]]:
    """The config a resumed run continues with: ``requested`` when it differs from ``stored`` (the run's own,
    from its checkpoint) only where :func:`resume_allowed` says so, and the list of those changes.

    Raises:
        ResumeConfigError: naming every other differing field with both values.
    """
    refused = refused_changes(stored, requested)
    if refused:
        raise ResumeConfigError(
            f"'{out_dir}' holds a run with other settings ({'; '.join(map(str, refused))}): a run continues only "
            "with the settings it started with (on resume only more train.epochs, the logging, saving, time-limit, "
            "device and worker settings, and evaluation settings may change); drop these changes, or choose "
            "another --out for a new run", refused)
    cfg = copy.deepcopy(requested)
    cfg.preset = stored.preset
    return cfg, config_changes(stored, requested)


def describe_changes(changes: list[Change]) -> str:
    """One line for the changes a resume applies, saying what a longer run means for the schedule."""
    parts = []
    for c in changes:
        note = (f" (the cosine lr schedule is recomputed over {c.requested} epochs: from here on the lr differs "
                f"from a run started with {c.requested} epochs)" if c.field == "train.epochs" else "")
        parts.append(f"{c}{note}")
    return "; ".join(parts)


def epochs_done_phrase(done: int, total: int) -> str:
    """Where a continued run stands, with no room for an off-by-one reading: "epochs 1-20 done, continuing with
    epoch 21 of 60" (a bare "from epoch 20" reads as if epoch 20 were trained again)."""
    if done <= 0:
        return f"no epoch done yet, starting with epoch 1 of {total}"
    done_part = "epoch 1 done" if done == 1 else f"epochs 1-{done} done"
    return f"{done_part}, continuing with epoch {done + 1} of {total}"


def run_number(history: list[dict[str, Any]]) -> int:
    """How many runs (calls of the training engine, one per command) trained the epochs of ``history``: each epoch
    record carries its run's number (records written before that field existed count as run 1)."""
    return int(history[-1].get("run", 1)) if history else 0


def time_limit_stops(history: list[dict[str, Any]]) -> int:
    """How many of those runs ``train.time_limit_s`` stopped (their last epoch record says so)."""
    return sum(1 for h in history if h.get("time_limit_reached"))


@dataclass(frozen=True)
class StoredRun:
    """What a run folder holds: its settings, how far it got, and its checkpoint (None before the first)."""

    config: Config
    epochs_done: int
    final: bool
    checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)  # the checkpoint's per-epoch records


def stored_run(out_dir: str | Path) -> StoredRun | None:
    """The run in ``out_dir``: from ``checkpoints/last.pt`` (authoritative), else from ``config.yaml`` (a run that
    stopped before its first checkpoint); None when there is neither."""
    out = Path(out_dir)
    ckpt = out / "checkpoints" / "last.pt"
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        return StoredRun(config_from_dict(state["config"]), int(state.get("epoch", 0)), bool(state.get("final")),
                         ckpt, list(state.get("history", [])))
    if (out / "config.yaml").is_file():
        return StoredRun(load_config(str(out / "config.yaml")), 0, False, None)
    return None


# What a pretraining run folder may hold before its first checkpoint and config.yaml (what a run killed while
# filling its frame cache leaves), so that `--resume` on it starts the run rather than refusing it.
RUN_LEFTOVERS = (LOCK_NAME, "metrics.jsonl", "checkpoints", "tb", CACHE_FILE)


def check_resumable(out_dir: str | Path) -> None:
    """Raise :class:`RunFolderError` when ``out_dir`` holds something other than a run (an embedding folder, a
    demo, any other files) and no run to resume: `--resume` must not start a new run among them. A folder that does
    not exist yet or holds only a run's leftovers (:data:`RUN_LEFTOVERS`) is fine: the run starts there."""
    out = Path(out_dir)
    if not out.is_dir() or (out / "checkpoints" / "last.pt").is_file() or (out / "config.yaml").is_file():
        return
    other = sorted(p.name for p in out.iterdir()
                   if p.name not in RUN_LEFTOVERS and not p.name.startswith((".", "cache-rank")))
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise RunFolderError(f"nothing to resume in '{out}': it holds {shown} but no checkpoints/last.pt (it is "
                             "not a pretraining run folder); give the run's --out, or drop --resume and choose an "
                             "empty --out for a new run")


# -- writability and room ---------------------------------------------------------------------------------------

def _mib(n: float) -> str:
    return f"{n / 2 ** 20:.0f} MiB"


def check_free_space(path: str | Path, need_bytes: int, what: str,
                     advice: str = "free some space or choose another --out") -> None:
    """Raise :class:`RunFolderError` when the disk holding ``path`` (an existing folder) has less than
    ``need_bytes`` free; ``what`` names the output in the message (``--out '...'``, ``the checkpoint ...``)."""
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise RunFolderError(f"not enough free space for {what}: {_mib(free)} free on that disk, and it needs "
                             f"about {_mib(need_bytes)}; {advice}")


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | Path, need_bytes: int = MIN_FREE_BYTES, *, folder: bool = True,
                   flag: str = "--out") -> None:
    """Check, before any work, that ``path`` (a folder, or with ``folder=False`` a file) can be created or written
    and that its disk has ``need_bytes`` free. Creates nothing that stays (a probe file comes and goes).

    Raises:
        RunFolderError: one line naming ``path``, the reason, and what to do (``flag`` names the option).
    """
    path = Path(path)
    if path.exists() and not folder and path.is_dir():
        raise RunFolderError(f"{flag} '{path}' is a folder; give a file name")
    if path.exists() and folder and not path.is_dir():
        raise RunFolderError(f"{flag} '{path}' is a file, not a folder; choose another {flag}")
    base = _existing_ancestor(path if folder or not path.exists() else path.parent)
    if not base.is_dir():
        raise RunFolderError(f"{flag} '{path}' cannot be created: '{base}' is a file, not a folder; choose another "
                             f"{flag}")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".videocontrast-probe"):
            pass
        if path.is_file() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise RunFolderError(f"{flag} '{path}' is not writable ('{base}': {e.strerror or e}); choose another "
                             f"{flag} or fix its permissions") from None
    check_free_space(base, need_bytes, f"{flag} '{path}'", f"free some space or choose another {flag}")


# -- one writer per folder ----------------------------------------------------------------------------------------

_held: set[Path] = set()  # folders this process holds the lock of (nested run_lock calls are no-ops)


def _is_main_rank() -> bool:
    # Before init_distributed: torchrun's environment says which process writes (rank 0).
    return int(os.environ.get("RANK", "0")) == 0


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _acquire(path: Path, out: Path) -> int:
    while True:
        try:  # never through a planted link: the holder's details would overwrite its target
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0),
                         0o644)
        except OSError:
            refuse_symlink(path, "lock file")
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise RunInUseError(f"'{out}' is in use by another videocontrast process ({holder}); two runs writing "
                                "one folder would mix their checkpoints and metrics: wait for it to end (or stop "
                                "it), or choose another --out") from None
        try:  # the previous holder may have removed the file between our open and our flock: use the file there
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["videocontrast", *sys.argv[1:]]) if sys.argv else "python"}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


@contextlib.contextmanager
def run_lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold ``out_dir`` for this process while the block runs: check it is writable (see :func:`check_writable`),
    create it, and lock it. A second process gets :class:`RunInUseError` naming the holder.

    A folder this call created is removed again when the block fails and leaves it empty, so a command that fails
    on its arguments leaves nothing behind. Nested calls for the same folder, and ranks other than 0 under
    torchrun, do nothing.
    """
    out = Path(out_dir)
    key = out.resolve()
    if key in _held or not _is_main_rank():
        yield out
        return
    check_writable(out)
    missing = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = _acquire(path, out) if fcntl is not None else None
    _held.add(key)
    failed = False
    try:
        yield out
    except BaseException:
        failed = True
        raise
    finally:
        _held.discard(key)
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # while still holding it: see _acquire
            os.close(fd)
        if failed:
            for p in missing:  # deepest first; stops at the first folder something was written into
                try:
                    p.rmdir()
                except OSError:
                    break


# -- leftovers of a killed run --------------------------------------------------------------------------------------

def truncate_metrics(path: str | Path, epochs_done: int) -> int:
    """Drop the records of ``metrics.jsonl`` written after the checkpoint (epoch > ``epochs_done``) and any half
    written line: what a killed or interrupted run leaves, and what its resumed run would write again. Rewritten
    atomically; returns the number of lines dropped."""
    path = Path(path)
    refuse_symlink(path, "metrics file")
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and int(record.get("epoch", 0)) <= epochs_done
        except (ValueError, TypeError):
            ok = False
        if ok:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in keep))
    return dropped


def clean_run_folder(out_dir: str | Path, epochs_done: int) -> list[str]:
    """Before a run (re)starts in ``out_dir`` (holding its lock): remove temporary checkpoint files left by a killed
    writer and truncate ``metrics.jsonl`` to the checkpoint's epoch. Returns one note per thing done."""
    out = Path(out_dir)
    notes = []
    ckdir = out / "checkpoints"
    stale = sorted(ckdir.glob(".*.pt.tmp*")) if ckdir.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        notes.append(f"removed {len(stale)} temporary checkpoint file(s) left by a killed run "
                     f"({', '.join(p.name for p in stale)})")
    dropped = truncate_metrics(out / "metrics.jsonl", epochs_done)
    if dropped:
        notes.append(f"metrics.jsonl: dropped {dropped} line(s) written after the checkpoint (epoch {epochs_done}) "
                     "by an interrupted run")
    return notes


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Let the block finish before a Ctrl-C (SIGINT) takes effect: raised as ``KeyboardInterrupt`` right after it.
    Only in the main thread and only where SIGINT has Python's default handler; elsewhere a no-op."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt
