"""The similar-cases panel: the neighbour vote and a thumbnail grid of the nearest library cases (label and
distance under each). Clicking a case asks the window to show it side by side; "Add to my library" stores
the current image with a label when a case library is available."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from cxrviewer.services.result import AnalysisResult, Neighbour

THUMB = 96
LIBRARY_LABELS = ("normal", "pneumonia", "covid", "other")


def vote_text(vote: dict[str, float]) -> str:
    """E.g. ``"Neighbour vote: covid 75 % · normal 25 %"`` (highest first)."""
    if not vote:
        return "Neighbour vote: —"
    parts = [f"{k} {100 * v:.0f} %" for k, v in sorted(vote.items(), key=lambda kv: -kv[1])]
    return "Neighbour vote: " + " · ".join(parts)


class SimilarCasesPanel(QWidget):
    """Thumbnails of :attr:`AnalysisResult.neighbours`."""

    case_activated = Signal(object)  # Neighbour
    add_to_library = Signal(str)  # label

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.vote = QLabel(vote_text({}))
        self.vote.setWordWrap(True)
        layout.addWidget(self.vote)
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 36, THUMB + 46))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setWordWrap(True)
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._activated)
        layout.addWidget(self.list, 1)
        self.empty = QLabel("Similar cases appear here after an analysis.")
        self.empty.setWordWrap(True)
        self.empty.setObjectName("hint")
        layout.addWidget(self.empty)

        row = QHBoxLayout()
        self.label_box = QComboBox()
        self.label_box.setEditable(True)
        self.label_box.addItems(LIBRARY_LABELS)
        self.add_button = QPushButton("Add to my library")
        self.add_button.setToolTip("Store this image's thumbnail and embedding in your own case library")
        self.add_button.clicked.connect(
            lambda: self.add_to_library.emit(self.label_box.currentText().strip())
        )
        row.addWidget(self.label_box, 1)
        row.addWidget(self.add_button)
        layout.addLayout(row)
        self.set_library_available(False, "No case library is configured.")
        self.neighbours: list[Neighbour] = []

    def set_library_available(self, available: bool, why: str = "") -> None:
        self.add_button.setEnabled(available)
        self.label_box.setEnabled(available)
        self.add_button.setToolTip(
            "Store this image's thumbnail and embedding in your own case library" if available else why
        )

    def show_result(
        self, result: AnalysisResult | None, thumbnails: Sequence[QImage | None] | None = None
    ) -> None:
        """Show ``result``'s neighbours; ``thumbnails`` are their images already decoded and scaled off the GUI
        thread (:func:`cxrviewer.ui.overlay_data.thumbnail_image`), else the PNGs are decoded here."""
        self.list.clear()
        self.neighbours = list(result.neighbours) if result is not None else []
        self.vote.setText(vote_text(result.neighbour_vote if result is not None else {}))
        ready = (
            list(thumbnails) if thumbnails is not None and len(thumbnails) == len(self.neighbours) else None
        )
        for i, n in enumerate(self.neighbours):
            item = QListWidgetItem(f"{n.label}\nd {n.distance:.3f}")
            if ready is not None:
                pix = QPixmap.fromImage(ready[i]) if ready[i] is not None else QPixmap()
            else:
                pix = QPixmap()
                if n.thumbnail_png:
                    pix.loadFromData(n.thumbnail_png, "PNG")
                if not pix.isNull():
                    pix = pix.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio)
            if not pix.isNull():
                item.setIcon(QIcon(pix))
            tip = [
                f"case {n.case_id} in {n.library}",
                f"label: {n.label}",
                f"cosine distance {n.distance:.4f}",
            ]
            if n.source:
                tip.append(f"source: {n.source}")
            if n.licence:
                tip.append(f"licence: {n.licence}")
            item.setToolTip("\n".join(tip))
            item.setData(Qt.ItemDataRole.UserRole, n)
            self.list.addItem(item)
        self.empty.setVisible(not self.neighbours)
        if result is not None and not self.neighbours:
            self.empty.setText("No similar cases: no case library matched this model.")

    def _activated(self, item: QListWidgetItem) -> None:
        n = item.data(Qt.ItemDataRole.UserRole)
        if n is not None:
            self.case_activated.emit(n)
