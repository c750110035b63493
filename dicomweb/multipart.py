"""multipart/related (RFC 2387) for DICOMweb, streamed both ways.

Writing: parts are yielded chunk by chunk (a part's body is an async iterator), so a study leaves the
server one blob chunk at a time. Reading (STOW-RS): the request body is fed to python-multipart's
incremental parser and each part is kept in memory up to `memory_limit` (a CT or MR slice, a few MB)
and spooled to a file past it (a large multi-frame instance), so the event loop does no file I/O for
ordinary parts; finished parts are handed over while the next ones are still coming, and a size limit
stops the upload early.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser

CRLF = b"\r\n"
# A part's head is joined to a first chunk up to this size (copying a blob chunk costs less than one
# more send through the middleware stack); a larger one is sent after it, uncopied.
JOIN_MAX = 4 * 1024 * 1024


def new_boundary() -> str:
    return secrets.token_hex(16)


def content_type(part_type: str, boundary: str, **params: str) -> str:
    extra = "".join(f"; {k.replace('_', '-')}={v}" for k, v in params.items())
    return f'multipart/related; type="{part_type}"; boundary={boundary}{extra}'


@dataclass
class Part:
    headers: dict[str, str]
    body: AsyncIterable[bytes]


async def write_parts(parts: AsyncIterable[Part], boundary: str) -> AsyncIterator[bytes]:
    """The multipart body: `--b CRLF headers CRLF CRLF body CRLF` per part, then `--b--`.

    The small pieces (delimiter and headers, the CRLF closing a part) travel with the body's first
    chunk rather than as messages of their own: one send per chunk, not three per part."""
    delimiter = b"--" + boundary.encode()
    pending = b""  # the closing CRLF of the previous part
    async for part in parts:
        head = pending + delimiter + CRLF
        head += b"".join(f"{k}: {v}".encode() + CRLF for k, v in part.headers.items()) + CRLF
        async for chunk in part.body:
            if not chunk:
                continue
            if head:
                if len(chunk) <= JOIN_MAX:
                    yield head + chunk
                else:
                    yield head
                    yield chunk
                head = b""
            else:
                yield chunk
        if head:  # an empty body
            yield head
        pending = CRLF
    yield pending + delimiter + b"--" + CRLF


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """`multipart/related; type="application/dicom"; boundary=x` -> ("multipart/related", {...})."""
    from dicomweb.negotiation import _split

    pieces = [p.strip() for p in _split(value or "", ";")]
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, _, val = piece.partition("=")
        if name.strip():
            params[name.strip().lower()] = val.strip().strip('"')
    return pieces[0].lower(), params


class TooLarge(Exception):
    pass


class MalformedMultipart(Exception):
    pass


# Parts up to this size stay in memory (STOW-RS receives at most a few parts ahead of the store).
MEMORY_LIMIT = 4 * 1024 * 1024


@dataclass
class ReceivedPart:
    """A part received whole: its bytes (`data`) or, past the memory limit, the file holding them (`path`)."""

    headers: dict[str, str]
    path: Path | None
    size: int
    data: bytes | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def content(self) -> bytes | Path:
        return self.data if self.data is not None else self.path  # type: ignore[return-value]

    def discard(self) -> None:
        """Drop the spooled file, if any (a file the store took over is gone already)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.data = None


@dataclass
class MultipartSpooler:
    """Feeds an incoming multipart body, keeping each part in memory or spooling it to a file under `tmp_dir`."""

    boundary: str
    tmp_dir: Path
    max_bytes: int
    memory_limit: int = MEMORY_LIMIT
    done: list[ReceivedPart] = field(default_factory=list)
    total: int = 0
    _file: IO[bytes] | None = None
    _path: Path | None = None
    _size: int = 0
    _buffer: bytearray | None = None
    _headers: dict[str, str] = field(default_factory=dict)
    _field: bytes = b""
    _value: bytes = b""
    _ended: bool = False

    def __post_init__(self) -> None:
        callbacks = {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_end": self._on_end,
        }
        self._parser = MultipartParser(self.boundary, callbacks)  # type: ignore[arg-type]

    def feed(self, chunk: bytes) -> list[ReceivedPart]:
        """Parse a chunk; returns the parts completed by it."""
        self.total += len(chunk)
        if self.total > self.max_bytes:
            raise TooLarge(f"the upload is larger than {self.max_bytes} bytes")
        try:
            self._parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own MultipartParseError
            raise MalformedMultipart(str(exc)) from None
        finished, self.done = self.done, []
        return finished

    def finish(self) -> None:
        try:
            self._parser.finalize()
        except Exception as exc:
            raise MalformedMultipart(str(exc)) from None
        if self._file is not None or self._buffer is not None:
            raise MalformedMultipart("the multipart body ended inside a part")
        if not self._ended:
            raise MalformedMultipart("the multipart body has no closing boundary")

    def cleanup(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        self._buffer = None
        for part in self.done:
            part.discard()
        self.done = []

    # -- parser callbacks --

    def _begin(self) -> None:
        self._headers = {}
        self._buffer = bytearray()
        self._size = 0

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._file is None:
            assert self._buffer is not None
            if self._size <= self.memory_limit:
                self._buffer += data[start:end]
                return
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, suffix=".part")  # past the limit: spill to a file
            self._file = os.fdopen(fd, "wb")
            self._path = Path(name)
            self._file.write(self._buffer)
            self._buffer = bytearray()
        self._file.write(data[start:end])

    def _end(self) -> None:
        if self._file is not None:
            assert self._path is not None
            self._file.close()
            self.done.append(ReceivedPart(self._headers, self._path, self._size))
            self._file, self._path = None, None
        else:
            assert self._buffer is not None
            self.done.append(ReceivedPart(self._headers, None, self._size, bytes(self._buffer)))
        self._buffer = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field, self._value = b"", b""

    def _on_end(self) -> None:
        self._ended = True
