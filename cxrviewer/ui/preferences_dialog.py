"""The preferences dialog: device, model folder, operating point and overlay defaults."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSlider,
    QWidget,
)

from cxrviewer.ui.settings import DEVICES, OPERATING_POINTS, ViewerSettings


class PreferencesDialog(QDialog):
    """Edits a copy of :class:`ViewerSettings`; :meth:`settings` returns the edited values."""

    def __init__(self, settings: ViewerSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        form = QFormLayout(self)

        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.setCurrentText(settings.device)
        self.device.setToolTip("auto: the GPU when one is usable, else the CPU")
        form.addRow("Device", self.device)

        self.model_dir = QLineEdit(settings.model_dir)
        self.model_dir.setPlaceholderText("shipped default model")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model_dir, 1)
        row.addWidget(browse)
        form.addRow("Model folder", row)

        self.operating_point = QComboBox()
        self.operating_point.setEditable(True)
        self.operating_point.addItems(list(OPERATING_POINTS))
        self.operating_point.setCurrentText(settings.operating_point)
        self.operating_point.setToolTip("empty: the model's default operating point")
        form.addRow("Operating point", self.operating_point)

        self.analyse_on_open = QCheckBox("Analyse images when they are opened")
        self.analyse_on_open.setChecked(settings.analyse_on_open)
        form.addRow("", self.analyse_on_open)

        self.heatmap_visible = QCheckBox("Show the heatmap")
        self.heatmap_visible.setChecked(settings.heatmap_visible)
        form.addRow("Heatmap", self.heatmap_visible)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(settings.heatmap_opacity * 100))
        form.addRow("Heatmap opacity", self.opacity)
        self.lungs_only = QCheckBox("Only inside the lungs")
        self.lungs_only.setChecked(settings.heatmap_lungs_only)
        form.addRow("", self.lungs_only)

        self.mask_visible = QCheckBox("Show the lung mask")
        self.mask_visible.setChecked(settings.mask_visible)
        form.addRow("Lung mask", self.mask_visible)
        self.mask_style = QComboBox()
        self.mask_style.addItems(["outline", "fill"])
        self.mask_style.setCurrentText(settings.mask_style)
        form.addRow("Mask style", self.mask_style)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder", self.model_dir.text())
        if path:
            self.model_dir.setText(path)

    def settings(self) -> ViewerSettings:
        return ViewerSettings(
            device=self.device.currentText(),
            model_dir=self.model_dir.text().strip(),
            operating_point=self.operating_point.currentText().strip(),
            heatmap_visible=self.heatmap_visible.isChecked(),
            heatmap_opacity=self.opacity.value() / 100.0,
            heatmap_lungs_only=self.lungs_only.isChecked(),
            mask_visible=self.mask_visible.isChecked(),
            mask_style=self.mask_style.currentText(),
            analyse_on_open=self.analyse_on_open.isChecked(),
        ).validated()
