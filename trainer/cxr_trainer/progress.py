"""Progress bars (tqdm on stderr, silent when disabled or not the main process) and the JSON run log."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str = "", enabled: bool = True, **kw: Any) -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar on stderr when ``enabled``."""
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False, **kw)


@dataclass
class RunLog:
    """A machine-readable record of one verb's run, written as JSON at the end (and on failure)."""

    verb: str
    args: dict[str, Any]
    started: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)

    def event(self, kind: str, **data: Any) -> None:
        """Append a timestamped event (epoch end, stage change, warning ...)."""
        self.events.append({"t": round(time.time() - self.started, 3), "event": kind, **data})

    def write(self, path: str | Path, status: str = "ok", error: str | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "verb": self.verb,
            "status": status,
            "error": error,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in self.args.items()},
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 2),
            "host": {"python": platform.python_version(), "machine": platform.machine()},
            "events": self.events,
            "result": self.result,
        }
        path.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n", encoding="utf-8")
        return path


def _jsonable(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)
