"""A real local HTTP server that records what it receives: the peer of Subscription rest-hooks and of the
SMS gateway in the notification tests (uvicorn in a background thread, on a free port)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn


async def read_body(receive: Callable[[], Awaitable[dict]]) -> bytes:
    """The whole body of an ASGI HTTP request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Sink:
    base: str = ""
    received: list[Received] = field(default_factory=list)
    # path prefix → how many requests to refuse with 503 before accepting (-1: refuse them all)
    failures: dict[str, int] = field(default_factory=dict)
    refused: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path or r.path.startswith(path.rstrip("/") + "/")]

    def refused_to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.refused if r.path == path or r.path.startswith(path.rstrip("/") + "/")]

    async def app(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        got = Received(
            scope["method"],
            scope["path"],
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
        )
        status = 200
        with self.lock:
            for prefix, left in self.failures.items():
                if got.path.startswith(prefix) and left != 0:
                    self.failures[prefix] = left - 1 if left > 0 else left
                    status = 503
                    break
            (self.refused if status != 200 else self.received).append(got)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"unavailable"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(sink: Sink) -> Iterator[Sink]:
    """Run the sink until the generator is closed (use from a fixture with `yield from`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sink.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(sink.app, log_level="warning", lifespan="off", interface="asgi3"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the HTTP sink did not start"
        time.sleep(0.02)
    try:
        yield sink
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


async def until(predicate: Callable[[], Any], what: str, limit: float = 60.0) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def drained(app: Any, limit: float = 60.0) -> None:
    """Wait until the server's outbox has nothing queued or running (every delivery done or given up)."""
    outbox = app.state.server.outbox

    async def empty() -> bool:
        return await outbox.pending() == 0

    await until(empty, "the outbox to drain", limit)
