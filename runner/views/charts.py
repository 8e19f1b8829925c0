"""PNG charts drawn with matplotlib (headless), in memory: the one place the figure is made, saved and closed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def figure_png(size: tuple[float, float], draw: Callable[[Any], None]) -> bytes:
    """A figure of ``size`` inches with one set of axes, drawn by ``draw(ax)``, as PNG bytes (120 dpi).

    Made in memory, so the file is written atomically by the caller, never in place; the figure is always closed.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    try:
        draw(ax)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    return buffer.getvalue()
