"""DICOMweb over HTTP (in-process ASGI): STOW-RS, QIDO-RS, WADO-RS, security and audit, on FerretDB.

The study set: pydicom's bundled files (CT, MR, RLE RGB with 2 frames, JPEG baseline US with 30
frames) plus one MR study whose instances are stored in five transfer syntaxes (explicit and
implicit little endian, JPEG 2000 lossless, JPEG-LS lossless, RLE) to exercise negotiation.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from dicomweb.multipart import new_boundary
from fhir_server.auth.tokens import mint_token
from fhir_server.config import REPO_ROOT, Settings
from tests.conftest import TEST_BASE, make_settings, token_for
from tests.dicomweb_samples import running_app, sample, variant

warnings.filterwarnings("ignore", module="pydicom")

DW = "http://testserver/dicomweb"
TS_STUDY = "2.25.301998011451287412210389411"
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
RLE_STUDY = "1.2.826.0.1.3680043.8.498.12406831542731051035295345080039845114"
US_STUDY = "1.2.840.114340.3.8251017118051.1.20160503.120850.2171"
ELE, ILE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
DRIM_ACCEPT = REPO_ROOT.parent / "shared/fixtures/drim-m/validateurs/wado-rs/requete-wado-rs-serie.txt"
TS_FILES = {
    "1": ("MR_small.dcm", ELE),
    "2": ("MR_small_implicit.dcm", ILE),
    "3": ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
    "4": ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    "5": ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
}


def ts_instance(n: str) -> bytes:
    name, _ = TS_FILES[n]
    return variant(
        name,
        StudyInstanceUID=TS_STUDY,
        SeriesInstanceUID=TS_STUDY + ".1",
        SOPInstanceUID=f"{TS_STUDY}.1.{n}",
        InstanceNumber=int(n),
        PatientID="TS-1",
        PatientName="Dupont^Marie",
        AccessionNumber="ACC-TS",
        StudyDate="20240315",
        StudyTime="101500",
    )


def multipart_body(payloads: list[bytes], boundary: str, part_type: str = "application/dicom") -> bytes:
    out = b""
    for p in payloads:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + p + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def stow_headers(boundary: str) -> dict[str, str]:
    return {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


def parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related response (independently of the server's writer)."""
    ctype = response.headers["content-type"]
    assert ctype.startswith("multipart/related"), ctype
    boundary = next(p.split("=", 1)[1].strip('"') for p in ctype.split(";") if p.strip().startswith("boundary="))
    pieces = (b"\r\n" + response.content).split(b"\r\n--" + boundary.encode())
    assert pieces[0] == b"" and pieces[-1].startswith(b"--")
    out = []
    for piece in pieces[1:-1]:
        head, _, body = piece[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        out.append(({k.lower(): v for k, v in headers.items()}, body))
    return out


def value(item: dict, tag: str) -> object:
    return (item.get(tag) or {}).get("Value", [None])[0]


@pytest.fixture(scope="module")
async def dw(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The authorised client with the study set stored."""
    boundary = new_boundary()
    files = [sample(f).read_bytes() for f in ("CT_small.dcm", "SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm")]
    files += [ts_instance(n) for n in TS_FILES]
    r = await client.post(f"{DW}/studies", content=multipart_body(files, boundary), headers=stow_headers(boundary))
    assert r.status_code == 200, r.text
    return client


# ---- STOW-RS ---------------------------------------------------------------------------------------


async def test_stow_response_lists_stored_and_failed(dw: httpx.AsyncClient) -> None:
    boundary = new_boundary()
    mr = variant("MR_small.dcm", SOPInstanceUID="2.25.1001", StudyInstanceUID="2.25.1000", SeriesInstanceUID="2.25.1")
    body = multipart_body([mr, b"this is no DICOM file" * 10, sample("CT_small.dcm").read_bytes()], boundary)
    r = await dw.post(f"{DW}/studies", content=body, headers=stow_headers(boundary))
    assert r.status_code == 202
    assert r.headers["content-type"] == "application/dicom+json"
    result = r.json()
    stored = result["00081199"]["Value"]
    assert [value(s, "00081155") for s in stored] == ["2.25.1001", "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"]
    assert value(stored[0], "00081190").endswith("/studies/2.25.1000/series/2.25.1/instances/2.25.1001")
    failed = result["00081198"]["Value"]
    assert len(failed) == 1 and value(failed[0], "00081197") == 0xC000
    assert "Warning" in r.headers


async def test_stow_study_mismatch_and_errors(dw: httpx.AsyncClient) -> None:
    boundary = new_boundary()
    body = multipart_body([sample("CT_small.dcm").read_bytes()], boundary)
    r = await dw.post(f"{DW}/studies/2.25.999", content=body, headers=stow_headers(boundary))
    assert r.status_code == 409
    failed = r.json()["00081198"]["Value"]
    assert value(failed[0], "00081197") == 0xA900
    assert value(failed[0], "00081155") == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"

    r = await dw.post(f"{DW}/studies", content=b"xx", headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    r = await dw.post(
        f"{DW}/studies", content=b"--a\r\nContent-Type: application/dicom\r\n\r\nabc", headers=stow_headers("a")
    )
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = await dw.post(f"{DW}/studies", content=b"", headers=stow_headers("a"))
    assert r.status_code == 400


async def test_stow_size_limit(ferretdb_uri: str, tmp_path: Path) -> None:
    settings = make_settings(ferretdb_uri, tmp_path, dicomweb_max_stow_bytes=50_000)
    async with running_app(settings) as small:
        transport = httpx.ASGITransport(app=small)
        headers = {"Authorization": f"Bearer {token_for(settings)}"}
        async with httpx.AsyncClient(transport=transport, headers=headers) as c:
            boundary = new_boundary()
            big = multipart_body([sample("CT_small.dcm").read_bytes()] * 2, boundary)
            r = await c.post(f"{DW}/studies", content=big, headers=stow_headers(boundary))
            assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: stopped while streaming
                yield big

            r = await c.post(f"{DW}/studies", content=chunks(), headers=stow_headers(boundary))
            assert r.status_code == 413
            assert (await c.get(f"{DW}/studies")).json() == []
            assert not any((tmp_path / "dicom-tmp").iterdir())  # nothing left behind


async def test_stow_is_idempotent(dw: httpx.AsyncClient) -> None:
    before = (await dw.get(f"{DW}/studies", params={"StudyInstanceUID": RLE_STUDY})).json()
    boundary = new_boundary()
    body = multipart_body([sample("SC_rgb_rle_2frame.dcm").read_bytes()], boundary)
    r = await dw.post(f"{DW}/studies/{RLE_STUDY}", content=body, headers=stow_headers(boundary))
    assert r.status_code == 200
    after = (await dw.get(f"{DW}/studies", params={"StudyInstanceUID": RLE_STUDY})).json()
    assert value(after[0], "00201208") == value(before[0], "00201208") == 1


# ---- QIDO-RS ---------------------------------------------------------------------------------------


async def qido(client: httpx.AsyncClient, path: str, **params: object) -> list[dict]:
    r = await client.get(f"{DW}{path}", params=params, headers={"Accept": "application/dicom+json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom+json"
    return r.json()


def uids(items: list[dict], tag: str = "0020000D") -> list[str]:
    return [value(i, tag) for i in items]  # type: ignore[misc]


async def test_qido_study_matching(dw: httpx.AsyncClient) -> None:
    assert uids(await qido(dw, "/studies", PatientID="TS-1")) == [TS_STUDY]
    # PatientName: wildcards, case-insensitive, fuzzy matching off.
    assert uids(await qido(dw, "/studies", PatientName="dupont*")) == [TS_STUDY]
    assert uids(await qido(dw, "/studies", PatientName="D?PONT^MARIE", fuzzymatching="false")) == [TS_STUDY]
    assert await qido(dw, "/studies", PatientName="Dupon") == []
    assert await qido(dw, "/studies", PatientName="Marie*") == []
    # StudyDate ranges (open and closed) and ModalitiesInStudy, AccessionNumber.
    assert uids(await qido(dw, "/studies", StudyDate="20240101-20241231")) == [TS_STUDY]
    old = set(uids(await qido(dw, "/studies", StudyDate="-20041231")))
    assert CT_STUDY in old and TS_STUDY not in old and US_STUDY not in old
    assert set(uids(await qido(dw, "/studies", StudyDate="20160101-"))) >= {TS_STUDY, RLE_STUDY, US_STUDY}
    assert uids(await qido(dw, "/studies", ModalitiesInStudy="US")) == [US_STUDY]
    assert set(uids(await qido(dw, "/studies", ModalitiesInStudy="US,CT"))) == {US_STUDY, CT_STUDY}
    assert uids(await qido(dw, "/studies", AccessionNumber="ACC-TS")) == [TS_STUDY]
    # StudyInstanceUID lists (comma or backslash).
    assert set(uids(await qido(dw, "/studies", StudyInstanceUID=f"{CT_STUDY},{US_STUDY}"))) == {CT_STUDY, US_STUDY}
    assert set(uids(await qido(dw, "/studies", StudyInstanceUID=f"{CT_STUDY}\\{RLE_STUDY}"))) == {CT_STUDY, RLE_STUDY}
    # Matching by tag; the counts and the default attributes of the level.
    [study] = await qido(dw, "/studies", **{"00100020": "TS-1"})
    assert value(study, "00201206") == 1 and value(study, "00201208") == 5
    assert value(study, "00080061") == "MR"
    assert value(study, "00081190") == f"{DW}/studies/{TS_STUDY}"
    assert value(study, "00100010") == {"Alphabetic": "Dupont^Marie"}
    assert "00081030" in study or "0020000D" in study


async def test_qido_includefield_limit_offset(dw: httpx.AsyncClient) -> None:
    [study] = await qido(dw, "/studies", PatientID="TS-1")
    assert "00100030" in study  # PatientBirthDate is a default study attribute...
    assert "00180050" not in study  # ...SliceThickness is not
    [study] = await qido(dw, "/studies", PatientID="TS-1", includefield="SliceThickness,00280010")
    assert "00180050" in study and value(study, "00280010") == 64
    [everything] = await qido(dw, "/studies", PatientID="TS-1", includefield="all")
    assert "00100010" in everything and "00080061" in everything
    every = await qido(dw, "/studies")
    assert len(every) >= 4
    r = await dw.get(f"{DW}/studies", params={"limit": 2})
    assert len(r.json()) == 2 and "additional results" in r.headers["Warning"]
    paged = [*(await qido(dw, "/studies", limit=2)), *(await qido(dw, "/studies", limit=2, offset=2))]
    assert uids(paged) == uids(every)[:4]


async def test_qido_series_and_instances(dw: httpx.AsyncClient) -> None:
    series = await qido(dw, f"/studies/{TS_STUDY}/series")
    assert uids(series, "0020000E") == [TS_STUDY + ".1"]
    assert value(series[0], "00201209") == 5 and value(series[0], "00080060") == "MR"
    instances = await qido(dw, f"/studies/{TS_STUDY}/series/{TS_STUDY}.1/instances")
    assert uids(instances, "00080018") == [f"{TS_STUDY}.1.{n}" for n in "12345"]
    assert value(instances[0], "00280010") == 64
    assert value(instances[0], "00081190").endswith(f"/instances/{TS_STUDY}.1.1")
    assert len(await qido(dw, f"/studies/{TS_STUDY}/instances")) == 5
    # All series / all instances, with the study attributes of each.
    all_series = await qido(dw, "/series", Modality="US")
    assert uids(all_series) == [US_STUDY] and value(all_series[0], "00100020") == "204"
    assert len(await qido(dw, "/series", ModalitiesInStudy="MR", PatientID="TS-1")) == 1
    us = await qido(dw, "/instances", PatientID="204")
    assert len(us) == 1 and value(us[0], "00280008") == 30
    assert uids(await qido(dw, "/instances", SOPInstanceUID=f"{TS_STUDY}.1.3"), "00080018") == [f"{TS_STUDY}.1.3"]
    # A matching key the level does not keep is ignored, and the response says so.
    r = await dw.get(f"{DW}/studies/{TS_STUDY}/instances", params={"ImageType": "ORIGINAL*"})
    assert r.status_code == 200 and len(r.json()) == 5
    assert "ImageType is not supported" in r.headers["Warning"]
    [study] = await qido(dw, "/studies", PatientID="TS-1", StudyDescription="*")
    assert value(study, "0020000D") == TS_STUDY


async def test_qido_errors(dw: httpx.AsyncClient) -> None:
    for params in ({"StudyDate": "2024-01-01"}, {"NotAKeyword": "x"}, {"limit": "-1"}, {"includefield": "Nope"}):
        r = await dw.get(f"{DW}/studies", params=params)
        assert r.status_code == 400, params
        assert r.json()["resourceType"] == "OperationOutcome"
    r = await dw.get(f"{DW}/studies", headers={"Accept": "application/dicom+xml"})
    assert r.status_code == 406


# ---- WADO-RS ---------------------------------------------------------------------------------------


def drim_accept() -> str:
    for line in DRIM_ACCEPT.read_text().splitlines():
        if line.lower().startswith("accept:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Accept line in the DRIM-M sample")


async def test_wado_retrieve_drimbox_accept(dw: httpx.AsyncClient) -> None:
    """The Accept list an inter-DRIMbox request sends (q-valued, boundary=** extensions, trailing comma)."""
    accept = drim_accept()
    assert "q=0.9" in accept and accept.endswith(",")
    r = await dw.get(f"{DW}/studies/{TS_STUDY}/series/{TS_STUDY}.1", headers={"Accept": accept})
    assert r.status_code == 200
    syntaxes = [h["content-type"].split("transfer-syntax=")[1] for h, _ in parts(r)]
    # JPEG-LS lossless (q=0.8) is sent as stored; the rest as (or converted to) explicit LE (q=0.4).
    assert syntaxes == [ELE, ELE, ELE, "1.2.840.10008.1.2.4.80", ELE]
    r = await dw.get(
        f"{DW}/studies/{TS_STUDY}/series/{TS_STUDY}.1/instances/{TS_STUDY}.1.4", headers={"Accept": accept}
    )
    [(headers, body)] = parts(r)
    assert headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80"
    assert body == ts_instance("4")
    # Without JPEG-LS in the list, that instance has no acceptable form.
    no_jls = ",".join(p for p in accept.split(",") if "4.80" not in p)
    r = await dw.get(f"{DW}/studies/{TS_STUDY}/series/{TS_STUDY}.1", headers={"Accept": no_jls})
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"
    # The others: explicit LE as stored, implicit LE / JPEG 2000 / RLE decoded to explicit LE (q=0.4).
    for n in "1235":
        r = await dw.get(
            f"{DW}/studies/{TS_STUDY}/series/{TS_STUDY}.1/instances/{TS_STUDY}.1.{n}", headers={"Accept": accept}
        )
        assert r.status_code == 200
        [(headers, body)] = parts(r)
        assert headers["content-type"] == f"application/dicom; transfer-syntax={ELE}"
        ds = pydicom.dcmread(io.BytesIO(body))
        assert ds.file_meta.TransferSyntaxUID == ELE and ds.SOPInstanceUID == f"{TS_STUDY}.1.{n}"
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(sample("MR_small.dcm")).pixel_array)
    # A JPEG baseline instance stays JPEG baseline (q=0.5 beats explicit LE at q=0.4).
    r = await dw.get(f"{DW}/studies/{US_STUDY}", headers={"Accept": accept})
    [(headers, body)] = parts(r)
    assert headers["content-type"].endswith("transfer-syntax=1.2.840.10008.1.2.4.50")
    assert body == sample("examples_ybr_color.dcm").read_bytes()  # byte for byte as stored


async def test_wado_retrieve_negotiation(dw: httpx.AsyncClient) -> None:
    url = f"{DW}/studies/{TS_STUDY}"
    r = await dw.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert r.status_code == 406  # default = explicit LE, and JPEG-LS cannot be decoded here
    assert "transfer-syntax=*" in r.json()["issue"][0]["diagnostics"]
    r = await dw.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    assert r.status_code == 200
    got = parts(r)
    assert [h["content-type"].split("=")[-1] for h, _ in got] == [ts for _, ts in TS_FILES.values()]
    for (_, body), n in zip(got, "12345", strict=True):
        assert body == ts_instance(n)  # as stored
    assert "content-length" not in r.headers  # streamed (chunked), never built whole
    r = await dw.get(
        url + f"/series/{TS_STUDY}.1/instances/{TS_STUDY}.1.1",
        headers={"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={ILE}'},
    )
    [(_, body)] = parts(r)
    assert pydicom.dcmread(io.BytesIO(body)).file_meta.TransferSyntaxUID == ILE
    r = await dw.get(url, headers={"Accept": "image/png"})
    assert r.status_code == 406
    r = await dw.get(f"{DW}/studies/2.25.4242")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


async def test_wado_metadata_and_bulkdata(dw: httpx.AsyncClient) -> None:
    r = await dw.get(f"{DW}/studies/{TS_STUDY}/metadata")
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom+json"
    items = r.json()
    assert len(items) == 5 and value(items[0], "00100020") == "TS-1"
    assert value(items[3], "00083002") == "1.2.840.10008.1.2.4.80"  # AvailableTransferSyntaxUID
    pixel = items[0]["7FE00010"]
    assert "Value" not in pixel and "InlineBinary" not in pixel
    uri = pixel["BulkDataURI"]
    assert uri.startswith(f"{DW}/studies/{TS_STUDY}/series/")
    r = await dw.get(uri)
    [(_, body)] = parts(r)
    assert body == pydicom.dcmread(sample("MR_small.dcm")).PixelData
    [ct] = (
        await dw.get(f"{DW}/studies/{CT_STUDY}/series/1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322/metadata")
    ).json()
    assert value(ct, "00100010") == {"Alphabetic": "CompressedSamples^CT1"}


async def test_wado_frames(dw: httpx.AsyncClient) -> None:
    rle = pydicom.dcmread(sample("SC_rgb_rle_2frame.dcm"))
    base = f"{DW}/studies/{RLE_STUDY}/series/{rle.SeriesInstanceUID}/instances/{rle.SOPInstanceUID}"
    # Uncompressed (decoded from RLE), frames 2 and 1.
    r = await dw.get(base + "/frames/2,1", headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    assert r.status_code == 200
    got = parts(r)
    assert [h["content-type"] for h, _ in got] == [f"application/octet-stream; transfer-syntax={ELE}"] * 2
    assert got[0][1] == np.ascontiguousarray(rle.pixel_array[1]).tobytes()
    assert got[1][1] == np.ascontiguousarray(rle.pixel_array[0]).tobytes()
    # As stored: RLE fragments.
    r = await dw.get(base + "/frames/1", headers={"Accept": 'multipart/related; type="image/dicom-rle"'})
    [(headers, body)] = parts(r)
    assert headers["content-type"].startswith("image/dicom-rle")
    assert body[:64] == next(pydicom.encaps.generate_frames(rle.PixelData, number_of_frames=2))[:64]
    # JPEG baseline: frames as stored (image/jpeg) with */*.
    us = pydicom.dcmread(sample("examples_ybr_color.dcm"))
    url = f"{DW}/studies/{US_STUDY}/series/{us.SeriesInstanceUID}/instances/{us.SOPInstanceUID}/frames/30"
    [(headers, body)] = parts(await dw.get(url, headers={"Accept": 'multipart/related; type="*/*"'}))
    assert headers["content-type"].startswith("image/jpeg") and body[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(body)).size == (320, 240)
    # Native: a byte range of the stored file.
    ct = pydicom.dcmread(sample("CT_small.dcm"))
    url = f"{DW}/studies/{CT_STUDY}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/frames/1"
    [(headers, body)] = parts(
        await dw.get(url, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    )
    assert body == ct.PixelData
    assert (await dw.get(url.replace("/frames/1", "/frames/2"))).status_code == 404
    assert (await dw.get(url.replace("/frames/1", "/frames/x"))).status_code == 400
    r = await dw.get(url.replace("/frames/1", "/frames/1"), headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert r.status_code == 406


async def test_wado_rendered(dw: httpx.AsyncClient) -> None:
    us = pydicom.dcmread(sample("examples_ybr_color.dcm"))
    base = f"{DW}/studies/{US_STUDY}/series/{us.SeriesInstanceUID}/instances/{us.SOPInstanceUID}"
    r = await dw.get(base + "/rendered", headers={"Accept": "image/jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (320, 240)
    r = await dw.get(base + "/frames/12/rendered", headers={"Accept": "image/png"}, params={"viewport": "160,120"})
    assert r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (160, 120) and image.mode == "RGB"
    ct = pydicom.dcmread(sample("CT_small.dcm"))
    base = f"{DW}/studies/{CT_STUDY}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}"
    narrow = Image.open(
        io.BytesIO(
            (await dw.get(base + "/rendered", params={"window": "40,80"}, headers={"Accept": "image/png"})).content
        )
    )
    wide = Image.open(
        io.BytesIO(
            (await dw.get(base + "/rendered", params={"window": "40,4000"}, headers={"Accept": "image/png"})).content
        )
    )
    assert narrow.mode == "L" and np.asarray(narrow).std() != np.asarray(wide).std()
    thumb = Image.open(io.BytesIO((await dw.get(base + "/thumbnail")).content))
    assert max(thumb.size) == 128
    assert (await dw.get(base + "/rendered", params={"window": "40"})).status_code == 400
    assert (await dw.get(base + "/rendered", headers={"Accept": "image/gif"})).status_code == 406


# ---- security and audit ----------------------------------------------------------------------------


async def test_tokens_and_scopes(dw: httpx.AsyncClient, app: object, settings: Settings) -> None:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport) as anon:
        r = await anon.get(f"{DW}/studies")
        assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
        assert "Bearer" in r.headers["WWW-Authenticate"]

        def bearer(scope: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token_for(settings, scope)}"}

        r = await anon.get(f"{DW}/studies", headers=bearer("system/Patient.rs"))
        assert r.status_code == 403
        reader = bearer("system/ImagingStudy.rs")
        assert (await anon.get(f"{DW}/studies", headers=reader)).status_code == 200
        assert (await anon.get(f"{DW}/studies/{CT_STUDY}/metadata", headers=reader)).status_code == 200
        boundary = new_boundary()
        body = multipart_body([sample("CT_small.dcm").read_bytes()], boundary)
        r = await anon.post(f"{DW}/studies", content=body, headers={**reader, **stow_headers(boundary)})
        assert r.status_code == 403
        writer = bearer("system/ImagingStudy.c")
        r = await anon.post(f"{DW}/studies", content=body, headers={**writer, **stow_headers(boundary)})
        assert r.status_code == 200
        assert (await anon.get(f"{DW}/studies", headers=writer)).status_code == 403


async def test_patient_context_sees_only_its_studies(dw: httpx.AsyncClient, app: object, settings: Settings) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "PC-55"}],
        "name": [{"family": "Bernard"}],
    }
    pid = (await dw.post("Patient", json=patient)).json()["id"]
    mine = "2.25.55001"
    boundary = new_boundary()
    data = variant(
        "CT_small.dcm", StudyInstanceUID=mine, SeriesInstanceUID=mine + ".1", SOPInstanceUID=mine + ".1.1",
        PatientID="PC-55", IssuerOfPatientID="1.2.250.1.71.4.2.7",
    )  # fmt: skip
    r = await dw.post(f"{DW}/studies", content=multipart_body([data], boundary), headers=stow_headers(boundary))
    assert r.status_code == 200
    token = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=TEST_BASE,
        scope="patient/ImagingStudy.rs",
        lifetime=600,
        extra={"patient": pid},
    )
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, headers={"Authorization": f"Bearer {token}"}) as pc:
        found = (await pc.get(f"{DW}/studies")).json()
        assert uids(found) == [mine]
        assert uids((await pc.get(f"{DW}/series")).json()) == [mine]
        assert (await pc.get(f"{DW}/studies/{mine}/metadata")).status_code == 200
        assert (await pc.get(f"{DW}/studies/{CT_STUDY}/metadata")).status_code == 404
        assert (await pc.get(f"{DW}/studies/{CT_STUDY}")).status_code == 404
        assert (await pc.get(f"{DW}/studies/{CT_STUDY}/series")).json() == []


async def test_access_policy_applies_to_dicomweb(dw: httpx.AsyncClient, app: object, settings: Settings) -> None:
    """A study whose ImagingStudy the policy hides (here: confidentiality R) is not found by DICOMweb either."""
    secret = "2.25.77001"
    boundary = new_boundary()
    data = variant(
        "CT_small.dcm", StudyInstanceUID=secret, SeriesInstanceUID=secret + ".1", SOPInstanceUID=secret + ".1.1"
    )
    r = await dw.post(f"{DW}/studies", content=multipart_body([data], boundary), headers=stow_headers(boundary))
    assert r.status_code == 200
    found = (await dw.get("ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{secret}"})).json()
    study = found["entry"][0]["resource"]
    confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
    study["meta"] = {"security": [{"system": confidentiality, "code": "R"}]}
    assert (await dw.put(f"ImagingStudy/{study['id']}", json=study)).status_code == 200

    def user(**extra: object) -> dict[str, str]:
        token = mint_token(
            settings.data_dir,
            issuer=settings.resolved_token_issuer(),
            audience=TEST_BASE,
            scope="user/ImagingStudy.rs",
            lifetime=600,
            subject="Practitioner/dr-x",
            extra={"fhirUser": "Practitioner/dr-x", **extra},
        )
        return {"Authorization": f"Bearer {token}"}

    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport) as http:
        plain = user()
        assert secret not in uids((await http.get(f"{DW}/studies", headers=plain)).json())
        assert CT_STUDY in uids((await http.get(f"{DW}/studies", headers=plain)).json())
        assert (await http.get(f"{DW}/studies/{secret}/metadata", headers=plain)).status_code == 404
        assert (await http.get(f"{DW}/studies/{secret}", headers=plain)).status_code == 404
        cleared = user(labels=["R"])  # a user cleared for restricted information sees it
        assert secret in uids((await http.get(f"{DW}/studies", headers=cleared)).json())
        assert (await http.get(f"{DW}/studies/{secret}/metadata", headers=cleared)).status_code == 200


async def audit_events(client: httpx.AsyncClient, code: str) -> list[dict]:
    r = await client.get("AuditEvent", params={"type": code, "_count": 200})
    assert r.status_code == 200
    return [e["resource"] for e in r.json().get("entry", [])]


def study_entities(event: dict) -> list[str]:
    return [
        e["what"]["identifier"]["value"]
        for e in event.get("entity", [])
        if e.get("what", {}).get("identifier", {}).get("system") == "urn:dicom:uid"
    ]


async def test_audit_import_export_access(dw: httpx.AsyncClient) -> None:
    await dw.get(
        f"{DW}/studies/{US_STUDY}", headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    await dw.get(f"{DW}/studies/{US_STUDY}/metadata")
    await dw.get(f"{DW}/studies", params={"PatientID": "204"})
    imports = await audit_events(dw, "110107")
    assert any(f"urn:oid:{TS_STUDY}" in study_entities(e) for e in imports)
    exports = [e for e in await audit_events(dw, "110106") if f"urn:oid:{US_STUDY}" in study_entities(e)]
    assert exports and exports[0]["outcome"] == "0" and exports[0]["action"] == "R"
    accessed = [e for e in await audit_events(dw, "110103") if f"urn:oid:{US_STUDY}" in study_entities(e)]
    assert len(accessed) >= 2  # the metadata read and the query
    queries = {base64.b64decode(x["query"]).decode(): e for e in accessed for x in e["entity"] if x.get("query")}
    assert "PatientID=204" in queries
    query = queries["PatientID=204"]
    patients = [x["what"]["identifier"]["value"] for x in query["entity"] if x.get("role", {}).get("code") == "1"]
    assert patients == ["204"]
    # A refusal is traced too.
    await dw.get(f"{DW}/studies/2.25.4242/metadata")
    refused = [e for e in await audit_events(dw, "110103") if "urn:oid:2.25.4242" in study_entities(e)]
    assert refused and refused[0]["outcome"] == "4"
