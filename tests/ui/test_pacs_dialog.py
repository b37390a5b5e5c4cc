"""File ▸ Open from PACS, driven with pytest-qt: a fake client (PacsClient's methods, scripted answers) is
injected; one end-to-end test uses the real Orthanc of tests/pacs when it is installed."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import pytest
from PySide6.QtCore import QDate

from cxrviewer.services.pacs import PacsError, PacsSettings, RetrieveCancelled, StudySummary
from cxrviewer.services.pacs_cache import PacsCache
from tests.pacs.conftest import orthanc  # noqa: F401  (the real-Orthanc fixture; skips when missing)
from tests.pacs.orthanc import PASSWORD, USER
from tests.pacs.synthetic import make_cr
from tests.ui.tiny_analyzer import ScriptedAnalyzer

SECRET = "s3cret-Token-xyz"
STUDIES = [
    StudySummary("1.2.3.4", "DOE^JANE", "PID-1", study_date="20240315", modalities=["CR"], n_instances=2),
    StudySummary("1.2.3.5", "DOE^JOHN", "PID-2", study_date="20210610", modalities=["DX"], n_instances=1),
]


class FakeClient:
    """PacsClient's methods with scripted answers; records what the dialog asked (and from which thread)."""

    def __init__(self, script: dict, settings: PacsSettings, secret: str | None, cache: PacsCache) -> None:
        self.script, self.settings, self.secret, self.cache = script, settings, secret, cache
        script.setdefault("clients", []).append(self)

    def search_studies(self, query):
        self.script["query"] = query
        self.script["thread"] = threading.current_thread()
        if "search_error" in self.script:
            raise PacsError(self.script["search_error"])
        return list(STUDIES)

    def retrieve_study(self, study_uid, progress=None, use_cached=False):
        self.script["thread"] = threading.current_thread()
        n = self.script.get("n_images", 2)
        with self.cache.staging(study_uid) as staging:  # the real cache's all-or-nothing staging
            for i in range(n):
                if self.script.get("slow"):
                    self.script["retrieving"].set()
                    self.script["go"].wait(5)
                ds = make_cr("DOE^JANE", "PID-1", study_uid=study_uid, size=96, seed=i)
                path = self.cache.instance_path(staging, ds.SeriesInstanceUID, ds.SOPInstanceUID)
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                if progress is not None and progress(i + 1, n) is False:
                    raise RetrieveCancelled("The retrieve was cancelled; nothing was saved.")
        return self.cache.study_dir(study_uid)

    def close(self) -> None:
        self.script["closed"] = self.script.get("closed", 0) + 1


@pytest.fixture
def pacs_window(make_window, tmp_path, monkeypatch):
    """A window whose PACS dialog uses the fake client and a cache in ``tmp_path``; error boxes recorded."""
    script: dict = {}
    errors: list[str] = []
    monkeypatch.setattr(
        "cxrviewer.ui.pacs_dialog.QMessageBox.warning", lambda parent, title, text: errors.append(text)
    )
    w = make_window(ScriptedAnalyzer().factory)
    w.pacs_client_factory = lambda settings, secret, cache: FakeClient(script, settings, secret, cache)
    w.pacs_cache = PacsCache(tmp_path / "cache")
    w.open_pacs_dialog()
    dlg = w.pacs_dialog
    dlg.url.setText("http://pacs.invalid:8042/dicom-web")
    return w, dlg, script, errors


def _search(qtbot, dlg) -> None:
    with qtbot.waitSignal(dlg.job_finished, timeout=10000) as sig:
        dlg.search_button.click()
    assert sig.args == ["succeeded"]


def test_search_fills_table_off_the_gui_thread(qtbot, pacs_window):
    w, dlg, script, errors = pacs_window
    dlg.patient_name.setText("DOE")
    dlg.modality.setCurrentText("CR")
    _search(qtbot, dlg)
    assert script["query"].patient_name == "DOE" and script["query"].modality == "CR"
    assert script["query"].date_from is None and not dlg.date_from.isEnabled()
    dlg.use_dates.setChecked(True)
    dlg.date_from.setDate(QDate(2024, 1, 1))
    dlg.date_to.setDate(QDate(2024, 12, 31))
    _search(qtbot, dlg)
    assert (script["query"].date_from, script["query"].date_to) == (date(2024, 1, 1), date(2024, 12, 31))
    assert script["thread"] is not threading.main_thread()
    assert dlg.table.rowCount() == 2
    assert dlg.table.item(0, 0).text() == "DOE^JANE"
    assert dlg.table.item(0, 2).text() == "2024-03-15"
    assert dlg.selected_study().study_uid == "1.2.3.4"
    assert dlg.retrieve_button.isEnabled() and not errors and script["closed"] == 2


def test_retrieve_opens_the_study_folder(qtbot, pacs_window):
    w, dlg, script, errors = pacs_window
    _search(qtbot, dlg)
    with qtbot.waitSignal(dlg.study_retrieved, timeout=15000) as sig:
        dlg.retrieve_button.click()
    folder = Path(sig.args[0])
    assert folder == w.pacs_cache.study_dir("1.2.3.4") and len(list(folder.rglob("*.dcm"))) == 2
    assert script["thread"] is not threading.main_thread()
    # the folder opens like a local one: a worklist of its two images, the first shown
    qtbot.waitUntil(lambda: w.current is not None and len(w.worklist.worklist) == 2, timeout=15000)
    assert Path(w.current.image.source.path).parent.parent == folder
    assert not errors and not dlg.progress.isVisible()


def test_pacs_error_is_shown_and_window_keeps_working(qtbot, pacs_window, png_files):
    w, dlg, script, errors = pacs_window
    script["search_error"] = "Cannot reach the PACS at pacs.invalid:8042 (connection refused)."
    with qtbot.waitSignal(dlg.job_finished, timeout=10000) as sig:
        dlg.search_button.click()
    assert sig.args == ["failed"]
    assert errors == [script["search_error"]]
    assert dlg.search_button.isEnabled() and dlg.table.rowCount() == 0
    dlg.patient_id.setText("PID-1")  # what the user typed is still there; a second try works
    del script["search_error"]
    _search(qtbot, dlg)
    assert dlg.table.rowCount() == 2 and script["query"].patient_id == "PID-1"
    with qtbot.waitSignal(w.image_shown, timeout=10000):
        w.open_paths([png_files[0]])


def test_cancel_stops_the_retrieve_and_saves_nothing(qtbot, pacs_window):
    w, dlg, script, errors = pacs_window
    _search(qtbot, dlg)
    script.update(slow=True, n_images=50, retrieving=threading.Event(), go=threading.Event())
    opened: list = []
    dlg.study_retrieved.connect(opened.append)
    dlg.retrieve_button.click()
    assert script["retrieving"].wait(10)
    assert dlg.cancel_button.isEnabled() and not dlg.retrieve_button.isEnabled()
    with qtbot.waitSignal(dlg.job_finished, timeout=10000) as sig:
        dlg.cancel_button.click()
        script["go"].set()
    assert sig.args == ["cancelled"]
    assert not opened and not errors
    assert not w.pacs_cache.has_study("1.2.3.4")
    assert not any(w.pacs_cache.root.iterdir()) if w.pacs_cache.root.exists() else True
    assert dlg.retrieve_button.isEnabled() and w.current is None


def test_secret_goes_to_keyring_not_settings(qtbot, pacs_window, settings_store, monkeypatch, tmp_path):
    w, dlg, script, errors = pacs_window
    saved: list = []
    monkeypatch.setattr("cxrviewer.ui.pacs_dialog.save_secret", lambda s, secret: saved.append((s, secret)))
    dlg.auth.setCurrentText("basic")
    dlg.username.setText("reader")
    dlg.secret.setText(SECRET)
    assert dlg.save_server()
    assert saved and saved[0][1] == SECRET and saved[0][0].username == "reader"
    assert dlg.secret.text() == ""
    settings_store.sync()
    text = (tmp_path / "settings.ini").read_text()
    assert "reader" in text and "pacs.invalid" in text and SECRET not in text
    _search(qtbot, dlg)  # the secret typed this session is handed to the client
    assert script["clients"][-1].secret == SECRET and script["clients"][-1].settings.auth == "basic"
    dlg.url.setText("ftp://nowhere")  # invalid settings: a message, nothing saved, nothing searched
    assert not dlg.save_server()
    assert "http://" in errors[-1]


def test_clear_cache(qtbot, pacs_window):
    w, dlg, script, errors = pacs_window
    _search(qtbot, dlg)
    with qtbot.waitSignal(dlg.study_retrieved, timeout=15000):
        dlg.retrieve_button.click()
    qtbot.waitUntil(lambda: dlg.job is None, timeout=5000)
    assert w.pacs_cache.has_study("1.2.3.4")
    with qtbot.waitSignal(dlg.job_finished, timeout=10000):
        dlg.clear_cache_button.click()
    assert not w.pacs_cache.has_study("1.2.3.4")


def test_orthanc_end_to_end(qtbot, make_window, tmp_path, monkeypatch, orthanc):  # noqa: F811
    """Search and retrieve from a real Orthanc through the dialog (skipped when Orthanc is missing)."""
    from cxrviewer.services.pacs import PacsClient

    settings = PacsSettings(url=orthanc.dicomweb_url, auth="basic", username=USER, timeout_s=10)
    study = make_cr("DIALOG^E2E", "E2E-1", "20230102", size=128)
    with PacsClient(settings, secret=PASSWORD, cache=PacsCache(tmp_path / "c0")) as client:
        client.store([study])
    errors: list[str] = []
    monkeypatch.setattr(
        "cxrviewer.ui.pacs_dialog.QMessageBox.warning", lambda p, t, text: errors.append(text)
    )
    w = make_window(ScriptedAnalyzer().factory)
    w.pacs_cache = PacsCache(tmp_path / "cache")
    w.open_pacs_dialog()
    dlg = w.pacs_dialog
    dlg.set_server(settings)
    dlg.secret.setText(PASSWORD)  # used for this session; not saved
    dlg.patient_id.setText("E2E-1")
    _search(qtbot, dlg)
    assert not errors and dlg.table.rowCount() == 1 and dlg.table.item(0, 0).text() == "DIALOG^E2E"
    with qtbot.waitSignal(w.image_shown, timeout=20000):
        dlg.retrieve_button.click()
    assert w.current.image.study_instance_uid == study.StudyInstanceUID
