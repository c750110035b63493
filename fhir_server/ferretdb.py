"""The embedded database: FerretDB v1 (MongoDB wire protocol over SQLite) run as a child process.

Used when no MongoDB URI is configured. The binary is our own small Go main around FerretDB's
embeddable package (tools/ferretdb), built by `make setup`. It listens on a loopback port chosen by
the OS and prints one "ready on <uri>" line once the listener is up; we wait for that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)

READY_PREFIX = "ferretdb-embedded: ready on "


class EmbeddedDatabaseError(RuntimeError):
    """FerretDB could not be started; the message says why and what to do."""


def _die_with_parent() -> None:
    # Linux PR_SET_PDEATHSIG: if the server is killed (even with SIGKILL) FerretDB follows it,
    # so no orphan keeps the SQLite files open.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class EmbeddedFerretDB:
    def __init__(self, binary: Path, data_dir: Path, start_timeout: float = 20.0) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.uri: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise EmbeddedDatabaseError(
                f"FerretDB binary not found at {self.binary}: run `make setup` (or set FHIR_MONGODB_URI "
                "to use an external MongoDB)"
            )
        db_dir = self.data_dir / "ferretdb"
        try:
            db_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedDatabaseError(f"cannot create the database directory {db_dir}: {exc}") from exc
        self._proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            "-listen-addr",
            "127.0.0.1:0",
            "-data-dir",
            str(db_dir.resolve()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            self.uri = await asyncio.wait_for(self._wait_ready(), self.start_timeout)
        except (TimeoutError, EmbeddedDatabaseError) as exc:
            output = await self._stop_and_collect()
            reason = "did not become ready in time" if isinstance(exc, TimeoutError) else str(exc)
            raise EmbeddedDatabaseError(f"FerretDB {reason}; its output:\n{output}") from None
        self._log_task = asyncio.create_task(self._forward_logs())
        log.info("embedded FerretDB ready", extra={"uri": self.uri, "data_dir": str(db_dir)})
        return self.uri

    async def _wait_ready(self) -> str:
        assert self._proc and self._proc.stdout
        self._early_output: list[str] = []
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                raise EmbeddedDatabaseError(f"exited with code {await self._proc.wait()}")
            text = line.decode(errors="replace").rstrip()
            if text.startswith(READY_PREFIX):
                return text.removeprefix(READY_PREFIX).strip()
            self._early_output.append(text)

    async def _forward_logs(self) -> None:
        assert self._proc and self._proc.stdout
        while line := await self._proc.stdout.readline():
            log.debug("ferretdb: %s", line.decode(errors="replace").rstrip())

    async def _stop_and_collect(self) -> str:
        lines = list(getattr(self, "_early_output", []))
        await self.stop()
        return "\n".join(lines[-20:])

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if self._log_task:
            self._log_task.cancel()
            self._log_task = None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
