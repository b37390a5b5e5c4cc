"""The metadata panel: a two-column table of what the loader read about the image on screen."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget


def image_metadata_rows(image: Any) -> list[tuple[str, str]]:
    """(name, value) rows for a ``CxrImage``: geometry, spacing and its tag, photometric, view, ids, then the
    loader's metadata dict."""
    rows: list[tuple[str, str]] = []
    src = getattr(image, "source", None)
    rows.append(("File", getattr(src, "name", str(src))))
    rows.append(("Format", str(getattr(image, "format", ""))))
    shape = image.pixels.shape
    rows.append(("Size", f"{shape[1]} × {shape[0]} px"))
    spacing = getattr(image, "pixel_spacing", None)
    if spacing:
        rows.append(
            ("Pixel spacing", f"{spacing[0]:.4g} × {spacing[1]:.4g} mm ({image.pixel_spacing_source})")
        )
    else:
        rows.append(("Pixel spacing", "unknown (measurements in px)"))
    rows.append(("Photometric", str(getattr(image, "photometric_interpretation", ""))))
    rows.append(("View", str(getattr(image, "view_position", None) or "unknown")))
    w = image.default_window
    rows.append(("Default window", f"C {w.center:.6g} / W {w.width:.6g} ({w.explanation or 'file'})"))
    frames = getattr(image, "number_of_frames", 1)
    if frames and frames > 1:
        rows.append(("Frame", f"{image.frame + 1} of {frames}"))
    for key in ("patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid"):
        value = getattr(image, key, None)
        if value:
            rows.append((key.replace("_", " ").replace("uid", "UID").capitalize(), str(value)))
    for key, value in sorted((getattr(image, "metadata", None) or {}).items()):
        if value not in (None, ""):
            rows.append((key.replace("_", " "), str(value)))
    return rows


class MetadataPanel(QTableWidget):
    """Read-only key/value table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Field", "Value"])
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setWordWrap(False)

    def show_image(self, image: Any | None) -> None:
        rows = image_metadata_rows(image) if image is not None else []
        header = self.horizontalHeader()
        # filled with the first column's auto-sizing off: measuring the column after every item cost ~1 ms
        # per row; it is measured once when switched back on
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Fixed)
        self.setUpdatesEnabled(False)
        self.setRowCount(len(rows))
        for r, (k, v) in enumerate(rows):
            self.setItem(r, 0, QTableWidgetItem(k))
            item = QTableWidgetItem(v)
            item.setToolTip(v)
            self.setItem(r, 1, item)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.setUpdatesEnabled(True)
