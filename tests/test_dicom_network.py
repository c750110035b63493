"""DICOM networking against real peers: DCMTK tools as clients of our SCP, DCMTK storescp as a C-MOVE
destination, and a real Orthanc as the PACS we query, retrieve from and export to.

The server runs in-process with its SCP on a free port (FHIR_DICOM_PORT); every DCMTK tool is a
subprocess, Orthanc a process of its own (tests/orthanc_peer.py). What is checked is what a PACS
administrator would check: the tool's exit status, what arrives on the other side (byte for byte:
the encoded dataset after the file meta group), what QIDO-RS and the ImagingStudy then say, and the
AuditEvents written.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from dicomweb.nodes import DicomNode
from dicomweb.scu import DicomClient
from dicomweb.store import imaging_study_id
from fhir_server.app import create_app
from fhir_server.config import REPO_ROOT, Settings
from tests.conftest import make_settings, token_for
from tests.dcmtk import StoreSCP, findscu, keys, run, storescp
from tests.dicom_samples import SAMPLES, Study, content, dataset_bytes, make_study
from tests.orthanc_peer import OrthancPeer, free_port, running_orthanc

AET = "FHIRTEST"
DICOMWEB = "http://testserver/dicomweb"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"scp": free_port(), "storescp": free_port(), "closed": free_port()}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> Iterator[OrthancPeer]:
    modalities = {AET: ("127.0.0.1", ports["scp"]), "STORESCP": ("127.0.0.1", ports["storescp"])}
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), modalities=modalities) as peer:
        yield peer


@pytest.fixture(scope="module")
async def settings(
    ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int], orthanc: OrthancPeer
) -> Settings:
    nodes = {
        "STORESCP": {"host": "127.0.0.1", "port": ports["storescp"]},
        orthanc.aet: {"host": "127.0.0.1", "port": orthanc.dicom_port},
        "OFFLINE": {"host": "127.0.0.1", "port": ports["closed"]},
    }
    return make_settings(
        ferretdb_uri,
        tmp_path_factory.mktemp("data"),
        dicom_port=ports["scp"],
        dicom_aet=AET,
        dicom_nodes=nodes,
        dicom_timeout_seconds=20,
    )


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[Any]:
    # As conftest's, with room for a loaded machine: the SCP is stopped in the shutdown (joins threads).
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
        yield application


@pytest.fixture(scope="module")
async def store_scp(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> AsyncIterator[StoreSCP]:
    async with storescp(ports["storescp"], "STORESCP", tmp_path_factory.mktemp("storescp")) as scp:
        yield scp


@pytest.fixture(scope="module")
async def sent(app: Any, ports: dict[str, int], tmp_path_factory: pytest.TempPathFactory, store_scp: StoreSCP) -> Study:
    """One study holding every sample (every transfer syntax), sent once with storescu to us and, as the
    reference of what storescu puts on the wire, to DCMTK's own storescp (bit-preserving)."""
    study = make_study(
        tmp_path_factory.mktemp("sent"),
        list(SAMPLES),
        patient_id="NET-1",
        patient_name="RESEAU^ANNE",
        accession="ACC-NET-1",
        study_date="20240315",
    )
    await storescu(ports["scp"], study.files)
    store_scp.clear()
    await storescu(ports["storescp"], study.files, aet="STORESCP")
    study.wire = {sop: path.read_bytes() for sop, path in store_scp.received().items()}
    store_scp.clear()
    return study


# storescu's option proposing each transfer syntax (it proposes uncompressed ones unless told otherwise).
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


async def storescu(port: int, files: list[Path], aet: str = AET) -> None:
    """Send the files with storescu, one association per transfer syntax so each file goes as it is."""
    by_syntax: dict[str, list[Path]] = {}
    for path in files:
        by_syntax.setdefault(str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID), []).append(path)
    for syntax, group in by_syntax.items():
        result = await run("storescu", "-R", STORESCU_PROPOSE[syntax], "-aec", aet, "127.0.0.1", port, *group)
        assert result.returncode == 0, result.output
        assert "Store Failed" not in result.output and "E:" not in result.output, result.output


async def stored_bytes(app: Any, study_uid: str) -> dict[str, bytes]:
    store = app.state.dicom
    return {ref.sop_uid: await store.read_bytes(ref.blob_key) for ref in await store.instances(study_uid)}


async def qido(client: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    r = await client.get(f"{DICOMWEB}/{path}", params=params, headers={"Accept": "application/dicom+json"})
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else []


def value(attrs: dict[str, Any], tag: str) -> Any:
    values = (attrs.get(tag) or {}).get("Value") or [None]
    return values[0]


async def audit_events(client: httpx.AsyncClient, code: str, study_uid: str) -> list[dict[str, Any]]:
    r = await client.get("AuditEvent", params={"type": f"{DCM}|{code}", "_count": "200"})
    assert r.status_code == 200, r.text
    events = [e["resource"] for e in r.json().get("entry", [])]
    wanted = f"urn:oid:{study_uid}"
    return [
        e
        for e in events
        if any((x.get("what") or {}).get("identifier", {}).get("value") == wanted for x in e.get("entity", []))
    ]


# ---- our SCP with DCMTK as the client ------------------------------------------------------------


async def test_echoscu(app: Any, ports: dict[str, int]) -> None:
    result = await run("echoscu", "-aec", AET, "127.0.0.1", ports["scp"])
    assert result.returncode == 0, result.output


async def test_storescu_every_transfer_syntax_is_stored_as_sent(
    app: Any, client: httpx.AsyncClient, sent: Study
) -> None:
    stored = await stored_bytes(app, sent.uid)
    assert set(stored) == set(sent.sops)
    for path in sent.files:
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        # Byte for byte what storescu sent (as DCMTK's storescp +B received it) ...
        assert dataset_bytes(stored[sop]) == dataset_bytes(sent.wire[sop]), path.name
        # ... which is the file's content: storescu only drops group lengths and trailing padding (and
        # pads odd-length compressed pixel data, as in two of pydicom's files).
        if sent.names[sop] not in ("mr_j2k_lossless", "mr_jpegls"):
            assert content(stored[sop]) == content(path), path.name
        # The transfer syntax is kept: nothing was transcoded on the way in.
        stored_ts = dcmread(io.BytesIO(stored[sop]), stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert stored_ts == dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID

    (study,) = await qido(client, "studies", StudyInstanceUID=sent.uid)
    assert value(study, "00201208") == len(sent.files)  # NumberOfStudyRelatedInstances
    assert value(study, "00201206") == len(sent.series)  # NumberOfStudyRelatedSeries
    assert value(study, "00100020") == "NET-1"

    # The association was released: the study is complete, its ImagingStudy available.
    r = await client.get(f"ImagingStudy/{imaging_study_id(sent.uid)}")
    assert r.status_code == 200, r.text
    imaging = r.json()
    assert imaging["status"] == "available"
    assert imaging["numberOfInstances"] == len(sent.files)
    assert {s["uid"] for s in imaging["series"]} == sent.series_uids

    # One import AuditEvent per association (storescu sent one per transfer syntax), all successful.
    events = await audit_events(client, "110107", sent.uid)
    assert events and all(e["outcome"] == "0" for e in events)
    assert all(any(a.get("altId") == "STORESCU" for a in e["agent"]) for e in events)  # storescu's AE title


async def test_resending_is_idempotent(app: Any, client: httpx.AsyncClient, sent: Study, ports: dict[str, int]) -> None:
    before = await stored_bytes(app, sent.uid)
    await storescu(ports["scp"], sent.files)
    after = await stored_bytes(app, sent.uid)
    assert after == before
    (study,) = await qido(client, "studies", StudyInstanceUID=sent.uid)
    assert value(study, "00201208") == len(sent.files)
    imaging = (await client.get(f"ImagingStudy/{imaging_study_id(sent.uid)}")).json()
    assert imaging["numberOfInstances"] == len(sent.files)


async def test_storescu_of_something_that_is_not_dicom_is_refused(
    app: Any, ports: dict[str, int], tmp_path: Path
) -> None:
    # A Part-10 file whose SOP Instance UID is missing cannot be stored: the C-STORE fails, nothing is kept.
    ds = dcmread(make_study(tmp_path / "bad", ["ct"]).files[0])
    del ds.SOPInstanceUID
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad, enforce_file_format=False)
    result = await run("storescu", "-aec", AET, "127.0.0.1", ports["scp"], bad)
    assert result.returncode != 0 or "Store Failed" in result.output or "E:" in result.output, result.output
    assert await app.state.dicom.instances(str(ds.StudyInstanceUID)) == []


async def test_an_aborted_transfer_leaves_the_study_registered(
    app: Any, client: httpx.AsyncClient, ports: dict[str, int], tmp_path: Path
) -> None:
    study = make_study(tmp_path, ["ct", "mr"], patient_id="ABORT-1")

    def send(files: list[Path], abort: bool) -> list[int]:
        ae = AE(ae_title="ABORTER")
        for path in files:
            ae.add_requested_context(dcmread(path, stop_before_pixels=True).SOPClassUID, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", ports["scp"], ae_title=AET)
        assert assoc.is_established
        statuses = [int(assoc.send_c_store(dcmread(path)).Status) for path in files]
        assoc.abort() if abort else assoc.release()
        return statuses

    # First instance, then the sender aborts: stored and queryable, but the study is not complete.
    assert await asyncio.to_thread(send, study.files[:1], True) == [0]
    imaging = (await client.get(f"ImagingStudy/{imaging_study_id(study.uid)}")).json()
    assert imaging["status"] == "registered"
    assert [value(s, "0020000D") for s in await qido(client, "studies", PatientID="ABORT-1")] == [study.uid]
    # The rest, on an association that ends with a release: now complete.
    assert await asyncio.to_thread(send, study.files, False) == [0, 0]
    imaging = (await client.get(f"ImagingStudy/{imaging_study_id(study.uid)}")).json()
    assert imaging["status"] == "available" and imaging["numberOfInstances"] == 2


async def test_findscu_study_root_at_study_series_and_image_levels(
    app: Any, sent: Study, tmp_path: Path, ports: dict[str, int]
) -> None:
    port = ports["scp"]
    found = await findscu(
        port, AET, "STUDY", "STUDY", tmp_path, PatientID="NET-1", StudyInstanceUID="",
        NumberOfStudyRelatedInstances="", ModalitiesInStudy="", AccessionNumber="", PatientName="",
    )  # fmt: skip
    assert [str(d.StudyInstanceUID) for d in found] == [sent.uid]
    assert int(found[0].NumberOfStudyRelatedInstances) == len(sent.files)
    assert {"CT", "MR", "SR"} <= set(found[0].ModalitiesInStudy)
    assert found[0].AccessionNumber == "ACC-NET-1"
    assert str(found[0].PatientName) == "RESEAU^ANNE"
    assert found[0].RetrieveAETitle == AET

    # Wildcards, date ranges and UID lists follow the DICOM matching rules.
    by_name = await findscu(port, AET, "STUDY", "STUDY", tmp_path, PatientName="reseau*", StudyInstanceUID="")
    assert sent.uid in [str(d.StudyInstanceUID) for d in by_name]
    by_date = await findscu(port, AET, "STUDY", "STUDY", tmp_path, StudyDate="20240301-20240331", StudyInstanceUID="")
    assert sent.uid in [str(d.StudyInstanceUID) for d in by_date]
    outside = await findscu(port, AET, "STUDY", "STUDY", tmp_path, StudyDate="20230101-20231231", PatientID="NET-1")
    assert outside == []
    by_list = await findscu(port, AET, "STUDY", "STUDY", tmp_path, StudyInstanceUID=f"1.2.3.4\\{sent.uid}")
    assert [str(d.StudyInstanceUID) for d in by_list] == [sent.uid]

    series = await findscu(
        port, AET, "STUDY", "SERIES", tmp_path, StudyInstanceUID=sent.uid, SeriesInstanceUID="", Modality="",
        NumberOfSeriesRelatedInstances="",
    )  # fmt: skip
    assert {str(d.SeriesInstanceUID) for d in series} == sent.series_uids
    assert sum(int(d.NumberOfSeriesRelatedInstances) for d in series) == len(sent.files)

    ct_series = next(d for d in series if d.Modality == "CT")
    images = await findscu(
        port, AET, "STUDY", "IMAGE", tmp_path, StudyInstanceUID=sent.uid,
        SeriesInstanceUID=str(ct_series.SeriesInstanceUID), SOPInstanceUID="", SOPClassUID="",
    )  # fmt: skip
    assert len(images) == 1
    assert images[0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    assert str(images[0].SOPInstanceUID) in sent.sops


async def test_c_find_is_audited_as_a_query(
    app: Any, client: httpx.AsyncClient, sent: Study, tmp_path: Path, ports: dict[str, int]
) -> None:
    await findscu(ports["scp"], AET, "STUDY", "STUDY", tmp_path, AccessionNumber="ACC-NET-1", StudyInstanceUID="")
    r = await client.get("AuditEvent", params={"type": f"{DCM}|110112", "_count": "200"})
    queries = [
        base64.b64decode(x["query"]).decode()
        for e in r.json().get("entry", [])
        for x in e["resource"].get("entity", [])
        if "query" in x
    ]
    assert "STUDY AccessionNumber=ACC-NET-1" in queries


async def test_findscu_patient_root(app: Any, sent: Study, tmp_path: Path, ports: dict[str, int]) -> None:
    port = ports["scp"]
    patients = await findscu(
        port, AET, "PATIENT", "PATIENT", tmp_path, PatientID="NET-1", PatientName="",
        NumberOfPatientRelatedStudies="", NumberOfPatientRelatedInstances="",
    )  # fmt: skip
    assert len(patients) == 1
    assert str(patients[0].PatientName) == "RESEAU^ANNE"
    assert int(patients[0].NumberOfPatientRelatedStudies) == 1
    assert int(patients[0].NumberOfPatientRelatedInstances) == len(sent.files)

    studies = await findscu(port, AET, "PATIENT", "STUDY", tmp_path, PatientID="NET-1", StudyInstanceUID="")
    assert [str(d.StudyInstanceUID) for d in studies] == [sent.uid]

    # PATIENT is not a level of the Study Root model: refused.
    result = await run("findscu", "-v", "-S", "-aec", AET, *keys("PATIENT", PatientID="NET-1"), "127.0.0.1", port)
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in result.output, result.output


async def test_movescu_to_a_known_node_sends_the_instances_unchanged(
    app: Any, client: httpx.AsyncClient, sent: Study, store_scp: StoreSCP, ports: dict[str, int]
) -> None:
    store_scp.clear()
    result = await run(
        "movescu", "-S", "-aec", AET, "-aem", "STORESCP", *keys("STUDY", StudyInstanceUID=sent.uid),
        "127.0.0.1", ports["scp"],
    )  # fmt: skip
    assert result.returncode == 0, result.output
    received = store_scp.received()
    assert set(received) == set(sent.sops)
    # What arrives is what we stored, byte for byte (storescp +B writes the dataset as received), in
    # the transfer syntax it was stored in (JPEG, JPEG 2000, RLE, big endian... none transcoded).
    stored = await stored_bytes(app, sent.uid)
    for sop, path in received.items():
        assert dataset_bytes(path) == dataset_bytes(stored[sop]), sop
        assert dcmread(path).file_meta.TransferSyntaxUID == dcmread(io.BytesIO(stored[sop])).file_meta.TransferSyntaxUID
    # dciodvfy finds nothing in what we sent that it does not find in the original file.
    ct = next(p for p in sent.files if dcmread(p, stop_before_pixels=True).Modality == "CT")
    sop = str(dcmread(ct, stop_before_pixels=True).SOPInstanceUID)
    assert await dciodvfy_errors(received[sop]) == await dciodvfy_errors(ct)

    events = await audit_events(client, "110106", sent.uid)
    assert any(any(a.get("altId") == "STORESCP" for a in e["agent"]) for e in events)


async def test_movescu_to_an_unknown_destination_is_refused(
    app: Any, sent: Study, store_scp: StoreSCP, ports: dict[str, int]
) -> None:
    store_scp.clear()
    result = await run(
        "movescu", "-v", "-S", "-aec", AET, "-aem", "NOWHERE", *keys("STUDY", StudyInstanceUID=sent.uid),
        "127.0.0.1", ports["scp"],
    )  # fmt: skip
    assert "Final Move Response (Refused: MoveDestinationUnknown)" in result.output, result.output
    assert store_scp.received() == {}


async def test_movescu_series_and_image_levels(
    app: Any, sent: Study, store_scp: StoreSCP, ports: dict[str, int]
) -> None:
    series_uid = next(iter(sent.series_uids))
    store_scp.clear()
    # Patient Root, SERIES level, without the study: found from the index.
    result = await run(
        "movescu", "-P", "-aec", AET, "-aem", "STORESCP",
        *keys("SERIES", PatientID="NET-1", SeriesInstanceUID=series_uid), "127.0.0.1", ports["scp"],
    )  # fmt: skip
    assert result.returncode == 0, result.output
    in_series = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sent.files
                 if str(dcmread(p, stop_before_pixels=True).SeriesInstanceUID) == series_uid}  # fmt: skip
    assert set(store_scp.received()) == in_series

    store_scp.clear()
    sop = sent.sops[0]
    result = await run(
        "movescu", "-S", "-aec", AET, "-aem", "STORESCP",
        *keys("IMAGE", StudyInstanceUID=sent.uid, SeriesInstanceUID="", SOPInstanceUID=sop), "127.0.0.1", ports["scp"],
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert set(store_scp.received()) == {sop}


async def test_getscu_brings_the_study_back_unchanged(app: Any, tmp_path: Path, ports: dict[str, int]) -> None:
    # Native encodings (getscu proposes uncompressed transfer syntaxes for the storage it accepts).
    study = make_study(tmp_path / "src", ["ct", "mr", "mr_implicit", "rtplan"], patient_id="GET-1")
    await storescu(ports["scp"], study.files)
    out = tmp_path / "got"
    out.mkdir()
    result = await run(
        "getscu", "-S", "-aec", AET, "+B", "-od", out, *keys("STUDY", StudyInstanceUID=study.uid),
        "127.0.0.1", ports["scp"],
    )  # fmt: skip
    assert result.returncode == 0, result.output
    got = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in out.iterdir()}
    assert set(got) == set(study.sops)
    stored = await stored_bytes(app, study.uid)
    for sop, path in got.items():
        same_syntax = (
            dcmread(path).file_meta.TransferSyntaxUID == dcmread(io.BytesIO(stored[sop])).file_meta.TransferSyntaxUID
        )
        if same_syntax:
            assert dataset_bytes(path) == dataset_bytes(stored[sop]), sop
        else:  # getscu accepted another native encoding for that SOP class: the same data elements
            assert content(path) == content(stored[sop]), sop


async def dciodvfy_errors(path: Path) -> list[str]:
    result = await run("dciodvfy", path)
    return sorted(line for line in result.output.splitlines() if line.startswith("Error"))


# ---- Orthanc as the PACS on the other side -------------------------------------------------------


def orthanc_node(orthanc: OrthancPeer) -> DicomNode:
    return DicomNode(orthanc.aet, "127.0.0.1", orthanc.dicom_port)


async def test_scu_echo_and_find_against_orthanc(app: Any, orthanc: OrthancPeer, tmp_path: Path) -> None:
    study = make_study(tmp_path, ["ct", "mr"], patient_id="PACS-FIND", accession="ACC-FIND")
    for path in study.files:
        orthanc.upload(path)
    scu = DicomClient(app.state.server)
    assert await scu.echo(orthanc_node(orthanc)) == 0
    found = await scu.find(orthanc_node(orthanc), "STUDY", {"AccessionNumber": "ACC-FIND"})
    assert [value(f, "0020000D") for f in found] == [study.uid]
    series = await scu.find(orthanc_node(orthanc), "SERIES", {"StudyInstanceUID": study.uid})
    assert {value(s, "0020000E") for s in series} == study.series_uids
    images = await scu.find(orthanc_node(orthanc), "IMAGE", {"StudyInstanceUID": study.uid, "SeriesInstanceUID": ""})
    assert {value(i, "00080018") for i in images} == set(study.sops)


async def test_retrieve_from_orthanc_by_c_move(
    app: Any, client: httpx.AsyncClient, orthanc: OrthancPeer, tmp_path: Path
) -> None:
    study = make_study(
        tmp_path, ["ct", "mr", "mr_rle", "sc_jpeg_baseline", "sc_j2k"], patient_id="PACS-1",
        accession="ACC-PACS-1",
    )  # fmt: skip
    for path in study.files:
        orthanc.upload(path)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "node", "valueString": orthanc.aet},
            {"name": "StudyInstanceUID", "valueString": study.uid},
        ],
    }
    r = await client.post("ImagingStudy/$retrieve", json=params)
    assert r.status_code == 200, r.text
    (part,) = [p["part"] for p in r.json()["parameter"] if p["name"] == "study"]
    result = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in part}
    assert result["completed"] == len(study.files) and result["failed"] == 0
    assert result["imagingStudy"]["reference"] == f"ImagingStudy/{imaging_study_id(study.uid)}"

    # Visible through our QIDO-RS and as an available ImagingStudy; the instances as they were uploaded.
    (found,) = await qido(client, "studies", AccessionNumber="ACC-PACS-1")
    assert value(found, "0020000D") == study.uid
    assert value(found, "00201208") == len(study.files)
    imaging = (await client.get(result["imagingStudy"]["reference"])).json()
    assert imaging["status"] == "available" and imaging["numberOfInstances"] == len(study.files)
    stored = await stored_bytes(app, study.uid)
    for path in study.files:
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        # Orthanc (DCMTK inside) drops group lengths and padding on the wire; the rest arrives unchanged.
        assert content(stored[sop]) == content(path), path.name

    (event,) = [
        e for e in await audit_events(client, "110107", study.uid)
        if any(a.get("altId") == orthanc.aet for a in e["agent"]) and "$retrieve" in e.get("outcomeDesc", "")
    ]  # fmt: skip
    assert event["outcome"] == "0"


async def test_retrieve_by_accession_number_with_c_get(
    app: Any, client: httpx.AsyncClient, orthanc: OrthancPeer, tmp_path: Path
) -> None:
    study = make_study(tmp_path, ["ct", "mr"], patient_id="PACS-2", accession="ACC-PACS-2")
    for path in study.files:
        orthanc.upload(path)
    r = await client.post(
        "ImagingStudy/$retrieve", params={"node": orthanc.aet, "AccessionNumber": "ACC-PACS-2", "method": "get"}
    )
    assert r.status_code == 200, r.text
    assert sorted(ref.sop_uid for ref in await app.state.dicom.instances(study.uid)) == sorted(study.sops)
    imaging = (await client.get(f"ImagingStudy/{imaging_study_id(study.uid)}")).json()
    assert imaging["status"] == "available"


async def test_orthanc_queries_and_moves_from_our_scp(
    app: Any, sent: Study, orthanc: OrthancPeer, settings: Settings
) -> None:
    # Orthanc as the SCU: C-FIND on us, then C-MOVE to itself (a node we know).
    def query_and_move() -> tuple[list[str], int]:
        http = orthanc.http
        q = http.post(f"/modalities/{AET}/query", json={"Level": "Study", "Query": {"PatientID": "NET-1"}})
        q.raise_for_status()
        answers = http.get(f"/queries/{q.json()['ID']}/answers?expand").json()
        uids = [a["0020,000d"]["Value"] for a in answers]
        m = http.post(
            f"/modalities/{AET}/move",
            json={"Level": "Study", "Resources": [{"StudyInstanceUID": sent.uid}], "TargetAet": orthanc.aet},
        )
        return uids, m.status_code

    uids, status = await asyncio.to_thread(query_and_move)
    assert uids == [sent.uid]
    assert status == 200
    for sop in sent.sops:
        assert orthanc.find_instance(sop) is not None


async def test_export_study_to_orthanc(
    app: Any, client: httpx.AsyncClient, orthanc: OrthancPeer, tmp_path: Path, ports: dict[str, int]
) -> None:
    study = make_study(tmp_path, ["ct", "mr_jpegls", "nm_jpeg_extended", "mr_bigendian", "sr"], patient_id="EXP-1")
    await storescu(ports["scp"], study.files)
    rid = imaging_study_id(study.uid)
    r = await client.post(f"ImagingStudy/{rid}/$export-dicom", params={"node": orthanc.aet})
    assert r.status_code == 200, r.text
    out = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in r.json()["parameter"]}
    assert out == {"sent": len(study.files), "failed": 0}
    stored = await stored_bytes(app, study.uid)
    for path in study.files:
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        orthanc_id = orthanc.find_instance(sop)
        assert orthanc_id is not None, path.name
        assert dataset_bytes(orthanc.instance_file(orthanc_id)) == dataset_bytes(stored[sop]), path.name
    (event,) = await audit_events(client, "110106", study.uid)
    assert event["outcome"] == "0"
    assert any(e.get("what", {}).get("reference") == f"ImagingStudy/{rid}" for e in event["entity"])


async def test_export_to_storescp_keeps_compressed_instances(
    app: Any, client: httpx.AsyncClient, sent: Study, store_scp: StoreSCP
) -> None:
    store_scp.clear()
    r = await client.post(
        f"ImagingStudy/{imaging_study_id(sent.uid)}/$export-dicom",
        json={"resourceType": "Parameters", "parameter": [{"name": "node", "valueString": "STORESCP"}]},
    )
    assert r.status_code == 200, r.text
    received = store_scp.received()
    assert set(received) == set(sent.sops)
    stored = await stored_bytes(app, sent.uid)
    for sop, path in received.items():
        assert dataset_bytes(path) == dataset_bytes(stored[sop]), sop


async def test_operation_errors_are_operation_outcomes(
    app: Any, client: httpx.AsyncClient, settings: Settings, sent: Study
) -> None:
    rid = imaging_study_id(sent.uid)
    cases = [
        ("ImagingStudy/$retrieve", {"node": "UNKNOWN", "StudyInstanceUID": "1.2.3"}, None, 400),
        ("ImagingStudy/$retrieve", {"node": "OFFLINE", "StudyInstanceUID": "1.2.3"}, None, 502),
        ("ImagingStudy/$retrieve", {"StudyInstanceUID": "1.2.3"}, None, 400),
        ("Patient/$retrieve", {"node": "STORESCP", "StudyInstanceUID": "1.2.3"}, None, 404),
        (f"ImagingStudy/{rid}/$export-dicom", {"node": "OFFLINE"}, None, 502),
        ("ImagingStudy/no-such-study/$export-dicom", {"node": "STORESCP"}, None, 404),
        # Scopes: retrieve needs create on ImagingStudy, export needs read.
        ("ImagingStudy/$retrieve", {"node": "STORESCP", "StudyInstanceUID": "1.2.3"}, "system/ImagingStudy.rs", 403),
        (f"ImagingStudy/{rid}/$export-dicom", {"node": "STORESCP"}, "system/Patient.rs", 403),
    ]
    for path, params, scope, status in cases:
        headers = {"Authorization": f"Bearer {token_for(settings, scope)}"} if scope else {}
        r = await client.post(path, params=params, headers=headers)
        assert r.status_code == status, (path, params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


# ---- life cycle: `fhir-server serve` runs the SCP ---------------------------------------------------


async def test_serve_starts_and_stops_the_scp(ferretdb_uri: str, tmp_path: Path) -> None:
    # Also: with FHIR_DICOM_KNOWN_CALLERS_ONLY, only the AE titles of FHIR_DICOM_NODES may associate.
    http_port, dicom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
    env.update(
        FHIR_MONGODB_URI=ferretdb_uri, FHIR_DATABASE="dicomserve", FHIR_DICOM_PORT=str(dicom_port),
        FHIR_DICOM_AET="SERVED", FHIR_LOG_LEVEL="WARNING", FHIR_DICOM_KNOWN_CALLERS_ONLY="true",
        FHIR_DICOM_NODES='{"MODALITY1": {"host": "127.0.0.1", "port": 104}}',
    )  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(http_port), "--data-dir", str(tmp_path),
        env=env, cwd=REPO_ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/fhir/metadata")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        known = await run("echoscu", "-aet", "MODALITY1", "-aec", "SERVED", "127.0.0.1", dicom_port)
        assert known.returncode == 0, known.output
        stranger = await run("echoscu", "-aet", "STRANGER", "-aec", "SERVED", "127.0.0.1", dicom_port)
        assert stranger.returncode != 0 and "Association Rejected" in stranger.output, stranger.output
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert (await run("echoscu", "-aet", "MODALITY1", "-aec", "SERVED", "127.0.0.1", dicom_port)).returncode != 0
