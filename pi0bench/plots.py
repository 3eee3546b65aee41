"""The one place figures are made headless and turned into PNG bytes, so every report,
curve and sweep writes its figures the same way."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: figures are written on machines without a display

import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def figure_png(fig) -> bytes:
    """The figure as PNG bytes (tight layout); the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


__all__ = ["DPI", "figure_png", "plt"]
