#!/usr/bin/env bash
# Install (or remove) the built cxrviewer for one user or system-wide on Linux:
#   the app folder, a `cxrviewer` launcher on PATH, the desktop entry, the icon and the DICOM MIME type
#   (application/dicom; *.dcm/*.dicom and files with the DICM magic), with cxrviewer as a handler.
#
#   bash packaging/linux/install.sh                 # per user: ~/.local/{opt,bin,share}
#                                                   # (user data, e.g. case libraries, is never touched)
#   sudo bash packaging/linux/install.sh --system   # system-wide: /opt/cxrviewer, /usr/local/bin, /usr/share
#   bash packaging/linux/install.sh --uninstall [--system]
#   DIST=path/to/cxrviewer bash packaging/linux/install.sh   # another built folder (default dist/cxrviewer)
#
# Only this program's own files are written; the MIME and desktop databases are refreshed when the tools
# (update-mime-database, update-desktop-database, gtk-update-icon-cache) exist.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIST="${DIST:-$ROOT/dist/cxrviewer}"
MODE=user
ACTION=install
for arg in "$@"; do
    case "$arg" in
        --system) MODE=system ;;
        --uninstall) ACTION=uninstall ;;
        -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown option: $arg" >&2; exit 2 ;;
    esac
done

if [ "$MODE" = system ]; then
    APP_DIR=/opt/cxrviewer
    BIN_DIR=/usr/local/bin
    DATA_DIR=/usr/share
else
    APP_DIR="$HOME/.local/opt/cxrviewer"  # not under ~/.local/share/cxrviewer: that is the user's data
    BIN_DIR="$HOME/.local/bin"
    DATA_DIR="${XDG_DATA_HOME:-$HOME/.local/share}"
fi
DESKTOP="$DATA_DIR/applications/cxrviewer.desktop"
MIME_XML="$DATA_DIR/mime/packages/cxrviewer-dicom.xml"
ICON="$DATA_DIR/icons/hicolor/scalable/apps/cxrviewer.svg"

refresh() {
    if command -v update-mime-database >/dev/null; then update-mime-database "$DATA_DIR/mime"; fi
    if command -v update-desktop-database >/dev/null; then update-desktop-database "$DATA_DIR/applications"; fi
    if command -v gtk-update-icon-cache >/dev/null; then
        gtk-update-icon-cache -q -t "$DATA_DIR/icons/hicolor" || true
    fi
}

if [ "$ACTION" = uninstall ]; then
    rm -rf "$APP_DIR"
    rm -f "$BIN_DIR/cxrviewer" "$DESKTOP" "$MIME_XML" "$ICON"
    refresh
    echo "cxrviewer removed ($MODE)"
    exit 0
fi

[ -x "$DIST/cxrviewer" ] || { echo "no built app at $DIST (run packaging/build.sh first)" >&2; exit 1; }
mkdir -p "$APP_DIR" "$BIN_DIR" "$(dirname "$DESKTOP")" "$(dirname "$MIME_XML")" "$(dirname "$ICON")"
rm -rf "$APP_DIR"
cp -a "$DIST" "$APP_DIR"
ln -sfn "$APP_DIR/cxrviewer" "$BIN_DIR/cxrviewer"
install -m 0644 "$ROOT/resources/icons/cxrviewer.svg" "$ICON"
install -m 0644 "$HERE/cxrviewer-dicom.xml" "$MIME_XML"
# The launcher is on PATH in both modes, but a desktop session may not have ~/.local/bin on its PATH:
# point Exec/TryExec at the absolute path.
sed -e "s#^Exec=cxrviewer #Exec=$APP_DIR/cxrviewer #" -e "s#^TryExec=cxrviewer#TryExec=$APP_DIR/cxrviewer#" \
    "$HERE/cxrviewer.desktop" >"$DESKTOP"
chmod 0644 "$DESKTOP"
refresh
if [ "$MODE" = user ] && command -v xdg-mime >/dev/null; then
    xdg-mime default cxrviewer.desktop application/dicom || true
fi
echo "cxrviewer installed ($MODE): $APP_DIR, launcher $BIN_DIR/cxrviewer"
echo "check it: $BIN_DIR/cxrviewer --self-test"
