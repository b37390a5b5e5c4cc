"""File ▸ Export report / Export DICOM: the work done in a :class:`BackgroundJob` (never on the GUI thread)
and the small dialog that asks where DICOM exports go and whether identifiers are kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    import numpy as np


def display_pixels(image: Any) -> np.ndarray:
    """The image as a greyscale uint8 array the way it is read (auto window; MONOCHROME1 inverted)."""
    from cxrviewer.services.export.overlay import to_display_uint8

    out = to_display_uint8(image.pixels)
    return 255 - out if image.invert else out


def write_report(image: Any, result: Any, path: str | Path) -> Path:
    """Render the PDF/PNG report (format from the suffix) of ``result`` for ``image`` (a CxrImage).

    The report names the image by its file name only and holds no patient details.
    """
    from cxrviewer.services.export.report import ReportInfo, render_report

    modality = str(image.metadata.get("modality", "") or image.format)
    info = ReportInfo(
        study=" ".join(filter(None, [modality, image.view_position or ""])), image=image.source.name
    )
    return render_report(result, display_pixels(image), path, info)


def write_dicom(image: Any, result: Any, folder: str | Path, deidentify: bool = True) -> list[Path]:
    """Write the Secondary Capture and the SR of ``result`` for the DICOM ``image`` into ``folder``.

    De-identified unless ``deidentify`` is False. Returns the written files (SR first).

    Raises:
        ExportError: the image is not a DICOM file, there is no analysis, or it has burned-in text.
    """
    import pydicom

    from cxrviewer.services.export.dicom_export import ExportError, export_dicom

    if image.format != "DICOM":
        raise ExportError("DICOM export needs a DICOM image; use Export report for PNG/JPEG/TIFF images.")
    with image.source.open_binary() as fh:
        source = pydicom.dcmread(fh)
    export = export_dicom(source, result, display_image=display_pixels(image), deidentify=deidentify)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, ds in (("SR", export.structured_report), ("SC", export.secondary_capture)):
        if ds is None:
            continue
        path = folder / f"{kind}_{ds.SOPInstanceUID}.dcm"
        tmp = path.with_name(f".{path.name}.part")
        try:
            ds.save_as(tmp, enforce_file_format=True)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written


class DicomExportDialog(QDialog):
    """Asks for the output folder and whether patient identifiers are kept (de-identified by default)."""

    def __init__(self, folder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export DICOM (Secondary Capture + SR)")
        self.folder = QLineEdit(folder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.keep_identifiers = QCheckBox("Keep patient identifiers (export joins the original study)")
        self.keep_identifiers.setChecked(False)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Output folder"))
        layout.addLayout(row)
        layout.addWidget(self.keep_identifiers)
        layout.addWidget(QLabel("Research use only — not for diagnosis."))
        layout.addWidget(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export DICOM to", self.folder.text())
        if folder:
            self.folder.setText(folder)
