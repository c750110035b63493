"""A real `fhir-server serve` process killed (SIGKILL) in the middle of an MLLP stream loses nothing:
messages acknowledged before the kill are stored, a message processed but whose ACK never reached the
sender is answered with the same ACK when re-sent (and not processed again), and a message cut in the
middle of its frame is processed once when re-sent to the restarted server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from fhir_server.auth.tokens import mint_token
from fhir_server.config import REPO_ROOT
from tests.test_hl7v2_support import IPP_OID, Ack, adt, free_port

CLI = [sys.executable, "-m", "fhir_server.cli"]


class Served:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}/fhir"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"server-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)],
                env={**clean, **env},
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.token = ""
        self.data_dir = data_dir

    async def ready(self, timeout: float = 120) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"the server exited: {self.log.read_text()[-2000:]}"
                try:
                    if (await client.get(f"{self.base}/metadata", timeout=2)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the server did not start")
        self.token = mint_token(self.data_dir, issuer=self.base, audience=self.base, scope="system/*.*", lifetime=600)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def wait_mllp(port: int, timeout: float = 60) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert time.monotonic() < deadline, "MLLP listener not up"
            await asyncio.sleep(0.2)


async def patients(server: Served, ipp: str) -> list[dict]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {server.token}"}) as client:
        r = await client.get(f"{server.base}/Patient", params={"identifier": f"urn:oid:{IPP_OID}|{ipp}"})
        assert r.status_code == 200, r.text
        return [e["resource"] for e in r.json().get("entry", [])]


async def read_ack(reader: asyncio.StreamReader) -> Ack:
    frame = await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), 60)
    return Ack(frame[1:-2])


def frame(text: str) -> bytes:
    return b"\x0b" + text.encode() + b"\x1c\x0d"


async def test_server_killed_mid_stream_loses_nothing(ferretdb_uri: str, tmp_path: Path) -> None:
    http_port, mllp_port = free_port(), free_port()
    env = {
        "FHIR_MONGODB_URI": ferretdb_uri,
        "FHIR_DATABASE": "crash" + uuid.uuid4().hex[:10],
        "FHIR_MLLP_PORT": str(mllp_port),
        "FHIR_LOG_LEVEL": "WARNING",
    }
    messages = [adt("A28", f"K-{i}", ipp=f"KILL-{i}", family=f"KILL{i}") for i in range(8)]
    server = Served(tmp_path / "var", http_port, env)
    acked: dict[int, Ack] = {}
    try:
        await server.ready()
        await wait_mllp(mllp_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", mllp_port)
        for i in range(4):  # acknowledged before the kill
            writer.write(frame(messages[i]))
            await writer.drain()
            acked[i] = await read_ack(reader)
            assert acked[i].code == "AA"
        # Message 4 is processed, but the sender never reads its ACK.
        writer.write(frame(messages[4]))
        await writer.drain()
        deadline = time.monotonic() + 60
        while not await patients(server, "KILL-4"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        # Message 5 is cut in the middle of its frame when the server dies.
        cut = frame(messages[5])
        writer.write(cut[: len(cut) // 2])
        await writer.drain()
        server.kill()
        writer.close()
    finally:
        server.stop()

    again = Served(tmp_path / "var", http_port, env)
    try:
        await again.ready()
        await wait_mllp(mllp_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", mllp_port)
        resent: dict[int, Ack] = {}
        for i in range(3, 8):  # the sender re-sends from the last message it is unsure of
            writer.write(frame(messages[i]))
            await writer.drain()
            resent[i] = await read_ack(reader)
            assert resent[i].code == "AA", resent[i]
        writer.close()
        assert resent[3].text == acked[3].text  # already acknowledged: the very same ACK
        for i in range(8):
            found = await patients(again, f"KILL-{i}")
            assert len(found) == 1, (i, found)
            assert found[0]["meta"]["versionId"] == "1", (i, found[0]["meta"])  # processed exactly once
            assert found[0]["name"][0]["family"] == f"KILL{i}"
    finally:
        again.stop()
