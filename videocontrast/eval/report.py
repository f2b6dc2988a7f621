"""Static HTML reports that open offline: inline CSS, no JavaScript, images as PNG files in ``img/`` next to the page.

:func:`retrieval_report` draws the thesis Fig. 4 layout: each row is a query video followed by its nearest training
videos, each shown as 3 frames (first, middle, last) side by side, with class name, cosine similarity and a
green (same class) or red (other class) border.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from videocontrast.data.decode import probe_video, read_frames
from videocontrast.eval.plots import new_figure
from videocontrast.fileio import atomic_write_text, save_figure
from videocontrast.names import metric_label, percent

FrameReader = Callable[[str], Any]

# Border colour per neighbour ``hit`` value; ``None`` = class unknown (e.g. searching an unlabeled folder).
_HIT_STYLE = {True: ("hit", "#1a9e3a"), False: ("miss", "#d32f2f"), None: ("unknown", "#757575")}

_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222;max-width:1400px}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    "th{background:#f0f0f0}img{max-width:100%}.hit{color:#1a7f37}.miss{color:#c62828}"
    ".headline{font-size:1.15em}.beside{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}"
    ".rows{max-width:32em;margin:1em 0}.rows dt{font-weight:bold}.rows dd{margin:0 0 .5em 1em}"
)


def _hit(item: Mapping[str, Any]) -> bool | None:
    hit = item.get("hit")
    return None if hit is None else bool(hit)


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete HTML document: ``title`` plus one ``<h2>`` per ``(heading, html_body)`` section.

    Headings are escaped; section bodies are inserted as given (build them with :func:`table_html` /
    :func:`image_html`, which escape their own text).
    """
    body = "\n".join(f"<section><h2>{html.escape(h)}</h2>\n{content}</section>" for h, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table; columns are the union of the rows' keys in first-seen order, floats shown with 4 decimals."""
    if not rows:
        return "<p><em>(empty)</em></p>"
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _metric_header(key: str) -> str:
    return metric_label(key) if key.startswith("R@") else key.replace("_", " ")


def _metric_value(key: str, value: Any) -> Any:
    return percent(value) if key.startswith("R@") and isinstance(value, (int, float)) else value


def image_html(rel_path: str, alt: str) -> str:
    """``<img>`` for a file path relative to the HTML page (so the folder can be moved or zipped as a whole)."""
    return f'<p><img src="{html.escape(rel_path, quote=True)}" alt="{html.escape(alt, quote=True)}"></p>'


def default_frame_reader(size: int | tuple[int, int] = 112) -> FrameReader:
    """A reader returning the first, middle and last frame of a video as uint8 ``(3, C, H, W)``."""

    def read(path: str) -> torch.Tensor:
        info = probe_video(path)
        n = max(info.num_frames, 1)
        return read_frames(path, [0, n // 2, n - 1], size=size, info=info)

    return read


def _frames_hwc(frames: Any) -> np.ndarray:
    """Accept ``(F, H, W, 3)`` or ``(F, 3, H, W)`` (NumPy or torch, uint8 or float in [0, 1]) -> uint8 ``(F, H, W, 3)``."""
    a = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if a.ndim != 4:
        raise ValueError(f"frame_reader must return (F, H, W, 3) or (F, C, H, W) frames, got shape {a.shape}")
    if a.shape[-1] not in (1, 3) and a.shape[1] in (1, 3):
        a = a.transpose(0, 2, 3, 1)  # channels-first -> channels-last
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
    return a


def _strip(frames: np.ndarray, gap: int = 2) -> np.ndarray:
    """Frames ``(F, H, W, 3)`` placed side by side with white gaps -> ``(H, F*W + (F-1)*gap, 3)``."""
    f, h, w, _ = frames.shape
    out = np.full((h, f * w + (f - 1) * gap, 3), 255, dtype=np.uint8)
    for i in range(f):
        out[:, i * (w + gap): i * (w + gap) + w] = frames[i]
    return out


def _placeholder(h: int = 112, w: int = 3 * 112 + 4) -> np.ndarray:
    return np.full((h, w, 3), 200, dtype=np.uint8)


def retrieval_figure(
    path: str | Path, queries: Sequence[Mapping[str, Any]], frame_reader: FrameReader, title: str = ""
) -> Path:
    """Draw the Fig. 4 grid (one row per query: query strip + one strip per neighbour) to a PNG; returns its path."""
    def strip(video_path: str) -> tuple[np.ndarray, bool]:
        try:
            return _strip(_frames_hwc(frame_reader(video_path))), True
        except Exception:  # noqa: BLE001 -- a missing/corrupt video must not sink the whole report
            return _placeholder(), False

    rows = len(queries)
    cols = 1 + max((len(q.get("neighbours", [])) for q in queries), default=0)
    fig, axes = new_figure((3.6 * cols, 1.75 * rows + 0.7), rows, cols, squeeze=False)
    for r, q in enumerate(queries):
        panels = [(q, "query", "#1f3b73")] + [(n, *_HIT_STYLE[_hit(n)]) for n in q.get("neighbours", [])]
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.axis("off")
                continue
            item, kind, colour = panels[c]
            img, ok = strip(str(item.get("path", "")))
            ax.imshow(img)
            if not ok:
                ax.text(0.5, 0.5, "unreadable", transform=ax.transAxes, ha="center", va="center", fontsize=12)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4)
            name = str(item.get("label_name", ""))
            label = (item.get("title") or f"query: {name}" if kind == "query" else
                     f"{name}  (sim {float(item.get('sim', float('nan'))):.3f})")
            ax.set_title(label, fontsize=12, color=colour if kind != "query" else "black")
    if title:
        fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=100)
    return path


def retrieval_report(
    out_dir: str | Path,
    queries: Sequence[Mapping[str, Any]],
    frame_reader: FrameReader | None = None,
    title: str = "Nearest-neighbour video retrieval",
    metrics: Mapping[str, Any] | None = None,
    image_name: str = "retrieval.png",
    caption: str | None = None,
) -> Path:
    """Write ``out_dir/retrieval.html`` and ``out_dir/img/<image_name>`` (thesis Fig. 4 layout).

    Args:
        out_dir: output folder (created).
        queries: ``[dict(path, label_name, neighbours=[dict(path, label_name, sim, hit)])]``, e.g. a slice of
            ``retrieve(...)["neighbours"]``; ``hit`` True / False draws a green / red border, None a grey one.
        frame_reader: ``path -> frames`` uint8 ``(3, H, W, 3)`` or ``(3, C, H, W)``; default: first / middle / last
            frame decoded with :mod:`videocontrast.data.decode`. Videos that fail to read show a grey placeholder.
        metrics: e.g. ``{"R@1": ..., "protocol": {...}}``; scalars go in a table, a ``protocol`` dict in a second one.
        image_name: file name of the figure in ``out_dir/img`` (pages sharing a folder need different names).
        caption: what a row of the figure is (default: a test video and its nearest training videos). Pages
            whose rows have no class to compare (no ``hit``: search, curate) say what they show instead; a query
            may carry a ``title`` for its cell. Without any ``hit`` the list has labels, not a "same class" column.

    Returns:
        Path of the HTML file.
    """
    out_dir = Path(out_dir)
    reader = frame_reader or default_frame_reader()
    png = retrieval_figure(out_dir / "img" / image_name, queries, reader, title=title)

    sections: list[tuple[str, str]] = []
    if metrics:
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, (Mapping, list, tuple))}
        if scalars:
            sections.append(("Metrics", "<p>R@k is the share of test videos that have a training video of their "
                                        "own class among their k nearest; higher is better.</p>"
                             + table_html([{_metric_header(k): _metric_value(k, v) for k, v in scalars.items()}])))
        if isinstance(metrics.get("protocol"), Mapping):
            rows = [{"setting": k, "value": v} for k, v in metrics["protocol"].items()]
            sections.append(("Protocol", "<p>How the neighbours were found.</p>" + table_html(rows)))
    classes = any(_hit(n) is not None for q in queries for n in q.get("neighbours", []))
    caption = caption or ("Each row is a test video (left, blue) and its nearest training videos, most similar "
                          "first; a green border means the same class, red another class.")
    sections.append(("Queries and nearest neighbours" if classes else "Videos and their neighbours",
                     f"<p>{html.escape(caption)}</p>"
                     + image_html(png.relative_to(out_dir).as_posix(), "grid: each row's video then its neighbours")))
    rows = []
    for q in queries:
        for rank, n in enumerate(q.get("neighbours", []), start=1):
            row = {"query": Path(str(q.get("path", ""))).name}
            if classes:
                row["query class"] = q.get("label_name", "")
            elif q.get("title"):
                row["row"] = q["title"]
            row.update({"rank": rank, "neighbour": Path(str(n.get("path", ""))).name,
                        ("neighbour class" if classes else "label"): n.get("label_name", ""),
                        "cosine similarity": f"{float(n.get('sim', float('nan'))):.3f}"})
            if classes:
                row["same class"] = {True: "yes", False: "no", None: "?"}[_hit(n)]
            rows.append(row)
    sections.append(("Neighbour list", "<p>The same neighbours as a list (rank 1 is the most similar).</p>"
                     + table_html(rows)))
    page = out_dir / "retrieval.html"
    atomic_write_text(page, html_page(title, sections), encoding="utf-8")
    return page
