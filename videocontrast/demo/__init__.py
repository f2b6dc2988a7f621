"""`videocontrast demo`: pretrain, score every encoder against its baselines, and write the report.

``run`` runs the demo, ``verdict`` decides what its figures say, ``report`` draws the page. Names of ``run``
(``run_demo`` and the rest) are reachable here as before the package existed, imported only when asked for, so
importing a sibling module (the torch-free ``verdict``) does not load torch.
"""
from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module(".run", __name__), name)
