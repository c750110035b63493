"""The imaging store API (dicomweb/store.py) that STOW-RS and the DIMSE SCP both use, with the
ImagingStudy/Endpoint it keeps in the FHIR store, on a real FerretDB."""

from __future__ import annotations

import io
import warnings

import httpx
import pydicom
import pytest

from dicomweb.store import FLUSH_EVERY, FLUSH_SECONDS, DicomStore, InvalidInstance, imaging_study_id
from fhir_server.validation import validate_resource
from tests.dicomweb_samples import sample, variant

warnings.filterwarnings("ignore", module="pydicom")


@pytest.fixture(scope="module")
def dicom(app: object) -> DicomStore:
    return app.state.dicom  # type: ignore[attr-defined]


async def test_store_is_idempotent_and_queryable(dicom: DicomStore, client: httpx.AsyncClient) -> None:
    ct = sample("CT_small.dcm")
    first = await dicom.store_instance(ct, source="test")
    assert not first.duplicate and first.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    again = await dicom.store_instance(ct.read_bytes(), source="test")
    assert again.duplicate and again.blob_key == first.blob_key

    studies = await dicom.search("STUDY", {"PatientID": "1CT1"})
    assert len(studies) == 1
    study = studies[0]
    assert study["0020000D"]["Value"] == [first.study_uid]
    assert study["00201208"]["Value"] == [1]  # NumberOfStudyRelatedInstances: the duplicate did not count
    assert study["00080061"]["Value"] == ["CT"]

    # While receiving, the ImagingStudy exists and is `registered`; completion makes it `available`.
    rid = imaging_study_id(first.study_uid)
    r = await client.get(f"ImagingStudy/{rid}")
    assert r.status_code == 200
    assert r.json()["status"] == "registered"
    await dicom.mark_complete([first.study_uid])
    r = await client.get(f"ImagingStudy/{rid}")
    body = r.json()
    assert body["status"] == "available"
    assert body["numberOfSeries"] == 1 and body["numberOfInstances"] == 1
    assert body["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{first.study_uid}"}
    assert body["series"][0]["instance"][0]["uid"] == first.sop_uid
    assert validate_resource(body, "ImagingStudy") == []
    version = body["meta"]["versionId"]
    # Completing again (or re-sending) writes no new version.
    await dicom.store_instance(ct, source="test")
    await dicom.mark_complete([first.study_uid])
    assert (await client.get(f"ImagingStudy/{rid}")).json()["meta"]["versionId"] == version

    endpoint = (await client.get(body["endpoint"][0]["reference"])).json()
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    assert endpoint["address"] == "http://testserver/dicomweb"
    assert validate_resource(endpoint, "Endpoint") == []

    found = (await client.get("ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{first.study_uid}"})).json()
    assert len(found["entry"]) == 1


async def test_invalid_input(dicom: DicomStore) -> None:
    with pytest.raises(InvalidInstance):
        await dicom.store_instance(b"not dicom at all" * 20, source="test")
    no_sop = variant("MR_small.dcm")
    ds = pydicom.dcmread(io.BytesIO(no_sop))
    del ds.StudyInstanceUID
    out = io.BytesIO()
    ds.save_as(out)
    with pytest.raises(InvalidInstance, match="StudyInstanceUID"):
        await dicom.store_instance(out.getvalue(), source="test")


async def test_big_study_coalesces_imaging_study_writes(dicom: DicomStore, client: httpx.AsyncClient) -> None:
    study = "1.2.826.0.1.3680043.8.498.900001"
    n = FLUSH_EVERY + 20
    dicom.flush_seconds = 3600.0  # count-based flushing only: the test must not depend on timing
    for i in range(n):
        series = f"{study}.{1 + i % 2}"
        data = variant(
            "MR_small.dcm",
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
            SOPInstanceUID=f"{series}.{i + 1}",
            InstanceNumber=i + 1,
            SeriesNumber=1 + i % 2,
            PatientID="BIG-1",
        )
        await dicom.store_instance(data, source="test")
    rid = imaging_study_id(study)
    live = (await client.get(f"ImagingStudy/{rid}")).json()
    assert live["status"] == "registered"
    # Rewritten at creation and every FLUSH_EVERY instances (or FLUSH_SECONDS), not once per instance.
    assert int(live["meta"]["versionId"]) == 1 + n // FLUSH_EVERY
    assert live["numberOfInstances"] == FLUSH_EVERY + 1  # as of the last coalesced write
    await dicom.mark_complete([study])
    dicom.flush_seconds = FLUSH_SECONDS
    done = (await client.get(f"ImagingStudy/{rid}")).json()
    assert done["status"] == "available"
    assert done["numberOfInstances"] == n and done["numberOfSeries"] == 2
    assert [s["numberOfInstances"] for s in done["series"]] == [n // 2, n // 2]
    series = await dicom.search("SERIES", {}, study_uid=study)
    assert [s["00201209"]["Value"][0] for s in series] == [n // 2, n // 2]
    refs = await dicom.instances(study, f"{study}.1")
    assert len(refs) == n // 2
    blob = b"".join([c async for c in dicom.read_instance(refs[0])])
    assert pydicom.dcmread(io.BytesIO(blob)).SOPInstanceUID == refs[0].sop_uid


async def test_patient_link_by_identifier(dicom: DicomStore, client: httpx.AsyncClient) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP-778"}],
        "name": [{"family": "Martin"}],
    }
    r = await client.post("Patient", json=patient)
    assert r.status_code == 201
    pid = r.json()["id"]
    study = "1.2.826.0.1.3680043.8.498.900002"
    data = variant(
        "CT_small.dcm",
        StudyInstanceUID=study,
        SeriesInstanceUID=study + ".1",
        SOPInstanceUID=study + ".1.1",
        PatientID="IPP-778",
        IssuerOfPatientID="1.2.250.1.71.4.2.7",
    )
    await dicom.store_instance(data, source="test")
    await dicom.mark_complete([study])
    body = (await client.get(f"ImagingStudy/{imaging_study_id(study)}")).json()
    assert body["subject"]["reference"] == f"Patient/{pid}"
    assert validate_resource(body, "ImagingStudy") == []
    assert await dicom.studies_of_patient(pid) == [study]
    listed = (await client.get("ImagingStudy", params={"subject": f"Patient/{pid}"})).json()
    assert [e["resource"]["id"] for e in listed["entry"]] == [imaging_study_id(study)]


def _norm(x: object) -> object:
    """Equivalent DICOM JSON: padding and empty strings, 5.0 vs 5."""
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, str):
        return x.strip() or None
    if isinstance(x, dict):
        return {k: _norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_norm(v) for v in x]
    return x


def test_fast_json_agrees_with_pydicom() -> None:
    """dicomweb/fast_json.py renders what pydicom's to_json_dict renders, on every bundled file."""
    from pydicom.data import get_charset_files, get_testdata_files

    from dicomweb.fast_json import dataset_json

    compared = 0
    # Including the character set samples (ISO 2022 Japanese and Korean, Arabic, Greek, Hebrew...).
    for path in [*get_testdata_files("*.dcm"), *get_charset_files("*.dcm")]:
        try:
            reference = pydicom.dcmread(path).to_json_dict(1024, lambda e: "bulk", suppress_invalid_tags=True)
        except Exception:
            continue  # files pydicom itself cannot read or render
        ours = dataset_json(pydicom.dcmread(path), 1024, lambda e: "bulk")
        for key, element in reference.items():
            if key.endswith("0000"):
                continue  # group lengths
            assert _norm(ours.get(key)) == _norm(element), (path, key)
        compared += 1
    assert compared > 70
