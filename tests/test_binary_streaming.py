"""Large Binary content: raw uploads and downloads streamed through the blob store, Range requests,
versions, limits, and the attachments that point to a Binary.

Most tests run in-process with a small `max_binary_bytes`; the ~200 MB test runs a real `fhir-server
serve` process and reads its peak RSS from /proc, so the claim "no whole file in memory" is measured
on the process that serves the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from fhir_server.auth.tokens import mint_token
from fhir_server.config import REPO_ROOT, Settings
from fhir_server.interactions.binary import STORAGE_EXT
from tests.conftest import TEST_BASE, make_settings, token_for
from tests.helpers import FHIR_JSON, outcome_of, post

MiB = 1024 * 1024
LIMIT = 3 * MiB
INLINE = 64 * 1024


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("data")
    return make_settings(ferretdb_uri, data, max_binary_bytes=LIMIT, binary_inline_bytes=INLINE)


def pseudo_random(size: int, seed: int = 7) -> bytes:
    """Deterministic bytes that do not repeat within a chunk (a wrong offset changes the slice)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def storage(resource: dict) -> dict:
    ext = next(e for e in resource["meta"]["extension"] if e["url"] == STORAGE_EXT)
    return {s["url"]: next(v for k, v in s.items() if k.startswith("value")) for s in ext["extension"]}


def blob_files(settings: Settings) -> list[Path]:
    root = settings.data_dir / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def binary_ids(client: httpx.AsyncClient) -> set[str]:
    r = await client.get("Binary", params={"_count": "1000", "_elements": "id"})
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


async def upload(client: httpx.AsyncClient, content: bytes, ctype: str = "application/pdf", **headers: str):
    return await client.post("Binary", content=content, headers={"Content-Type": ctype, **headers})


async def test_raw_upload_then_download_with_headers(client: httpx.AsyncClient) -> None:
    content = pseudo_random(300_000)
    name = "compte-rendu échographie.pdf"
    disposition = f"attachment; filename*=UTF-8''{quote(name)}"
    r = await upload(client, content, **{"Content-Disposition": disposition})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["resourceType"] == "Binary" and created["contentType"] == "application/pdf"
    assert "data" not in created
    info = storage(created)
    assert info["size"] == len(content)
    assert info["sha256"] == hashlib.sha256(content).hexdigest()
    assert info["sha1"] == base64.b64encode(hashlib.sha1(content).digest()).decode()
    assert info["filename"] == name
    assert r.headers["location"].endswith(f"Binary/{created['id']}/_history/1")

    raw = await client.get(f"Binary/{created['id']}", headers={"Accept": "application/pdf"})
    assert raw.status_code == 200
    assert raw.content == content
    assert raw.headers["content-type"] == "application/pdf"
    assert raw.headers["content-length"] == str(len(content))
    assert raw.headers["etag"] == 'W/"1"'
    assert raw.headers["accept-ranges"] == "bytes"
    assert raw.headers["repr-digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(content).digest()).decode()}:"
    assert quote(name) in raw.headers["content-disposition"]
    # */* (curl, browsers) gets the content too; FHIR JSON when asked for, without `data` (too big to inline).
    assert (await client.get(f"Binary/{created['id']}", headers={"Accept": "*/*"})).content == content
    as_json = await client.get(f"Binary/{created['id']}", headers={"Accept": FHIR_JSON})
    assert as_json.headers["content-type"].startswith(FHIR_JSON)
    assert "data" not in as_json.json() and storage(as_json.json())["size"] == len(content)
    assert "data" not in (await client.get(f"Binary/{created['id']}", params={"_format": "json"})).json()
    # If-None-Match works on the raw form as on any read.
    r = await client.get(f"Binary/{created['id']}", headers={"Accept": "*/*", "If-None-Match": 'W/"1"'})
    assert r.status_code == 304


async def test_small_raw_binary_is_inlined_in_fhir_json(client: httpx.AsyncClient) -> None:
    content = "Résumé: patient stable.\n".encode()
    r = await upload(client, content, "text/plain; charset=utf-8")
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    body = (await client.get(f"Binary/{rid}", headers={"Accept": FHIR_JSON})).json()
    assert base64.b64decode(body["data"]) == content
    assert body["contentType"] == "text/plain; charset=utf-8"


async def test_fhir_json_binary_with_data_still_works(client: httpx.AsyncClient) -> None:
    content = b"%PDF-1.4 tiny"
    resource = {"resourceType": "Binary", "contentType": "application/pdf", "data": base64.b64encode(content).decode()}
    r = await post(client, resource)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert (await client.get(f"Binary/{rid}", headers={"Accept": FHIR_JSON})).json()["data"] == resource["data"]
    # No Accept header at all: FHIR JSON, as for every type.
    plain = await client.get(f"Binary/{rid}", headers={"Accept": ""})
    assert plain.json()["data"] == resource["data"]
    raw = await client.get(f"Binary/{rid}", headers={"Accept": "application/pdf", "Range": "bytes=0-3"})
    assert raw.status_code == 206 and raw.content == b"%PDF"
    assert raw.headers["content-range"] == f"bytes 0-3/{len(content)}"


async def test_range_requests(client: httpx.AsyncClient) -> None:
    content = pseudo_random(1_000_000, seed=3)
    rid = (await upload(client, content, "video/mp4")).json()["id"]
    url = f"Binary/{rid}"

    async def get(range_header: str, **extra: str) -> httpx.Response:
        return await client.get(url, headers={"Accept": "video/mp4", "Range": range_header, **extra})

    r = await get("bytes=1000-1999")
    assert r.status_code == 206
    assert r.content == content[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(content)}"
    assert r.headers["content-length"] == "1000"
    assert r.headers["content-type"] == "video/mp4"
    r = await get("bytes=999990-")
    assert r.status_code == 206 and r.content == content[999990:]
    r = await get("bytes=-10")
    assert r.status_code == 206 and r.content == content[-10:]
    r = await get("bytes=999000-5000000")  # an end past the content is clipped
    assert r.status_code == 206 and r.content == content[999000:]
    r = await get(f"bytes={len(content)}-")
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(content)}"
    outcome_of(r)
    # A stale If-Range gets the whole content; a matching one gets the range.
    r = await get("bytes=0-9", **{"If-Range": 'W/"41"'})
    assert r.status_code == 200 and r.content == content
    r = await get("bytes=0-9", **{"If-Range": 'W/"1"'})
    assert r.status_code == 206 and r.content == content[:10]
    # Several ranges: the whole content (allowed by RFC 9110).
    r = await get("bytes=0-9,20-29")
    assert r.status_code == 200 and len(r.content) == len(content)


async def test_versions_keep_their_own_content(client: httpx.AsyncClient, settings: Settings) -> None:
    first, second = pseudo_random(200_000, seed=1), pseudo_random(150_000, seed=2)
    rid = (await upload(client, first)).json()["id"]
    r = await client.put(f"Binary/{rid}", content=second, headers={"Content-Type": "application/pdf"})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    accept = {"Accept": "application/pdf"}
    assert (await client.get(f"Binary/{rid}", headers=accept)).content == second
    assert (await client.get(f"Binary/{rid}/_history/1", headers=accept)).content == first
    assert (await client.get(f"Binary/{rid}/_history/2", headers=accept)).content == second
    history = (await client.get(f"Binary/{rid}/_history")).json()
    sizes = sorted(storage(e["resource"])["size"] for e in history["entry"])
    assert sizes == [150_000, 200_000]
    # If-Match on a raw PUT: a stale version is refused before the body is stored.
    before = len(blob_files(settings))
    r = await client.put(
        f"Binary/{rid}", content=first, headers={"Content-Type": "application/pdf", "If-Match": 'W/"1"'}
    )
    assert r.status_code == 412
    outcome_of(r)
    assert len(blob_files(settings)) == before
    # A raw PUT to a new id creates it (update as create).
    r = await client.put("Binary/raw-new-1", content=b"abc", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201
    assert (await client.get("Binary/raw-new-1", headers={"Accept": "*/*"})).content == b"abc"


async def test_json_round_trip_keeps_content_and_forged_pointers_are_dropped(client: httpx.AsyncClient) -> None:
    secret = pseudo_random(100_000, seed=9)
    victim = (await upload(client, secret)).json()
    mine = (await upload(client, b"mine")).json()
    # A metadata-only JSON update of a large Binary keeps its content.
    changed = dict(mine, securityContext={"reference": "Patient/p1"})
    r = await client.put(f"Binary/{mine['id']}", json=changed, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    raw = await client.get(f"Binary/{mine['id']}", headers={"Accept": "*/*"})
    assert raw.content == b"mine" and raw.headers["x-security-context"] == "Patient/p1"
    # Pointing a Binary at another one's blob does nothing: the pointer is dropped.
    forged = dict(mine, meta={"extension": victim["meta"]["extension"]})
    r = await client.put(f"Binary/{mine['id']}", json=forged, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200
    assert "meta" not in r.json() or STORAGE_EXT not in str(r.json()["meta"])
    assert secret[:100] not in (await client.get(f"Binary/{mine['id']}", headers={"Accept": "*/*"})).content
    r = await post(client, {"resourceType": "Binary", "contentType": "application/pdf", "meta": victim["meta"]})
    assert r.status_code == 201
    assert (await client.get(f"Binary/{r.json()['id']}", headers={"Accept": "*/*"})).content == b""


async def test_limits_and_failures_leave_nothing(client: httpx.AsyncClient, settings: Settings) -> None:
    before_ids, before_blobs = await binary_ids(client), blob_files(settings)
    # Declared too large: refused before reading.
    r = await upload(client, b"x" * (LIMIT + 1))
    assert r.status_code == 413
    outcome_of(r)

    # Too large without a declared length (chunked): refused once the limit is passed.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * MiB

    r = await client.post("Binary", content=chunks(), headers={"Content-Type": "video/mp4"})
    assert r.status_code == 413
    # A token that may not create Binaries is refused before the body is stored.
    narrow = {"Authorization": f"Bearer {token_for(settings, 'system/Patient.cruds')}"}
    r = await client.post("Binary", content=b"z" * 1000, headers={"Content-Type": "application/pdf", **narrow})
    assert r.status_code == 403

    assert await binary_ids(client) == before_ids
    assert blob_files(settings) == before_blobs
    # Invalid content type (spaces are not a code): 4xx, nothing stored.
    r = await upload(client, b"abc", "application/pdf;  x")
    assert r.status_code in (400, 422)
    assert await binary_ids(client) == before_ids
    assert blob_files(settings) == before_blobs


async def test_uploads_are_audited_as_binary_creates(client: httpx.AsyncClient) -> None:
    rid = (await upload(client, b"%PDF audit")).json()["id"]
    r = await client.get("AuditEvent", params={"entity": f"Binary/{rid}"})
    events = [e["resource"] for e in r.json()["entry"]]
    assert [e["subtype"][0]["code"] for e in events] == ["create"]


async def test_document_reference_attachment_is_completed(client: httpx.AsyncClient) -> None:
    content = pseudo_random(250_000, seed=5)
    name = "vidéo marche.mp4"
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}
    rid = (await upload(client, content, "video/mp4", **headers)).json()["id"]
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"url": f"Binary/{rid}"}}],
    }
    r = await post(client, doc)
    assert r.status_code == 201, r.text
    attachment = r.json()["content"][0]["attachment"]
    assert attachment["size"] == len(content)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(content).digest()).decode()
    assert attachment["title"] == name
    assert attachment["contentType"] == "video/mp4"
    # An absolute URL to this server works the same; a title given by the client is kept.
    doc["content"] = [{"attachment": {"url": f"{TEST_BASE}/Binary/{rid}", "title": "Marche.mp4"}}]
    attachment = (await post(client, doc)).json()["content"][0]["attachment"]
    assert attachment["title"] == "Marche.mp4" and attachment["size"] == len(content)
    # A size that contradicts the content is refused.
    doc["content"] = [{"attachment": {"url": f"Binary/{rid}", "size": 12}}]
    r = await post(client, doc)
    assert r.status_code == 422
    assert "size" in outcome_of(r)["issue"][0]["diagnostics"]


async def test_upload_does_not_block_edits_of_the_dossier(client: httpx.AsyncClient) -> None:
    request = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
    }
    sr = (await post(client, request)).json()
    halfway, edits_done = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"v" * MiB
        halfway.set()
        await edits_done.wait()  # the upload stays open until the edits below are answered
        yield b"w" * MiB

    upload_task = asyncio.create_task(client.post("Binary", content=slow_body(), headers={"Content-Type": "video/mp4"}))
    await halfway.wait()
    for note in ("vidéo en cours d'envoi", "deuxième modification"):
        sr = dict(sr, note=[{"text": note}])
        r = await client.put(f"ServiceRequest/{sr['id']}", json=sr, headers={"Content-Type": FHIR_JSON})
        assert r.status_code == 200, r.text
        sr = r.json()
    assert sr["meta"]["versionId"] == "3"
    edits_done.set()
    r = await upload_task
    assert r.status_code == 201
    assert storage(r.json())["size"] == 2 * MiB


# ---- a real server process: ~200 MB through it, memory measured -----------------------------------------

BIG = 200 * MiB
BLOCK = 1 * MiB


def big_block(i: int) -> bytes:
    """Block i of the big file: 1 MiB, different for every i (cheap to regenerate on both sides)."""
    return hashlib.sha256(str(i).encode()).digest() * (BLOCK // 32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _reset_rss_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS (Linux >= 4.0)


@pytest.fixture(scope="module")
def served(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, int, Path]]:
    data_dir = tmp_path_factory.mktemp("served")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
    env.update(FHIR_MONGODB_URI=ferretdb_uri, FHIR_DATABASE=f"bin{port}", FHIR_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        token = mint_token(data_dir, issuer=base, audience=base, scope="system/*.*", lifetime=3600)
        yield base, token, proc.pid, data_dir
    finally:
        proc.terminate()
        proc.wait(30)


async def test_200_mb_stream_through_a_real_server(served: tuple[str, str, int, Path]) -> None:
    base, token, pid, data_dir = served
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base + "/", headers=auth, timeout=300) as client:
        # Warm up every code path once (imports, connections), then take the peak RSS from here.
        small = await client.post("Binary", content=b"warm-up", headers={"Content-Type": "video/mp4"})
        assert small.status_code == 201
        await client.get(f"Binary/{small.json()['id']}", headers={"Accept": "video/mp4", "Range": "bytes=0-1"})
        sr = await client.post(
            "ServiceRequest",
            json={
                "resourceType": "ServiceRequest",
                "status": "draft",
                "intent": "order",
                "subject": {"reference": "Patient/x"},
            },
            headers={"Content-Type": FHIR_JSON},
        )
        assert sr.status_code == 201
        dossier = sr.json()
        _reset_rss_peak(pid)
        start_kib = _rss_peak_kib(pid)

        sent = hashlib.sha256()
        halfway, edited = asyncio.Event(), asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            for i in range(BIG // BLOCK):
                if i == BIG // BLOCK // 2:
                    halfway.set()
                    await edited.wait()
                block = big_block(i)
                sent.update(block)
                yield block

        task = asyncio.create_task(client.post("Binary", content=body(), headers={"Content-Type": "video/mp4"}))
        await halfway.wait()
        # Half the file is on its way: the dossier is still editable.
        dossier = dict(dossier, note=[{"text": "pièce jointe en cours d'envoi"}])
        r = await client.put(f"ServiceRequest/{dossier['id']}", json=dossier, headers={"Content-Type": FHIR_JSON})
        assert r.status_code == 200, r.text
        edited.set()
        r = await task
        assert r.status_code == 201, r.text
        created = r.json()
        assert storage(created)["size"] == BIG
        assert storage(created)["sha256"] == sent.hexdigest()

        received = hashlib.sha256()
        length = 0
        async with client.stream("GET", f"Binary/{created['id']}", headers={"Accept": "video/mp4"}) as raw:
            assert raw.status_code == 200
            assert raw.headers["content-length"] == str(BIG)
            async for chunk in raw.aiter_bytes():
                received.update(chunk)
                length += len(chunk)
        assert length == BIG and received.hexdigest() == sent.hexdigest()

        # A video player seeking: a range in the middle of block 150.
        offset = 150 * BLOCK + 1000
        r = await client.get(
            f"Binary/{created['id']}", headers={"Accept": "video/mp4", "Range": f"bytes={offset}-{offset + 99}"}
        )
        assert r.status_code == 206
        assert r.content == big_block(150)[1000:1100]
        assert r.headers["content-range"] == f"bytes {offset}-{offset + 99}/{BIG}"

        grown_mib = (_rss_peak_kib(pid) - start_kib) / 1024
        # The server's peak memory grew by a small fraction of the 200 MB it received and sent.
        assert grown_mib < 50, f"server peak RSS grew by {grown_mib:.0f} MiB for a {BIG // MiB} MiB file"

        # An upload cut off by the client (socket closed mid-body) leaves no Binary and no blob.
        before = {e["resource"]["id"] for e in (await client.get("Binary", params={"_count": "100"})).json()["entry"]}

        async def failed_creates() -> int:
            params = {"subtype": "create", "outcome": "4", "_summary": "count"}
            return (await client.get("AuditEvent", params=params)).json()["total"]

        failed_before = await failed_creates()
        host, port = "127.0.0.1", int(base.split(":")[2].split("/")[0])
        with socket.create_connection((host, port)) as s:
            head = (
                f"POST /fhir/Binary HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: video/mp4\r\nContent-Length: {50 * MiB}\r\n\r\n"
            )
            s.sendall(head.encode() + big_block(0) * 3)
        # The refused create is audited once the server has handled the disconnect: wait for that.
        deadline = time.monotonic() + 60
        while await failed_creates() == failed_before:
            assert time.monotonic() < deadline, "the interrupted upload was never answered"
            await asyncio.sleep(0.2)
        assert not any((data_dir / "blobs" / ".tmp").iterdir())
        after = {e["resource"]["id"] for e in (await client.get("Binary", params={"_count": "100"})).json()["entry"]}
        assert after == before
        blobs = {p.parent.name for p in (data_dir / "blobs" / "binary").rglob("*") if p.is_file()}
        assert blobs == before
