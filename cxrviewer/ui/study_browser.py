"""The study browser: patient → study → series → image tree built from ``cxrviewer.core.load_studies``
results (files, folders, ZIPs, DICOMDIRs). Several opened trees are listed side by side; files the loader
skipped are listed under a "Skipped" node with the reason."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem, QWidget

SOURCE_ROLE = Qt.ItemDataRole.UserRole
KEY_ROLE = Qt.ItemDataRole.UserRole + 1


def _child(parent: QTreeWidgetItem, key: tuple, text: str) -> QTreeWidgetItem:
    """The child of ``parent`` with ``key`` (made with ``text`` if missing)."""
    for i in range(parent.childCount()):
        if parent.child(i).data(0, KEY_ROLE) == key:
            return parent.child(i)
    item = QTreeWidgetItem(parent, [text])
    item.setData(0, KEY_ROLE, key)
    return item


def _first(obj: Any, names: Iterable[str], default: Any = None) -> Any:
    for n in names:
        v = getattr(obj, n, None)
        if v not in (None, ""):
            return v
    return default


def _children(obj: Any, names: Iterable[str]) -> list[Any]:
    v = _first(obj, names, [])
    if isinstance(v, dict):
        return list(v.values())
    return list(v)


def patient_label(p: Any) -> str:
    name = _first(p, ("patient_name", "name"))
    pid = _first(p, ("patient_id", "id"), "unknown patient")
    if name:  # DICOM person name: Family^Given^Middle^Prefix^Suffix
        parts = [x for x in str(name).split("^") if x]
        name = parts[0] + (", " + " ".join(parts[1:]) if len(parts) > 1 else "")
    return f"{name} ({pid})" if name else f"Patient {pid}"


def study_label(s: Any) -> str:
    date = _first(s, ("study_date", "date"), "")
    desc = _first(s, ("description", "study_description"), "")
    uid = _first(s, ("study_instance_uid", "uid"), "")
    text = " ".join(x for x in (str(date), str(desc)) if x).strip()
    return text or f"Study …{str(uid)[-8:]}"


def series_label(s: Any) -> str:
    modality = _first(s, ("modality",), "")
    desc = _first(s, ("description", "series_description"), "")
    number = _first(s, ("series_number", "number"), "")
    n = len(_children(s, ("images", "instances")))
    head = " ".join(str(x) for x in (modality, f"#{number}" if number not in ("", None) else "", desc) if x)
    return f"{head or 'Series'} ({n} image{'s' if n != 1 else ''})"


def image_label(ref: Any) -> str:
    src = _first(ref, ("source",), ref)
    name = _first(ref, ("name",), None) or getattr(src, "name", None) or str(src)
    view = _first(ref, ("view_position", "view"), "")
    frame = _first(ref, ("frame",), 0)
    frames = _first(ref, ("number_of_frames",), 1)
    extra = f" frame {frame + 1}/{frames}" if frames and frames > 1 else ""
    return f"{name}{' · ' + view if view else ''}{extra}"


def image_sources(tree: Any) -> list[Any]:
    """Every image reference's source in tree order (what ``load_image`` accepts)."""
    out = []
    for p in _children(tree, ("patients",)):
        for st in _children(p, ("studies",)):
            for se in _children(st, ("series",)):
                for ref in _children(se, ("images", "instances")):
                    out.append(_first(ref, ("source",), ref))
    return out


class StudyBrowser(QTreeWidget):
    """Tree of opened studies; emits ``image_selected(source)`` when an image row is chosen."""

    image_selected = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderHidden(True)
        self.setUniformRowHeights(True)
        self.itemActivated.connect(self._activated)
        self.itemClicked.connect(self._activated)
        self._tree_keys: set[str] = set()  # images listed by an opened folder/ZIP/DICOMDIR tree

    def add_tree(self, root_label: str, tree: Any) -> QTreeWidgetItem:
        """Add a loaded study tree under a node named ``root_label`` (an opened path)."""
        root = QTreeWidgetItem([root_label])
        root.setToolTip(0, root_label)
        self.addTopLevelItem(root)
        for p in _children(tree, ("patients",)):
            pi = QTreeWidgetItem(root, [patient_label(p)])
            for st in _children(p, ("studies",)):
                si = QTreeWidgetItem(pi, [study_label(st)])
                for se in _children(st, ("series",)):
                    sei = QTreeWidgetItem(si, [series_label(se)])
                    for ref in _children(se, ("images", "instances")):
                        ii = QTreeWidgetItem(sei, [image_label(ref)])
                        src = _first(ref, ("source",), ref)
                        ii.setData(0, SOURCE_ROLE, src)
                        self._tree_keys.add(_key(src))
        skipped = _children(tree, ("skipped",))
        if skipped:
            sk = QTreeWidgetItem(root, [f"Skipped ({len(skipped)})"])
            for entry in skipped:
                text = _skipped_text(entry)
                item = QTreeWidgetItem(sk, [text])
                item.setToolTip(0, text)
        self.expandItem(root)
        for i in range(root.childCount()):
            self._expand_all(root.child(i), depth=3)
        return root

    def add_image(self, image: Any) -> QTreeWidgetItem | None:
        """List one loaded image (a ``CxrImage``) under "Opened files", grouped by its patient, study and
        series identifiers; an image already listed (here or in an opened tree) is not added twice. Returns
        its row (None when an opened tree lists it)."""
        if _key(image.source) in self._tree_keys:
            return None
        root = self._opened_root()
        meta = getattr(image, "metadata", None) or {}
        patient = _child(root, ("patient", image.patient_id), f"Patient {image.patient_id}")
        study_text = " ".join(str(meta[k]) for k in ("study_date", "study_description") if meta.get(k))
        study = _child(
            patient,
            ("study", image.study_instance_uid),
            study_text or f"Study …{image.study_instance_uid[-8:]}",
        )
        modality = meta.get("modality") or getattr(image, "format", "")
        series = _child(study, ("series", image.series_instance_uid), f"{modality} series".strip())
        src = image.source
        key = _key(src)
        label = (
            image_label(image)
            if getattr(image, "number_of_frames", 1) > 1
            else getattr(src, "name", str(src))
        )
        row = _child(series, ("image", key, getattr(image, "frame", 0)), label)
        row.setData(0, SOURCE_ROLE, src)
        for item in (root, patient, study, series):
            self.expandItem(item)
        self.setCurrentItem(row)
        return row

    def _opened_root(self) -> QTreeWidgetItem:
        for i in range(self.topLevelItemCount()):
            item = self.topLevelItem(i)
            if item.data(0, KEY_ROLE) == ("opened",):
                return item
        root = QTreeWidgetItem(["Opened files"])
        root.setData(0, KEY_ROLE, ("opened",))
        self.insertTopLevelItem(0, root)
        return root

    def _expand_all(self, item: QTreeWidgetItem, depth: int) -> None:
        if depth <= 0 or item.text(0).startswith("Skipped"):
            return
        self.expandItem(item)
        for i in range(item.childCount()):
            self._expand_all(item.child(i), depth - 1)

    def image_count(self) -> int:
        """Number of image rows in the tree."""
        count, stack = 0, [self.topLevelItem(i) for i in range(self.topLevelItemCount())]
        while stack:
            it = stack.pop()
            if it.data(0, SOURCE_ROLE) is not None:
                count += 1
            stack.extend(it.child(i) for i in range(it.childCount()))
        return count

    def _activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        src = item.data(0, SOURCE_ROLE)
        if src is not None:
            self.image_selected.emit(src)


def _key(source: Any) -> str:
    return source.stable_key() if hasattr(source, "stable_key") else str(source)


def _skipped_text(entry: Any) -> str:
    if isinstance(entry, tuple | list) and len(entry) == 2:
        return f"{getattr(entry[0], 'name', entry[0])}: {entry[1]}"
    path = _first(entry, ("path", "source", "name"), entry)
    reason = _first(entry, ("reason", "message"), "")
    return f"{getattr(path, 'name', path)}: {reason}" if reason else str(entry)
