"""Errors raised by the core layer, each with a message a radiologist can act on."""

from __future__ import annotations

from pathlib import Path


class LoadError(Exception):
    """An image or study could not be loaded.

    The message names the file and says in plain words what is wrong with it, e.g.
    ``"chest.dcm: the pixel data is truncated (expected 15 MB, found 2 MB)."``.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = message
        text = f"{self.path.name}: {message}" if self.path is not None else message
        super().__init__(text)
