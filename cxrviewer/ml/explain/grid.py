"""A PNG grid of example images with their heatmaps for the trainer report: one row per outcome
(true positives, false positives, false negatives). Uses matplotlib's Agg canvas, never pyplot's globals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUTCOMES = ("TP", "FP", "FN")
_ROW_TITLES = {"TP": "true positives", "FP": "false positives", "FN": "false negatives"}


@dataclass(frozen=True)
class GridItem:
    """One example of the grid.

    Attributes:
        image: 2-D grayscale image (uint8, or float; shown with its own min-max).
        heatmap: 2-D map in [0, 1] of the same shape (e.g. ``Heatmap.map``).
        outcome: ``"TP"``, ``"FP"`` or ``"FN"``.
        caption: a short label under the image (an anonymous id, the score); never patient data.
        warning: shown in red when set (e.g. ``Heatmap.warning`` is not None).
    """

    image: np.ndarray
    heatmap: np.ndarray
    outcome: str
    caption: str = ""
    warning: bool = False

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}; use one of {OUTCOMES}")
        if np.shape(self.image)[:2] != np.shape(self.heatmap)[:2]:
            raise ValueError(
                f"image shape {np.shape(self.image)} and heatmap shape {np.shape(self.heatmap)} differ"
            )


def render_example_grid(
    items: list[GridItem],
    out_png: str | Path,
    title: str = "",
    max_per_row: int = 6,
    alpha: float = 0.45,
) -> Path:
    """Render TP / FP / FN rows of images with their heatmaps overlaid; returns the PNG path.

    Rows without examples are drawn with a "none" note, so a report always shows all three outcomes. At most
    ``max_per_row`` examples per outcome are drawn, in the order given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = {k: [it for it in items if it.outcome == k][:max_per_row] for k in OUTCOMES}
    ncols = max(1, max(len(v) for v in rows.values()))
    fig = Figure(figsize=(2.2 * ncols + 0.6, 2.5 * len(OUTCOMES) + (0.4 if title else 0)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(OUTCOMES), ncols, squeeze=False)
    for r, outcome in enumerate(OUTCOMES):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c == 0:
                ax.set_ylabel(f"{_ROW_TITLES[outcome]} ({len(rows[outcome])})", fontsize=9)
            if c >= len(rows[outcome]):
                if c == 0:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=9, color="0.4")
                continue
            item = rows[outcome][c]
            ax.imshow(np.asarray(item.image, dtype=np.float32), cmap="gray", interpolation="bilinear")
            ax.imshow(
                np.clip(np.asarray(item.heatmap, dtype=np.float32), 0, 1),
                cmap="jet",
                alpha=alpha,
                vmin=0.0,
                vmax=1.0,
                interpolation="bilinear",
            )
            ax.set_xlabel(item.caption, fontsize=7, color="red" if item.warning else "black")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
