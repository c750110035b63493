"""DICOMweb checked with dicomweb-client (the Python DICOMweb client, over `requests`) against the
server on a real socket, and a STOW-RS upload observed while it is still being received."""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from dicomweb.multipart import new_boundary
from dicomweb.store import imaging_study_id
from tests.conftest import make_settings
from tests.dicomweb_samples import ServerThread, sample, variant

warnings.filterwarnings("ignore", module="pydicom")
warnings.filterwarnings("ignore", module="dicomweb_client")

FILES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm")


@pytest.fixture(scope="module")
def server(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    data_dir = tmp_path_factory.mktemp("dicomweb-client")
    with ServerThread(lambda base: make_settings(ferretdb_uri, data_dir, base_url=base)) as running:
        yield running


@pytest.fixture(scope="module")
def dw(server: ServerThread) -> DICOMwebClient:
    return DICOMwebClient(url=f"{server.origin}/dicomweb", headers={"Authorization": f"Bearer {server.token()}"})


def datasets() -> list[pydicom.Dataset]:
    return [pydicom.dcmread(sample(name)) for name in FILES]


async def test_store_search_retrieve(dw: DICOMwebClient) -> None:
    sent = datasets()
    result = await asyncio.to_thread(dw.store_instances, sent)
    assert len(result.ReferencedSOPSequence) == len(FILES)
    assert "FailedSOPSequence" not in result or len(result.FailedSOPSequence) == 0

    studies = await asyncio.to_thread(dw.search_for_studies)
    assert {s["0020000D"]["Value"][0] for s in studies} == {ds.StudyInstanceUID for ds in sent}
    found = await asyncio.to_thread(dw.search_for_studies, search_filters={"PatientName": "compressedsamples*"})
    assert len(found) == 2  # CT and MR, whatever the case
    paged = await asyncio.to_thread(dw.search_for_studies, limit=1, offset=1)
    assert len(paged) == 1

    ct = sent[0]
    series = await asyncio.to_thread(dw.search_for_series, ct.StudyInstanceUID)
    assert [s["0020000E"]["Value"][0] for s in series] == [ct.SeriesInstanceUID]
    instances = await asyncio.to_thread(dw.search_for_instances, ct.StudyInstanceUID, ct.SeriesInstanceUID)
    assert [i["00080018"]["Value"][0] for i in instances] == [ct.SOPInstanceUID]
    all_instances = await asyncio.to_thread(dw.search_for_instances)
    assert len(all_instances) == len(FILES)
    assert len(await asyncio.to_thread(dw.search_for_series, search_filters={"Modality": "US"})) == 1

    # Retrieve: dicomweb-client asks for application/dicom (explicit VR little endian by default).
    [got] = await asyncio.to_thread(dw.retrieve_study, ct.StudyInstanceUID)
    assert got.SOPInstanceUID == ct.SOPInstanceUID
    assert np.array_equal(got.pixel_array, ct.pixel_array)
    rle = sent[2]
    [converted] = await asyncio.to_thread(dw.retrieve_series, rle.StudyInstanceUID, rle.SeriesInstanceUID)
    assert converted.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(converted.pixel_array, rle.pixel_array)
    us = sent[3]
    kept = await asyncio.to_thread(
        dw.retrieve_instance,
        us.StudyInstanceUID,
        us.SeriesInstanceUID,
        us.SOPInstanceUID,
        media_types=(("application/dicom", "1.2.840.10008.1.2.4.50"),),
    )
    assert kept.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50" and kept.PixelData == us.PixelData
    streamed = list(await asyncio.to_thread(lambda: list(dw.iter_study(us.StudyInstanceUID))))
    assert [d.SOPInstanceUID for d in streamed] == [us.SOPInstanceUID]

    # Metadata and its bulk data.
    [meta] = await asyncio.to_thread(dw.retrieve_study_metadata, ct.StudyInstanceUID)
    assert meta["00100020"]["Value"] == ["1CT1"]
    pixel = await asyncio.to_thread(dw.retrieve_bulkdata, meta["7FE00010"]["BulkDataURI"])
    assert pixel == [ct.PixelData]
    parsed = pydicom.Dataset.from_json({k: v for k, v in meta.items() if "BulkDataURI" not in v})
    assert parsed.SOPInstanceUID == ct.SOPInstanceUID

    # Frames: as stored (JPEG) and uncompressed (decoded RLE).
    [jpeg] = await asyncio.to_thread(
        dw.retrieve_instance_frames, us.StudyInstanceUID, us.SeriesInstanceUID, us.SOPInstanceUID, [3]
    )
    assert jpeg[:2] == b"\xff\xd8"
    frames = await asyncio.to_thread(
        dw.retrieve_instance_frames,
        rle.StudyInstanceUID,
        rle.SeriesInstanceUID,
        rle.SOPInstanceUID,
        [1, 2],
        media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
    )
    assert frames == [np.ascontiguousarray(rle.pixel_array[i]).tobytes() for i in (0, 1)]

    # Rendered, for a viewer.
    png = await asyncio.to_thread(
        dw.retrieve_instance_rendered,
        ct.StudyInstanceUID,
        ct.SeriesInstanceUID,
        ct.SOPInstanceUID,
        media_types=("image/png",),
    )
    assert Image.open(io.BytesIO(png)).size == (128, 128)
    frame_jpeg = await asyncio.to_thread(
        dw.retrieve_instance_frames_rendered,
        us.StudyInstanceUID,
        us.SeriesInstanceUID,
        us.SOPInstanceUID,
        [30],
        media_types=("image/jpeg",),
    )
    assert Image.open(io.BytesIO(frame_jpeg)).size == (320, 240)


async def test_study_is_queryable_while_received(server: ServerThread) -> None:
    """A STOW-RS request whose body pauses after its first instance: the study is already there."""
    study = "2.25.77120001"
    instances = [
        variant(
            "MR_small.dcm",
            StudyInstanceUID=study,
            SeriesInstanceUID=study + ".1",
            SOPInstanceUID=f"{study}.1.{i}",
            InstanceNumber=i,
            PatientID="LIVE-1",
        )
        for i in (1, 2, 3)
    ]
    boundary = new_boundary()
    headers = {"Authorization": f"Bearer {server.token()}"}
    first_seen = asyncio.Event()
    observed: dict[str, object] = {}

    async with httpx.AsyncClient(base_url=server.origin, headers=headers, timeout=60) as http:

        async def body() -> AsyncIterator[bytes]:
            # Each chunk ends with the next delimiter line, so the server knows the part is complete.
            yield f"--{boundary}\r\n".encode()
            for i, data in enumerate(instances):
                last = i == len(instances) - 1
                closing = f"\r\n--{boundary}--\r\n" if last else f"\r\n--{boundary}\r\n"
                yield b"Content-Type: application/dicom\r\n\r\n" + data + closing.encode()
                if i == 0:
                    # Hold the upload open until the first instance is visible (QIDO and ImagingStudy).
                    async with asyncio.timeout(60):
                        while True:
                            found = (await http.get("/dicomweb/studies", params={"StudyInstanceUID": study})).json()
                            imaging = await http.get(f"/fhir/ImagingStudy/{imaging_study_id(study)}")
                            if found and imaging.status_code == 200:
                                break
                            await asyncio.sleep(0.05)
                    observed["instances"] = found[0]["00201208"]["Value"][0]
                    observed["status"] = imaging.json()["status"]
                    first_seen.set()

        r = await http.post(
            "/dicomweb/studies",
            content=body(),
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
        )
        assert r.status_code == 200, r.text
        assert first_seen.is_set()
        assert observed == {"instances": 1, "status": "registered"}
        done = (await http.get(f"/fhir/ImagingStudy/{imaging_study_id(study)}")).json()
        assert done["status"] == "available" and done["numberOfInstances"] == 3
        endpoint = (await http.get(f"/fhir/{done['endpoint'][0]['reference']}")).json()
        assert endpoint["address"] == f"{server.origin}/dicomweb"


def test_samples_exist() -> None:
    for name in FILES:
        assert Path(sample(name)).stat().st_size > 0
