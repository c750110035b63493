"""DCMTK command-line tools as real DICOM peers in tests: echoscu, storescu, findscu, movescu, getscu
(clients of our SCP) and storescp (a C-MOVE destination / export target).

Every tool runs as a subprocess through asyncio, so the test's event loop (which also runs the server
under test) keeps serving while the tool talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset


@dataclass
class Run:
    returncode: int
    output: str

    def check(self) -> Run:
        assert self.returncode == 0, self.output
        return self


async def run(*args: str | Path, seconds: float = 120) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Run(proc.returncode or 0, out.decode(errors="replace"))


def keys(level: str, **values: str) -> list[str]:
    """findscu/movescu/getscu `-k` arguments: the level, then keyword=value (empty value = return key)."""
    args = ["-k", f"QueryRetrieveLevel={level}"]
    for keyword, value in values.items():
        args += ["-k", f"{keyword}={value}"]
    return args


async def findscu(port: int, aet: str, model: str, level: str, out: Path, **values: str) -> list[Dataset]:
    """A C-FIND with DCMTK; the responses as datasets (findscu -X writes one file per response)."""
    _clear_responses(out)
    root = "-P" if model == "PATIENT" else "-S"
    (await run("findscu", root, "-aec", aet, "-X", "-od", out, *keys(level, **values), "127.0.0.1", port)).check()
    return _responses(out)


def _clear_responses(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()


def _responses(out: Path) -> list[Dataset]:
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


class StoreSCP:
    """DCMTK storescp: accepts every transfer syntax and writes what it receives bit for bit (+B)."""

    def __init__(self, port: int, aet: str, out: Path) -> None:
        self.port, self.aet, self.out = port, aet, out
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            "storescp", "-aet", self.aet, "+xa", "+B", "-od", str(self.out), str(self.port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        # Ready when it accepts a C-ECHO.
        for _ in range(100):
            if (await run("echoscu", "-aec", self.aet, "127.0.0.1", self.port, seconds=10)).returncode == 0:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("storescp did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def received(self) -> dict[str, Path]:
        """SOP Instance UID -> file, for everything received so far."""
        found = {}
        for path in self.out.iterdir():
            if path.is_file():
                with contextlib.suppress(Exception):
                    found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
        return found

    def clear(self) -> None:
        for path in self.out.iterdir():
            if path.is_file():
                path.unlink()


@contextlib.asynccontextmanager
async def storescp(port: int, aet: str, out: Path) -> AsyncIterator[StoreSCP]:
    scp = StoreSCP(port, aet, out)
    await scp.start()
    try:
        yield scp
    finally:
        await scp.stop()
