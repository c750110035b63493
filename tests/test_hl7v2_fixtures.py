"""Every HL7 v2 message of the ANS examples (`../shared/fixtures/hl7v2/`, and the DRIM-M messages) sent
over a real MLLP socket gets the ACK the examples expect.

The examples all use MSH-10 `015`; each is sent with its own control id (a repeated MSH-3|MSH-10 is a
duplicate by design). Where the example has an ACK file, ours must agree on MSA-1, on the acknowledged
event (MSH-9) and on the version (MSH-12); the examples without one (ZAM business acks, some MDM^T02)
must be accepted (AA). Within a volet, the initial transmission goes first, then the replacement,
then the deletion, as a sender would send them.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.test_hl7v2_support import FIXTURES, HL7, Ack, hl7_server, search, send_one, with_header

STEPS = {"transmission-initiale": 0, "remplacement": 1, "suppression": 2}


def volets() -> dict[str, list[Path]]:
    """Message files grouped by volet version directory, in sending order."""
    groups: dict[str, list[Path]] = {}
    for path in sorted([*HL7.rglob("*.er7"), *HL7.rglob("*.hl7")]):
        if path.stem.startswith("ack"):
            continue
        rel = path.relative_to(HL7)
        group = "/".join(p for p in rel.parts[:-1] if p not in STEPS)
        groups.setdefault(group, []).append(path)
    for files in groups.values():
        files.sort(key=lambda p: (next((STEPS[x] for x in p.parts if x in STEPS), 0), "Base64" in p.name, p.name))
    return groups


VOLETS = volets()


def expected_ack(message: Path) -> Ack | None:
    for name in ("ack.er7", "ack.hl7"):
        candidate = message.parent / name
        if candidate.exists():
            return Ack(candidate.read_bytes().replace(b"\n", b"\r"))
    return None


def control_id(path: Path) -> str:
    return "F" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


@pytest.fixture
async def mllp(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple]:
    """A fresh server (and database) per test: each ANS example set stands alone (the sets reuse the same
    CDA documents for different patients, which one database rightly refuses)."""
    async with hl7_server(ferretdb_uri, tmp_path_factory.mktemp("hl7fix")) as (_app, client, port):
        yield client, port


def test_the_fixture_tree_is_all_here() -> None:
    messages = [p for files in VOLETS.values() for p in files]
    assert len(messages) == 46
    assert {p.parts[-2] for p in messages} >= set(STEPS)


@pytest.mark.parametrize("volet", sorted(VOLETS))
async def test_each_ans_message_gets_the_expected_ack(mllp, volet: str) -> None:
    client, port = mllp
    for path in VOLETS[volet]:
        cid = control_id(path)
        ack = await send_one(port, with_header(path.read_bytes(), cid))
        name = path.relative_to(HL7)
        assert ack.acked_id == cid, (name, ack)
        expected = expected_ack(path)
        if expected is not None and path.name.startswith("Message_metier"):
            expected = None  # the folder's ACK answers its ORU, not the ZAM business acks next to it
        if expected is None:
            assert ack.code == "AA", (name, ack)
            continue
        assert ack.code == expected.code, (name, ack)
        assert ack.seg("MSH")[8].split("^")[:2] == expected.seg("MSH")[8].split("^")[:2], (name, ack)
        assert ack.seg("MSH")[11] == expected.seg("MSH")[11], (name, ack)
    # Every document message produced a DocumentReference for its patient.
    if "pam-fr" not in volet:
        assert await search(client, "DocumentReference", _count="1")


async def test_drim_m_study_cancellation_omi(mllp) -> None:
    client, port = mllp
    raw = (FIXTURES / "drim-m" / "hl7v2" / "exam-W" / "CR_W_Suppression-OMI.hl7").read_bytes()
    ack = await send_one(port, with_header(raw, "OMI-W"))
    assert ack.code == "AA", ack
    assert ack.seg("MSH")[8].startswith("ACK^O23")
    order = (await search(client, "ServiceRequest", identifier="urn:dicom:uid|urn:oid:1.2.250.1.213.4.5.2.1.124"))[0]
    assert order["status"] == "revoked"
    accession = next(i for i in order["identifier"] if i["type"]["coding"][0]["code"] == "ACSN")
    assert accession["value"] == "ACN124"
    assert order["note"][0]["text"] == "Modification Examen Imagerie"


async def test_drim_m_poc_oru_without_pid_is_rejected(mllp) -> None:
    """The PoC's unit-test ORU: MSH and OBX only, a line break inside an OBX label, MSH-18 8859/1 with
    UTF-8 bytes. It cannot be filed (no patient): AR with an ERR saying why, and no crash."""
    _client, port = mllp
    raw = (FIXTURES / "drim-m" / "poc" / "patient1.hl7").read_bytes()
    ack = await send_one(port, raw, codec="latin-1")
    assert ack.code == "AR" and ack.acked_id == "104"
    assert ack.seg("ERR")[3].startswith("100^") and "PID" in ack.seg("ERR")[8]
