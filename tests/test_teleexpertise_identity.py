"""Patient identity when a télédossier is created without patient context (spec §8 tests 2 and 3, first half).

A real INSi double — an HTTP server on a local port that reads the SOAP "recherche par traits" and answers by
the birth name it is asked: one identity (test NIR), none, several, HTTP 500 with a SOAP fault, or nothing at
all (the client times out) — stands in for the CNAM téléservice. Users and tokens: test_teleexpertise_world.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from fhir_server.config import Settings
from tests.conftest import make_settings
from tests.http_sink import free_port, read_body, serve
from tests.test_teleexpertise_world import BASE, DOSSIER_TYPE, JSON, OPERATION, World, build_world

FR_CORE = "https://hl7.fr/ig/fhir/core"
RELIABILITY = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"
BIRTH_LIST = f"{FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_CODE = f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code"
IDENTITY_UNKNOWN = f"{BASE}/StructureDefinition/tlx-ext-identity-unknown"
TLX_PATIENT = f"{BASE}/StructureDefinition/tlx-patient"
TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
MATRICULE = "280033155512349"  # 2800331555123 and its key 49 (97 − n mod 97)
OUTCOME = {**JSON, "Prefer": "return=OperationOutcome"}

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
ANSWER = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>
<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat"><CR><CodeCR>{code}</CodeCR><LibelleCR>{label}</LibelleCR></CR>
{individual}</RESULTAT></soap:Body></soap:Envelope>"""
INDIVIDUAL = """<INDIVIDU><INSACTIF><IdIndividu><NumIdentifiant>2800331555123</NumIdentifiant><Cle>49</Cle>
<TypeMatricule>NIR</TypeMatricule></IdIndividu><OID>1.2.250.1.213.1.4.10</OID></INSACTIF>
<TIQ><NomNaissance>DUPONT-LAGARDE</NomNaissance><Prenom>HELENE</Prenom><ListePrenom>HELENE MARIE CLAIRE</ListePrenom>
<Sexe>F</Sexe><DateNaissance>1980-03-15</DateNaissance><LieuNaissance>31555</LieuNaissance></TIQ></INDIVIDU>"""
FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault>
<soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code>
<soap:Reason><soap:Text xml:lang="fr">Service momentanément indisponible</soap:Text></soap:Reason>
</soap:Fault></soap:Body></soap:Envelope>"""


@dataclass
class FakeINSi:
    """The INSi double: answers by NomNaissance (DUPONT-LAGARDE found, HOMONYME several, PANNE HTTP 500, LENT never,
    anything else none) and records the traits of every search."""

    base: str = ""
    searches: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        envelope = etree.fromstring(body)
        action = envelope.xpath("//*[local-name()='Header']/*[local-name()='Action']/text()")
        search = envelope.xpath("//*[local-name()='Body']/*[local-name()='RECSANSVITALE']")
        assert search and action == ["urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"], body
        assert search[0].nsmap[search[0].prefix] == "http://www.cnamts.fr/INSiRecSans"
        traits = {etree.QName(child).localname: child.text or "" for child in search[0]}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        traits["content-type"] = headers.get("content-type", "")
        with self.lock:
            self.searches.append(traits)
        name = traits.get("NomNaissance")
        if name == "LENT":
            await receive()  # never answers: returns when the client gives up and disconnects
            return
        status, text = 200, ANSWER.format(code="01", label="Aucune identite trouvee", individual="")
        if name == "PANNE":
            status, text = 500, FAULT
        elif name == "HOMONYME":
            text = ANSWER.format(code="02", label="Plusieurs identites trouvees", individual="")
        elif (name, traits.get("Prenom"), traits.get("Sexe")) == ("DUPONT-LAGARDE", "HELENE", "F"):
            text = ANSWER.format(code="00", label="OK", individual=INDIVIDUAL)
        content_type = b"application/soap+xml; charset=utf-8"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": text.encode()})

    def count(self) -> int:
        with self.lock:
            return len(self.searches)


@pytest.fixture(scope="module")
def insi() -> Iterator[FakeINSi]:
    yield from serve(FakeINSi())


def _certificate(
    path: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *, server: bool = False
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A PEM certificate and key in `path`: a CA when `issuer` is None, else a leaf signed by it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (path / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_insi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeINSi, Path]]:
    """The INSi double over HTTPS, requiring a client certificate from our CA (mutual TLS, as INSi does)."""
    pki = tmp_path_factory.mktemp("pki")
    ca = _certificate(pki, "ca", None)
    _certificate(pki, "insi", ca, server=True)
    _certificate(pki, "structure", ca)
    double = FakeINSi()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    double.base = f"https://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        double.app, log_level="warning", lifespan="off", interface="asgi3",
        ssl_certfile=str(pki / "insi.pem"), ssl_keyfile=str(pki / "insi.key"),
        ssl_ca_certs=str(pki / "ca.pem"), ssl_cert_reqs=ssl.CERT_REQUIRED,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the HTTPS INSi double did not start"
        time.sleep(0.02)
    try:
        yield double, pki
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, insi: FakeINSi) -> Settings:
    return make_settings(
        ferretdb_uri, tmp_path_factory.mktemp("data"), insi_url=insi.base + "/insi", insi_timeout_seconds=10
    )


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


@contextlib.contextmanager
def configured(app: Any, **values: Any) -> Iterator[None]:
    """Change the server's INSi settings for one test (they are read at each creation)."""
    settings = app.state.server.settings
    saved = {k: getattr(settings, k) for k in values}
    for k, v in values.items():
        setattr(settings, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(settings, k, v)


def typed_patient(family: str = "Dupont-Lagarde", **extra: Any) -> dict[str, Any]:
    """The traits as a user types them: lower case and accents, one given name, INSEE code of Toulouse."""
    insee = {"url": INSEE_CODE, "valueCoding": {"system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/"
                                                "FHIR/TRE-R13-CommuneOM", "code": "31555"}}  # fmt: skip
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": family, "given": ["Hélène"]}],
        "gender": "female",
        "birthDate": "1980-03-15",
        "extension": [{"url": BIRTH_PLACE, "valueAddress": {"extension": [insee]}}],
        "telecom": [{"system": "phone", "value": "+33600000000"}],
    }
    patient.update(extra)
    return {k: v for k, v in patient.items() if v is not None}


def dossier(patient: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    sr: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [{"coding": [{"system": DOSSIER_TYPE, "code": "tle-urgence"}]}],
        **extra,
    }
    if patient is not None:
        sr["subject"] = {"reference": "#" + patient["id"]}
        sr["contained"] = [patient]
    return sr


@dataclass
class Created:
    sr: dict[str, Any]
    patient: dict[str, Any]
    issues: list[dict[str, Any]]


async def create(world: World, body: dict[str, Any], user: str = "req", **params: str) -> Created:
    """POST the dossier asking for the OperationOutcome, then read what was created as its author would."""
    r = await world.client.post(
        "ServiceRequest",
        json=body,
        params={"communaute": world.orgs["C1"], **params},
        headers={**OUTCOME, **world.h(user)},
    )
    assert r.status_code == 201, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    location = r.headers["location"].split("/_history/")[0]
    sr = (await world.client.get(location, headers=world.h(user))).json()
    assert sr["resourceType"] == "ServiceRequest", sr
    assert sr["subject"]["reference"].startswith("Patient/") and "contained" not in sr
    patient = await world.get(user, sr["subject"]["reference"])
    assert patient.status_code == 200, patient.text
    # The téléexpertise Patient profile accepts it (checked again, explicitly, by $validate).
    checked = await world.client.post(
        "Patient/$validate", params={"profile": TLX_PATIENT}, json=patient.json(), headers={**JSON, **world.admin}
    )
    assert checked.status_code == 200, checked.text
    assert not [i for i in checked.json()["issue"] if i["severity"] != "information"], checked.text
    issues = [i for i in outcome["issue"] if i["diagnostics"] != f"ServiceRequest/{sr['id']} created"]
    return Created(sr, patient.json(), issues)


def reliability(patient: dict[str, Any]) -> dict[str, Any]:
    (ext,) = [e for e in patient.get("extension", []) if e["url"] == RELIABILITY]
    return {s["url"]: s.get("valueCoding", {}).get("code") or s.get("valueDate") for s in ext["extension"]}


def warning(created: Created, code: str) -> str:
    (issue,) = created.issues
    assert (issue["severity"], issue["code"]) == ("warning", code), issue
    return issue["diagnostics"]


def assert_provisional(patient: dict[str, Any]) -> None:
    """No INS, PROV, the traits as typed (the birth name kept, not INSi's spelling)."""
    assert not [i for i in patient.get("identifier", []) if i["system"].startswith("urn:oid:1.2.250.1.213.1.4.")]
    assert reliability(patient) == {"identityStatus": "PROV", "methodCollection": "SM"}
    assert patient["name"][0]["use"] == "official" and patient["name"][0]["given"] == ["Hélène"]
    assert TLX_PATIENT in patient["meta"]["profile"]


async def count(client: httpx.AsyncClient, rtype: str) -> int:
    r = await client.get(rtype, params={"_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


# ---- §8 test 2: INSi on creation without patient context -------------------------------------------------


async def test_found_identity_is_insi_s(world: World, client: httpx.AsyncClient, insi: FakeINSi) -> None:
    before = insi.count()
    created = await create(world, dossier(typed_patient()))
    assert insi.count() == before + 1
    sent = insi.searches[-1]
    # The traits go to INSi in the RNIV form (capitals, no accents), SOAP 1.2 with the operation as action.
    assert {k: sent.get(k) for k in ("NomNaissance", "Prenom", "Sexe", "DateNaissance", "LieuNaissance")} == {
        "NomNaissance": "DUPONT-LAGARDE",
        "Prenom": "HELENE",
        "Sexe": "F",
        "DateNaissance": "1980-03-15",
        "LieuNaissance": "31555",
    }
    assert sent["content-type"].startswith("application/soap+xml")

    patient = created.patient
    (ins,) = [i for i in patient["identifier"] if i["system"] == TEST_NIR]
    assert ins["value"] == MATRICULE and len(ins["value"]) == 15 and ins["use"] == "official"
    assert ins["type"]["coding"][0]["code"] == "INS-NIR-TEST"
    # The 5 strict traits are INSi's, not the typed ones (case, accents, all the given names).
    (official,) = [n for n in patient["name"] if n.get("use") == "official"]
    assert official["family"] == "DUPONT-LAGARDE" and official["given"] == ["HELENE"]
    assert [e["valueString"] for e in official["extension"] if e["url"] == BIRTH_LIST] == ["HELENE MARIE CLAIRE"]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1980-03-15")
    (place,) = [e for e in patient["extension"] if e["url"] == BIRTH_PLACE]
    assert place["valueAddress"]["extension"][0]["valueCoding"]["code"] == "31555"
    today = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    assert reliability(patient) == {"identityStatus": "RECUP", "methodCollection": "INSI", "dateCollection": today}
    assert patient["telecom"] == [{"system": "phone", "value": "+33600000000"}]  # the rest of what was typed
    assert TLX_PATIENT in patient["meta"]["profile"]
    (issue,) = created.issues
    assert issue["severity"] == "information" and "RECUP" in issue["diagnostics"]

    # The dossier's subject is that Patient, which carries the dossier's access list.
    pid = patient["id"]
    assert created.sr["subject"] == {"reference": f"Patient/{pid}"}
    for user in ("req", "c1b"):  # the author and the author's communauté
        assert pid in await world.search_ids(user, "Patient", identifier=f"{TEST_NIR}|{MATRICULE}")
    assert await world.search_ids("z1", "Patient", identifier=f"{TEST_NIR}|{MATRICULE}") == []
    assert await world.search_ids("z1", "Patient", family="DUPONT-LAGARDE") == []
    assert (await world.get("z1", f"Patient/{pid}")).status_code == 404
    # The creation's AuditEvent names the new Patient and says how its identity was obtained.
    r = await client.get(
        "AuditEvent", params={"entity": f"ServiceRequest/{created.sr['id']}", "subtype": f"{OPERATION}|create"}
    )
    (event,) = [e["resource"] for e in r.json()["entry"]]
    assert f"Patient/{pid}" in [e["what"]["reference"] for e in event["entity"]]
    details = [d["valueString"] for e in event["entity"] for d in e.get("detail", [])]
    assert any("identité récupérée (INSi)" in d for d in details), details
    # The dossier goes on as any other: sent to A, whose member then sees the Patient.
    await world.send(created.sr["id"], world.orgs["A"])
    assert (await world.get("a1", f"Patient/{pid}")).status_code == 200


async def test_found_identity_with_a_document_check_is_qualified(world: World, insi: FakeINSi) -> None:
    """The user checked an identity card (VALI, validationMode CN): with INSi's INS the identity is qualified."""
    mode = {"system": f"{FR_CORE}/CodeSystem/fr-core-cs-mode-validation-identity", "code": "CN"}
    checked = {
        "url": RELIABILITY,
        "extension": [
            {
                "url": "identityStatus",
                "valueCoding": {"system": f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0445", "code": "VALI"},
            },
            {"url": "validationMode", "valueCoding": mode},
            {"url": "validationDate", "valueDate": "2025-01-02"},
        ],
    }
    typed = typed_patient()
    typed["extension"].append(checked)
    created = await create(world, dossier(typed))
    assert reliability(created.patient)["identityStatus"] == "QUAL"
    assert reliability(created.patient)["validationMode"] == "CN"
    assert "identity status QUAL" in created.issues[0]["diagnostics"]
    # INSi down: the identity stays validated, without INS.
    typed = typed_patient("Panne")
    typed["extension"].append(checked)
    created = await create(world, dossier(typed))
    assert reliability(created.patient)["identityStatus"] == "VALI" and "status VALI" in warning(created, "transient")


async def test_insi_down_gives_a_provisional_identity(world: World, app: Any, insi: FakeINSi) -> None:
    closed = f"http://127.0.0.1:{free_port()}/insi"  # nothing listens there
    with configured(app, insi_url=closed):
        created = await create(world, dossier(typed_patient()))
    assert "INSi is unavailable" in warning(created, "transient")
    assert_provisional(created.patient)
    assert created.patient["name"][0]["family"] == "Dupont-Lagarde"


async def test_insi_error_gives_a_provisional_identity(world: World, insi: FakeINSi) -> None:
    before = insi.count()
    created = await create(world, dossier(typed_patient("Panne")))
    assert insi.count() == before + 1
    text = warning(created, "transient")
    assert "HTTP 500" in text and "Service momentanément indisponible" in text
    assert_provisional(created.patient)


async def test_several_identities_give_a_provisional_identity(world: World, insi: FakeINSi) -> None:
    created = await create(world, dossier(typed_patient("Homonyme")))
    assert "several identities" in warning(created, "multiple-matches")
    assert_provisional(created.patient)


async def test_no_identity_gives_a_provisional_identity(world: World, insi: FakeINSi) -> None:
    created = await create(world, dossier(typed_patient("Inconnu")))
    assert "no identity" in warning(created, "not-found")
    assert_provisional(created.patient)


async def test_insi_timeout_does_not_hold_the_creation(world: World, app: Any, insi: FakeINSi) -> None:
    before = insi.count()
    started = time.monotonic()
    with configured(app, insi_timeout_seconds=0.5):
        created = await create(world, dossier(typed_patient("Lent")))
    assert insi.count() == before + 1  # INSi was asked, and never answered
    assert time.monotonic() - started < 30
    assert "did not answer within 0.5 s" in warning(created, "timeout")
    assert_provisional(created.patient)


async def test_mutual_tls(world: World, app: Any, tls_insi: tuple[FakeINSi, Path]) -> None:
    """INSi over HTTPS with the structure's client certificate; without it, the TLS handshake fails."""
    double, pki = tls_insi
    tls = {"insi_url": double.base + "/insi", "insi_ca_file": pki / "ca.pem"}
    with configured(app, **tls, insi_client_cert=pki / "structure.pem", insi_client_key=pki / "structure.key"):
        created = await create(world, dossier(typed_patient()))
    assert reliability(created.patient)["identityStatus"] == "RECUP" and double.count() == 1
    with configured(app, **tls):
        created = await create(world, dossier(typed_patient()))
    assert "INSi cannot be reached" in warning(created, "transient") and double.count() == 1
    assert_provisional(created.patient)


async def test_insi_not_configured(world: World, app: Any, insi: FakeINSi) -> None:
    before = insi.count()
    with configured(app, insi_url=None):
        created = await create(world, dossier(typed_patient()))
    assert insi.count() == before
    assert "INSi is not configured" in warning(created, "not-supported")
    assert_provisional(created.patient)


async def test_traits_insi_cannot_search(world: World, insi: FakeINSi) -> None:
    """A gender other than male/female: INSi is not asked, the identity is provisional."""
    before = insi.count()
    created = await create(world, dossier(typed_patient(gender="unknown")))
    assert insi.count() == before
    assert "INSi was not queried" in warning(created, "incomplete")
    assert reliability(created.patient)["identityStatus"] == "PROV"


async def test_traits_with_an_ins_are_kept_without_insi(world: World, insi: FakeINSi) -> None:
    before = insi.count()
    typed = typed_patient(identifier=[{"system": TEST_NIR, "value": MATRICULE}])
    created = await create(world, dossier(typed))
    assert insi.count() == before
    (ins,) = created.patient["identifier"]
    assert (ins["system"], ins["value"], ins["use"]) == (TEST_NIR, MATRICULE, "official")
    assert ins["type"]["coding"][0]["code"] == "INS-NIR-TEST"
    assert created.patient["name"][0]["family"] == "Dupont-Lagarde"  # as given
    (issue,) = created.issues
    assert issue["severity"] == "information" and "INSi was not queried" in issue["diagnostics"]


# ---- §8 test 3 (first half): unknown identity ---------------------------------------------------------------


async def test_unknown_identity(world: World, insi: FakeINSi) -> None:
    before = insi.count()
    created = await create(world, dossier(), **{"identity-unknown": "true"})
    patient = created.patient
    assert patient["name"] == [{"use": "anonymous", "text": "Identité inconnue"}]
    assert [e["valueBoolean"] for e in patient["extension"] if e["url"] == IDENTITY_UNKNOWN] == [True]
    assert reliability(patient) == {"identityStatus": "PROV"}
    assert not patient.get("identifier") and "birthDate" not in patient and "gender" not in patient
    assert TLX_PATIENT in patient["meta"]["profile"]
    (issue,) = created.issues
    assert issue["severity"] == "information" and "unknown identity" in issue["diagnostics"]
    # A contained Patient without traits is an unknown identity too.
    created = await create(world, dossier({"resourceType": "Patient", "id": "x"}), **{"identity-unknown": "true"})
    assert created.patient["name"][0]["text"] == "Identité inconnue"
    assert insi.count() == before
    # The Patient is the dossier's: its author sees it, an outsider does not.
    assert (await world.get("z1", created.sr["subject"]["reference"])).status_code == 404


async def refused(world: World, body: dict[str, Any], status: tuple[int, ...], **params: str) -> str:
    r = await world.post("req", body, communaute=world.orgs["C1"], **params)
    assert r.status_code in status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error", outcome
    return outcome["issue"][0]["diagnostics"]


async def test_bad_requests_write_nothing(world: World, client: httpx.AsyncClient, insi: FakeINSi) -> None:
    counts = (await count(client, "Patient"), await count(client, "ServiceRequest"), insi.count())
    # No subject and no identity-unknown: 422 as before.
    assert "subject is a Patient" in await refused(world, dossier(), (422,))
    # A birth date that is not a FHIR date; security labels on a contained resource (dom-5).
    await refused(world, dossier(typed_patient(birthDate="15/03/1980")), (400, 422))
    vip = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}
    await refused(world, dossier(typed_patient(meta=vip)), (400, 422))
    # Strict traits missing.
    text = await refused(world, dossier(typed_patient(gender=None)), (422,))
    assert "sexe" in text and "identity-unknown=true" in text
    # A subject naming no contained resource.
    body = dossier(typed_patient())
    body["subject"] = {"reference": "#other"}
    assert "names no contained resource" in await refused(world, body, (422,))
    # A contained resource that is not a Patient.
    body = dossier({"resourceType": "Organization", "id": "p", "name": "X"})
    assert "subject is a Patient" in await refused(world, body, (422,))
    # An INS with a wrong key.
    bad = typed_patient(identifier=[{"system": TEST_NIR, "value": MATRICULE[:-2] + "00"}])
    assert "matricule INS" in await refused(world, dossier(bad), (422,))
    # identity-unknown with traits, with an existing Patient, or with a value that is not a boolean.
    assert "without traits" in await refused(world, dossier(typed_patient()), (422,), **{"identity-unknown": "true"})
    pid = await world.patient("req")
    body = dossier(subject={"reference": f"Patient/{pid}"})
    assert "must not name one" in await refused(world, body, (422,), **{"identity-unknown": "true"})
    await refused(world, dossier(), (400,), **{"identity-unknown": "yes"})
    counts_after = (await count(client, "Patient") - 1, await count(client, "ServiceRequest"), insi.count())
    assert counts_after == counts  # only world.patient() above was written; INSi never asked


async def test_default_answer_is_the_dossier(world: World, insi: FakeINSi) -> None:
    """Without Prefer, the 201 is the ServiceRequest as for any create; the identity is on its Patient."""
    r = await world.post("req", dossier(typed_patient("Homonyme")), communaute=world.orgs["C1"])
    assert r.status_code == 201, r.text
    sr = r.json()
    assert sr["resourceType"] == "ServiceRequest" and "contained" not in sr
    patient = (await world.get("req", sr["subject"]["reference"])).json()
    assert reliability(patient)["identityStatus"] == "PROV"
