"""A dark, low-glare theme for reading rooms: near-black surfaces, muted grey text, one accent colour and an
amber research-use notice."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#3d8bfd"
STYLESHEET = f"""
QMainWindow, QDockWidget, QWidget {{ background: #14171b; color: #c9ced6; }}
QDockWidget::title {{ background: #1c2026; padding: 4px 8px; color: #9aa3ad; font-weight: 600; }}
QMenuBar, QMenu, QToolBar, QStatusBar {{ background: #101317; color: #c9ced6; }}
QMenu::item:selected, QMenuBar::item:selected {{ background: #2a3038; }}
QToolBar {{ border: 0; spacing: 2px; padding: 2px; }}
QToolButton {{ padding: 3px 6px; border-radius: 3px; }}
QToolButton:checked {{ background: #26364d; color: #e8edf3; }}
QToolButton:hover {{ background: #232a33; }}
QTreeView, QTableView, QListView, QTableWidget {{
    background: #111418; alternate-background-color: #15191e; border: 1px solid #232830;
    selection-background-color: #26364d; selection-color: #e8edf3;
}}
QHeaderView::section {{ background: #1a1e24; color: #9aa3ad; border: 0; padding: 3px 6px; }}
QPushButton {{ background: #222830; border: 1px solid #2e3640; padding: 4px 10px; border-radius: 3px; }}
QPushButton:hover {{ background: #2a313b; }}
QPushButton:disabled {{ color: #5c646e; }}
QComboBox, QLineEdit, QDoubleSpinBox, QSpinBox {{
    background: #111418; border: 1px solid #2e3640; padding: 2px 4px; border-radius: 3px;
}}
QProgressBar#probBar {{
    background: #0f1215; border: 1px solid #262c34; border-radius: 3px; text-align: center;
    color: #e8edf3; min-height: 16px;
}}
QProgressBar#probBar::chunk {{ background: #3a6fb0; border-radius: 2px; }}
QProgressBar#probBar[positiveClass="true"]::chunk {{ background: #c0504d; }}
QLabel#researchNotice {{
    background: #3a2a08; color: #ffc857; border: 1px solid #6b4e12; border-radius: 3px;
    padding: 5px 8px; font-weight: 600;
}}
QLabel#aiWarnings {{ color: #f0b45a; }}
QLabel#aiModelInfo, QLabel#hint {{ color: #87909b; }}
QSlider::groove:horizontal {{ height: 4px; background: #2a3038; }}
QSlider::handle:horizontal {{ width: 12px; margin: -5px 0; background: {ACCENT}; border-radius: 6px; }}
QSplitter::handle {{ background: #1c2026; }}
"""


def apply_dark_theme(app: QApplication) -> None:
    """Fusion style with a dark palette and the stylesheet above."""
    app.setStyle("Fusion")
    pal = QPalette()
    base, window, text = QColor("#111418"), QColor("#14171b"), QColor("#c9ced6")
    pal.setColor(QPalette.ColorRole.Window, window)
    pal.setColor(QPalette.ColorRole.WindowText, text)
    pal.setColor(QPalette.ColorRole.Base, base)
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor("#15191e"))
    pal.setColor(QPalette.ColorRole.Text, text)
    pal.setColor(QPalette.ColorRole.Button, QColor("#222830"))
    pal.setColor(QPalette.ColorRole.ButtonText, text)
    pal.setColor(QPalette.ColorRole.Highlight, QColor("#26364d"))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#e8edf3"))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor("#1c2026"))
    pal.setColor(QPalette.ColorRole.ToolTipText, text)
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor("#6b737d"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#5c646e"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#5c646e"))
    app.setPalette(pal)
    app.setStyleSheet(STYLESHEET)
