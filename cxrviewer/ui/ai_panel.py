"""The AI panel: per-class probabilities as bars, the operating point with its measured sensitivity and
specificity, abstention and error reasons, warnings, model, backend and latency - under a permanent
"Research use only" notice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from cxrviewer import INTENDED_USE

if TYPE_CHECKING:
    from cxrviewer.services.result import AnalysisResult

RESEARCH_NOTICE = "Research use only — not for diagnosis"


def _set_visible(widget: QWidget, visible: bool) -> None:
    """Show or hide ``widget`` only when that changes (each change re-lays out the dock)."""
    if widget.isHidden() == visible:
        widget.setVisible(visible)


def _fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{100.0 * x:.0f} %"


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return "" if not ci else f" (95 % CI {100 * ci[0]:.0f}–{100 * ci[1]:.0f})"


class AiPanel(QWidget):
    """Shows one :class:`AnalysisResult`, a progress state, or why there is no analysis."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("AiPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(8)

        self.notice = QLabel(f"⚠  {RESEARCH_NOTICE}")
        self.notice.setObjectName("researchNotice")
        self.notice.setToolTip(INTENDED_USE)
        self.notice.setWordWrap(True)
        layout.addWidget(self.notice)

        self.state = QLabel("No image analysed yet.")
        self.state.setObjectName("aiState")
        self.state.setWordWrap(True)
        layout.addWidget(self.state)

        self.bars_frame = QFrame()
        self.bars = QGridLayout(self.bars_frame)
        self.bars.setContentsMargins(0, 0, 0, 0)
        self.bars.setHorizontalSpacing(8)
        layout.addWidget(self.bars_frame)

        self.operating_point = QLabel()
        self.operating_point.setWordWrap(True)
        self.operating_point.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.operating_point)

        self.warnings = QLabel()
        self.warnings.setObjectName("aiWarnings")
        self.warnings.setWordWrap(True)
        layout.addWidget(self.warnings)

        self.model_info = QLabel()
        self.model_info.setObjectName("aiModelInfo")
        self.model_info.setWordWrap(True)
        self.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.model_info)
        layout.addStretch(1)
        self.result: AnalysisResult | None = None
        self._bar_rows: list[tuple[QLabel, QProgressBar]] = []
        self._rows_used = 0
        self.show_idle()

    # ------------------------------------------------------------------------------------------ states
    # Widgets are reused and shown/hidden only when their state changes: every visibility change re-lays
    # out the dock, which is what made a naive rebuild cost tens of milliseconds per result.
    def _begin(self) -> None:
        self.setUpdatesEnabled(False)  # QProgressBar.setValue repaints at once otherwise (~2 ms per bar)
        self._rows_used = 0
        for label in (self.operating_point, self.warnings, self.model_info):
            label.clear()

    def _finish(self) -> None:
        for label in (self.operating_point, self.warnings, self.model_info):
            _set_visible(label, bool(label.text()))
        for i, (label, bar) in enumerate(self._bar_rows):
            _set_visible(label, i < self._rows_used)
            _set_visible(bar, i < self._rows_used)
        _set_visible(self.bars_frame, self._rows_used > 0)
        self.setUpdatesEnabled(True)  # one repaint of the panel, on the next event-loop turn

    def _show_text(self, text: str) -> None:
        self.result = None
        self._begin()
        self.state.setText(text)
        self._finish()

    def show_idle(self, text: str = "Open an image to analyse it.") -> None:
        self._show_text(text)

    def show_running(self) -> None:
        """Show "Analysing…": the previous result's texts and bars are blanked but keep their place, so that the
        new result fills them in without re-laying out the dock (a visibility change costs 5-10 ms each)."""
        self.result = None
        self.setUpdatesEnabled(False)
        self.state.setText("Analysing…")
        for label in (self.operating_point, self.warnings, self.model_info):
            label.setText(" " if label.text() else "")  # a blank keeps a one-line place
        for label, bar in self._bar_rows[: self._rows_used]:
            label.setText(" ")
            bar.setValue(0)
            bar.setFormat("")
        self.setUpdatesEnabled(True)

    def show_unavailable(self, reason: str) -> None:
        """No model can be used: viewing works, the panel says why and what to do."""
        self._show_text(
            f"<b>No AI model available.</b><br>{reason}<br><br>Viewing, windowing and measurements work as"
            " usual. Choose a model folder in Preferences (Ctrl+,) to enable the analysis."
        )

    def show_error(self, message: str) -> None:
        self._show_text(f"<b>Analysis failed.</b><br>{message}")

    def show_result(self, result: AnalysisResult) -> None:
        """Render ``result`` (ok, abstained or error)."""
        self.result = result
        self._begin()
        if result.status == "abstained":
            self.state.setText(
                f"<b>No assessment: the model abstained.</b><br>{result.reason or 'no reason given'}"
            )
        elif result.status == "error":
            self.state.setText(f"<b>Analysis failed.</b><br>{result.reason or 'unknown error'}")
        else:
            top = result.top_label
            self.state.setText(f"Most likely: <b>{top}</b>" if top else "No scores.")
        self._show_bars(result)
        self._show_operating_point(result)
        if result.warnings:
            self.warnings.setText("\n".join(f"⚠ {w}" for w in result.warnings))
        self._show_model_info(result)
        self._finish()

    def shown_bars(self) -> list[tuple[str, str]]:
        """The visible probability rows as (class, "12.3 %")."""
        return [(lab.text(), bar.format()) for lab, bar in self._bar_rows[: self._rows_used]]

    def _bar_row(self, i: int) -> tuple[QLabel, QProgressBar]:
        while len(self._bar_rows) <= i:
            label, bar = QLabel(), QProgressBar()
            bar.setObjectName("probBar")
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            row = len(self._bar_rows)
            self.bars.addWidget(label, row, 0)
            self.bars.addWidget(bar, row, 1)
            self._bar_rows.append((label, bar))
        return self._bar_rows[i]

    def _show_bars(self, result: AnalysisResult) -> None:
        positive = result.operating_point.positive_class if result.operating_point else None
        for row, (name, p) in enumerate(sorted(result.probabilities.items(), key=lambda kv: -kv[1])):
            label, bar = self._bar_row(row)
            label.setText(name)
            bar.setValue(round(1000 * float(p)))
            bar.setFormat(f"{100 * float(p):.1f} %")
            bar.setAccessibleName(f"{name} probability")
            if bar.property("positiveClass") != (name == positive):
                bar.setProperty("positiveClass", name == positive)
                bar.style().unpolish(bar)
                bar.style().polish(bar)
        self._rows_used = len(result.probabilities)

    def _show_operating_point(self, result: AnalysisResult) -> None:
        op = result.operating_point
        if op is None:
            return
        verdict = ""
        if op.positive is not None and result.status == "ok":
            verdict = f"<br><b>{op.positive_class}: {'at or above' if op.positive else 'below'} threshold</b>"
        self.operating_point.setText(
            f"Operating point <b>{op.name}</b>: {op.positive_class} ≥ {op.threshold:.3f}<br>"
            f"sensitivity {_fmt_pct(op.sensitivity)}{_fmt_ci(op.sensitivity_ci)}, "
            f"specificity {_fmt_pct(op.specificity)}{_fmt_ci(op.specificity_ci)}{verdict}"
        )

    def _show_model_info(self, result: AnalysisResult) -> None:
        parts = [f"Model: {result.model_id or 'unknown'}"]
        backend = result.backend or "unknown"
        if result.backend_reason:
            backend += f" ({result.backend_reason})"
        parts.append(f"Backend: {backend}")
        parts.append(f"Latency: {result.latency_ms:.0f} ms")
        if result.heatmap_method:
            cls = f" for {result.heatmap_class}" if result.heatmap_class else ""
            parts.append(f"Heatmap: {result.heatmap_method}{cls}")
        if result.saliency_outside_lungs is not None:
            parts.append(f"Saliency outside the lungs: {100 * result.saliency_outside_lungs:.0f} %")
        self.model_info.setText("\n".join(parts))
