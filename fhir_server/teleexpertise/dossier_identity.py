"""The patient of a télédossier created without patient context (CCTP §3.1.2.1 R-09, §3.1.2.3 R-15–R-20;
spec §8 tests 2 and 3).

`POST ServiceRequest` (dossier_create.py) names its patient one of three ways:

- `"subject": {"reference": "Patient/ID"}`: an existing Patient (patient context); nothing here.
- a contained Patient with the strict traits, `"subject": {"reference": "#p"}` and `"contained": [{"resourceType":
  "Patient", "id": "p", ...}]`: the server creates the Patient, in the dossier's transaction and with its access
  list, and the ServiceRequest points to it (the contained copy is dropped). Its identity:
  - the traits carry an INS already (read from another system): kept as given, INSi is not queried;
  - else INSi "recherche par traits" (identity/insi.py), once, before the transaction: `found` → the INS and
    INSi's 5 strict traits, status RECUP (récupérée; QUAL, qualifiée, when the traits state an identity
    document check: VALI with its validationMode); `not-found`, `several`, INSi unavailable (timeout,
    refused, error) or not configured → the typed traits without INS, status PROV (provisoire; VALI when the
    traits state a document check). Creation is never blocked by INSi: an emergency does not wait for it.
- `?identity-unknown=true` with no traits (no subject, or a contained Patient without traits): a Patient with
  no traits (R-17): name `{"use": "anonymous", "text": "Identité inconnue"}`, status PROV, and the flag
  `tlx-ext-identity-unknown` = true; INSi is not queried.

Each case adds an issue to the 201's OperationOutcome (`Prefer: return=OperationOutcome`): `information` when
the identity is INSi's, the client's INS or unknown by request; `warning` otherwise, saying why there is no INS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from starlette.requests import Request

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError, OutcomeIssue
from fhir_server.identity import patient as identity
from fhir_server.identity.insi import INSiUnavailable, client_from_settings, valid_matricule
from fhir_server.interactions.body import validate_or_raise
from fhir_server.teleexpertise.codes import BASE

log = logging.getLogger(__name__)

TLX_PATIENT = f"{BASE}/StructureDefinition/tlx-patient"
EXT_IDENTITY_UNKNOWN = f"{BASE}/StructureDefinition/tlx-ext-identity-unknown"
UNKNOWN_PARAM = "identity-unknown"
# The subject's reference until the new Patient has its id (given in the transaction, dossier_create.py).
PENDING = "Patient/pending-identity"


@dataclass
class IdentityRequest:
    kind: Literal["traits", "ins", "unknown"]
    patient: dict[str, Any] = field(default_factory=dict)  # the typed Patient, without its local id


@dataclass
class Identity:
    patient: dict[str, Any]  # the Patient to create
    issues: list[OutcomeIssue]  # for the 201's OperationOutcome
    detail: str  # for the creation's AuditEvent


def _unprocessable(message: str, expression: str = "ServiceRequest.subject") -> FHIRError:
    return FHIRError(422, message, code="business-rule", expression=(expression,))


def identity_request(request: Request, body: dict[str, Any]) -> tuple[dict[str, Any], IdentityRequest | None]:
    """(the dossier body with its subject → PENDING, what to resolve), or (body, None) when the subject is an
    existing Patient or missing without `identity-unknown=true` (dossier_create.py answers those). 400/422 for a
    contained Patient that is not valid or lacks strict traits, before any INSi call."""
    unknown = _flag(request)
    subject = body.get("subject")
    raw = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(raw, str) and raw.startswith("#"):
        contained = body.get("contained") if isinstance(body.get("contained"), list) else []
        index = next((i for i, c in enumerate(contained) if isinstance(c, dict) and c.get("id") == raw[1:]), None)
        if index is None:
            raise _unprocessable(f"the subject {raw} names no contained resource")
        typed = contained[index]
        if typed.get("resourceType") != "Patient":
            raise _unprocessable("a télédossier's subject is a Patient")
        # The contained resources as contained (no security labels, no version…), before INSi is asked anything.
        shell = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order", "subject": {"reference": raw}}
        validate_or_raise({**shell, "contained": contained}, "ServiceRequest")
        typed = {k: v for k, v in typed.items() if k != "id"}
        detached = _detach(body, raw, index)
        if unknown:
            if any(typed.get(k) for k in ("name", "gender", "birthDate", "identifier")):
                raise _unprocessable(
                    f"{UNKNOWN_PARAM}=true is for a patient without traits; drop the traits or the flag"
                )
            return detached, IdentityRequest("unknown")
        missing = identity.typed_traits(typed).missing()
        if missing:
            raise _unprocessable(
                "a patient given by its traits needs the strict traits: missing " + ", ".join(missing)
                + f" (for an unknown identity: ?{UNKNOWN_PARAM}=true)",
                f"ServiceRequest.contained[{index}]",
            )  # fmt: skip
        ins = identity.ins_identifiers(typed)
        for ident in ins:
            if not valid_matricule(str(ident.get("value") or "")):
                raise _unprocessable(
                    "the matricule INS is 15 characters (NIR or NIA and its key) with the right key",
                    f"ServiceRequest.contained[{index}].identifier",
                )
        return detached, IdentityRequest("ins" if ins else "traits", typed)
    if not unknown:
        return body, None
    if raw is not None or subject is not None:
        raise _unprocessable(f"{UNKNOWN_PARAM}=true creates the patient: the dossier must not name one")
    return {**body, "subject": {"reference": PENDING}}, IdentityRequest("unknown")


def _flag(request: Request) -> bool:
    value = request.query_params.get(UNKNOWN_PARAM)
    if value in (None, "false"):
        return False
    if value == "true":
        return True
    raise FHIRError(400, f"{UNKNOWN_PARAM} is true or false", code="invalid")


def _detach(body: dict[str, Any], local: str, index: int) -> dict[str, Any]:
    """The body without the contained Patient, its local references pointing to PENDING."""
    contained = [c for i, c in enumerate(body["contained"]) if i != index]
    out = {k: v for k, v in body.items() if k != "contained"}
    if contained:
        out["contained"] = contained
    return repoint(out, local, PENDING)


def repoint(value: Any, old: str, new: str) -> Any:
    """`value` with every Reference to `old` pointing to `new`."""
    if isinstance(value, dict):
        return {k: (new if k == "reference" and v == old else repoint(v, old, new)) for k, v in value.items()}
    if isinstance(value, list):
        return [repoint(v, old, new) for v in value]
    return value


async def resolve(ctx: ServerContext, wanted: IdentityRequest) -> Identity:
    """The Patient to create. Calls INSi at most once; never raises for INSi's sake."""
    if wanted.kind == "unknown":
        patient = identity.unknown_identity()
        patient["extension"].append({"url": EXT_IDENTITY_UNKNOWN, "valueBoolean": True})
        info = "unknown identity: a provisional Patient without traits was created (tlx-ext-identity-unknown)"
        return Identity(_profiled(patient), [_issue("information", "informational", info)], "identité inconnue")
    if wanted.kind == "ins":
        info = "the INS given with the traits is kept as given; INSi was not queried"
        patient = _profiled(identity.with_typed_ins(wanted.patient))
        return Identity(patient, [_issue("information", "informational", info)], "INS fourni avec les traits")
    traits = identity.typed_traits(wanted.patient).for_search()
    if isinstance(traits, str):
        return _provisional(wanted, "incomplete", f"INSi was not queried: {traits}", "INSi non interrogé")
    service = client_from_settings(ctx.settings)
    if service is None:
        return _provisional(wanted, "not-supported", "INSi is not configured on this server", "INSi non configuré")
    try:
        result = await service.search_by_traits(traits)
    except INSiUnavailable as exc:
        log.warning("INSi unavailable at dossier creation", extra={"kind": exc.kind, "reason": exc.reason})
        code = "timeout" if exc.kind == "timeout" else "transient"
        return _provisional(wanted, code, f"INSi is unavailable: {exc.reason}", "INSi indisponible")
    log.info("INSi search at dossier creation", extra={"outcome": result.outcome, "cr": result.code})
    if result.outcome == "several":
        return _provisional(
            wanted, "multiple-matches",
            "INSi found several identities for these traits (CR 02); give all the birth given names and the birthplace",
            "INSi : plusieurs identités",
        )  # fmt: skip
    if result.identity is None:  # not-found
        return _provisional(wanted, "not-found", "INSi found no identity for these traits (CR 01); check them",
                            "INSi : aucune identité")  # fmt: skip
    patient = identity.recovered(wanted.patient, result.identity, today=_today())
    kind, status = identity.INS_OIDS[result.identity.oid][0], identity.identity_status(patient) or ""
    info = f"INSi found the identity: INS ({kind}) and strict traits from INSi, identity status {status}"
    label = identity.STATUS_DISPLAY.get(status, status).lower()
    return Identity(_profiled(patient), [_issue("information", "informational", info)], f"{label} (INSi)")


def _provisional(wanted: IdentityRequest, code: str, why: str, detail: str) -> Identity:
    patient = identity.provisional(wanted.patient)
    status = identity.identity_status(patient) or ""
    text = f"{why}: the patient's identity has no INS (status {status})"
    label = identity.STATUS_DISPLAY.get(status, status).lower()
    return Identity(_profiled(patient), [_issue("warning", code, text)], f"{label} ({detail})")


def _profiled(patient: dict[str, Any]) -> dict[str, Any]:
    meta = dict(patient.get("meta") or {})
    profiles = [p for p in meta.get("profile") or [] if p != TLX_PATIENT]
    meta["profile"] = [*profiles, TLX_PATIENT]
    return {"resourceType": "Patient", **patient, "meta": meta}


def _issue(severity: str, code: str, text: str) -> OutcomeIssue:
    return OutcomeIssue(severity, code, text, ("ServiceRequest.subject",))


def _today() -> str:
    return datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
