"""The analysis as a one-page A4 report (PDF or PNG), drawn with matplotlib's Agg/PDF back-ends (no pyplot).

The page shows: the image and the image with the heatmap and lung outline, the per-class scores with the
operating point's threshold, the operating point's measured sensitivity and specificity and this image's result,
warnings, similar cases, the model and its model card, and the disclaimer "Research use only — not for
diagnosis". Patient details appear only when the caller passes them (:class:`ReportInfo`); by default the
report is de-identified. The PDF's metadata carry no patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cxrviewer.services.export.overlay import LUNG_OUTLINE_RGB, render_overlay, to_display_uint8
from cxrviewer.services.result import AnalysisResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

DISCLAIMER = "Research use only — not for diagnosis"
DISCLAIMER_LONG_LINES = (
    "This report was produced by research software. The scores are the output of a model trained on public, "
    "source-confounded data sets;",
    "they are not a diagnosis and must not guide patient care. See the model card for what the model can and cannot do.",
)
MODEL_CARD = "models/MODEL_CARD.md"
A4_INCHES = (8.27, 11.69)
MAX_NEIGHBOURS = 5

INK = "#1d2733"
MUTED = "#5f6b7a"
ACCENT = "#1f5fa8"
ALERT = "#b3261e"
RULE = "#d5dbe3"
PANEL = "#f4f6f9"
ALERT_TINT = "#fcebea"


@dataclass
class ReportInfo:
    """What the report says about the study. Leave the patient fields empty for a de-identified report.

    Attributes:
        patient: e.g. ``"DOE^JANE (12345)"``; empty prints "de-identified".
        study: e.g. ``"CR chest PA, 2024-03-15"``.
        image: the image's name as the user knows it (a file name, never a full path with a patient folder).
        model_card: where the model card lives.
    """

    patient: str = ""
    study: str = ""
    image: str = ""
    model_card: str = MODEL_CARD


def render_report(
    result: AnalysisResult,
    image: np.ndarray,
    path: str | Path,
    info: ReportInfo | None = None,
    dpi: int = 150,
) -> Path:
    """Write the report for ``result`` (the analysis of ``image``, a greyscale array as displayed) to ``path``.

    The format follows the suffix: ``.pdf`` (vector text, one A4 page) or ``.png`` (``dpi`` pixels per inch).
    The file is written to a temporary name first and renamed, so a failed export leaves no half file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise ValueError(f"report format must be .pdf or .png, not {suffix or 'none'!r}")
    fig = build_report_figure(result, image, info or ReportInfo())
    tmp = path.with_name(f".{path.name}.part")
    try:
        if suffix == ".pdf":
            from matplotlib.backends.backend_pdf import PdfPages

            metadata = {"Title": "cxrviewer analysis report", "Creator": "cxrviewer", "Subject": DISCLAIMER}
            with PdfPages(tmp, metadata=metadata) as pdf:
                pdf.savefig(fig)
        else:
            fig.savefig(tmp, dpi=dpi, format="png")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def build_report_figure(result: AnalysisResult, image: np.ndarray, info: ReportInfo) -> Figure:
    """The report page as a matplotlib ``Figure`` (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4_INCHES)
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")
    _header(fig, result, info)
    _images(fig, result, image)
    _scores(fig, result)
    _operating_point(fig, result)
    _notes(fig, result)
    _neighbours(fig, result)
    _footer(fig, result, info)
    return fig


# --- page sections (figure coordinates: 0..1 from bottom-left) ------------------------------------------


def _header(fig: Figure, result: AnalysisResult, info: ReportInfo) -> None:
    fig.text(0.06, 0.955, "Chest X-ray AI analysis", fontsize=19, weight="bold", color=INK)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from cxrviewer import __version__

    fig.text(0.06, 0.935, f"cxrviewer {__version__}  ·  generated {when}", fontsize=8.5, color=MUTED)
    fig.text(
        0.94,
        0.952,
        DISCLAIMER.upper(),
        fontsize=8.5,
        weight="bold",
        color="white",
        ha="right",
        va="center",
        bbox={"boxstyle": "round,pad=0.45", "facecolor": ALERT, "edgecolor": ALERT},
    )
    rows = [
        ("Patient", info.patient or "de-identified"),
        ("Study", info.study or "—"),
        ("Image", info.image or Path(result.path).name or "—"),
        ("Model", result.model_id or "—"),
    ]
    y = 0.905
    for i, (key, value) in enumerate(rows):
        x = 0.06 + 0.44 * (i % 2)
        if i and i % 2 == 0:
            y -= 0.018
        fig.text(x, y, key.upper(), fontsize=7, color=MUTED, weight="bold")
        fig.text(x + 0.075, y, _clip(value, 48), fontsize=8.5, color=INK)
    fig.add_artist(_rule(fig, 0.872))


def _images(fig: Figure, result: AnalysisResult, image: np.ndarray) -> None:
    grey = to_display_uint8(image)
    overlay = render_overlay(grey, result)
    heat_title = "Heatmap"
    if result.heatmap_method or result.heatmap_class:
        heat_title += f" ({', '.join(x for x in (result.heatmap_method, result.heatmap_class) if x)})"
    panels = [(grey, "Image", "gray"), (overlay, heat_title + " + lung outline", None)]
    for i, (data, title, cmap) in enumerate(panels):
        ax = fig.add_axes([0.06 + i * 0.45, 0.53, 0.43, 0.32])
        ax.imshow(data, cmap=cmap, vmin=0, vmax=255, interpolation="lanczos")
        ax.set_title(title, fontsize=9.5, color=INK, loc="left", pad=4)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color(RULE)
    if result.heatmap is None:
        fig.text(0.51, 0.498, "no heatmap for this analysis", fontsize=7.5, color=MUTED)
    if result.lung_mask is not None:
        colour = tuple(c / 255 for c in LUNG_OUTLINE_RGB)
        fig.add_artist(_line(fig, 0.51, 0.535, 0.519, colour))
        fig.text(0.54, 0.515, "lung outline", fontsize=7.5, color=MUTED)
        if result.saliency_outside_lungs is not None:
            fig.text(
                0.94,
                0.515,
                f"heat outside the lungs: {result.saliency_outside_lungs:.0%}",
                fontsize=7.5,
                color=MUTED,
                ha="right",
            )


def _scores(fig: Figure, result: AnalysisResult) -> None:
    fig.text(0.06, 0.475, "Scores", fontsize=12, weight="bold", color=INK)
    ax = fig.add_axes([0.2, 0.345, 0.33, 0.115])
    items = sorted(result.probabilities.items(), key=lambda kv: kv[1])
    if not items:
        ax.set_axis_off()
        ax.text(0, 0.5, f"No scores ({result.status}): {result.reason or ''}", fontsize=9, color=ALERT)
        return
    labels = [k for k, _ in items]
    values = [v for _, v in items]
    op = result.operating_point
    colours = [ACCENT if (op is None or k != op.positive_class) else ALERT for k in labels]
    ax.barh(labels, values, color=colours, height=0.55)
    for y, v in enumerate(values):
        x = min(v + 0.02, 0.9)
        if op is not None and x < op.threshold + 0.01 < x + 0.1:  # keep clear of the threshold line
            x = op.threshold + 0.02
        ax.text(
            x,
            y,
            f"{v:.2f}",
            va="center",
            fontsize=8.5,
            color=INK,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"},
            zorder=5,
        )
    if op is not None:
        ax.axvline(op.threshold, color=INK, linestyle="--", linewidth=1)
        ax.text(op.threshold, len(values) - 0.35, f" threshold {op.threshold:.2f}", fontsize=7, color=INK)
    ax.set_xlim(0, 1)
    ax.tick_params(labelsize=8.5, colors=INK, length=0)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.tick_params(axis="x", labelsize=7, colors=MUTED)
    for name in ("top", "right"):
        ax.spines[name].set_visible(False)
    for name in ("left", "bottom"):
        ax.spines[name].set_color(RULE)
    fig.text(
        0.06,
        0.308,
        "model probability per class; not calibrated across image sources",
        fontsize=7,
        color=MUTED,
    )


def _operating_point(fig: Figure, result: AnalysisResult) -> None:
    x0 = 0.6
    fig.text(x0, 0.475, "Operating point", fontsize=12, weight="bold", color=INK)
    op = result.operating_point
    if op is None:
        fig.text(x0, 0.445, "No operating point in the model manifest.", fontsize=8.5, color=MUTED)
        return
    rows = [
        ("Name", op.name),
        ("Class", op.positive_class),
        ("Threshold", f"{op.threshold:.3f}"),
        ("Sensitivity", _with_ci(op.sensitivity, op.sensitivity_ci)),
        ("Specificity", _with_ci(op.specificity, op.specificity_ci)),
    ]
    y = 0.445
    for key, value in rows:
        fig.text(x0, y, key, fontsize=8.5, color=MUTED)
        fig.text(x0 + 0.12, y, value, fontsize=8.5, color=INK)
        y -= 0.02
    if op.positive is not None:
        verdict = "ABOVE threshold" if op.positive else "below threshold"
        colour = ALERT if op.positive else ACCENT
        score = result.probabilities.get(op.positive_class)
        text = f"{op.positive_class} {verdict}" + (f" ({score:.2f})" if score is not None else "")
        fig.text(
            x0,
            y - 0.008,
            text,
            fontsize=9.5,
            weight="bold",
            color="white",
            bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": colour},
        )
    fig.text(x0, 0.308, "as measured for this model; 95% confidence intervals", fontsize=7, color=MUTED)


def _notes(fig: Figure, result: AnalysisResult) -> None:
    fig.add_artist(_rule(fig, 0.292))
    fig.text(0.06, 0.265, "Warnings", fontsize=12, weight="bold", color=INK)
    warnings = list(result.warnings) or ["none"]
    y = 0.243
    for w in warnings[:4]:
        fig.text(
            0.075,
            y,
            ("⚠  " if w != "none" else "") + _clip(w, 110),
            fontsize=8.5,
            color=INK if w != "none" else MUTED,
        )
        y -= 0.018
    if len(warnings) > 4:
        fig.text(0.075, y, f"… and {len(warnings) - 4} more", fontsize=8, color=MUTED)


def _neighbours(fig: Figure, result: AnalysisResult) -> None:
    top = 0.182
    fig.text(0.06, top, "Similar cases", fontsize=12, weight="bold", color=INK)
    if result.neighbour_vote:
        vote = ", ".join(
            f"{k} {v:.0%}" for k, v in sorted(result.neighbour_vote.items(), key=lambda kv: -kv[1])
        )
        fig.text(0.94, top, f"neighbour vote: {vote}", fontsize=8, color=MUTED, ha="right")
    neighbours = result.neighbours[:MAX_NEIGHBOURS]
    if not neighbours:
        fig.text(0.075, top - 0.025, "no case library searched", fontsize=8.5, color=MUTED)
        return
    width = 0.88 / MAX_NEIGHBOURS
    for i, n in enumerate(neighbours):
        x = 0.06 + i * width
        ax = fig.add_axes([x + 0.01, 0.104, width - 0.02, 0.064])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_axis_off()
        thumb = _decode_thumbnail(n.thumbnail_png)
        if thumb is not None:
            ax.imshow(thumb, cmap="gray", vmin=0, vmax=255, aspect="equal")
        else:
            ax.text(
                0.5,
                0.5,
                "no thumbnail",
                ha="center",
                va="center",
                fontsize=7,
                color=MUTED,
                transform=ax.transAxes,
            )
        cx = x + width / 2
        fig.text(cx, 0.092, _clip(n.label, 24), fontsize=7.5, weight="bold", color=INK, ha="center")
        fig.text(cx, 0.081, f"distance {n.distance:.3f}", fontsize=6.5, color=MUTED, ha="center")
        fig.text(cx, 0.071, _clip(n.case_id, 26), fontsize=6.5, color=MUTED, ha="center")


def _footer(fig: Figure, result: AnalysisResult, info: ReportInfo) -> None:
    from matplotlib.patches import FancyBboxPatch

    fig.add_artist(
        FancyBboxPatch(
            (0.06, 0.024),
            0.88,
            0.03,
            boxstyle="round,pad=0.004",
            transform=fig.transFigure,
            facecolor=ALERT_TINT,
            edgecolor=ALERT,
            linewidth=0.6,
        )
    )
    fig.text(0.075, 0.047, DISCLAIMER, fontsize=8.5, weight="bold", color=ALERT)
    for i, line in enumerate(DISCLAIMER_LONG_LINES):
        fig.text(0.075, 0.035 - 0.0105 * i, line, fontsize=6.5, color=INK)
    card = f"Model card: {info.model_card}" + (f"  ·  model {result.model_id}" if result.model_id else "")
    if result.backend:
        card += f"  ·  backend {result.backend}"
    fig.text(0.06, 0.009, card, fontsize=6.5, color=MUTED)
    fig.text(0.94, 0.009, "page 1 of 1", fontsize=6.5, color=MUTED, ha="right")


# --- helpers ---------------------------------------------------------------------------------------------


def _rule(fig: Figure, y: float) -> Line2D:
    return _line(fig, 0.06, 0.94, y, RULE, 0.8)


def _line(fig: Figure, x0: float, x1: float, y: float, colour: str | tuple, width: float = 1.6) -> Line2D:
    from matplotlib.lines import Line2D

    return Line2D([x0, x1], [y, y], transform=fig.transFigure, color=colour, linewidth=width)


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "not measured"
    text = f"{value:.1%}"
    if ci:
        text += f"  ({ci[0]:.1%} – {ci[1]:.1%})"
    return text


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _decode_thumbnail(data: bytes | None) -> np.ndarray | None:
    if not data:
        return None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return arr
