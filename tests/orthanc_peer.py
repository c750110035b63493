"""A real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) as the PACS on the other side of our DICOM tests.

    with running_orthanc(tmp_path, modalities={"FHIRSRV": ("127.0.0.1", 11112)}) as orthanc:
        orthanc.upload(path)                       # REST POST /instances
        orthanc.dicomweb                           # http://127.0.0.1:<port>/dicom-web (QIDO/WADO/STOW)
        orthanc.aet, orthanc.dicom_port            # its DICOM side (C-ECHO/C-FIND/C-MOVE/C-GET/C-STORE)

Each peer gets a generated JSON configuration in its own folder: free HTTP and DICOM ports, its own
storage, no remote access, no authentication, the DICOMweb plugin under /dicom-web/, and the given
`modalities` (name -> (host, port) or (aet, host, port)) as known DICOM nodes: Orthanc answers C-FIND,
C-MOVE and C-GET only to known nodes and moves only to them. Modalities can also be added while it runs
(`add_modality`). `stop()` asks it to stop (SIGTERM) and waits; a peer that does not stop is killed.
Nothing here depends on the server under test: the bench (`bench/dicomweb.py`) uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ORTHANC_BIN = os.environ.get("ORTHANC_BIN", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = os.environ.get("ORTHANC_DICOMWEB_PLUGIN", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

Modality = tuple[str, int] | tuple[str, str, int]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    """Whether Orthanc and its DICOMweb plugin are installed (the tests need them; see README)."""
    return shutil.which(ORTHANC_BIN) is not None and Path(DICOMWEB_PLUGIN).exists()


class OrthancPeer:
    def __init__(
        self, workdir: Path, *, aet: str = "ORTHANC", modalities: dict[str, Modality] | None = None, **config: Any
    ) -> None:
        self.workdir = workdir
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.base}/dicom-web"
        self.modalities = dict(modalities or {})
        self.extra_config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base, timeout=60)

    def config(self) -> dict[str, Any]:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "Name": f"test-{self.aet}",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpsVerifyPeers": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "DicomModalities": {name: _modality(name, m) for name, m in self.modalities.items()},
            "DicomScuTimeout": 30,
            "SaveJobs": False,
            # Tests store the same instances more than once on purpose (idempotency).
            "OverwriteInstances": True,
        }
        cfg.update(self.extra_config)
        return cfg

    def start(self, timeout: float = 30.0) -> None:
        cfg_path = self.workdir / "orthanc.json"
        cfg_path.write_text(json.dumps(self.config(), indent=2))
        log = (self.workdir / "orthanc.log").open("wb")
        self.process = subprocess.Popen(
            [ORTHANC_BIN, str(cfg_path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/system").status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer /system within {timeout} s: {self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        self.http.close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "orthanc.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # REST helpers the tests and the bench use.

    def add_modality(self, name: str, modality: Modality) -> None:
        self.modalities[name] = modality
        self.http.put(f"/modalities/{name}", json=_modality(name, modality)).raise_for_status()

    def upload(self, data: bytes | Path) -> dict[str, Any]:
        body = data.read_bytes() if isinstance(data, Path) else data
        r = self.http.post("/instances", content=body, headers={"Content-Type": "application/dicom"})
        r.raise_for_status()
        return r.json()

    def study_uids(self) -> list[str]:
        ids = self.http.get("/studies").json()
        return sorted(self.http.get(f"/studies/{i}").json()["MainDicomTags"]["StudyInstanceUID"] for i in ids)

    def instance_count(self) -> int:
        return int(self.http.get("/statistics").json()["CountInstances"])

    def find_instance(self, sop_uid: str) -> str | None:
        r = self.http.post("/tools/lookup", content=sop_uid)
        r.raise_for_status()
        found = [x["ID"] for x in r.json() if x["Type"] == "Instance"]
        return found[0] if found else None

    def instance_file(self, orthanc_id: str) -> bytes:
        r = self.http.get(f"/instances/{orthanc_id}/file")
        r.raise_for_status()
        return r.content

    def clear(self) -> None:
        for pid in self.http.get("/patients").json():
            self.http.delete(f"/patients/{pid}").raise_for_status()


def _modality(name: str, m: Modality) -> list[Any]:
    aet, host, port = (name, *m) if len(m) == 2 else m
    return [aet, host, port]


@contextlib.contextmanager
def running_orthanc(
    workdir: Path, *, aet: str = "ORTHANC", modalities: dict[str, Modality] | None = None, **config: Any
) -> Iterator[OrthancPeer]:
    peer = OrthancPeer(workdir, aet=aet, modalities=modalities, **config)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
