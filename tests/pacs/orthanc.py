"""A real Orthanc server with the DICOMweb plugin, started for tests on 127.0.0.1 with its own config and storage.

Needs the Debian packages ``orthanc`` and ``orthanc-dicomweb`` (``.ci/run`` installs them); tests that use it
skip with a clear reason when they are missing. No system config, no system service, no fixed port.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
USER, PASSWORD = "reader", "correct-horse-battery"


def orthanc_missing_reason() -> str | None:
    """Why Orthanc tests cannot run here, or None."""
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if find_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def find_plugin() -> str | None:
    for p in PLUGIN_CANDIDATES:
        if Path(p).exists():
            return p
    libs = (
        sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))
        if Path("/usr/lib/orthanc").is_dir()
        else []
    )
    return str(libs[0]) if libs else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OrthancServer:
    """A running Orthanc: ``dicomweb_url`` is the DICOMweb root; basic auth ``USER``/``PASSWORD``."""

    process: subprocess.Popen
    port: int
    workdir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.base_url}/dicom-web"

    def rest(self, path: str) -> requests.Response:
        """GET on Orthanc's own REST API (for checks independent of the client under test)."""
        return requests.get(f"{self.base_url}{path}", auth=(USER, PASSWORD), timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_orthanc(workdir: Path, timeout_s: float = 30.0) -> OrthancServer:
    """Start Orthanc with a config, storage and log under ``workdir``; wait until it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "cxrviewer-test",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,  # Orthanc 1.10 has no bind address: refuse every non-loopback client
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "HttpThreadsCount": 4,
        "ConcurrentJobs": 1,
        "StorageCompression": False,
        "Plugins": [find_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{port}"},
    }
    cfg = workdir / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    log = open(workdir / "orthanc.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
    proc = subprocess.Popen(["Orthanc", str(cfg)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    server = OrthancServer(proc, port, workdir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"Orthanc exited with {proc.returncode}: {(workdir / 'orthanc.log').read_text()[-2000:]}"
            )
        try:
            if server.rest("/system").status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(
        f"Orthanc did not start in {timeout_s} s: {(workdir / 'orthanc.log').read_text()[-2000:]}"
    )
