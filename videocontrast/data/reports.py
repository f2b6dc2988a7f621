"""Say a thing once per run: a table of message hashes in shared memory that the main process and every DataLoader
worker consult, so a bad file or a truncated video is reported once, not once per worker and epoch."""

from __future__ import annotations

import hashlib
import warnings

import torch



_REPORT_SLOTS = 1 << 14


_REPORTS: torch.Tensor | None = None


def report_table() -> torch.Tensor:
    """This run's memory of what was already reported: an open-addressing table of 64-bit message hashes in
    shared memory. A dataset keeps a reference, so its DataLoader workers (forked or spawned: torch shares the
    storage) and the main process consult and fill one table."""
    global _REPORTS
    if _REPORTS is None:
        table = torch.zeros(_REPORT_SLOTS, dtype=torch.int64)
        try:
            table.share_memory_()
        except (RuntimeError, OSError):  # no shared memory here: the table is per process
            pass
        _REPORTS = table
    return _REPORTS


def first_report(key: str, table: torch.Tensor | None = None) -> bool:
    """True the first time ``key`` is seen in this run (main process and DataLoader workers together), False
    after: report a thing only when this returns True. Two workers racing on the same key within microseconds
    can both get True; a full neighbourhood of the table says True again rather than never."""
    table = report_table() if table is None else table
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).digest(), "little",
                       signed=True) or 1
    slots = table.numpy()
    n = len(slots)
    for probe in range(64):
        slot = (h + probe) % n
        value = int(slots[slot])
        if value == h:
            return False
        if value == 0:
            slots[slot] = h
            return True
    return True


def reset_reports() -> None:
    """Forget what was reported (a new "run" in a long-lived process, e.g. between tests)."""
    report_table().zero_()


def warn_once(key: str, message: str, table: torch.Tensor | None = None) -> None:
    """A RuntimeWarning of ``message`` the first time ``key`` is reported in this run. It is attributed to
    "videocontrast" rather than to a source line: raised inside a DataLoader worker, the line would be torch's."""
    if first_report(key, table):
        warnings.warn_explicit(message, RuntimeWarning, "videocontrast", 0, module="videocontrast.data")
