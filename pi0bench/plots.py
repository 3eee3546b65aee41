"""The one plotting style: every report, curve, sweep and robustness figure is made here
headless, with labels of at least 9 pt, legends outside the data, and a size that is exactly
what it says (figsize × DPI pixels: constrained layout, no tight-bbox cropping)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: figures are written on machines without a display

import matplotlib.pyplot as plt  # noqa: E402

DPI = 100
MIN_FONT_PT = 9
matplotlib.rcParams.update({
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT, "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 11,
})


def figure(width_in: float, height_in: float, nrows: int = 1, ncols: int = 1, **kwargs):
    """(fig, axes) of exactly width × height inches, laid out so nothing overlaps; `axes` is
    always a 2-D array."""
    return plt.subplots(nrows, ncols, figsize=(width_in, height_in), layout="constrained", squeeze=False, **kwargs)


def legend_outside(ax, **kwargs) -> None:
    """A legend right of the axes, never over the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kwargs)


def figure_png(fig) -> bytes:
    """The figure as PNG bytes, figsize × DPI pixels; the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
