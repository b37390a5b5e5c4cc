"""The worklist table (batch triage): a Qt model over :class:`cxrviewer.services.worklist.Worklist` and a
panel with Analyse all / Cancel / Sort by score / Export buttons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:  # numpy comes with it: imported when the first worklist is made, not at start-up
    from cxrviewer.services.worklist import Worklist, WorklistItem

COLUMNS = ("Image", "Status", "Score", "Flag", "Top label")
_STATUS_COLOURS = {
    "running": QColor(120, 170, 255),
    "abstained": QColor(240, 190, 90),
    "error": QColor(255, 110, 110),
    "cancelled": QColor(150, 150, 150),
}

Index = QModelIndex | QPersistentModelIndex


class WorklistModel(QAbstractTableModel):
    """Rows are worklist items in their current order."""

    def __init__(self, worklist: Worklist | None = None) -> None:
        super().__init__()
        self._worklist = worklist

    @property
    def worklist(self) -> Worklist:
        """The worklist shown (an empty one is made on first use)."""
        if self._worklist is None:
            from cxrviewer.services.worklist import Worklist

            self._worklist = Worklist()
        return self._worklist

    def set_worklist(self, worklist: Worklist) -> None:
        self.beginResetModel()
        self._worklist = worklist
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() or self._worklist is None else len(self._worklist)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self.worklist[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(item, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.message or item.key
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return _STATUS_COLOURS.get(item.status.value)
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return item
        return None

    def item_changed(self, key: str) -> None:
        """Repaint the row of ``key``."""
        row = self.worklist.index_of(key)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def sort_by_score(self) -> None:
        self.layoutAboutToBeChanged.emit()
        self.worklist.sort_by_score()
        self.layoutChanged.emit()


def _cell(item: WorklistItem, col: int) -> str:
    if col == 0:
        return item.name
    if col == 1:
        return item.status.value
    if col == 2:
        return "" if item.score is None else f"{item.score:.3f}"
    if col == 3:
        return {True: "▲ positive", False: "", None: ""}[item.flagged]
    r = item.result
    return (r.top_label or "") if r is not None else ""


class WorklistPanel(QWidget):
    """The table plus its buttons; the window wires the buttons to the analysis."""

    open_item = Signal(object)  # WorklistItem
    analyse_all = Signal()
    cancel = Signal()
    export = Signal(str)  # "csv" or "json"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = WorklistModel()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        buttons = QHBoxLayout()
        self.analyse_button = QPushButton("Analyse all")
        self.cancel_button = QPushButton("Cancel")
        self.sort_button = QPushButton("Sort by score")
        self.csv_button = QPushButton("Export CSV…")
        self.json_button = QPushButton("Export JSON…")
        for b in (
            self.analyse_button,
            self.cancel_button,
            self.sort_button,
            self.csv_button,
            self.json_button,
        ):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.summary = QLabel()
        buttons.addWidget(self.summary)
        layout.addLayout(buttons)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setAlternatingRowColors(True)
        layout.addWidget(self.table, 1)

        self.analyse_button.clicked.connect(self.analyse_all)
        self.cancel_button.clicked.connect(self.cancel)
        self.sort_button.clicked.connect(self.model.sort_by_score)
        self.csv_button.clicked.connect(lambda: self.export.emit("csv"))
        self.json_button.clicked.connect(lambda: self.export.emit("json"))
        self.table.activated.connect(lambda idx: self.open_item.emit(self.model.worklist[idx.row()]))
        self.table.clicked.connect(lambda idx: self.open_item.emit(self.model.worklist[idx.row()]))
        self.refresh_summary()

    @property
    def worklist(self) -> Worklist:
        return self.model.worklist

    def set_worklist(self, worklist: Worklist) -> None:
        self.model.set_worklist(worklist)
        self.refresh_summary()

    def item_changed(self, key: str) -> None:
        self.model.item_changed(key)
        self.refresh_summary()

    def refresh_summary(self) -> None:
        if self.model._worklist is None:  # nothing opened yet
            self.summary.setText("Open a folder or several images to triage them.")
            for b in (self.analyse_button, self.sort_button, self.csv_button, self.json_button):
                b.setEnabled(False)
            return
        c = self.worklist.counts()
        done = c["done"] + c["abstained"] + c["error"]
        self.summary.setText(
            f"{done}/{len(self.worklist)} analysed · {c['abstained']} abstained · {c['error']} failed"
        )
        has = len(self.worklist) > 0
        for b in (self.analyse_button, self.sort_button, self.csv_button, self.json_button):
            b.setEnabled(has)
