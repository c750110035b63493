"""DICOM test data for the dicomweb tests: pydicom's bundled files, and variants with new UIDs."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pydicom
import uvicorn
from asgi_lifespan import LifespanManager
from pydicom.data import get_testdata_file
from starlette.applications import Starlette

from fhir_server.app import create_app
from fhir_server.auth.tokens import mint_token
from fhir_server.config import Settings


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not available offline"
    return Path(path)


def variant(name: str, **changes: object) -> bytes:
    """A bundled test file with some attributes changed (new UIDs make a new instance)."""
    ds = pydicom.dcmread(sample(name))
    for key, value in changes.items():
        setattr(ds, key, value)
    if "SOPInstanceUID" in changes:
        ds.file_meta.MediaStorageSOPInstanceUID = changes["SOPInstanceUID"]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[Starlette]:
    """The app with its life cycle, allowing a slow start on a loaded machine (2 cores, many tests)."""
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=120, shutdown_timeout=60):
        yield application


class ServerThread:
    """The app served by uvicorn on a free port in a thread (for clients that need a real socket:
    dicomweb-client over `requests`, a browser)."""

    def __init__(self, settings_for: Callable[[str], Settings]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.settings = settings_for(self.origin + "/fhir")
        config = uvicorn.Config(
            create_app(self.settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def token(self, scope: str = "system/*.*", **extra: object) -> str:
        return mint_token(
            self.settings.data_dir,
            issuer=self.settings.resolved_token_issuer(),
            audience=self.settings.resolved_base_url(),
            scope=scope,
            lifetime=3600,
            extra=extra or None,
        )
