"""The one way videocontrast makes a figure: a :class:`matplotlib.figure.Figure` of its own, never pyplot.

pyplot (and ``matplotlib.use``) would switch the backend of whoever imported videocontrast: a notebook user's
inline plots would stop showing after a report was written. A bare ``Figure`` needs no backend: ``savefig`` (here
through :func:`videocontrast.fileio.save_figure`) draws it on the Agg canvas, and it is freed like any object, so
there is nothing to close. matplotlib is imported when a figure is made, not with this module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["colormap", "new_figure"]


def new_figure(figsize: tuple[float, float], nrows: int | None = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A new figure of ``figsize`` inches and its axes, as ``plt.subplots(nrows, ncols, figsize=...)`` gives them.

    Args:
        figsize: (width, height) in inches.
        nrows, ncols: the grid of axes; ``nrows=None``: no axes (the figure alone, as ``(fig, None)``).
        kwargs: ``dpi`` (and any other ``Figure`` argument) go to the figure, the rest (``squeeze``,
            ``sharex``, ``gridspec_kw``, ...) to :meth:`Figure.subplots`.

    Returns:
        ``(fig, axes)``: ``axes`` one Axes for 1 x 1 (unless ``squeeze=False``), else an array of them.
    """
    from matplotlib.figure import Figure

    figure_keys = ("dpi", "facecolor", "edgecolor", "linewidth", "frameon", "layout", "constrained_layout",
                   "tight_layout")
    fig = Figure(figsize=figsize, **{k: kwargs.pop(k) for k in figure_keys if k in kwargs})
    if nrows is None:
        return fig, None
    return fig, fig.subplots(nrows, ncols, **kwargs)


def colormap(name: str) -> Any:
    """The registered colormap ``name`` (``matplotlib.colormaps[name]``; what ``plt.get_cmap`` returned)."""
    import matplotlib

    return matplotlib.colormaps[name]
