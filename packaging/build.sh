#!/usr/bin/env bash
# Build the one-folder app into dist/cxrviewer/ with PyInstaller (re-runnable: each run starts clean).
#
#   bash packaging/build.sh            # CPU build: ONNX Runtime, no torch at run time
#   CXR_BUILD=gpu bash packaging/build.sh   # GPU build: torch with CUDA (large; needs a CUDA torch in the venv)
#   CXR_WITH_EXPORTS=0 ...             # viewer-only: no report/DICOM export, no PACS (smaller)
#
# Environment: PYTHON (default .venv/bin/python, which needs `pip install -e ".[packaging]"`), NICE (default 10:
# the build is CPU-heavy; it runs at lower priority so a shared machine stays usable), SLIM (default 1; 0 skips
# the post-build size cuts of packaging/slim_bundle.py, e.g. to compare sizes).
# Prints the size of dist/cxrviewer and the build time. Rebuild after models/ changes: the models are copied
# into the bundle at build time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
export CXR_BUILD="${CXR_BUILD:-cpu}"
export CXR_WITH_EXPORTS="${CXR_WITH_EXPORTS:-1}"
NICE="${NICE:-10}"

"$PYTHON" -c "import PyInstaller" 2>/dev/null || {
    echo "PyInstaller is missing: $PYTHON -m pip install -e '.[packaging]'" >&2
    exit 2
}

echo "== cxrviewer build: target=$CXR_BUILD exports=$CXR_WITH_EXPORTS python=$PYTHON"
if ! ls models/*/manifest.json >/dev/null 2>&1; then
    echo "!! models/ holds no model: this build can view images but not analyse them" >&2
fi

start=$(date +%s)
rm -rf "$ROOT/dist/cxrviewer" "$ROOT/build/pyinstaller"
# Platform icons (Windows .ico, macOS .icns where iconutil exists) from resources/icons/cxrviewer.svg.
QT_QPA_PLATFORM=offscreen nice -n "$NICE" "$PYTHON" packaging/make_icons.py "$ROOT/build/icons" || \
    echo "!! icons not generated; building without a platform icon" >&2
nice -n "$NICE" "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" packaging/cxrviewer.spec
# Linux: post-build size cuts (packaging/slim_bundle.py: strip unedited libraries, trim Qt's ICU data, stand-ins
# for OpenCV's unused FFmpeg/OpenBLAS, compact highdicom tables); each is checked by loading the result.
if [ "$(uname -s)" = Linux ] && [ "${SLIM:-1}" = 1 ]; then
    nice -n "$NICE" "$PYTHON" packaging/slim_bundle.py "$ROOT/dist/cxrviewer"
fi
end=$(date +%s)

echo "== built dist/cxrviewer in $((end - start)) s"
du -sh "$ROOT/dist/cxrviewer"
echo "== largest parts:"
# (awk, not head: head would close the pipe early and pipefail would turn that into a failed build)
du -s "$ROOT"/dist/cxrviewer/_internal/* | sort -rn | \
    awk -v root="$ROOT/" 'NR <= 12 {sub(root, "", $2); printf "%8.1f MB  %s\n", $1 / 1024, $2}'
