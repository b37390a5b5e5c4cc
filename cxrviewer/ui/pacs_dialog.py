"""File ▸ Open from PACS: server settings, a study search, a results table and Retrieve.

Every network call (search, retrieve) and the cache clean-up run in a :class:`BackgroundJob`, each with a
:class:`PacsClient` of its own (the client is not thread-safe). The password or token goes to the OS keyring
through :func:`save_secret`; only the non-secret :class:`PacsSettings` are kept in QSettings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDate, QSettings, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.services.pacs import PacsClient, PacsError, PacsSettings, StudyQuery, StudySummary, save_secret
from cxrviewer.services.pacs_cache import PacsCache
from cxrviewer.ui.background_job import BackgroundJob, JobControl

SETTINGS_KEY = "pacs/server"
AUTH_KINDS = ("none", "basic", "token")
MODALITIES = ("", "CR", "DX", "DR", "SR", "SC")
COLUMNS = ("Patient", "Patient ID", "Date", "Description", "Modalities", "Images")

#: ``client_factory(settings, secret)`` -> an object with PacsClient's methods (``secret`` None = keyring).
ClientFactory = Callable[[PacsSettings, str | None, PacsCache], Any]


def default_client(settings: PacsSettings, secret: str | None, cache: PacsCache) -> PacsClient:
    """A real :class:`PacsClient` (the secret is read from the keyring when ``secret`` is None)."""
    return PacsClient(settings, secret=secret, cache=cache)


def load_pacs_settings(store: QSettings) -> PacsSettings | None:
    """The saved server (no secret), or None when none was saved or the entry is unreadable."""
    raw = store.value(SETTINGS_KEY, "")
    if not raw:
        return None
    try:
        return PacsSettings.from_dict(json.loads(str(raw)))
    except (ValueError, TypeError):
        return None


def save_pacs_settings(settings: PacsSettings, store: QSettings) -> None:
    """Persist the non-secret server settings."""
    store.setValue(SETTINGS_KEY, json.dumps(settings.to_dict()))
    store.sync()


def _date_text(dicom_date: str) -> str:
    d = dicom_date.strip()
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


class PacsDialog(QDialog):
    """Search a DICOMweb PACS and retrieve a study; ``study_retrieved(folder)`` when one is in the cache.

    Args:
        store: the QSettings holding the server settings.
        client_factory: builds the client in the worker thread (tests inject a fake).
        cache: the local PACS cache (the user's when None).
    """

    study_retrieved = Signal(object)  # Path of the study folder in the cache
    searched = Signal(int)  # number of studies found
    job_finished = Signal(str)  # "succeeded", "failed" or "cancelled"

    def __init__(
        self,
        store: QSettings,
        client_factory: ClientFactory | None = None,
        cache: PacsCache | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.resize(900, 620)
        self.store = store
        self.client_factory = client_factory or default_client
        self.cache = cache if cache is not None else PacsCache()
        self.studies: list[StudySummary] = []
        self.job: BackgroundJob | None = None
        self._session_secret: str | None = None  # kept in memory when the keyring is unavailable
        self._build()
        saved = load_pacs_settings(store)
        if saved is not None:
            self.set_server(saved)
        self._update_buttons()

    # ------------------------------------------------------------------------------------------ building
    def _build(self) -> None:
        server = QGroupBox("Server")
        form = QFormLayout(server)
        self.url = QLineEdit(placeholderText="http://pacs:8042/dicom-web")
        self.name = QLineEdit("PACS")
        self.auth = QComboBox()
        self.auth.addItems(AUTH_KINDS)
        self.username = QLineEdit()
        self.secret = QLineEdit(placeholderText="stored in the system keyring")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.save_button = QPushButton("Save server")
        self.save_button.clicked.connect(self.save_server)
        self.auth.currentTextChanged.connect(self._update_auth_fields)
        form.addRow("DICOMweb URL", self.url)
        form.addRow("Name", self.name)
        form.addRow("Sign-in", self.auth)
        form.addRow("User name", self.username)
        form.addRow("Password / token", self.secret)
        form.addRow("", self.save_button)

        search = QGroupBox("Search")
        sform = QFormLayout(search)
        self.patient_name = QLineEdit(placeholderText="e.g. DOE (matches from the start)")
        self.patient_id = QLineEdit()
        self.use_dates = QCheckBox("Study date from")
        today = QDate.currentDate()
        self.date_from = QDateEdit(today.addYears(-1), calendarPopup=True, displayFormat="yyyy-MM-dd")
        self.date_to = QDateEdit(today, calendarPopup=True, displayFormat="yyyy-MM-dd")
        for edit in (self.date_from, self.date_to):
            edit.setEnabled(False)
            self.use_dates.toggled.connect(edit.setEnabled)
        dates = QHBoxLayout()
        dates.addWidget(self.use_dates)
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        self.modality = QComboBox(editable=True)
        self.modality.addItems(MODALITIES)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        sform.addRow("Patient name", self.patient_name)
        sform.addRow("Patient ID", self.patient_id)
        sform.addRow(dates)
        sform.addRow("Modality", self.modality)
        sform.addRow("", self.search_button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda _: self.retrieve())

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.retrieve_button = QPushButton("Retrieve and open")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.clear_cache_button = QPushButton("Clear PACS cache")
        self.clear_cache_button.clicked.connect(self.clear_cache)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        for b in (self.clear_cache_button, None, self.retrieve_button, self.cancel_button, self.close_button):
            if b is None:
                buttons.addStretch(1)
            else:
                buttons.addWidget(b)

        top = QHBoxLayout()
        top.addWidget(server, 1)
        top.addWidget(search, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._update_auth_fields(self.auth.currentText())

    def _update_auth_fields(self, auth: str) -> None:
        self.username.setEnabled(auth == "basic")
        self.secret.setEnabled(auth != "none")

    def _update_buttons(self) -> None:
        busy = self.job is not None
        self.search_button.setEnabled(not busy)
        self.retrieve_button.setEnabled(not busy and self.selected_study() is not None)
        self.clear_cache_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    # --------------------------------------------------------------------------------------- settings
    def set_server(self, settings: PacsSettings) -> None:
        """Fill the server fields (no secret: that stays in the keyring)."""
        self.url.setText(settings.url)
        self.name.setText(settings.name)
        self.auth.setCurrentText(settings.auth)
        self.username.setText(settings.username)

    def server(self) -> PacsSettings:
        """The server settings as entered (raises :class:`PacsError` when they cannot work)."""
        settings = PacsSettings(
            url=self.url.text().strip(),
            name=self.name.text().strip() or "PACS",
            auth=self.auth.currentText(),  # type: ignore[arg-type]
            username=self.username.text().strip() if self.auth.currentText() == "basic" else "",
        )
        settings.validate()
        return settings

    def save_server(self) -> bool:
        """Persist the settings (QSettings) and the typed secret (OS keyring); False with a message if not."""
        try:
            settings = self.server()
        except PacsError as exc:
            self.show_error(str(exc))
            return False
        save_pacs_settings(settings, self.store)
        secret = self.secret.text()
        if secret and settings.auth != "none":
            self._session_secret = secret
            try:
                save_secret(settings, secret)
            except PacsError as exc:  # no keyring: the secret is used for this session only
                self.show_error(str(exc))
                return False
            self.secret.clear()
        self.status.setText(f"Saved the settings for {settings.name} ({settings.host}).")
        return True

    def _secret(self, settings: PacsSettings) -> str | None:
        if settings.auth == "none":
            return None
        return self.secret.text() or self._session_secret  # None: the client reads the keyring

    # --------------------------------------------------------------------------------------------- search
    def query(self) -> StudyQuery:
        """The search form as a :class:`StudyQuery`."""
        dates = self.use_dates.isChecked()
        return StudyQuery(
            patient_name=self.patient_name.text().strip(),
            patient_id=self.patient_id.text().strip(),
            date_from=self.date_from.date().toPython() if dates else None,
            date_to=self.date_to.date().toPython() if dates else None,
            modality=self.modality.currentText().strip(),
        )

    def search(self) -> None:
        """Search the server in the background and fill the table."""
        try:
            settings = self.server()
        except PacsError as exc:
            self.show_error(str(exc))
            return
        query, secret, factory, cache = self.query(), self._secret(settings), self.client_factory, self.cache

        def work(_: JobControl) -> list[StudySummary]:
            client = factory(settings, secret, cache)
            try:
                return client.search_studies(query)
            finally:
                client.close()

        self.status.setText(f"Searching {settings.host}…")
        self._start(work, self._show_studies)

    def _show_studies(self, studies: list[StudySummary]) -> None:
        self.studies = list(studies)
        self.table.setRowCount(len(self.studies))
        for row, s in enumerate(self.studies):
            images = "" if s.n_instances is None else str(s.n_instances)
            values = (
                s.patient_name,
                s.patient_id,
                _date_text(s.study_date),
                s.description,
                ",".join(s.modalities),
                images,
            )
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(value))
        if self.studies:
            self.table.selectRow(0)
        self.status.setText(f"{len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'} found.")
        self.searched.emit(len(self.studies))

    def selected_study(self) -> StudySummary | None:
        """The study selected in the table, if any."""
        rows = self.table.selectionModel().selectedRows()
        return self.studies[rows[0].row()] if rows and rows[0].row() < len(self.studies) else None

    # ------------------------------------------------------------------------------------------- retrieve
    def retrieve(self) -> None:
        """Retrieve the selected study into the cache in the background (progress bar, Cancel)."""
        study = self.selected_study()
        if study is None or self.job is not None:
            return
        try:
            settings = self.server()
        except PacsError as exc:
            self.show_error(str(exc))
            return
        secret, factory, cache = self._secret(settings), self.client_factory, self.cache

        def work(control: JobControl) -> Path:
            client = factory(settings, secret, cache)
            try:
                return Path(client.retrieve_study(study.study_uid, progress=control.progress))
            finally:
                client.close()

        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status.setText("Retrieving the study…")
        job = self._start(work, self._retrieved)
        job.progressed.connect(self._on_progress)

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        self.status.setText(f"Retrieving: {done} image(s)" + (f" of {total}" if total > 0 else ""))

    def _retrieved(self, folder: Path) -> None:
        self.status.setText(f"Retrieved into {folder}.")
        self.study_retrieved.emit(folder)

    def clear_cache(self) -> None:
        """Delete every study retrieved before (in the background)."""
        cache = self.cache

        def work(_: JobControl) -> None:
            cache.clear()

        self._start(work, lambda _: self.status.setText("The PACS cache is empty."))

    # ------------------------------------------------------------------------------------------- jobs
    def _start(self, work: Callable[[JobControl], object], done: Callable[[Any], None]) -> BackgroundJob:
        job = BackgroundJob(work, self)
        job.succeeded.connect(done)
        job.succeeded.connect(lambda _: self._job_ended("succeeded"))
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        self.job = job
        self._update_buttons()
        job.start()
        return job

    def _job_ended(self, how: str) -> None:
        if self.job is not None:
            self.job.wait()
            self.job.deleteLater()
        self.job = None
        self.progress.setVisible(False)
        self._update_buttons()
        self.job_finished.emit(how)

    def _on_failed(self, message: str) -> None:
        self.status.setText("Failed: see the message.")
        self._job_ended("failed")
        self.show_error(message)

    def _on_cancelled(self) -> None:
        self.status.setText("Cancelled; nothing was saved.")
        self._job_ended("cancelled")

    def cancel(self) -> None:
        """Cancel the running search or retrieve (the cache keeps its earlier state)."""
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling…")

    def show_error(self, message: str) -> None:
        """A message box with the (secret-free) PACS error."""
        QMessageBox.warning(self, "PACS", message)

    def done(self, result: int) -> None:  # noqa: D102 - closing waits for a running job to stop
        if self.job is not None:
            self.job.cancel()
            self.job.wait(10000)
        super().done(result)
