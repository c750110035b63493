"""Activity data (CCTP §3.1.3.5, spec §2.14 R-60..R-63): one row per addressee Task, and monthly active users.

Rows are built from plain FHIR resources following the §7 mapping, whoever wrote them: the dossier
ServiceRequest (category `teledossier-type`, identifier `{BASE}/sid/teledossier`, authoredOn, requester
PractitionerRole, supportingInfo), its per-addressee Tasks (`focus` / `basedOn` = the ServiceRequest, owner,
`restriction.recipient`, businessStatus `teledossier-status`, output), the answering DiagnosticReport
(issued, performer), the annuaire (PractitionerRole → Practitioner, Organization communauté → `partOf`
structure) and ImagingStudy (`basedOn` the ServiceRequest). A dossier without any Task yields one row with
empty addressee columns (a draft, typically), so the export stays complete over the range.

Anonymised: no column is derived from the Patient (no name, INS, IPP, birth date); professionals and
organisations are not patient data and are named.

Streaming: ServiceRequests are read from one cursor (`_id` order) in batches of BATCH; each batch costs
three more queries (its Tasks, its DiagnosticReports by output reference, its ImagingStudies), and the
annuaire resources are looked up through a bounded cache. Memory stays flat whatever the range.

Monthly active users (R-61, "un utilisateur actif = un utilisateur qui s'est connecté dans le mois"):
the distinct users of the successful login AuditEvents (DCM 110114, outcome 0) recorded in that calendar
month, Paris time. The user of a login event is an agent's `who` naming a person (`login_user`): events
that name only an OAuth client are not user logins. Login events are kept FHIR_LOGIN_AUDIT_RETENTION_DAYS
(560 days > 18 months, audit.py), so every month of the last 18 is still counted from the events themselves.
"""

from __future__ import annotations

import calendar
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.search.engine import compile_filter
from fhir_server.teleexpertise.codes import (
    DOSSIER_ID,
    DOSSIER_STATUS,
    DOSSIER_TYPE,
    DOSSIER_TYPE_LABELS,
    EXT_BUSINESS_STATUS,
    ORG_KIND,
    RPPS_SYSTEMS,
    extension_value,
    first_code,
    reference_of,
)

PARIS = ZoneInfo("Europe/Paris")
BATCH = 200
CACHE_SIZE = 5000
LOGIN_TYPE = "http://dicom.nema.org/resources/ontology/DCM|110114"

# (key, header): the 13 columns of CCTP §3.1.3.5, in its order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id_teledossier", "ID télédossier"),
    ("type", "Type"),
    ("date_creation", "Date-heure de création"),
    ("auteur", "Auteur (ID, nom, prénom)"),
    ("communaute_auteur", "Communauté de l'auteur"),
    ("structure_auteur", "Structure de l'auteur"),
    ("professionnel_destinataire", "Professionnel destinataire"),
    ("communaute_destinataire", "Communauté destinataire"),
    ("structure_destinataire", "Structure destinataire"),
    ("etude_dicom", "Étude DICOM"),
    ("statut", "Statut"),
    ("date_cr", "Date-heure du CR"),
    ("auteur_cr", "Auteur du CR"),
)
STATUS_LABELS = {
    "brouillon": "Brouillon",
    "en-attente-reponse": "En attente de réponse",
    "pris-en-charge": "Pris en charge / en cours",
    "attente-info-complementaire": "En attente d'information complémentaire",
    "repondu": "Répondu",
    "clos-requis": "Clos (côté requis)",
    "clos-requerant": "Clos (côté requérant)",
    "refuse": "Refusé",
    "recuse": "Récusé",
    "readresse": "Réadressé",
    "transfere": "Transféré",
}
ANSWERED = frozenset({"repondu", "clos-requis"})


# ---- periods ------------------------------------------------------------------------------------------


def instant(value: str, *, end: bool = False) -> datetime:
    """A query bound: a date (YYYY, YYYY-MM, YYYY-MM-DD, Paris time; `end` = the end of that period) or a
    dateTime with offset. 400 when malformed."""
    value = value.strip()
    m = re.fullmatch(r"(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?", value)
    try:
        if m:
            year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
            start = datetime(year, month, day, tzinfo=PARIS)
            if not end:
                return start.astimezone(UTC)
            if m.group(3):
                after = start + timedelta(days=1)
            elif m.group(2):
                after = start + timedelta(days=calendar.monthrange(year, month)[1])
            else:
                after = datetime(year + 1, 1, 1, tzinfo=PARIS)
            return after.astimezone(UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FHIRError(400, f"{value!r} is not a date (YYYY-MM-DD) or a dateTime", code="invalid") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PARIS)
    return moment.astimezone(UTC)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month YYYY-MM in Paris time, as UTC instants."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month or ""):
        raise FHIRError(400, f"month {month!r} is not YYYY-MM", code="invalid")
    return instant(month), instant(month, end=True)


def months(first: str, last: str) -> list[str]:
    month_bounds(first), month_bounds(last)
    y, m = int(first[:4]), int(first[5:])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        if len(out) > 240:
            raise FHIRError(400, "at most 240 months at once", code="too-costly")
    return out


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def local_time(value: str | None) -> str:
    """A FHIR instant/dateTime as an ISO 8601 Paris time, to the second ("" when absent)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        return moment.isoformat(timespec="seconds") if "T" in value else value
    return moment.astimezone(PARIS).isoformat(timespec="seconds")


# ---- annuaire lookups ---------------------------------------------------------------------------------


class _Annuaire:
    """Current annuaire resources by reference, through a bounded cache (one export reads each once)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.cache: OrderedDict[str, dict[str, Any] | None] = OrderedDict()

    async def get(self, ref: str | None) -> dict[str, Any] | None:
        if not ref or "/" not in ref:
            return None
        if ref in self.cache:
            self.cache.move_to_end(ref)
            return self.cache[ref]
        rtype, _, rid = ref.partition("/")
        doc = await self.ctx.store.current(rtype, rid)
        found = doc.get("res") if doc else None
        self.cache[ref] = found
        if len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        return found

    async def person(self, ref: str | None) -> dict[str, str] | None:
        """{id, nom, prenom} of a PractitionerRole's (or Practitioner's) practitioner."""
        if not ref:
            return None
        practitioner_ref = ref
        if ref.startswith("PractitionerRole/"):
            practitioner_ref = reference_of((await self.get(ref) or {}).get("practitioner")) or ""
        practitioner = await self.get(practitioner_ref) if practitioner_ref.startswith("Practitioner/") else None
        if practitioner is None:
            return None
        ident = next(
            (i.get("value") for i in practitioner.get("identifier") or [] if i.get("system") in RPPS_SYSTEMS), None
        ) or next((i.get("value") for i in practitioner.get("identifier") or [] if i.get("value")), None)
        names = practitioner.get("name") or [{}]
        name = next((n for n in names if n.get("use") == "official"), names[0])
        return {
            "id": ident or practitioner_ref,
            "nom": name.get("family") or "",
            "prenom": " ".join(name.get("given") or []),
        }

    async def placement(self, org_ref: str | None) -> tuple[str | None, str | None]:
        """(communauté, structure) references of an organisation that is either."""
        org = await self.get(org_ref) if org_ref and org_ref.startswith("Organization/") else None
        if org is None:
            return None, None
        kind = first_code(org.get("type") or [], ORG_KIND)
        if kind == "communaute" or (kind is None and org.get("partOf")):
            return org_ref, reference_of(org.get("partOf"))
        return None, org_ref

    async def organisation(self, ref: str | None) -> dict[str, str] | None:
        org = await self.get(ref)
        if org is None:
            return None
        ident = next((i.get("value") for i in org.get("identifier") or [] if i.get("value")), None)
        return {"id": ident or ref or "", "libelle": org.get("name") or ""}

    async def role_placement(self, role_ref: str | None) -> tuple[str | None, str | None]:
        if not role_ref or not role_ref.startswith("PractitionerRole/"):
            return None, None
        return await self.placement(reference_of((await self.get(role_ref) or {}).get("organization")))


# ---- rows ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One export row: the 13 columns, each a str or a {id, nom, prenom} / {id, libelle} dict."""

    values: dict[str, Any]
    structures: frozenset[str]  # structures involved (author's, addressee's): for a local admin's scope


def person_text(person: dict[str, str] | None) -> str:
    if not person:
        return ""
    name = " ".join(p for p in (person.get("nom"), person.get("prenom")) if p)
    return f"{name} ({person['id']})" if name else person["id"]


def organisation_text(org: dict[str, str] | None, *, with_id: bool = True) -> str:
    if not org:
        return ""
    if with_id and org.get("id") and org["id"] != org.get("libelle"):
        return f"{org['libelle']} ({org['id']})" if org.get("libelle") else org["id"]
    return org.get("libelle") or org.get("id") or ""


async def _batch_rows(ctx: ServerContext, annuaire: _Annuaire, requests: list[dict[str, Any]]) -> list[Row]:
    refs = [f"ServiceRequest/{r['id']}" for r in requests]
    live = {"res": {"$exists": True}}
    tasks: dict[str, list[dict[str, Any]]] = {ref: [] for ref in refs}
    flt = {**live, "$or": [{"i.focus.r": {"$in": refs}}, {"i.based-on.r": {"$in": refs}}]}
    async for doc in ctx.database.resources("Task").find(flt, {"res": 1}).sort("_id", 1):
        task = doc["res"]
        owners = {reference_of(task.get("focus"))} | {reference_of(b) for b in task.get("basedOn") or []}
        for ref in owners & set(refs):
            tasks[ref].append(task)
            break
    with_study: set[str] = set()
    async for doc in ctx.database.resources("ImagingStudy").find({**live, "i.basedon.r": {"$in": refs}}, {"res": 1}):
        with_study.update(reference_of(b) or "" for b in doc["res"].get("basedOn") or [])
    report_refs = [
        reference_of(o.get("valueReference"))
        for ts in tasks.values()
        for t in ts
        for o in t.get("output") or []
        if (reference_of(o.get("valueReference")) or "").startswith("DiagnosticReport/")
    ]
    reports: dict[str, dict[str, Any]] = {}
    if report_refs:
        ids = [r.split("/", 1)[1] for r in report_refs if r]
        async for doc in ctx.database.resources("DiagnosticReport").find({**live, "_id": {"$in": ids}}, {"res": 1}):
            reports[f"DiagnosticReport/{doc['_id']}"] = doc["res"]
            if doc["res"].get("imagingStudy"):
                for b in doc["res"].get("basedOn") or []:
                    with_study.add(reference_of(b) or "")

    rows: list[Row] = []
    for request, ref in zip(requests, refs, strict=True):
        author = reference_of(request.get("requester"))
        a_communaute, a_structure = await annuaire.role_placement(author)
        dossier_id = next(
            (i.get("value") for i in request.get("identifier") or [] if i.get("system") == DOSSIER_ID), None
        )
        type_code = first_code(request.get("category") or [], DOSSIER_TYPE)
        has_study = ref in with_study or any(
            (reference_of(s) or "").startswith("ImagingStudy/") for s in request.get("supportingInfo") or []
        )
        common = {
            "id_teledossier": dossier_id or request["id"],
            "type": DOSSIER_TYPE_LABELS.get(type_code or "", type_code or ""),
            "date_creation": local_time(request.get("authoredOn") or (request.get("meta") or {}).get("lastUpdated")),
            "auteur": await annuaire.person(author),
            "communaute_auteur": await annuaire.organisation(a_communaute),
            "structure_auteur": await annuaire.organisation(a_structure),
        }
        if not tasks[ref]:
            status = first_code(extension_value(request, EXT_BUSINESS_STATUS), DOSSIER_STATUS)
            values = {
                **common,
                "professionnel_destinataire": None,
                "communaute_destinataire": None,
                "structure_destinataire": None,
                "etude_dicom": "oui" if has_study else "non",
                "statut": STATUS_LABELS.get(
                    status or "", status or ("Brouillon" if request.get("status") == "draft" else "")
                ),
                "date_cr": "",
                "auteur_cr": None,
            }
            rows.append(Row(values, frozenset(s for s in (a_structure,) if s)))
            continue
        for task in tasks[ref]:
            values, structures = await _task_columns(annuaire, task, reports)
            task_study = any(
                (reference_of(x.get("valueReference")) or "").startswith("ImagingStudy/")
                for x in [*(task.get("input") or []), *(task.get("output") or [])]
            )
            values = {**common, **values, "etude_dicom": "oui" if has_study or task_study else "non"}
            rows.append(Row(values, frozenset(s for s in (a_structure, *structures) if s)))
    return rows


async def _task_columns(
    annuaire: _Annuaire, task: dict[str, Any], reports: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], tuple[str | None, ...]]:
    owner = reference_of(task.get("owner"))
    professional = owner if owner and owner.startswith(("PractitionerRole/", "Practitioner/")) else None
    communaute = structure = None
    # The addressed communauté: the owner, else the one kept in restriction.recipient once someone took
    # the Task in charge, else the addressed professional's own communauté.
    candidates = [owner] + [reference_of(r) for r in (task.get("restriction") or {}).get("recipient") or []]
    for candidate in candidates:
        if candidate and candidate.startswith("Organization/"):
            communaute, structure = await annuaire.placement(candidate)
            if communaute or structure:
                break
    if communaute is None and structure is None and professional:
        communaute, structure = await annuaire.role_placement(professional)
    status = first_code(task.get("businessStatus"), DOSSIER_STATUS)
    report = next(
        (reports[r] for o in task.get("output") or [] if (r := reference_of(o.get("valueReference"))) in reports),
        None,
    )
    cr_time, cr_author = "", None
    if report is not None:
        cr_time = local_time(report.get("issued") or (report.get("meta") or {}).get("lastUpdated"))
        performer = next(
            (
                p
                for p in (reference_of(x) for x in report.get("performer") or [])
                if p and not p.startswith("Organization/")
            ),
            None,
        )
        cr_author = await annuaire.person(performer)
    elif status in ANSWERED:
        cr_time = local_time((task.get("executionPeriod") or {}).get("end"))
    if cr_author is None and (report is not None or status in ANSWERED) and professional:
        cr_author = await annuaire.person(professional)
    values = {
        "professionnel_destinataire": await annuaire.person(professional),
        "communaute_destinataire": await annuaire.organisation(communaute),
        "structure_destinataire": await annuaire.organisation(structure),
        "statut": STATUS_LABELS.get(status or "", status or task.get("status") or ""),
        "date_cr": cr_time,
        "auteur_cr": cr_author,
    }
    return values, (structure,)


async def activity_rows(
    ctx: ServerContext, start: datetime, end: datetime, structures: frozenset[str] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The rows of the dossiers created in [start, end), in `_id` order; with `structures`, only the rows
    involving one of them (a local administrator's view)."""
    params = [
        ("category", f"{DOSSIER_TYPE}|"),
        ("authored", f"ge{_utc(start)}"),
        ("authored", f"lt{_utc(end)}"),
    ]
    flt = (await compile_filter(ctx, "ServiceRequest", params, strict=True)).flt
    await ctx.store.tx.settle()  # committed transactions fully applied before reading
    annuaire = _Annuaire(ctx)
    cursor = ctx.database.resources("ServiceRequest").find(flt, {"res": 1}).sort("_id", 1).batch_size(BATCH)
    batch: list[dict[str, Any]] = []

    async def flush() -> list[dict[str, Any]]:
        rows = await _batch_rows(ctx, annuaire, batch)
        batch.clear()
        return [r.values for r in rows if structures is None or r.structures & structures]

    async for doc in cursor:
        batch.append(doc["res"])
        if len(batch) >= BATCH:
            for row in await flush():
                yield row
    if batch:
        for row in await flush():
            yield row


def flat(row: dict[str, Any]) -> list[str]:
    """A row as 13 CSV cells."""
    out = []
    for key, _ in COLUMNS:
        value = row.get(key)
        if isinstance(value, dict) and "libelle" in value:
            value = organisation_text(value, with_id=key.startswith("structure"))
        elif isinstance(value, dict):
            value = person_text(value)
        out.append(value or "")
    return out


# ---- monthly active users -----------------------------------------------------------------------------


def login_user(event: dict[str, Any]) -> str | None:
    """The user of a login AuditEvent: an agent's `who` that names a person — a reference (Practitioner/…),
    or an identifier with a system (an RPPS...). A bare identifier is an OAuth client id (what the token
    endpoint records for client logins and refreshes): not a user, not counted."""
    for agent in sorted(event.get("agent") or [], key=lambda a: not a.get("requestor")):
        who = agent.get("who") or {}
        if isinstance(who.get("reference"), str):
            return reference_of(who) or who["reference"]
        ident = who.get("identifier") or {}
        if ident.get("value") and ident.get("system"):
            return f"{ident['system']}|{ident['value']}"
    return None


async def monthly_active_users(ctx: ServerContext, month: str, users: frozenset[str] | None = None) -> int:
    """Distinct users with a successful login AuditEvent in `month` (YYYY-MM, Paris time); with `users`,
    only those (a local administrator's structure)."""
    start, end = month_bounds(month)
    params = [("type", LOGIN_TYPE), ("outcome", "0"), ("date", f"ge{_utc(start)}"), ("date", f"lt{_utc(end)}")]
    flt = (await compile_filter(ctx, "AuditEvent", params, strict=True)).flt
    seen: set[str] = set()
    async for doc in ctx.database.resources("AuditEvent").find(flt, {"res.agent": 1}).batch_size(1000):
        user = login_user(doc.get("res") or {})
        if user and (users is None or user in users):
            seen.add(user)
    return len(seen)


async def structure_users(ctx: ServerContext, structures: frozenset[str]) -> frozenset[str]:
    """Practitioners with a PractitionerRole in these structures or their communautés."""
    org_refs = set(structures)
    async for doc in ctx.database.resources("Organization").find(
        {"res": {"$exists": True}, "i.partof.r": {"$in": list(structures)}}, {"_id": 1}
    ):
        org_refs.add(f"Organization/{doc['_id']}")
    found: set[str] = set()
    flt = {"res": {"$exists": True}, "i.organization.r": {"$in": sorted(org_refs)}}
    async for doc in ctx.database.resources("PractitionerRole").find(flt, {"res.practitioner": 1}):
        practitioner = reference_of((doc.get("res") or {}).get("practitioner"))
        if practitioner:
            found.add(practitioner)
    return frozenset(found)


def measure_report(ctx: ServerContext, month: str, count: int, reporter: str | None = None) -> dict[str, Any]:
    start, end = month_bounds(month)
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": "https://fhir-server.example/fhir/Measure/monthly-active-users",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {
            "start": start.astimezone(PARIS).isoformat(timespec="seconds"),
            "end": (end - timedelta(seconds=1)).astimezone(PARIS).isoformat(timespec="seconds"),
        },
        "group": [
            {
                "code": {"text": "Utilisateurs actifs (connectés dans le mois)"},
                "population": [
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/measure-population",
                                    "code": "initial-population",
                                }
                            ]
                        },
                        "count": count,
                    }
                ],
                "measureScore": {"value": count},
            }
        ],
    }
    if reporter:
        report["reporter"] = {"reference": reporter}
    return report
