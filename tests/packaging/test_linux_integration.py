"""Linux desktop integration files: the desktop entry, the DICOM MIME type and the install script."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINUX = REPO / "packaging" / "linux"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(LINUX / "cxrviewer.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_opens_dicom_files():
    entry = _desktop_entry()
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    assert entry["Exec"].split() == ["cxrviewer", "%F"]  # several files or folders at once
    assert "application/dicom" in entry["MimeType"].rstrip(";").split(";")
    assert (REPO / "resources" / "icons" / f"{entry['Icon']}.svg").is_file()


def test_mime_type_matches_the_bundled_dicom_samples():
    root = ET.parse(LINUX / "cxrviewer-dicom.xml").getroot()
    (mime,) = root.findall(f"{MIME_NS}mime-type")
    assert mime.get("type") == "application/dicom"
    assert "*.dcm" in {g.get("pattern") for g in mime.findall(f"{MIME_NS}glob")}
    (match,) = mime.findall(f"{MIME_NS}magic/{MIME_NS}match")
    offset, value = int(match.get("offset")), match.get("value").encode()
    samples = sorted((REPO / "resources" / "samples").glob("*.dcm"))
    assert samples
    for sample in samples:  # the magic rule recognises real DICOM files (Part 10 preamble + "DICM")
        assert sample.read_bytes()[offset : offset + len(value)] == value
    png = REPO / "resources" / "samples" / "sample_ap_followup.png"
    assert png.read_bytes()[offset : offset + len(value)] != value


@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="shared-mime-info not installed")
def test_install_script_installs_and_removes_per_user(tmp_path):
    dist = tmp_path / "dist" / "cxrviewer"
    dist.mkdir(parents=True)
    (dist / "cxrviewer").write_text('#!/bin/sh\necho frozen-app "$@"\n')
    (dist / "cxrviewer").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "DIST": str(dist)}
    script = ["bash", str(LINUX / "install.sh")]
    subprocess.run(script, env=env, check=True, capture_output=True, timeout=60)

    data = home / ".local" / "share"
    launcher = home / ".local" / "bin" / "cxrviewer"
    out = subprocess.run([str(launcher), "x.dcm"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "frozen-app x.dcm"
    desktop = (data / "applications" / "cxrviewer.desktop").read_text()
    assert f"Exec={home / '.local' / 'opt' / 'cxrviewer' / 'cxrviewer'} %F" in desktop
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "cxrviewer.svg").is_file()
    # update-mime-database compiled our package into the user's MIME database
    assert "DICM" in (data / "mime" / "magic").read_bytes().decode("latin-1")
    assert "application/dicom:*.dcm" in (data / "mime" / "globs").read_text()

    user_library = data / "cxrviewer" / "libraries" / "my-cases.cxrlib"  # the app's user data
    user_library.parent.mkdir(parents=True)
    user_library.write_bytes(b"user data")
    subprocess.run([*script, "--uninstall"], env=env, check=True, capture_output=True, timeout=60)
    assert not launcher.is_symlink() and not (home / ".local" / "opt" / "cxrviewer").exists()
    assert user_library.read_bytes() == b"user data"
    assert not (data / "applications" / "cxrviewer.desktop").exists()
    assert not (data / "mime" / "packages" / "cxrviewer-dicom.xml").exists()
