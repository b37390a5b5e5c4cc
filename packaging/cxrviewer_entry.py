"""PyInstaller entry point of the frozen ``cxrviewer`` executable (same as ``python -m cxrviewer``)."""

import os
import sys
from pathlib import Path


def _keep_matplotlib_cache() -> None:
    """Give matplotlib a lasting cache folder in the frozen app.

    PyInstaller's matplotlib run-time hook points ``MPLCONFIGDIR`` at a new temporary folder on every start (a
    one-file app unpacks to a new path each time), so matplotlib rebuilt its font list — seconds, mostly AFM
    parsing — at the first report export of every session. This is a one-folder app whose fonts stay put;
    matplotlib rebuilds the list itself if the app is moved ("Found a missing font file"). The folder is the
    app's own (``platformdirs.user_cache_dir("cxrviewer")/matplotlib``), never a system matplotlib's.
    """
    if not getattr(sys, "frozen", False):
        return
    try:
        import platformdirs

        folder = Path(platformdirs.user_cache_dir("cxrviewer", appauthor=False)) / "matplotlib"
        folder.mkdir(parents=True, exist_ok=True)
    except (ImportError, OSError):
        return  # the hook's temporary folder still works, only slower
    os.environ["MPLCONFIGDIR"] = str(folder)


_keep_matplotlib_cache()

from cxrviewer.__main__ import main  # noqa: E402 - after MPLCONFIGDIR is set

if __name__ == "__main__":
    sys.exit(main())
