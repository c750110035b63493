"""HL7 v2 ADT (IHE PAM France) over a real MLLP socket → FR Core Patient / Encounter, read back through
the FHIR API: the ANS examples, our own messages for the events they lack (A04, A05, A08, A28, A31,
A02, A03, A06, A07, A11, A12, A13, A21, A22, A52, A53), charsets, duplicates, malformed messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.test_hl7v2_support import (
    INS_NIR,
    INS_TEST,
    IPP_OID,
    PAM,
    RELIABILITY,
    adt,
    hl7_server,
    one,
    search,
    send,
    send_one,
    with_header,
)

ADMISSION = PAM / "consentement-dmp" / "ConsentementConsultation_NonOppositionAlimentation.er7"
LOCAL_IPP = "urn:fhir-server:hl7v2:assigning-authority:CHU-X"


@pytest.fixture(scope="module")
async def mllp(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple]:
    async with hl7_server(ferretdb_uri, tmp_path_factory.mktemp("hl7adt")) as (_app, client, port):
        yield client, port


def ext(resource: dict, url: str) -> dict:
    return next(e for e in resource.get("extension", []) if e["url"] == url)


def sub(extension: dict, url: str) -> dict:
    return next(e for e in extension["extension"] if e["url"] == url)


async def test_ans_admission_creates_fr_core_patient_and_encounter(mllp) -> None:
    client, port = mllp
    raw = ADMISSION.read_bytes()
    ack = await send_one(port, raw)
    assert (ack.code, ack.acked_id) == ("AA", "3975")
    assert ack.seg("MSH")[8].startswith("ACK^A01")
    assert ack.seg("MSH")[17] == "UNICODE UTF-8"

    patient = await one(client, "Patient", identifier=f"{LOCAL_IPP}|000003")
    assert patient["meta"]["versionId"] == "1"
    ipp = next(i for i in patient["identifier"] if i["system"] == LOCAL_IPP)
    assert ipp["type"]["coding"][0]["code"] == "PI" and ipp["use"] == "usual"
    assert ipp["assigner"] == {"display": "CHU-X"}
    ins = next(i for i in patient["identifier"] if i["system"] == INS_TEST)
    assert ins["value"] == "279035121518989" and ins["use"] == "official"
    assert ins["type"]["coding"][0] == {
        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
        "code": "INS-NIR-TEST",
        "display": "NIR TEST",
    }
    official = patient["name"][0]
    assert official["use"] == "official" and official["family"] == "PAT-TROIS" and official["given"] == ["DOMINIQUE"]
    assert official["extension"][0]["valueString"] == "DOMINIQUE"  # birth list of given names (INS trait)
    assert patient["birthDate"] == "1979-03-28" and patient["gender"] == "female"
    birth_place = ext(patient, "http://hl7.org/fhir/StructureDefinition/patient-birthPlace")["valueAddress"]
    assert birth_place["extension"][0]["valueCoding"]["code"] == "63220"
    reliability = ext(patient, RELIABILITY)
    assert sub(reliability, "identityStatus")["valueCoding"]["code"] == "VALI"
    assert sub(reliability, "identityStatus")["valueCoding"]["display"] == "Identité validée"
    # ZFD-5 / ZFD-6: identity obtained from the INSi teleservice on 2021-12-01.
    assert sub(reliability, "methodCollection")["valueCoding"]["code"] == "INSI"
    assert sub(reliability, "dateCollection")["valueDate"] == "2021-12-01"

    assert [p["id"] for p in await search(client, "Patient", identifier=f"{INS_TEST}|279035121518989")] == [
        patient["id"]
    ]
    encounters = await search(client, "Encounter", subject=f"Patient/{patient['id']}")
    assert len(encounters) == 1
    enc = encounters[0]
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "IMP"
    assert enc["identifier"][0]["value"] == "000897406"
    assert enc["identifier"][0]["type"]["coding"][0]["code"] == "VN"
    assert enc["period"]["start"].startswith("2024-03-06T11:00:00")
    movement = enc["location"][0]
    assert movement["status"] == "active"
    assert movement["extension"][0]["valueIdentifier"]["value"] == "312"  # ZBE-1
    assert movement["location"]["display"] == "Chir V"  # ZBE-8, UF de soins
    assert enc["serviceProvider"]["identifier"]["value"] == "6268"  # ZBE-7, UF médicale
    assert enc["participant"][0]["individual"]["identifier"]["value"] == "801234567897"

    # The same message again (same MSH-3 and MSH-10): the same ACK, nothing processed.
    again = await send_one(port, raw)
    assert again.text == ack.text
    r = await client.get(f"Patient/{patient['id']}")
    assert r.json()["meta"]["versionId"] == "1"


async def test_ans_admission_then_discharge(mllp) -> None:
    client, port = mllp
    admission = (PAM / "sgl" / "admission.er7").read_bytes()
    sortie = (PAM / "sgl" / "sortie.er7").read_bytes()
    a01, a03 = await send(port, with_header(admission, "SGL-1"), with_header(sortie, "SGL-2"))
    assert (a01.code, a01.acked_id) == ("AA", "SGL-1")
    assert (a03.code, a03.acked_id) == ("AA", "SGL-2")
    assert a03.seg("MSH")[8].startswith("ACK^A03")
    patient = await one(client, "Patient", identifier=f"{LOCAL_IPP}|000003")
    enc = await one(client, "Encounter", identifier=f"{LOCAL_IPP}|000897406")
    assert enc["subject"]["reference"] == f"Patient/{patient['id']}"
    assert enc["status"] == "finished"
    assert enc["period"]["end"].startswith("2024-03-06T11:00:00")
    assert all(loc["status"] == "completed" for loc in enc["location"])
    history = (await client.get(f"Encounter/{enc['id']}/_history")).json()
    assert {e["resource"]["status"] for e in history["entry"]} >= {"in-progress", "finished"}


async def test_ipp_authority_oid_and_production_ins(mllp) -> None:
    client, port = mllp
    zfd = "ZFD|||N|N|CV|20230115|CN|20300101"
    tolerated = ["ZFP|2|31", "ZFV|750712184^20240101|||||||", "ZFM|8|||", "ZFA|ACTIF|20240306111154"]
    msg = adt(
        "A28", "OID-1", ipp="IPP-OID-1", ins="180017512345678", ins_root="1.2.250.1.213.1.4.8", extra=[zfd, *tolerated]
    )
    ack = await send_one(port, msg.encode())
    assert ack.code == "AA", ack
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-OID-1")
    ins = next(i for i in patient["identifier"] if i["system"] == INS_NIR)
    assert ins["type"]["coding"][0]["code"] == "INS-NIR"
    ipp = next(i for i in patient["identifier"] if i["system"] == f"urn:oid:{IPP_OID}")
    assert ipp["type"]["coding"][0]["code"] == "PI" and "assigner" in ipp
    reliability = ext(patient, RELIABILITY)
    assert sub(reliability, "methodCollection")["valueCoding"]["code"] == "CV"
    assert sub(reliability, "validationMode")["valueCoding"]["code"] == "CN"
    assert await search(client, "Encounter", subject=f"Patient/{patient['id']}") == []  # A28: no visit


async def test_patient_events_a28_a31_a08_a04(mllp) -> None:
    client, port = mllp
    a28 = adt("A28", "P-1", ipp="IPP-P", family="MARTIN", given="CLAIRE", sex="F")
    a31 = adt("A31", "P-2", ipp="IPP-P", family="MARTIN", given="CLAIRE", sex="F", usual_name="DURAND")
    # Snapshot semantics: PID-5 carries every name each time (A08 keeps the usual name A31 added).
    a08 = adt("A08", "P-3", ipp="IPP-P", family="MARTIN", given="CLAIRE", sex="F", status="PROV", usual_name="DURAND")
    a04 = adt(
        "A04",
        "P-4",
        ipp="IPP-P",
        family="MARTIN",
        given="CLAIRE",
        sex="F",
        status="PROV",
        usual_name="DURAND",
        visit="V-P",
        patient_class="O",
    )
    acks = await send(port, a28.encode(), a31.encode(), a08.encode(), a04.encode())
    assert [a.code for a in acks] == ["AA"] * 4, acks
    assert [a.seg("MSH")[8].split("^")[1] for a in acks] == ["A28", "A31", "A08", "A04"]
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-P")
    assert {n["use"]: n["family"] for n in patient["name"]} == {"official": "MARTIN", "usual": "DURAND"}
    assert sub(ext(patient, RELIABILITY), "identityStatus")["valueCoding"]["code"] == "PROV"
    assert patient["meta"]["versionId"] == "3"  # A28 created; A31, A08 changed it; A04 did not
    enc = await one(client, "Encounter", subject=f"Patient/{patient['id']}")
    assert enc["class"]["code"] == "AMB" and enc["status"] == "in-progress"


async def test_visit_life_cycle_and_movements(mllp) -> None:
    client, port = mllp
    common = {"ipp": "IPP-V", "visit": "V-1"}
    ward = "Cardio^^^^^CHU-X&1.2.250.1.999.1&ISO^UF^^^4001"
    icu = "Réa^^^^^CHU-X&1.2.250.1.999.1&ISO^UF^^^4002"
    msgs = [
        adt("A05", "V-1", **common, patient_class="P", movement="M1", when="20240301080000"),
        adt("A01", "V-2", **common, movement="M2", when="20240302090000", unit=ward),
        adt("A02", "V-3", **common, movement="M3", when="20240303100000", unit=icu),
    ]
    acks = await send(port, *(m.encode() for m in msgs))
    assert [a.code for a in acks] == ["AA"] * 3, acks
    enc = await one(client, "Encounter", identifier=f"urn:oid:{IPP_OID}|V-1")
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "IMP"
    units = [(loc["location"]["identifier"]["value"], loc["status"]) for loc in enc["location"]]
    assert units == [("4001", "completed"), ("4001", "completed"), ("4002", "active")]

    # A12 cancels the transfer M3: the ICU movement disappears, the ward is current again.
    cancel = adt("A12", "V-4", **common, movement="M3", action="CANCEL", unit=icu)
    assert (await send_one(port, cancel.encode())).code == "AA"
    enc = await one(client, "Encounter", identifier=f"urn:oid:{IPP_OID}|V-1")
    assert [loc["location"]["identifier"]["value"] for loc in enc["location"]] == ["4001", "4001"]
    assert enc["location"][-1]["status"] == "active" and "end" not in enc["location"][-1].get("period", {})

    steps = [
        ("A21", "M4", "INSERT", "onleave"),
        ("A52", "M4", "CANCEL", "in-progress"),
        ("A21", "M5", "INSERT", "onleave"),
        ("A22", "M6", "INSERT", "in-progress"),
        ("A53", "M6", "CANCEL", "onleave"),
        ("A22", "M7", "INSERT", "in-progress"),
        ("A07", "M8", "INSERT", "in-progress"),
        ("A06", "M9", "INSERT", "in-progress"),
        ("A03", "M10", "INSERT", "finished"),
        ("A13", "M10", "CANCEL", "in-progress"),
        ("A03", "M11", "INSERT", "finished"),
    ]
    for i, (event, movement, action, status) in enumerate(steps):
        msg = adt(event, f"V-S{i}", **common, movement=movement, action=action, when=f"2024031{i % 10}120000")
        ack = await send_one(port, msg.encode())
        assert ack.code == "AA", (event, ack)
        enc = await one(client, "Encounter", identifier=f"urn:oid:{IPP_OID}|V-1")
        assert enc["status"] == status, (event, enc["status"])
        if event == "A07":
            assert enc["class"]["code"] == "AMB"
        if event == "A06":
            assert enc["class"]["code"] == "IMP"
        if event == "A13":
            assert "end" not in enc["period"]
    assert enc["period"]["end"].startswith("2024-03-10T12:00:00")

    # A11 cancels the admission of another visit.
    other = {"ipp": "IPP-V", "visit": "V-2"}
    a01 = adt("A01", "V-X1", **other, movement="N1")
    a11 = adt("A11", "V-X2", **other, movement="N1", action="CANCEL")
    assert [a.code for a in await send(port, a01.encode(), a11.encode())] == ["AA", "AA"]
    assert (await one(client, "Encounter", identifier=f"urn:oid:{IPP_OID}|V-2"))["status"] == "cancelled"

    # Cancelling a visit never heard of: AE, unknown key.
    ack = await send_one(port, adt("A13", "V-X3", ipp="IPP-V", visit="V-404").encode())
    assert ack.code == "AE" and ack.seg("ERR")[3].startswith("204^")


async def test_accents_in_latin1_and_utf8_over_the_socket(mllp) -> None:
    client, port = mllp
    latin = adt("A28", "CS-1", ipp="IPP-L1", family="LEFÈVRE", given="HÉLÈNE", charset="8859/1")
    raw = latin.encode("latin-1")
    assert "È".encode() not in raw and "È".encode("latin-1") in raw  # the socket bytes are ISO-8859-1
    ack = await send_one(port, raw, codec="latin-1")
    assert ack.code == "AA", ack
    assert ack.seg("MSH")[17] == "8859/1"
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-L1")
    assert patient["name"][0]["family"] == "LEFÈVRE" and patient["name"][0]["given"] == ["HÉLÈNE"]

    utf8 = adt("A28", "CS-2", ipp="IPP-U1", family="NÚÑEZ-ØSTERGÅRD", given="BÉRÉNICE", charset="UNICODE UTF-8")
    ack = await send_one(port, utf8.encode("utf-8"))
    assert ack.code == "AA", ack
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-U1")
    assert patient["name"][0]["family"] == "NÚÑEZ-ØSTERGÅRD"

    # Escaped separators in a name: \S\ is ^, \T\ is &.
    escaped = adt("A28", "CS-3", ipp="IPP-E1", family="O\\T\\BRIEN", given="ANNE")
    assert (await send_one(port, escaped.encode())).code == "AA"
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-E1")
    assert patient["name"][0]["family"] == "O&BRIEN"


async def test_segment_terminators_cr_lf_crlf(mllp) -> None:
    client, port = mllp
    base = adt("A28", "T-0", ipp="IPP-T")
    for i, sep in enumerate(("\r", "\n", "\r\n")):
        msg = base.replace("T-0", f"T-{i}").replace("\r", sep)
        ack = await send_one(port, msg.encode())
        assert (ack.code, ack.acked_id) == ("AA", f"T-{i}"), ack
    assert len(await search(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-T")) == 1


async def test_duplicate_control_ids(mllp) -> None:
    client, port = mllp
    first = adt("A28", "DUP-1", ipp="IPP-D", family="DOUBLE")
    changed = adt("A28", "DUP-1", ipp="IPP-D", family="CHANGED")
    ack1, ack2 = await send(port, first.encode(), changed.encode())
    assert ack1.text == ack2.text  # the same ACK, the second message not processed
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-D")
    assert patient["name"][0]["family"] == "DOUBLE" and patient["meta"]["versionId"] == "1"
    # The same control id from another sending application is another message.
    other = changed.replace("MSH|^~\\&|GAM|", "MSH|^~\\&|GAM2|")
    assert (await send_one(port, other.encode())).code == "AA"
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-D")
    assert patient["name"][0]["family"] == "CHANGED"


async def test_malformed_messages_get_ar_with_err_and_the_server_keeps_going(mllp) -> None:
    client, port = mllp
    good = adt("A28", "M-OK", ipp="IPP-M")
    cases = {
        b"this is not HL7 at all": ("AR", "100"),
        b"MSH|^~": ("AR", "100"),
        adt("A28", "M-1", ipp="IPP-M").replace("ADT^A28", "XYZ^A28").encode(): ("AR", "200"),
        adt("A14", "M-2", ipp="IPP-M").encode(): ("AE", "201"),
        adt("A28", "M-3", ipp="").encode(): ("AR", "101"),
        adt("A28", "M-4", ipp="IPP-M", birth="19801341").encode(): ("AR", "102"),
        adt("A28", "M-5", ipp="IPP-M").replace("\rEVN|", "\r%%%|").encode(): ("AR", "100"),
        (good.replace("M-OK", "M-6").split("\rPID")[0] + "\r").encode(): ("AR", "100"),  # no PID
        b"": ("AR", "100"),
    }
    for raw, (code, err) in cases.items():
        ack = await send_one(port, raw)
        assert ack.code == code, (raw[:40], ack)
        assert ack.has("ERR") and ack.seg("ERR")[3].startswith(f"{err}^"), (raw[:40], ack)
    ack = await send_one(port, good.encode())
    assert ack.code == "AA"
    assert len(await search(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-M")) == 1


async def test_every_processed_message_is_audited(mllp) -> None:
    client, port = mllp
    ack = await send_one(port, adt("A28", "AUD-1", ipp="IPP-AUD").encode())
    assert ack.code == "AA"
    patient = await one(client, "Patient", identifier=f"urn:oid:{IPP_OID}|IPP-AUD")
    events = await search(client, "AuditEvent", entity=f"Patient/{patient['id']}")
    imports = [e for e in events if e["type"]["code"] == "110107"]
    assert len(imports) == 1
    event = imports[0]
    assert {s["code"] for s in event["subtype"]} == {"ADT", "A28"}
    assert event["outcome"] == "0" and event["agent"][0]["who"]["identifier"]["value"] == "GAM"
    assert event["entity"][0]["what"]["identifier"]["value"] == "GAM|AUD-1"
    refused = await send_one(port, adt("A14", "AUD-2", ipp="IPP-AUD").encode())
    assert refused.code == "AE"
    events = await search(client, "AuditEvent", subtype="http://terminology.hl7.org/CodeSystem/v2-0003|A14")
    assert any(e["outcome"] == "4" and e["type"]["code"] == "110107" for e in events)
