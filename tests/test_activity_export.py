"""`$activity-export` (spec §2.14, acceptance test 14): one row per addressee, the 13 §3.1.3.5 columns,
no patient identity, monthly active users from login AuditEvents, 17-month-old data still there, and who
may ask for it."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server import audit
from fhir_server.auth.tokens import mint_token
from fhir_server.config import Settings
from fhir_server.storage.store import history_id, stamp
from tests.conftest import TEST_BASE, token_for
from tests.helpers import outcome_of

BASE = "https://fhir-server.example/fhir"
KIND = f"{BASE}/CodeSystem/organization-kind"
ROLE = f"{BASE}/CodeSystem/teleexpertise-role"
TYPE = f"{BASE}/CodeSystem/teledossier-type"
STATUS = f"{BASE}/CodeSystem/teledossier-status"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
FINEG = {"coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "FINEG"}]}
COLUMNS = [
    "id_teledossier",
    "type",
    "date_creation",
    "auteur",
    "communaute_auteur",
    "structure_auteur",
    "professionnel_destinataire",
    "communaute_destinataire",
    "structure_destinataire",
    "etude_dicom",
    "statut",
    "date_cr",
    "auteur_cr",
]
# Patient identity that must never leave through the export.
PATIENT_NAME, PATIENT_GIVEN, INS, IPP = "Secretnom", "Confidentielle", "270023417299988", "IPP-778899"

NOW = datetime.now(UTC)
RECENT = NOW - timedelta(days=10)
OLD = NOW - timedelta(days=510)  # 17 months ago


def month_back(months: int) -> str:
    y, m = NOW.year, NOW.month - months
    while m <= 0:
        y, m = y - 1, m + 12
    return f"{y:04d}-{m:02d}"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def put(app: Any, resource: dict[str, Any], lu: datetime | None = None) -> dict[str, Any]:
    """Store a resource as it is (test data written directly, whatever wrote it in real life)."""
    ctx = app.state.server
    version = await ctx.store.write(resource["resourceType"], resource["id"], resource)
    if lu is not None:
        await backdate(app, resource["resourceType"], resource["id"], lu)
    return version.resource


async def backdate(app: Any, rtype: str, rid: str, lu: datetime) -> None:
    db = app.state.server.database
    await db.resources(rtype).update_one({"_id": rid}, {"$set": {"lu": lu}})
    await db.history.update_many({"t": rtype, "id": rid}, {"$set": {"lu": lu}})


async def insert_audit(app: Any, rid: str, event: dict[str, Any], when: datetime) -> None:
    """An AuditEvent recorded at `when` (as the audit trail would have written it then)."""
    ctx = app.state.server
    lu = when.replace(microsecond=0)
    stored = stamp({**event, "recorded": iso(when)}, rid, 1, lu)
    await ctx.database.ensure_type_indexes("AuditEvent")
    await ctx.database.history.insert_one(
        {"_id": history_id("AuditEvent", rid, 1), "t": "AuditEvent", "id": rid, "v": 1, "lu": lu}
        | {"op": "create", "res": stored}
    )
    await ctx.database.resources("AuditEvent").insert_one(
        {"_id": rid, "v": 1, "lu": lu, "res": stored, "i": ctx.store.index_fn(stored)}
    )


def login(user: str | None, ok: bool = True, client: str = "app") -> dict[str, Any]:
    who = {"reference": user} if user else {"identifier": {"value": client}}
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114"},
        "subtype": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110122"}],
        "action": "E",
        "recorded": iso(NOW),
        "outcome": "0" if ok else "4",
        "agent": [{"who": who, "requestor": True}],
        "source": {"observer": {"display": "fhir-server"}},
    }


def org(rid: str, name: str, parent: str | None = None, finess: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Organization",
        "id": rid,
        "name": name,
        "type": [{"coding": [{"system": KIND, "code": "communaute" if parent else "structure"}]}],
    }
    if parent:
        res["partOf"] = {"reference": f"Organization/{parent}"}
    if finess:
        res["identifier"] = [{"type": FINEG, "system": "https://finess.esante.gouv.fr", "value": finess}]
    return res


def person(rid: str, rpps: str, family: str, given: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": rid,
        "identifier": [{"system": RPPS, "value": rpps}],
        "name": [{"use": "official", "family": family, "given": [given]}],
    }


def role(rid: str, practitioner: str, organization: str, profile: str = "ps") -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": rid,
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner}"},
        "organization": {"reference": f"Organization/{organization}"},
        "code": [{"coding": [{"system": ROLE, "code": profile}]}],
    }


def dossier(rid: str, number: str, kind: str, authored: datetime, requester: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "identifier": [{"system": f"{BASE}/sid/teledossier", "value": number}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": TYPE, "code": kind}]}],
        "subject": {"reference": "Patient/secret"},
        "requester": {"reference": f"PractitionerRole/{requester}"},
        "authoredOn": iso(authored),
        **extra,
    }


def task(rid: str, request: str, owner: str, status: str, **extra: Any) -> dict[str, Any]:
    fhir_status = {"repondu": "completed", "recuse": "rejected"}.get(status, "requested")
    return {
        "resourceType": "Task",
        "id": rid,
        "status": fhir_status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{request}"},
        "basedOn": [{"reference": f"ServiceRequest/{request}"}],
        "for": {"reference": "Patient/secret"},
        "owner": {"reference": owner},
        "businessStatus": {"coding": [{"system": STATUS, "code": status}]},
        **extra,
    }


@pytest.fixture(scope="module")
async def region(app: Any) -> None:
    """Two structures exchanging dossiers, a third one elsewhere, their people and dossiers."""
    for resource in (
        org("s-beziers", "CH de Béziers", finess="340780477"),
        org("c-urgences", "Urgences adultes", parent="s-beziers"),
        org("s-chu", "CHU de Montpellier", finess="340780055"),
        org("c-unv", "Unité neuro-vasculaire", parent="s-chu"),
        org("c-neurochir", "Neurochirurgie", parent="s-chu"),
        org("s-rodez", "CH de Rodez", finess="120780044"),
        org("c-nephro", "Néphrologie", parent="s-rodez"),
        person("p-lefevre", "10101010101", "Lefèvre", "Hélène"),
        person("p-muller", "10000000002", "Müller", "François"),
        person("p-admin-chu", "10000000003", "Admin", "Locale"),
        person("p-region", "10000000004", "Admin", "Régionale"),
        person("p-ps", "10000000005", "Simple", "Soignant"),
        role("r-lefevre", "p-lefevre", "c-urgences"),
        role("r-muller", "p-muller", "c-unv"),
        role("r-admin-chu", "p-admin-chu", "s-chu", "admin-local"),
        role("r-region", "p-region", "s-beziers", "admin-regional"),
        role("r-ps", "p-ps", "c-neurochir"),
        {
            "resourceType": "Patient",
            "id": "secret",
            "identifier": [
                {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": INS},
                {"system": "urn:oid:1.2.250.1.71.4.2.7", "value": IPP},
            ],
            "name": [{"use": "official", "family": PATIENT_NAME, "given": [PATIENT_GIVEN]}],
            "birthDate": "1961-07-14",
        },
        {
            "resourceType": "ImagingStudy",
            "id": "study-1",
            "status": "available",
            "subject": {"reference": "Patient/secret"},
            "basedOn": [{"reference": "ServiceRequest/sr-avc"}],
        },
        {
            "resourceType": "DiagnosticReport",
            "id": "cr-1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85208-7"}]},
            "subject": {"reference": "Patient/secret"},
            "basedOn": [{"reference": "ServiceRequest/sr-avc"}],
            "issued": iso(RECENT + timedelta(hours=1)),
            "performer": [{"reference": "PractitionerRole/r-muller"}],
        },
        # A Télé-AVC dossier addressed to two communautés of the CHU: two rows.
        dossier("sr-avc", "TLD-0001", "tele-avc", RECENT, "r-lefevre"),
        task(
            "t-unv",
            "sr-avc",
            "PractitionerRole/r-muller",
            "repondu",
            restriction={"recipient": [{"reference": "Organization/c-unv"}]},
            output=[{"type": {"text": "CR"}, "valueReference": {"reference": "DiagnosticReport/cr-1"}}],
        ),
        task("t-neurochir", "sr-avc", "Organization/c-neurochir", "en-attente-reponse"),
        # 17 months old, from Béziers to Rodez, récusé.
        dossier("sr-greffe", "TLD-0002", "greffe-renale", OLD, "r-lefevre"),
        task("t-nephro", "sr-greffe", "Organization/c-nephro", "recuse"),
        # Out of every range asked below, and a ServiceRequest that is not a dossier.
        dossier("sr-ancient", "TLD-0003", "tle-programmee", NOW - timedelta(days=1500), "r-lefevre"),
        {
            "resourceType": "ServiceRequest",
            "id": "sr-lab",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/secret"},
            "authoredOn": iso(RECENT),
        },
    ):
        await put(app, resource)


def rows_of(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.reader(io.StringIO(response.text))
    header = next(reader)
    assert header == COLUMNS
    return [dict(zip(header, line, strict=True)) for line in reader]


async def export(client: httpx.AsyncClient, start: datetime, end: datetime, **params: str) -> httpx.Response:
    query = {"start": start.date().isoformat(), "end": end.date().isoformat(), **params}
    return await client.get("$activity-export", params=query)


async def test_one_row_per_addressee_with_the_13_columns(client: httpx.AsyncClient, region: None) -> None:
    r = await export(client, NOW - timedelta(days=30), NOW, _format="csv")
    rows = rows_of(r)
    assert "attachment" in r.headers["content-disposition"]
    assert [row["id_teledossier"] for row in rows] == ["TLD-0001", "TLD-0001"]
    by_communaute = {row["communaute_destinataire"]: row for row in rows}
    answered, waiting = by_communaute["Unité neuro-vasculaire"], by_communaute["Neurochirurgie"]
    for row in rows:
        assert row["type"] == "Télé-AVC"
        assert datetime.fromisoformat(row["date_creation"]) == RECENT.replace(microsecond=0)
        assert row["date_creation"].endswith(("+01:00", "+02:00"))  # Paris time, to the second
        assert row["auteur"] == "Lefèvre Hélène (10101010101)"
        assert row["communaute_auteur"] == "Urgences adultes"
        assert row["structure_auteur"] == "CH de Béziers (340780477)"
        assert row["structure_destinataire"] == "CHU de Montpellier (340780055)"
        assert row["etude_dicom"] == "oui"
    assert answered["professionnel_destinataire"] == "Müller François (10000000002)"
    assert answered["statut"] == "Répondu"
    cr_time = datetime.fromisoformat(answered["date_cr"])
    assert cr_time == (RECENT + timedelta(hours=1)).replace(microsecond=0)
    assert answered["auteur_cr"] == "Müller François (10000000002)"
    assert waiting["professionnel_destinataire"] == "" and waiting["date_cr"] == "" and waiting["auteur_cr"] == ""
    assert waiting["statut"] == "En attente de réponse"
    # Anonymised: nothing of the patient's identity.
    for secret in (PATIENT_NAME, PATIENT_GIVEN, INS, IPP, "1961", "secret"):
        assert secret not in r.text


async def test_json_rows_carry_the_same_columns_structured(client: httpx.AsyncClient, region: None) -> None:
    r = await export(client, NOW - timedelta(days=30), NOW, _format="json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert [c["name"] for c in body["columns"]] == COLUMNS
    assert len(body["rows"]) == 2
    row = next(x for x in body["rows"] if x["statut"] == "Répondu")
    assert set(row) == set(COLUMNS)
    assert row["auteur"] == {"id": "10101010101", "nom": "Lefèvre", "prenom": "Hélène"}
    assert row["structure_destinataire"] == {"id": "340780055", "libelle": "CHU de Montpellier"}
    assert PATIENT_NAME not in r.text and INS not in r.text and IPP not in r.text
    # Accept: text/csv works as _format=csv does; JSON is the default.
    r = await client.get("$activity-export", params={"start": (NOW - timedelta(days=30)).date().isoformat()})
    assert r.headers["content-type"].startswith("application/json")
    r = await client.get(
        "$activity-export",
        params={"start": (NOW - timedelta(days=30)).date().isoformat()},
        headers={"Accept": "text/csv"},
    )
    assert len(rows_of(r)) == 2


async def test_17_month_old_dossiers_are_still_exported(client: httpx.AsyncClient, region: None) -> None:
    rows = rows_of(await export(client, OLD - timedelta(days=20), OLD + timedelta(days=20), _format="csv"))
    assert len(rows) == 1
    (row,) = rows
    assert row["id_teledossier"] == "TLD-0002" and row["type"] == "Greffe rénale"
    assert row["statut"] == "Récusé" and row["etude_dicom"] == "non"
    assert (
        row["communaute_destinataire"] == "Néphrologie" and row["structure_destinataire"] == "CH de Rodez (120780044)"
    )


async def test_monthly_active_users_and_their_retention(client: httpx.AsyncClient, app: Any, region: None) -> None:
    m17, m20 = month_back(17), month_back(20)
    mid17 = datetime.fromisoformat(f"{m17}-15T12:00:00+00:00")
    mid20 = datetime.fromisoformat(f"{m20}-15T12:00:00+00:00")
    events = [
        ("l1", login("Practitioner/p-lefevre"), mid17),
        ("l2", login("Practitioner/p-muller"), mid17 + timedelta(days=3)),
        ("l3", login("Practitioner/p-lefevre"), mid17 + timedelta(days=5)),  # same user again
        ("l4", login("Practitioner/p-ps", ok=False), mid17),  # a failed login is not activity
        ("l5", login("Practitioner/p-muller"), mid20),
        ("l6", login("Practitioner/p-ps"), NOW - timedelta(minutes=5)),
        ("l7", login(None, client="bi-connector"), mid17),  # a client's token request is not a user login
    ]
    for rid, event, when in events:
        await insert_audit(app, rid, event, when)
    # An ordinary AuditEvent as old as the 17-month logins: ordinary retention (400 days) removes it.
    rest = {**login(None), "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"}}
    await insert_audit(app, "rest-old", rest, mid17)

    await audit.purge_expired(app.state.server)
    ctx = app.state.server
    assert await ctx.database.resources("AuditEvent").find_one({"_id": "rest-old"}) is None
    assert await ctx.database.resources("AuditEvent").find_one({"_id": "l5"}) is None  # past 560 days
    assert await ctx.database.resources("AuditEvent").find_one({"_id": "l1"}) is not None

    r = await client.get("$activity-export", params={"report": "monthly-active-users", "month": m17})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["resourceType"] == "MeasureReport" and report["status"] == "complete"
    assert report["group"][0]["population"][0]["count"] == 2
    assert report["period"]["start"].startswith(f"{m17}-01T00:00:00")
    r = await client.get(
        "$activity-export", params={"report": "monthly-active-users", "start": m20, "end": m17, "_format": "csv"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == "mois,utilisateurs_actifs"
    assert lines[1] == f"{m20},0" and lines[-1] == f"{m17},2" and len(lines) == 5
    this_month = NOW.strftime("%Y-%m")
    r = await client.get("$activity-export", params={"report": "monthly-active-users", "month": this_month})
    assert r.json()["group"][0]["population"][0]["count"] >= 1
    bundle = (
        await client.get(
            "$activity-export", params={"report": "monthly-active-users", "start": m17, "end": month_back(16)}
        )
    ).json()
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 2


def user_token(settings: Settings, practitioner: str, scope: str = "user/*.read") -> dict[str, str]:
    token = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=TEST_BASE,
        scope=scope,
        lifetime=600,
        subject=f"Practitioner/{practitioner}",
        extra={"fhirUser": f"Practitioner/{practitioner}"},
    )
    return {"Authorization": f"Bearer {token}"}


async def test_who_may_export(client: httpx.AsyncClient, settings: Settings, region: None) -> None:
    window = {"start": (OLD - timedelta(days=20)).date().isoformat(), "end": NOW.date().isoformat(), "_format": "csv"}
    everything = rows_of(await client.get("$activity-export", params=window))
    assert sorted(r["id_teledossier"] for r in everything) == ["TLD-0001", "TLD-0001", "TLD-0002"]
    # A regional administrator sees the region; a local one the rows involving their structure.
    regional = await client.get("$activity-export", params=window, headers=user_token(settings, "p-region"))
    assert len(rows_of(regional)) == 3
    local = rows_of(await client.get("$activity-export", params=window, headers=user_token(settings, "p-admin-chu")))
    assert sorted(r["communaute_destinataire"] for r in local) == ["Neurochirurgie", "Unité neuro-vasculaire"]
    # A local administrator's monthly active users are those of their structure.
    mau = await client.get(
        "$activity-export",
        params={"report": "monthly-active-users", "month": month_back(17)},
        headers=user_token(settings, "p-admin-chu"),
    )
    assert mau.status_code == 200, mau.text
    assert mau.json()["group"][0]["population"][0]["count"] == 1  # Müller (CHU), not Lefèvre (Béziers)
    assert mau.json()["reporter"] == {"reference": "Organization/s-chu"}
    # Everyone else: 403 with an OperationOutcome.
    for headers in (
        user_token(settings, "p-ps"),  # a professional
        {"Authorization": f"Bearer {token_for(settings, 'system/Patient.read')}"},  # a narrow system client
        user_token(settings, "p-admin-chu", "user/Patient.read"),  # an admin whose token cannot read dossiers
    ):
        r = await client.get("$activity-export", params=window, headers=headers)
        assert r.status_code == 403, r.text
        outcome_of(r)
    r = await client.get("$activity-export", params=window, headers={"Authorization": ""})
    assert r.status_code == 401


async def test_bad_requests(client: httpx.AsyncClient, region: None) -> None:
    for params, status in (
        ({}, 400),
        ({"start": "yesterday"}, 400),
        ({"start": "2025-02-01", "end": "2025-01-01"}, 400),
        ({"start": "2025-01-01", "patient": "x"}, 400),
        ({"report": "monthly-active-users"}, 400),
        ({"report": "monthly-active-users", "month": "2025-13"}, 400),
        ({"report": "nope", "start": "2025-01-01"}, 400),
        ({"start": "2025-01-01", "_format": "xml"}, 406),
    ):
        r = await client.get("$activity-export", params=params)
        assert r.status_code == status, (params, r.text)
        outcome_of(r)


async def test_the_export_is_audited(client: httpx.AsyncClient, region: None) -> None:
    import base64

    await export(client, NOW - timedelta(days=3), NOW, _format="csv")
    r = await client.get("AuditEvent", params={"subtype": "operation", "_sort": "-_lastUpdated", "_count": "50"})
    queries = [
        base64.b64decode(e["resource"]["entity"][0]["query"]).decode()
        for e in r.json().get("entry", [])
        if e["resource"].get("entity") and e["resource"]["entity"][0].get("query")
    ]
    assert any("format=csv" in q and "start=" in q for q in queries), queries
