"""PyInstaller entry point of the frozen ``cxrviewer`` executable (same as ``python -m cxrviewer``)."""

import sys

from cxrviewer.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
