"""Search your own footage: ``embed`` writes an embedding folder (its Parquet table through ``shards``, its FAISS
index through ``index``), ``query`` answers a query against it and ``serve`` puts it behind a local web page
(``static/``). ``videocontrast.search.search`` / ``load_collection`` (``query``'s names) are reachable here as
before this was a package, imported when asked for, so the CLI reads ``index``'s names without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module(".query", __name__), name)
