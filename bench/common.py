"""What the benchmarks share: a FerretDB, a real `fhir-server serve` on it, a token, timing helpers.

Benchmarks print ratios measured in one run (ours against the raw database on the same backend);
they are not tests and assert nothing about time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from fhir_server.auth.tokens import mint_token
from fhir_server.config import REPO_ROOT, Settings
from fhir_server.ferretdb import EmbeddedFerretDB


@dataclass
class Running:
    uri: str
    base: str
    token: str
    data_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def running_server(
    mongodb_uri: str | None = None, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    """FerretDB (unless a MongoDB URI is given) plus `fhir-server serve` pointed at it (with `extra_env`)."""
    with tempfile.TemporaryDirectory(prefix="fhir-bench-") as tmp:
        data_dir = Path(tmp)
        embedded = None
        uri = mongodb_uri
        if uri is None:
            embedded = EmbeddedFerretDB(Settings().resolved_ferretdb_bin(), data_dir)
            uri = await embedded.start()
        port = _free_port()
        base = f"http://127.0.0.1:{port}/fhir"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
        env.update(
            FHIR_MONGODB_URI=uri, FHIR_DATABASE="bench", FHIR_LOG_LEVEL="WARNING", FHIR_RATE_LIMIT_PER_MINUTE="0"
        )
        env.update(extra_env or {})
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port), "--data-dir", tmp],
            env=env,
            cwd=REPO_ROOT,
        )
        try:
            async with httpx.AsyncClient() as c:
                for _ in range(300):
                    try:
                        if (await c.get(f"{base}/metadata")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
            token = mint_token(data_dir, issuer=base, audience=base, scope="system/*.*", lifetime=36000)
            yield Running(uri, base, token, data_dir)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
            if embedded:
                await embedded.stop()


async def timed_concurrently(
    op: Callable[[int], Awaitable[object]], total: int, concurrency: int
) -> tuple[float, list[float]]:
    """Run op(0..total-1) with `concurrency` workers; wall time and per-call latencies (s)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.2f} ms"
