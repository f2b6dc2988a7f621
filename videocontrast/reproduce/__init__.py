"""`videocontrast reproduce`: the thesis's tables (``thesis``: what each table runs and the numbers it printed)
and the runs that fill them (``run``). ``videocontrast.reproduce.reproduce`` and the rest of ``run``'s names are
reachable here, imported when asked for, so the CLI reads ``thesis``'s table names without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module(".run", __name__), name)
