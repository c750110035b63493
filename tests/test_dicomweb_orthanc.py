"""Our DICOMweb next to Orthanc's: the same files stored in both, the same QIDO-RS/WADO-RS calls made with
dicomweb-client against both, the same studies, series, instances and counts.

Orthanc (with its DICOMweb plugin) is the reference implementation here: where both answer, the answers
must agree on what a viewer or a remote DRIMbox relies on (UIDs, counts, modalities, patient and study
keys). Files reach both servers by STOW-RS, and one study by C-STORE (DCMTK storescu to each server's
DICOM port), as a PACS would send it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from fhir_server.config import Settings
from tests.conftest import make_settings
from tests.dcmtk import run
from tests.dicom_samples import Study, make_study
from tests.dicomweb_samples import ServerThread
from tests.orthanc_peer import OrthancPeer, free_port, running_orthanc

AET = "FHIRCMP"
T_STUDY_UID, T_SERIES_UID, T_SOP_UID = "0020000D", "0020000E", "00080018"


@pytest.fixture(scope="module")
def dicom_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancPeer]:
    with running_orthanc(tmp_path_factory.mktemp("orthanc-cmp")) as peer:
        yield peer


@pytest.fixture(scope="module")
def server(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, dicom_port: int) -> Iterator[ServerThread]:
    data_dir = tmp_path_factory.mktemp("data-cmp")

    def settings_for(base: str) -> Settings:
        return make_settings(ferretdb_uri, data_dir, base_url=base, dicom_port=dicom_port, dicom_aet=AET)

    with ServerThread(settings_for) as running:
        yield running


@pytest.fixture(scope="module")
def ours(server: ServerThread) -> DICOMwebClient:
    return DICOMwebClient(f"{server.origin}/dicomweb", headers={"Authorization": f"Bearer {server.token()}"})


@pytest.fixture(scope="module")
def theirs(orthanc: OrthancPeer) -> DICOMwebClient:
    return DICOMwebClient(orthanc.dicomweb)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, ours: DICOMwebClient, theirs: DICOMwebClient) -> list[Study]:
    """Three studies, every file STOWed to both servers."""
    out = tmp_path_factory.mktemp("cmp")
    made = [
        make_study(out / "a", ["ct", "mr"], patient_id="CMP-1", patient_name="COMPARE^ALICE", accession="CMP-A",
                   study_date="20240110"),
        make_study(out / "b", ["mr", "mr_implicit", "mr_rle", "sc_jpeg_baseline", "sr", "mr_bigendian"],
                   patient_id="CMP-2", patient_name="COMPARE^BOB", accession="CMP-B", study_date="20240220"),
        make_study(out / "c", ["ct"], copies=7, patient_id="CMP-1", patient_name="COMPARE^ALICE", accession="CMP-C",
                   study_date="20240305"),
    ]  # fmt: skip
    for study in made:
        datasets = [dcmread(p) for p in study.files]
        for client in (ours, theirs):
            client.store_instances(datasets)
    return made


def first(attrs: dict[str, Any], tag: str) -> Any:
    values = (attrs.get(tag) or {}).get("Value") or [None]
    return values[0]


def values(attrs: dict[str, Any], tag: str) -> list[Any]:
    return list((attrs.get(tag) or {}).get("Value") or [])


def study_summary(found: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What both servers must agree on, per study (PatientName as its alphabetic form)."""
    return {
        first(s, T_STUDY_UID): (
            first(s, "00100020"),  # PatientID
            (first(s, "00100010") or {}).get("Alphabetic"),  # PatientName
            first(s, "00080050"),  # AccessionNumber
            first(s, "00080020"),  # StudyDate
            sorted(values(s, "00080061")),  # ModalitiesInStudy
            int(first(s, "00201206")),  # NumberOfStudyRelatedSeries
            int(first(s, "00201208")),  # NumberOfStudyRelatedInstances
        )
        for s in found
    }


def series_summary(found: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        first(s, T_SERIES_UID): (first(s, "00080060"), int(first(s, "00201209")))  # Modality, NumberOfSeriesRel.
        for s in found
    }


def instance_summary(found: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {first(i, T_SOP_UID): (first(i, "00080016"), first(i, T_SERIES_UID)) for i in found}


def test_same_studies_series_and_instances(studies: list[Study], ours: DICOMwebClient, theirs: DICOMwebClient) -> None:
    mine, orthanc = study_summary(ours.search_for_studies()), study_summary(theirs.search_for_studies())
    assert set(mine) == {s.uid for s in studies}
    assert mine == orthanc
    for study in studies:
        my_series = series_summary(ours.search_for_series(study.uid))
        assert set(my_series) == study.series_uids
        assert my_series == series_summary(theirs.search_for_series(study.uid))
        my_instances = instance_summary(ours.search_for_instances(study.uid))
        assert set(my_instances) == set(study.sops)
        assert my_instances == instance_summary(theirs.search_for_instances(study.uid))
        for series_uid in study.series_uids:
            mine_in_series = instance_summary(ours.search_for_instances(study.uid, series_uid))
            assert mine_in_series == instance_summary(theirs.search_for_instances(study.uid, series_uid))


@pytest.mark.parametrize(
    "filters",
    [
        {"PatientID": "CMP-1"},
        {"PatientID": "CMP-2"},
        {"AccessionNumber": "CMP-B"},
        {"StudyDate": "20240201-20240331"},
        {"StudyDate": "20240110"},
        {"ModalitiesInStudy": "MR"},
        {"ModalitiesInStudy": "SR"},
        {"PatientID": "CMP-1", "StudyDate": "-20240201"},
        {"PatientID": "NOBODY"},
    ],
)
def test_same_study_matches(
    studies: list[Study], ours: DICOMwebClient, theirs: DICOMwebClient, filters: dict[str, str]
) -> None:
    mine = study_summary(ours.search_for_studies(search_filters=filters))
    assert mine == study_summary(theirs.search_for_studies(search_filters=filters))


@pytest.mark.parametrize("name", ["COMPARE^A*", "compare^bob", "*^BOB", "COMPARE^?LICE", "NOBODY*"])
def test_same_patient_name_matches(studies: list[Study], ours: DICOMwebClient, orthanc: OrthancPeer, name: str) -> None:
    # The Debian Orthanc 1.10.1 + DICOMweb 1.7 answers no study to any PatientName filter of QIDO-RS;
    # its own search (/tools/find, what its C-FIND SCP answers with) is the reference for PN matching
    # (wildcards, case-insensitive as Orthanc's default CaseSensitivePN=false).
    mine = {first(s, T_STUDY_UID) for s in ours.search_for_studies(search_filters={"PatientName": name})}
    found = orthanc.http.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": name}, "Expand": True})
    assert mine == {s["MainDicomTags"]["StudyInstanceUID"] for s in found.json()}


def test_same_series_and_instance_matches_across_studies(
    studies: list[Study], ours: DICOMwebClient, theirs: DICOMwebClient
) -> None:
    for filters in ({"Modality": "CT"}, {"Modality": "MR"}, {"Modality": "SR"}):
        mine = series_summary(ours.search_for_series(search_filters=filters))
        assert mine and mine == series_summary(theirs.search_for_series(search_filters=filters))
    ct_series = next(iter(studies[2].series_uids))
    mine_i = instance_summary(ours.search_for_instances(search_filters={"SeriesInstanceUID": ct_series}))
    assert len(mine_i) == 7
    assert mine_i == instance_summary(theirs.search_for_instances(search_filters={"SeriesInstanceUID": ct_series}))


def test_same_pages(studies: list[Study], ours: DICOMwebClient, theirs: DICOMwebClient) -> None:
    # Both page the same result set: the pages differ in order only, not in what they cover.
    mine = [first(s, T_STUDY_UID) for o in (0, 2) for s in ours.search_for_studies(limit=2, offset=o)]
    orthanc = [first(s, T_STUDY_UID) for o in (0, 2) for s in theirs.search_for_studies(limit=2, offset=o)]
    assert len(mine) == len(orthanc) == 3
    assert set(mine) == set(orthanc) == {s.uid for s in studies}


def test_same_instances_retrieved(studies: list[Study], ours: DICOMwebClient, theirs: DICOMwebClient) -> None:
    study = studies[0]
    mine = {str(ds.SOPInstanceUID): ds for ds in ours.retrieve_study(study.uid)}
    orthanc = {str(ds.SOPInstanceUID): ds for ds in theirs.retrieve_study(study.uid)}
    assert set(mine) == set(orthanc) == set(study.sops)
    for sop, ds in mine.items():
        assert ds.PixelData == orthanc[sop].PixelData
        assert ds.PatientID == orthanc[sop].PatientID == "CMP-1"
    my_meta = {first(m, T_SOP_UID) for m in ours.retrieve_study_metadata(study.uid)}
    assert my_meta == {first(m, T_SOP_UID) for m in theirs.retrieve_study_metadata(study.uid)}


async def test_same_answers_after_c_store(
    studies: list[Study],
    ours: DICOMwebClient,
    theirs: DICOMwebClient,
    orthanc: OrthancPeer,
    dicom_port: int,
    tmp_path: Path,
) -> None:
    # A study a modality sends by C-STORE: storescu to each server's DICOM port.
    study = make_study(
        tmp_path, ["ct", "mr"], patient_id="CMP-3", patient_name="COMPARE^DAN", accession="CMP-D", copies=2,
        study_date="20240401",
    )  # fmt: skip
    for aet, port in ((AET, dicom_port), (orthanc.aet, orthanc.dicom_port)):
        result = await run("storescu", "-aec", aet, "127.0.0.1", port, *study.files)
        assert result.returncode == 0, result.output
    mine, orthanc_found = await asyncio.gather(
        asyncio.to_thread(ours.search_for_studies, search_filters={"AccessionNumber": "CMP-D"}),
        asyncio.to_thread(theirs.search_for_studies, search_filters={"AccessionNumber": "CMP-D"}),
    )
    assert study_summary(mine) == study_summary(orthanc_found)
    assert next(iter(study_summary(mine).values()))[-1] == 4
