"""Shared pieces of the HL7 v2 tests: an in-process server with its MLLP listener, an MLLP client over a
real socket, ACK parsing, and builders for the PAM France messages the ANS fixtures lack."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from tests.conftest import SHARED, TEST_BASE, make_settings, token_for

FIXTURES = SHARED / "fixtures"
HL7 = FIXTURES / "hl7v2"
PAM = HL7 / "pam-fr"
TRANS = HL7 / "trans-doc-cda-hl7v2"
LPS = HL7 / "trans-lps-cda-mssante"
INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
IPP_OID = "1.2.250.1.213.4.5.2.4"
FR_CORE = "https://hl7.fr/ig/fhir/core"
RELIABILITY = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ack:
    """A received ACK: raw text and its segments as lists of fields (`seg("MSA")[1]` is MSA-1)."""

    def __init__(self, raw: bytes, codec: str = "utf-8") -> None:
        self.raw = raw
        self.text = raw.decode(codec)
        self.segments = [s.split("|") for s in self.text.split("\r") if s]

    def seg(self, name: str) -> list[str]:
        return next(s for s in self.segments if s[0] == name)

    def has(self, name: str) -> bool:
        return any(s[0] == name for s in self.segments)

    @property
    def code(self) -> str:
        return self.seg("MSA")[1]

    @property
    def acked_id(self) -> str:
        return self.seg("MSA")[2]

    @property
    def detail(self) -> str:
        msa = self.seg("MSA")
        return msa[3] if len(msa) > 3 else ""

    def __repr__(self) -> str:
        return f"Ack({self.text!r})"


async def send(port: int, *messages: bytes, codec: str = "utf-8", timeout: float = 60) -> list[Ack]:  # noqa: ASYNC109
    """Send MLLP-framed messages on one connection; their ACKs."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acks = []
    try:
        for message in messages:
            writer.write(b"\x0b" + message + b"\x1c\x0d")
            await writer.drain()
            frame = await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), timeout)
            assert frame.startswith(b"\x0b")
            acks.append(Ack(frame[1:-2], codec))
    finally:
        writer.close()
        await writer.wait_closed()
    return acks


async def send_one(port: int, message: bytes, codec: str = "utf-8") -> Ack:
    return (await send(port, message, codec=codec))[0]


@asynccontextmanager
async def hl7_server(
    ferretdb_uri: str, data_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, int]]:
    """The app with its MLLP listener on a free port (or `mllp_port`): (app, FHIR client, MLLP port)."""
    port = overrides.pop("mllp_port", None) or free_port()
    settings = make_settings(ferretdb_uri, data_dir, mllp_port=port, **overrides)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
        headers = {"Authorization": f"Bearer {token_for(settings)}"}
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/", headers=headers) as client:
            yield app, client, port


def with_header(raw: bytes, control_id: str, *, event: str | None = None, sender: str | None = None) -> bytes:
    """A fixture with another MSH-10 (and MSH-9 event, MSH-3): the ANS examples all use control id 015."""
    sep = b"\r\n" if b"\r\n" in raw else b"\r" if b"\r" in raw and b"\n" not in raw else b"\n"
    start = raw.find(b"MSH")
    head, rest = raw[:start], raw[start:]
    lines = rest.split(sep)
    fields = lines[0].split(b"|")
    fields[9] = control_id.encode()
    if event:
        parts = fields[8].split(b"^")
        parts[1] = event.encode()
        fields[8] = b"^".join(parts)
    if sender:
        fields[2] = sender.encode()
    lines[0] = b"|".join(fields)
    return head + sep.join(lines)


def adt(
    event: str,
    control_id: str,
    *,
    ipp: str,
    family: str = "DUPONT",
    given: str = "JEAN",
    birth: str = "19800101",
    sex: str = "M",
    ins: str | None = None,
    ins_root: str = "1.2.250.1.213.1.4.10",
    visit: str | None = None,
    patient_class: str = "I",
    movement: str | None = None,
    action: str = "INSERT",
    when: str = "20240306110000",
    unit: str = "Cardio^^^^^CHU-X&1.2.250.1.999.1&ISO^UF^^^4001",
    status: str = "VALI",
    charset: str = "UNICODE UTF-8",
    usual_name: str | None = None,
    extra: list[str] | None = None,
    ipp_authority: str = f"CHU-X&{IPP_OID}&ISO",
    pv1_extra: dict[int, str] | None = None,
    structure: str = "ADT_A01",
) -> str:
    """An IHE PAM France ADT message (segments separated by CR), as text."""
    ids = [f"{ipp}^^^{ipp_authority}^PI"]
    if ins:
        ids.append(f"{ins}^^^ASIP-SANTE-INS-NIR&{ins_root}&ISO^INS")
    names = [f"{family}^{given}^{given}^^^^L"]
    if usual_name:
        names.append(f"{usual_name}^{given}^^^^^D")
    pid = ["PID", "1", "", "~".join(ids), "", "~".join(names), "", birth, sex, "", ""]
    pid += ["12 rue de la Paix^^PARIS^^75002^FRA^H~^^^^^^BDL^^63220"]
    pid += [""] * (32 - len(pid)) + [status]
    segments = [
        f"MSH|^~\\&|GAM|CHU-X|FHIR|CHU-X|{when}||ADT^{event}^{structure}|{control_id}|P|2.5^FRA^2.11|||||FRA|{charset}"
        "|||2.11^IHE_FRANCE-2.11-PAM",
        f"EVN||{when}||||{when}",
        "|".join(pid),
    ]
    if visit:
        pv1 = ["PV1", "1", patient_class, "CARDIO^101^A^CHU-X"] + [""] * 16
        pv1[19] = f"{visit}^^^CHU-X&{IPP_OID}&ISO^VN"
        for n, value in (pv1_extra or {}).items():
            pv1 += [""] * (n + 1 - len(pv1))
            pv1[n] = value
        segments.append("|".join(pv1))
        if movement:
            segments.append(f"ZBE|{movement}^CHU-X^1.2.250.1.999.2^ISO|{when}||{action}|N||{unit}|{unit}|HMS")
    segments += extra or []
    return "\r".join(segments) + "\r"


async def search(client: httpx.AsyncClient, rtype: str, **params: str) -> list[dict[str, Any]]:
    r = await client.get(rtype, params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


async def one(client: httpx.AsyncClient, rtype: str, **params: str) -> dict[str, Any]:
    found = await search(client, rtype, **params)
    assert len(found) == 1, found
    return found[0]
