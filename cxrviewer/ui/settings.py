"""The viewer's persisted settings (a dataclass) and their QSettings storage, plus recent studies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from PySide6.QtCore import QSettings

ORGANISATION = "cxrviewer"
APPLICATION = "cxrviewer"
MAX_RECENT = 10
DEVICES = ("auto", "cpu", "cuda")
OPERATING_POINTS = ("", "high-sensitivity", "balanced", "high-specificity")


@dataclass
class ViewerSettings:
    """What the user can set in Preferences.

    Attributes:
        device: ``auto`` (GPU when usable, else CPU), ``cpu`` or ``cuda``.
        model_dir: a model folder to use instead of the shipped default ("" = default).
        operating_point: operating-point name from the model's manifest ("" = the manifest's default).
        heatmap_visible, heatmap_opacity, heatmap_lungs_only: heatmap overlay defaults.
        mask_visible, mask_style: lung-mask overlay defaults (``outline`` or ``fill``).
        analyse_on_open: run the analysis automatically when an image is shown.
    """

    device: str = "auto"
    model_dir: str = ""
    operating_point: str = ""
    heatmap_visible: bool = True
    heatmap_opacity: float = 0.45
    heatmap_lungs_only: bool = False
    mask_visible: bool = True
    mask_style: str = "outline"
    analyse_on_open: bool = True

    def validated(self) -> ViewerSettings:
        """A copy with out-of-range values replaced by defaults."""
        d = ViewerSettings()
        return ViewerSettings(
            device=self.device if self.device in DEVICES else d.device,
            model_dir=str(self.model_dir or ""),
            operating_point=str(self.operating_point or ""),
            heatmap_visible=bool(self.heatmap_visible),
            heatmap_opacity=min(max(float(self.heatmap_opacity), 0.0), 1.0),
            heatmap_lungs_only=bool(self.heatmap_lungs_only),
            mask_visible=bool(self.mask_visible),
            mask_style=self.mask_style if self.mask_style in ("outline", "fill") else d.mask_style,
            analyse_on_open=bool(self.analyse_on_open),
        )


def _coerce(value: object, default: object) -> object:
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
    if isinstance(default, float):
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return default
    return str(value)


def qsettings() -> QSettings:
    """The application's QSettings (per user, in ``QSettings.defaultFormat()``: native unless changed)."""
    return QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope, ORGANISATION, APPLICATION)


def load_settings(store: QSettings | None = None) -> ViewerSettings:
    """Read :class:`ViewerSettings` (missing or broken values fall back to defaults)."""
    store = store or qsettings()
    defaults = ViewerSettings()
    values = {}
    for f in fields(ViewerSettings):
        default = getattr(defaults, f.name)
        raw = store.value(f"viewer/{f.name}", default)
        values[f.name] = _coerce(raw, default)
    return ViewerSettings(**values).validated()


def save_settings(settings: ViewerSettings, store: QSettings | None = None) -> None:
    store = store or qsettings()
    for key, value in asdict(settings.validated()).items():
        store.setValue(f"viewer/{key}", value)
    store.sync()


def recent_paths(store: QSettings | None = None) -> list[str]:
    """Recently opened files/folders, newest first."""
    store = store or qsettings()
    raw = store.value("recent/paths", [])
    if isinstance(raw, str):
        raw = [raw]
    return [str(p) for p in (raw or []) if p]


def add_recent_path(path: str, store: QSettings | None = None) -> list[str]:
    """Put ``path`` first in the recent list (deduplicated, at most :data:`MAX_RECENT`)."""
    store = store or qsettings()
    paths = [path] + [p for p in recent_paths(store) if p != path]
    paths = paths[:MAX_RECENT]
    store.setValue("recent/paths", paths)  # written to disk by Qt later, not on this (GUI) thread's time
    return paths
