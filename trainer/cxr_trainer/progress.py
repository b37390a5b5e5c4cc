"""Progress bars (tqdm on stderr, silent when disabled or not the main process) and the JSON run log."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Iterable
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


def default_log_path(verb: str, out: str | Path) -> Path:
    """Where a verb's run log goes when ``--json`` is not given: ``runs/<verb>-<name of OUT>.json``.

    Kept out of the model folder so that the folder (and its manifest's file list) stays as it was.
    """
    return Path("runs") / f"{verb}-{Path(out).name}.json"


def run_with_log(
    verb: str,
    args: argparse.Namespace,
    log_path: str | Path,
    body: Callable[[RunLog], int],
    expected: tuple[type[BaseException], ...] = (ValueError, OSError),
) -> int:
    """Run ``body(log)`` and write its :class:`RunLog` to ``log_path``, also when it fails.

    An ``expected`` error (bad data, missing file ...) is printed as a one-line message and gives exit code 1;
    any other exception is logged with status ``error`` and raised again (a bug keeps its traceback), and an
    interruption (Ctrl-C) is logged with status ``interrupted``. The last line printed is ``JSON log: PATH``.
    """
    log = RunLog(verb, {k: v for k, v in vars(args).items() if k != "func"})
    try:
        code = body(log)
    except expected as exc:
        print(f"cxr-trainer {verb}: {exc}", file=sys.stderr)
        print(f"JSON log: {log.write(log_path, status='error', error=str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:
        log.write(log_path, status="error", error=f"{type(exc).__name__}: {exc}")
        print(f"JSON log: {log_path}", file=sys.stderr)
        raise
    except BaseException:
        log.write(log_path, status="interrupted")
        raise
    print(f"JSON log: {log.write(log_path)}")
    return code


def _jsonable(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)
