"""The viewer's main window: image view(s) in the centre, docks for studies, AI, similar cases, metadata and
the worklist, a toolbar with the viewing tools, and a status bar with the pixel readout.

Everything slow happens in the two worker threads (:mod:`cxrviewer.ui.workers`): the window only posts
requests and renders answers. Every answer is matched to the image it was asked for (by key), so answers for
an image that is no longer on screen only update the worklist.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QIcon
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from cxrviewer import INTENDED_USE, __version__
from cxrviewer.resources import resources_dir
from cxrviewer.ui.ai_panel import RESEARCH_NOTICE, AiPanel
from cxrviewer.ui.background_import import BackgroundImport
from cxrviewer.ui.image_stats import LoadedImage, prepare_image
from cxrviewer.ui.metadata_panel import MetadataPanel
from cxrviewer.ui.overlay_controls import OverlayControls
from cxrviewer.ui.preferences_dialog import PreferencesDialog
from cxrviewer.ui.settings import (
    ViewerSettings,
    add_recent_path,
    load_settings,
    qsettings,
    recent_paths,
    save_settings,
)
from cxrviewer.ui.similar_panel import SimilarCasesPanel
from cxrviewer.ui.study_browser import StudyBrowser, image_sources
from cxrviewer.ui.window_actions import build_menus_and_toolbar
from cxrviewer.ui.workers import AnalysisClient, AnalyzerFactory, LoadClient
from cxrviewer.ui.worklist_view import WorklistPanel

if TYPE_CHECKING:
    from cxrviewer.core.windowing import Window
    from cxrviewer.services.result import AnalysisResult, Neighbour
    from cxrviewer.ui.image_view import ImageView

CONTAINER_SUFFIXES = (".zip",)


def is_container(path: Path) -> bool:
    """Folders, ZIP archives and DICOMDIRs open as study trees; anything else as a single image."""
    return path.is_dir() or path.suffix.lower() in CONTAINER_SUFFIXES or path.name.upper() == "DICOMDIR"


def _names(out: object) -> str:
    paths = out if isinstance(out, list) else [out]
    return ", ".join(Path(p).name for p in paths)


def prepare_display(image: Any, result: Any) -> Any:
    """Run in the analysis thread: the display forms of a result's overlays and thumbnails
    (:func:`cxrviewer.ui.overlay_data.prepare_result_display`; numpy is not imported before the first paint)."""
    from cxrviewer.ui.overlay_data import prepare_result_display

    return prepare_result_display(image, result)


def app_icon() -> QIcon:
    """The application icon (``resources/icons/cxrviewer.svg``)."""
    return QIcon(str(resources_dir() / "icons" / "cxrviewer.svg"))


class MainWindow(QMainWindow):
    """The viewer window.

    Args:
        analyzer_factory: builds ``analyze(image) -> AnalysisResult`` in the analysis thread on first use
            (see :func:`cxrviewer.ui.analysis_backend.pipeline_factory`); tests inject a small one.
        settings: the viewer settings (read from QSettings when None).
        store: the QSettings to persist to (the user's when None).
    """

    first_painted = Signal()
    image_shown = Signal(object)  # LoadedImage
    analysis_shown = Signal(object)  # AnalysisResult
    library_changed = Signal(str)  # a case was added to the user's library (the message)
    export_finished = Signal(bool, object)  # ok, the written path(s) or the failure message

    def __init__(
        self,
        analyzer_factory: AnalyzerFactory | None = None,
        settings: ViewerSettings | None = None,
        store: QSettings | None = None,
    ) -> None:
        super().__init__()
        self.store = store if store is not None else qsettings()  # one object: Qt batches its disk writes
        self.settings = settings or load_settings(store)
        if analyzer_factory is None:
            from cxrviewer.ui.analysis_backend import pipeline_factory

            analyzer_factory = pipeline_factory(self.settings)
        self._painted = False
        self._show_first_of_tree = False
        self._pending_images: list[tuple[object, LoadedImage]] = []
        self.current: LoadedImage | None = None
        self.current_result: AnalysisResult | None = None
        self.current_prepared: Any = None  # display data of current_result made in the analysis thread
        self.model_unavailable: str | None = None
        self.batch_running = False
        self.analyzer_tasks: set[str] = set()
        self.pacs_client_factory: Any = None  # PacsClient unless a test injects another
        self.pacs_cache: Any = None  # the user's PACS cache unless a test injects another
        self.pacs_dialog: Any = None
        self.export_job: Any = None

        self.setWindowTitle(f"cxrviewer {__version__} — {RESEARCH_NOTICE}")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self.setDockNestingEnabled(True)

        self.loader = LoadClient(self)
        self.analysis = AnalysisClient(analyzer_factory, self, prepare=prepare_display)
        self._view: ImageView | None = None
        self._compare: ImageView | None = None
        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_status_bar()
        self._wire()

    # ---------------------------------------------------------------------------------------- building
    def _build_central(self) -> None:
        self.placeholder = QLabel("Drop a file, folder or ZIP here")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setObjectName("hint")
        self.placeholder.setStyleSheet("background: #0b0d10;")
        self.compare_title = QLabel()
        self.compare_title.setObjectName("hint")
        self.compare_panel = QWidget()
        cl = QVBoxLayout(self.compare_panel)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.compare_title)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.placeholder)
        self.splitter.addWidget(self.compare_panel)
        self.compare_panel.setVisible(False)
        self.setCentralWidget(self.splitter)

    def ensure_views(self) -> ImageView:
        """Create the main image view (imports pyqtgraph) if not done yet."""
        if self._view is not None:
            return self._view
        from cxrviewer.ui.image_view import ImageView

        view = self._view = ImageView()
        self.splitter.replaceWidget(0, view)
        self.placeholder.deleteLater()
        view.cursor_info.connect(self.readout.setText)
        view.window_changed.connect(self._show_window)
        view.view_changed.connect(self._show_zoom)
        view.measurement_done.connect(lambda rec: self.statusBar().showMessage(rec.text, 8000))
        self._apply_overlay_settings(view)
        return view

    @property
    def view(self) -> ImageView:
        """The main image view."""
        return self.ensure_views()

    @property
    def compare_view(self) -> ImageView:
        """The second view (similar case or prior) beside the main one, made on first use."""
        if self._compare is None:
            from cxrviewer.ui.image_view import ImageView
            from cxrviewer.ui.view_sync import ViewSync

            compare = self._compare = ImageView()
            self.compare_panel.layout().addWidget(compare, 1)
            self.sync = ViewSync(self.view, compare)
            compare.cursor_info.connect(self.readout.setText)
            compare.set_tool(self.view.view_box.tool)
            self._apply_overlay_settings(compare)
        return self._compare

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea, name: str) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        self.browser = StudyBrowser()
        self.studies_dock = self._dock(
            "Studies", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea, "studies"
        )
        self.metadata = MetadataPanel()
        self.metadata_dock = self._dock(
            "Metadata", self.metadata, Qt.DockWidgetArea.LeftDockWidgetArea, "metadata"
        )
        self.ai_panel = AiPanel()
        self.overlay_controls = OverlayControls(self.settings)
        ai = QWidget()
        al = QVBoxLayout(ai)
        al.setContentsMargins(0, 0, 0, 0)
        al.addWidget(self.ai_panel, 1)
        al.addWidget(self.overlay_controls)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(ai)
        self.ai_dock = self._dock("AI assessment", scroll, Qt.DockWidgetArea.RightDockWidgetArea, "ai")
        self.similar = SimilarCasesPanel()
        self.similar_dock = self._dock(
            "Similar cases", self.similar, Qt.DockWidgetArea.RightDockWidgetArea, "similar"
        )
        self.worklist = WorklistPanel()
        self.worklist_dock = self._dock(
            "Worklist", self.worklist, Qt.DockWidgetArea.BottomDockWidgetArea, "worklist"
        )
        self.worklist_dock.setVisible(False)
        self.resizeDocks([self.studies_dock, self.ai_dock], [270, 330], Qt.Orientation.Horizontal)
        self.resizeDocks([self.ai_dock, self.similar_dock], [520, 330], Qt.Orientation.Vertical)

    def _build_actions(self) -> None:
        build_menus_and_toolbar(self)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.readout = QLabel()
        self.window_label = QLabel()
        self.zoom_label = QLabel()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(110)
        self.busy.setMaximumHeight(12)
        self.busy.setVisible(False)
        self.occlusion_progress = QProgressBar()
        self.occlusion_progress.setMaximumWidth(160)
        self.occlusion_progress.setMaximumHeight(14)
        self.occlusion_progress.setFormat("occlusion %p %")
        self.occlusion_progress.setVisible(False)
        notice = QLabel(RESEARCH_NOTICE)
        notice.setStyleSheet("color: #ffc857;")
        for w in (
            self.readout,
            self.window_label,
            self.zoom_label,
            self.occlusion_progress,
            self.busy,
            notice,
        ):
            sb.addPermanentWidget(w)
        sb.showMessage("Drop a file, folder or ZIP on the window, or use File ▸ Open.")

    def _wire(self) -> None:
        self.loader.image_loaded.connect(self._on_image_loaded)
        self.loader.studies_loaded.connect(self._on_studies_loaded)
        self.loader.failed.connect(self._on_load_failed)
        self._wire_analysis()
        self.browser.image_selected.connect(self.show_source)
        self.similar.case_activated.connect(self.show_neighbour)
        self.similar.add_to_library.connect(self.add_current_to_library)
        self.worklist.open_item.connect(lambda item: self.show_source(item.source))
        self.worklist.analyse_all.connect(self.analyse_worklist)
        self.worklist.cancel.connect(self.cancel_analysis)
        self.worklist.export.connect(self.export_worklist_dialog)
        oc = self.overlay_controls
        oc.heatmap_toggled.connect(self._set_heatmap_visible)
        oc.opacity_changed.connect(self._set_heatmap_opacity)
        oc.lungs_only_toggled.connect(self._set_lungs_only)
        oc.mask_toggled.connect(self._set_mask_visible)
        oc.mask_style_changed.connect(self._set_mask_style)

    def _wire_analysis(self) -> None:
        a = self.analysis
        a.result_ready.connect(self._on_result)
        a.failed.connect(self._on_analysis_failed)
        a.cancelled.connect(self._on_analysis_cancelled)
        a.unavailable.connect(self._on_model_unavailable)
        a.busy_changed.connect(self.busy.setVisible)
        a.ready.connect(self._on_analyzer_ready)
        a.task_done.connect(self._on_task_done)
        a.task_progress.connect(self._on_task_progress)

    def replace_analyzer(self, factory: AnalyzerFactory) -> None:
        """Use a new analyzer (e.g. after the model settings changed): the old analysis thread is stopped
        (a running inference is waited for), its pending answers are dropped, and the image on screen is
        analysed again."""
        self.batch_running = False
        self.analysis.shutdown()
        self.analysis.deleteLater()
        self.analysis = AnalysisClient(factory, self, prepare=prepare_display)
        self._wire_analysis()
        self.busy.setVisible(False)
        self.model_unavailable = None
        self.analyzer_tasks = set()
        self.similar.set_library_available(False, "The analyzer is loading.")
        if self.current is not None:
            self.analyse_current()
        elif self.settings.analyse_on_open:
            self.analysis.warm_up()

    def _apply_overlay_settings(self, view: ImageView) -> None:
        s = self.settings
        view.heatmap.set_opacity(s.heatmap_opacity)
        view.heatmap.set_lungs_only(s.heatmap_lungs_only)
        view.set_heatmap_visible(s.heatmap_visible)
        view.mask.set_visible(s.mask_visible)
        view.mask.set_style(s.mask_style)

    # ------------------------------------------------------------------------------------------- paint
    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            QTimer.singleShot(0, self._after_first_paint)

    def _after_first_paint(self) -> None:
        """Announce the first paint, then import the image views' modules (pyqtgraph, numpy) in a background
        thread, so the window is drawn and stays responsive meanwhile; the views are built when that is
        done (or at once, should something need them earlier)."""
        self.first_painted.emit()
        self._view_import = BackgroundImport(("cxrviewer.ui.image_view", "cxrviewer.ui.view_sync"), self)
        self._view_import.done.connect(self._on_views_importable)
        self._view_import.failed.connect(lambda _msg: self._on_views_importable())
        self._view_import.start()

    def _on_views_importable(self) -> None:
        self.ensure_views()
        pending, self._pending_images = self._pending_images, []
        for tag, loaded in pending:
            self._on_image_loaded(tag, loaded)
        if self.settings.analyse_on_open and not pending:
            self.analysis.warm_up()  # the model loads while the user is still choosing an image

    def _views_importing(self) -> bool:
        imp = getattr(self, "_view_import", None)
        return self._view is None and imp is not None and not imp.finished

    # ---------------------------------------------------------------------------------------- opening
    def open_paths(self, paths: Sequence[str | Path]) -> None:
        """Open files, folders, ZIPs or DICOMDIRs: containers become study trees and a worklist; a single
        file is shown at once. The first image found is shown."""
        paths = [Path(p) for p in paths if str(p)]
        if not paths:
            return
        files = [p for p in paths if not is_container(p)]
        self._show_first_of_tree = not files
        for p in paths:
            add_recent_path(str(p.expanduser().absolute()), self.store)
            if is_container(p):  # single files are listed in the browser once loaded
                self.loader.load_studies(p, tag=str(p))
        if files:
            self.show_source(files[0])
            if len(files) > 1:
                self._extend_worklist(files)
        self.statusBar().showMessage(f"Opening {', '.join(p.name or str(p) for p in paths)}…")

    def open_file_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(
            self,
            "Open images",
            "",
            "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.zip DICOMDIR);;All files (*)",
        )
        if names:
            self.open_paths(names)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder")
        if folder:
            self.open_paths([folder])

    def open_compare_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open a prior image for comparison")
        if name:
            self.loader.load_image(Path(name), tag=("compare", name), channel="compare")

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        paths = recent_paths(self.store)
        if not paths:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for p in paths:
            self.recent_menu.addAction(p, functools.partial(self.open_paths, [p]))

    def show_source(self, source: object) -> None:
        """Load ``source`` in the background and show it (a newer request supersedes this one)."""
        self.statusBar().showMessage(f"Loading {getattr(source, 'name', source)}…")
        self.loader.load_image(source, tag=("view", source))

    # drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # ----------------------------------------------------------------------------------- load answers
    def _on_image_loaded(self, tag: object, loaded: LoadedImage) -> None:
        if self._views_importing():  # shown as soon as the views exist, without blocking on the import
            self._pending_images.append((tag, loaded))
            return
        if isinstance(tag, tuple) and tag and tag[0] == "compare":
            self._show_compare(loaded, f"Comparison: {loaded.title}")
            return
        self.analysis.cancel("explain")  # an occlusion map of the previous image is no longer wanted
        self.current = loaded
        self.current_result = self.current_prepared = None
        self.view.set_image(loaded)
        if self.view.window is not None:
            self._show_window(self.view.window)
        self.metadata.show_image(loaded.image)
        self.browser.blockSignals(True)
        self.browser.add_image(loaded.image)
        self.browser.blockSignals(False)
        self.similar.show_result(None)
        self.setWindowTitle(f"{loaded.title} — cxrviewer — {RESEARCH_NOTICE}")
        img = loaded.image
        spacing = (
            f"spacing {img.pixel_spacing[0]:.3g} mm ({img.pixel_spacing_source})"
            if img.pixel_spacing
            else "no pixel spacing: measurements in px"
        )
        self.statusBar().showMessage(f"{loaded.title} · {img.shape[1]}×{img.shape[0]} · {spacing}", 10000)
        self.image_shown.emit(loaded)
        if self.model_unavailable:
            self.ai_panel.show_unavailable(self.model_unavailable)
        elif self.settings.analyse_on_open:
            self.analyse_current()
        else:
            self.ai_panel.show_idle("Press Ctrl+R to analyse this image.")

    def _on_studies_loaded(self, tag: object, tree: object) -> None:
        self.browser.add_tree(str(tag), tree)
        sources = image_sources(tree)
        if len(sources) > 1:
            self._extend_worklist(sources)
        if sources and self._show_first_of_tree:
            self._show_first_of_tree = False
            self.show_source(sources[0])
        skipped = getattr(tree, "skipped", None) or []
        msg = f"{Path(str(tag)).name}: {len(sources)} image(s)"
        if skipped:
            msg += f", {len(skipped)} file(s) skipped (see Studies)"
        self.statusBar().showMessage(msg, 10000)

    def _on_load_failed(self, tag: object, message: str) -> None:
        if isinstance(tag, tuple) and tag and tag[0] == "view":
            self.statusBar().showMessage(f"Could not open: {message}")
            QMessageBox.warning(self, "Could not open the image", message)
        elif isinstance(tag, tuple) and tag and tag[0] == "compare":
            self.statusBar().showMessage(f"Could not open the comparison image: {message}")
        else:  # a study tree for a single file: the image itself still opens, so only note it
            self.statusBar().showMessage(f"Could not list {tag}: {message}", 10000)

    def _extend_worklist(self, sources: Sequence[object]) -> None:
        existing = list(self.worklist.worklist)
        from cxrviewer.services.worklist import Worklist

        merged = Worklist.from_sources([i.source for i in existing] + list(sources))
        for item in merged:
            old = self.worklist.worklist.get(item.key)
            if old is not None:
                item.status, item.result, item.message = old.status, old.result, old.message
        self.worklist.set_worklist(merged)
        self.worklist_dock.setVisible(True)

    # ------------------------------------------------------------------------------------------ analysis
    def analyse_current(self) -> None:
        """Analyse the image on screen (cancels a previous analysis of another image)."""
        if self.current is None:
            return
        if self.model_unavailable:
            self.ai_panel.show_unavailable(self.model_unavailable)
            return
        self.ai_panel.show_running()
        self.analysis.submit(self.current, tag=("view", self.current.key), channel="view")

    def cancel_analysis(self) -> None:
        """Cancel the on-screen analysis and the worklist run."""
        self.analysis.cancel()
        if self.batch_running:
            self.batch_running = False
            for item in self.worklist.worklist.cancel_running():
                self.worklist.item_changed(item.key)
        if self.ai_panel.result is None and self.current is not None:
            self.ai_panel.show_idle("Analysis cancelled. Press Ctrl+R to run it again.")
        self.statusBar().showMessage("Analysis cancelled.", 5000)

    def _on_result(self, tag: object, result: AnalysisResult, prepared: Any = None) -> None:
        channel, key = tag
        item = self.worklist.worklist.get(key)
        if item is not None:
            self.worklist.worklist.set_result(key, result)
            self.worklist.item_changed(key)
        if self.current is not None and key == self.current.key:
            self.show_analysis(result, prepared)
        if channel == "batch":
            self._next_batch_item()

    def show_analysis(self, result: AnalysisResult, prepared: Any = None) -> None:
        """Show a result for the image on screen: panel, overlays, similar cases. ``prepared``: the display
        data made in the analysis thread (:class:`~cxrviewer.ui.overlay_data.PreparedOverlays`); what it
        does not cover is prepared here."""
        self.current_result, self.current_prepared = result, prepared
        self.ai_panel.show_result(result)
        self.view.set_analysis_overlays(result.heatmap, result.lung_mask, prepared)
        self.similar.show_result(result, getattr(prepared, "thumbnails", None))
        self.analysis_shown.emit(result)

    def _on_occlusion_done(self, key: str, heatmap: Any) -> None:
        self.occlusion_progress.setVisible(False)
        r = self.current_result
        if self.current is None or key != self.current.key or r is None:
            return
        r.heatmap = heatmap.map
        r.heatmap_method = "occlusion"
        r.saliency_outside_lungs = heatmap.outside_lung_fraction
        if heatmap.warning and heatmap.warning not in r.warnings:
            r.warnings.append(heatmap.warning)
        self.show_analysis(r, self.current_prepared)  # the mask's display data stays valid
        self.statusBar().showMessage("Occlusion map done.", 6000)

    def _on_analysis_failed(self, tag: object, message: str) -> None:
        channel, key = tag
        if channel == "explain":
            self.occlusion_progress.setVisible(False)
            self.statusBar().showMessage(f"Occlusion map failed: {message}", 10000)
            return
        if channel == "task":
            self.similar.add_button.setEnabled(True)
            QMessageBox.warning(self, "Could not add the case", message)
            return
        if self.worklist.worklist.get(key) is not None:
            self.worklist.worklist.set_failed(key, message)
            self.worklist.item_changed(key)
        if self.current is not None and key == self.current.key:
            self.ai_panel.show_error(message)
        if channel == "batch":
            self._next_batch_item()

    def _on_analysis_cancelled(self, tag: object) -> None:
        channel, key = tag
        if channel == "explain":
            self.occlusion_progress.setVisible(False)
            if self.current_result is not None and self.current is not None and key == self.current.key:
                self.show_analysis(self.current_result, self.current_prepared)  # the analysis's map again
            return
        if channel == "task":
            return
        item = self.worklist.worklist.get(key)
        from cxrviewer.services.worklist import ItemStatus

        if item is not None and item.status == ItemStatus.RUNNING:
            item.status = ItemStatus.CANCELLED
            self.worklist.item_changed(key)

    def _on_model_unavailable(self, tag: object, message: str) -> None:
        self.model_unavailable = message
        self.ai_panel.show_unavailable(message)
        self.similar.empty.setText("Similar cases need an AI model.")
        if self.batch_running:
            self.batch_running = False
            for item in self.worklist.worklist.cancel_running():
                self.worklist.item_changed(item.key)
        self.statusBar().showMessage("No AI model available: viewing only.", 10000)

    def analyse_worklist(self) -> None:
        """Analyse every pending worklist image, one at a time, in the background."""
        if self.model_unavailable:
            self.ai_panel.show_unavailable(self.model_unavailable)
            return
        if len(self.worklist.worklist) == 0:
            return
        self.batch_running = True
        self.worklist_dock.setVisible(True)
        self._next_batch_item()

    def _next_batch_item(self) -> None:
        if not self.batch_running:
            return
        item = self.worklist.worklist.next_pending()
        if item is None:
            self.batch_running = False
            c = self.worklist.worklist.counts()
            self.statusBar().showMessage(
                f"Worklist done: {c['done']} analysed, {c['abstained']} abstained, {c['error']} failed.",
                10000,
            )
            return
        self.worklist.worklist.mark_running(item.key)
        self.worklist.item_changed(item.key)
        self.analysis.submit(item.source, tag=("batch", item.key), channel="batch")

    def step_image(self, step: int) -> bool:
        """Show the next (``step`` = +1) or previous (-1) image of the worklist, in its current order."""
        items = list(self.worklist.worklist) if self.worklist.model._worklist is not None else []
        if not items:
            return False
        keys = [i.key for i in items]
        here = keys.index(self.current.key) if self.current is not None and self.current.key in keys else -1
        target = here + step if here >= 0 else (0 if step > 0 else len(items) - 1)
        if not 0 <= target < len(items):
            self.statusBar().showMessage("No more images in the worklist.", 3000)
            return False
        self.worklist.table.selectRow(target)
        self.show_source(items[target].source)
        return True

    def export_worklist(self, path: str | Path, fmt: str) -> Path:
        """Write the worklist as ``csv`` or ``json`` to ``path``."""
        wl = self.worklist.worklist
        return wl.export_csv(path) if fmt == "csv" else wl.export_json(path)

    def export_worklist_dialog(self, fmt: str) -> None:
        if len(self.worklist.worklist) == 0:
            self.statusBar().showMessage("The worklist is empty.", 5000)
            return
        name, _ = QFileDialog.getSaveFileName(
            self, "Export worklist", f"worklist.{fmt}", f"{fmt.upper()} (*.{fmt})"
        )
        if name:
            try:
                out = self.export_worklist(name, fmt)
            except OSError as exc:
                QMessageBox.warning(self, "Export failed", str(exc))
                return
            self.statusBar().showMessage(f"Worklist written to {out}", 8000)

    # ---------------------------------------------------------------------------------- PACS and exports
    def open_pacs_dialog(self) -> None:
        """File ▸ Open from PACS: a retrieved study opens like a local folder."""
        from cxrviewer.ui.pacs_dialog import PacsDialog

        if self.pacs_dialog is None:
            self.pacs_dialog = PacsDialog(self.store, self.pacs_client_factory, self.pacs_cache, self)
            self.pacs_dialog.study_retrieved.connect(lambda folder: self.open_paths([folder]))
        self.pacs_dialog.show()
        self.pacs_dialog.raise_()

    def clear_pacs_cache(self) -> None:
        """Delete every study retrieved from a PACS (asks first)."""
        answer = QMessageBox.question(self, "Clear PACS cache", "Delete every study retrieved from the PACS?")
        if answer == QMessageBox.StandardButton.Yes:
            self.open_pacs_dialog()
            self.pacs_dialog.clear_cache()

    def _export_ready(self) -> bool:
        if self.export_job is not None:
            self.statusBar().showMessage("An export is still running.", 5000)
            return False
        r = self.current_result
        if self.current is None or r is None or r.status != "ok":
            QMessageBox.information(self, "Export", "Analyse an image first: there is nothing to export yet.")
            return False
        return True

    def export_report(self, path: str | Path) -> Any:
        """Write the report of the image on screen to ``path`` (.pdf/.png) in a background job."""
        from cxrviewer.ui.export_jobs import write_report

        image, result = self.current.image, self.current_result
        return self._run_export(lambda _: write_report(image, result, path))

    def export_dicom(self, folder: str | Path, deidentify: bool = True) -> Any:
        """Write the SC + SR of the image on screen into ``folder`` in a background job."""
        from cxrviewer.ui.export_jobs import write_dicom

        image, result = self.current.image, self.current_result
        return self._run_export(lambda _: write_dicom(image, result, folder, deidentify))

    def _run_export(self, work: Any) -> Any:
        from cxrviewer.ui.background_job import BackgroundJob

        job = BackgroundJob(work, self)
        self.export_job = job

        def finished(ok: bool, value: object) -> None:
            job.wait()
            job.deleteLater()
            self.export_job = None
            if ok:
                self.statusBar().showMessage(f"Exported {_names(value)}", 10000)
            else:
                QMessageBox.warning(self, "Export failed", str(value))
            self.export_finished.emit(ok, value)

        job.succeeded.connect(lambda out: finished(True, out))
        job.failed.connect(lambda msg: finished(False, msg))
        self.statusBar().showMessage("Exporting…")
        job.start()
        return job

    def export_report_dialog(self) -> None:
        if not self._export_ready():
            return
        stem = Path(self.current.title).stem
        name, _ = QFileDialog.getSaveFileName(
            self, "Export report", f"{stem}-report.pdf", "PDF (*.pdf);;PNG image (*.png)"
        )
        if name:
            if Path(name).suffix.lower() not in (".pdf", ".png"):
                name += ".pdf"
            self.export_report(name)

    def export_dicom_dialog(self) -> None:
        from cxrviewer.ui.export_jobs import DicomExportDialog

        if not self._export_ready():
            return
        dlg = DicomExportDialog(str(self.store.value("export/dicom_folder", "")), self)
        if dlg.exec() and dlg.folder.text().strip():
            folder = dlg.folder.text().strip()
            self.store.setValue("export/dicom_folder", folder)
            self.export_dicom(folder, deidentify=not dlg.keep_identifiers.isChecked())

    # --------------------------------------------------------------------------------- viewing actions
    def apply_preset(self, name: str) -> None:
        if not self.view.apply_preset(name):
            self.statusBar().showMessage(f"No {name} preset for this image.", 4000)

    def set_tool(self, tool: str) -> None:
        self.view.set_tool(tool)
        if self._compare is not None:
            self._compare.set_tool(tool)
        self.statusBar().showMessage(self.actions_by_name[f"tool_{tool}"].statusTip(), 5000)

    def toggle_full_screen(self, checked: bool) -> None:
        self.showFullScreen() if checked else self.showNormal()

    def _reset_orientation(self) -> None:
        self.view.reset_orientation()
        self.actions_by_name["flip_h"].setChecked(False)
        self.actions_by_name["flip_v"].setChecked(False)

    def _show_window(self, w: Window) -> None:
        self.window_label.setText(f"C {w.center:.5g}  W {w.width:.5g}  ({w.explanation})")

    def _show_zoom(self) -> None:
        if self.view.loaded is not None:
            self.zoom_label.setText(f"zoom {100 * self.view.zoom_level():.0f} %")

    # overlays (restyle only)
    def _set_heatmap_visible(self, on: bool) -> None:
        self.settings.heatmap_visible = on
        self.actions_by_name["heatmap"].setChecked(on)
        self.view.set_heatmap_visible(on)

    def _set_heatmap_opacity(self, value: float) -> None:
        self.settings.heatmap_opacity = value
        self.view.heatmap.set_opacity(value)

    def _set_lungs_only(self, on: bool) -> None:
        self.settings.heatmap_lungs_only = on
        self.view.heatmap.set_lungs_only(on)

    def _set_mask_visible(self, on: bool) -> None:
        self.settings.mask_visible = on
        self.actions_by_name["mask"].setChecked(on)
        self.view.mask.set_visible(on)

    def _set_mask_style(self, style: str) -> None:
        self.settings.mask_style = style
        self.view.mask.set_style(style)

    # --------------------------------------------------------------------------------- comparison
    def show_neighbour(self, n: Neighbour) -> None:
        """Show a similar case beside the image: the full image when its source is a readable file, else the
        library's thumbnail."""
        if n.source and Path(n.source).is_file():
            self.loader.load_image(Path(n.source), tag=("compare", n.source), channel="compare")
            return
        if not n.thumbnail_png:
            self.statusBar().showMessage("This case has no image to show.", 5000)
            return
        from cxrviewer.ui.array_image import decode_png

        try:
            img = decode_png(
                n.thumbnail_png, f"{n.library} case {n.case_id}", {"label": n.label}, display_size=512
            )
        except ValueError as exc:
            self.statusBar().showMessage(str(exc), 5000)
            return
        title = f"Similar case {n.case_id} · {n.label} · distance {n.distance:.3f} (library thumbnail)"
        self._show_compare(prepare_image(img), title)

    def _show_compare(self, loaded: LoadedImage, title: str) -> None:
        self.compare_view.set_image(loaded)
        self.compare_title.setText(f"  {title}")
        self.compare_panel.setVisible(True)
        QTimer.singleShot(0, self._layout_compare)

    def _layout_compare(self) -> None:
        half = max(self.splitter.width() // 2, 1)
        self.splitter.setSizes([half, max(self.splitter.width() - half, 1)])
        self.view.fit()
        self.sync._sync_range(self.view, self.compare_view)
        self.sync._sync_window(self.view, self.compare_view)

    def close_compare(self) -> None:
        self.compare_panel.setVisible(False)
        if self._compare is not None:
            self._compare.set_image(None)

    # ---------------------------------------------------------------------------------- case library
    def _on_analyzer_ready(self, tasks: object) -> None:
        self.analyzer_tasks = set(tasks)  # type: ignore[arg-type]
        available = "add_to_library" in self.analyzer_tasks
        self.similar.set_library_available(available, "This analyzer cannot store cases.")

    def add_current_to_library(self, label: str) -> None:
        """Store the image on screen in the user's case library with ``label`` (in the analysis thread)."""
        if self.current is None:
            self.statusBar().showMessage("Open an image first.", 5000)
            return
        self.similar.add_button.setEnabled(False)
        self.analysis.run_task("add_to_library", (self.current, label), tag=("task", self.current.key))

    def compute_occlusion(self) -> None:
        """Occlusion heatmap of the displayed class for the image on screen, in the analysis thread, shown
        coarse-to-fine as it is computed; Cancel (Ctrl+.) or opening another image stops it."""
        r = self.current_result
        if self.current is None or r is None or r.status != "ok":
            self.statusBar().showMessage("Analyse the image first: occlusion explains a score.", 6000)
            return
        if "occlusion" not in self.analyzer_tasks:
            self.statusBar().showMessage("This analyzer cannot compute occlusion maps.", 6000)
            return
        cls = r.heatmap_class or r.top_label
        self.occlusion_progress.setRange(0, 0)
        self.occlusion_progress.setVisible(True)
        self.statusBar().showMessage(f"Occlusion map for {cls}…")
        self.analysis.run_task(
            "occlusion",
            (self.current, cls, r.lung_mask),
            tag=("explain", self.current.key),
            channel="explain",
        )

    def _on_task_progress(self, tag: object, state: object) -> None:
        channel, key = tag
        if channel != "explain" or self.current is None or key != self.current.key:
            return
        done, total, partial = state[:3]
        prepared = state[3] if len(state) > 3 else None  # made in the analysis thread
        self.occlusion_progress.setRange(0, int(total))
        self.occlusion_progress.setValue(int(done))
        self.view.heatmap.set_heatmap(
            partial,
            self.current_result.lung_mask if self.current_result else None,
            self.view.image_shape,
            prepared,
        )
        self.view.colorbar.setVisible(self.view.heatmap.visible)

    def _on_task_done(self, tag: object, message: object) -> None:
        if tag[0] == "explain":
            self._on_occlusion_done(tag[1], message)
            return
        self.similar.add_button.setEnabled(True)
        self.statusBar().showMessage(str(message), 8000)
        self.library_changed.emit(str(message))

    # ----------------------------------------------------------------------------------------- misc
    def open_preferences(self) -> None:
        dlg = PreferencesDialog(self.settings, self)
        if dlg.exec():
            old = self.settings
            self.settings = dlg.settings()
            save_settings(self.settings, self.store)
            self.overlay_controls.heatmap.setChecked(self.settings.heatmap_visible)
            self.overlay_controls.opacity.setValue(round(self.settings.heatmap_opacity * 100))
            self.overlay_controls.lungs_only.setChecked(self.settings.heatmap_lungs_only)
            self.overlay_controls.mask.setChecked(self.settings.mask_visible)
            self.overlay_controls.mask_style.setCurrentText(self.settings.mask_style)
            if (old.device, old.model_dir, old.operating_point) != (
                self.settings.device,
                self.settings.model_dir,
                self.settings.operating_point,
            ):
                from cxrviewer.ui.analysis_backend import pipeline_factory

                self.replace_analyzer(pipeline_factory(self.settings))
                self.statusBar().showMessage("Model settings changed: the model is loaded again.", 8000)

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About cxrviewer",
            f"<b>cxrviewer {__version__}</b><br>Chest X-ray viewer with local AI.<br><br><b>{INTENDED_USE}</b><br>"
            "Images never leave this computer.",
        )

    def shutdown(self) -> None:
        """Save the settings and stop the worker threads (waits for a running read or inference)."""
        save_settings(self.settings, self.store)
        if self.pacs_dialog is not None and self.pacs_dialog.job is not None:
            self.pacs_dialog.job.cancel()
            self.pacs_dialog.job.wait(10000)
        if self.export_job is not None:
            self.export_job.wait(30000)  # a half-written export is removed by the exporter, but let it finish
        self.analysis.shutdown()
        self.loader.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
