"""Overlay controls: heatmap on/off, opacity, lungs-only, lung mask on/off and style. They only restyle what
is already computed; nothing here re-runs inference."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QGridLayout, QGroupBox, QLabel, QSlider, QWidget

from cxrviewer.ui.settings import ViewerSettings


class OverlayControls(QGroupBox):
    heatmap_toggled = Signal(bool)
    opacity_changed = Signal(float)
    lungs_only_toggled = Signal(bool)
    mask_toggled = Signal(bool)
    mask_style_changed = Signal(str)

    def __init__(self, settings: ViewerSettings, parent: QWidget | None = None) -> None:
        super().__init__("Overlays", parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        self.heatmap = QCheckBox("Heatmap")
        self.heatmap.setChecked(settings.heatmap_visible)
        self.heatmap.setToolTip("Where the evidence for the score lies (O)")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(settings.heatmap_opacity * 100))
        self.opacity.setToolTip("Heatmap opacity")
        self.opacity_label = QLabel(f"{self.opacity.value()} %")
        self.lungs_only = QCheckBox("Lungs only")
        self.lungs_only.setChecked(settings.heatmap_lungs_only)
        self.lungs_only.setToolTip("Hide the heatmap outside the lung mask")
        self.mask = QCheckBox("Lung mask")
        self.mask.setChecked(settings.mask_visible)
        self.mask.setToolTip("Lung segmentation (L)")
        self.mask_style = QComboBox()
        self.mask_style.addItems(["outline", "fill"])
        self.mask_style.setCurrentText(settings.mask_style)
        grid.addWidget(self.heatmap, 0, 0)
        grid.addWidget(self.opacity, 0, 1)
        grid.addWidget(self.opacity_label, 0, 2)
        grid.addWidget(self.lungs_only, 1, 0, 1, 3)
        grid.addWidget(self.mask, 2, 0)
        grid.addWidget(self.mask_style, 2, 1, 1, 2)
        grid.setColumnStretch(1, 1)

        self.heatmap.toggled.connect(self.heatmap_toggled)
        self.opacity.valueChanged.connect(self._opacity)
        self.lungs_only.toggled.connect(self.lungs_only_toggled)
        self.mask.toggled.connect(self.mask_toggled)
        self.mask_style.currentTextChanged.connect(self.mask_style_changed)

    def _opacity(self, value: int) -> None:
        self.opacity_label.setText(f"{value} %")
        self.opacity_changed.emit(value / 100.0)
