"""Large payloads (DICOM instances, Binary attachments up to 1 GB) live outside MongoDB, in a blob store.

Documents in MongoDB keep only the blob key, its size and sha256. The default store is a folder under
the data dir; another backend (S3-compatible object storage, say) implements the same four methods.
Writes go to a temporary file first and are renamed into place, so a reader never sees half a blob and
a crashed upload leaves only a temporary file (removed at the next start). Streams are read and written
in chunks: no blob is ever whole in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,250}$")


class BlobTooLarge(Exception):
    """The stream went past the size the caller allowed; nothing was kept."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    sha256: str


class BlobStore(Protocol):
    async def put(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int | None = None) -> BlobInfo: ...
    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...
    async def size(self, key: str) -> int | None: ...
    async def delete(self, key: str) -> None: ...


class FileBlobStore:
    """Blobs as files under `root`; keys are relative paths (e.g. `dicom/<study>/<sop>.dcm`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():  # uploads a crash interrupted
            leftover.unlink(missing_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY_RE.match(key) or ".." in key.split("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    async def put(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int | None = None) -> BlobInfo:
        final = self.path(key)
        tmp = self._tmp / uuid.uuid4().hex
        digest = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(f"more than {max_bytes} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(_flush, out)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return BlobInfo(key, size, digest.hexdigest())

    async def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put(key, one())

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yields the bytes [start, end) of the blob in chunks; FileNotFoundError if absent."""
        path = self.path(key)
        with path.open("rb") as src:
            src.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = await asyncio.to_thread(src.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def read_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def _flush(out: object) -> None:
    out.flush()  # type: ignore[attr-defined]
    os.fsync(out.fileno())  # type: ignore[attr-defined]
