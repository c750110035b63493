"""The télédossier state machine, as data: states, transitions, and who may fire each one.

A per-addressee Task is in one state `(Task.status, businessStatus)`; the dossier ServiceRequest has its own
`(status, business status)` (CCTP §3.1.2.6, spec §7.2). Each operation fires one transition; the server
refuses anything else: an operation from a state the table does not list answers 409, a user on the wrong
side answers 403 (both with an OperationOutcome). Plain PUT/PATCH cannot change the fields the machine
owns (`GUARDED_TASK_FIELDS`, `GUARDED_REQUEST_FIELDS`; guarded_writes.py).

Sides (who):
- `requerant`: the dossier's author (its requester PractitionerRole's practitioner) or a `ps` member of the
  author's communauté;
- `requis`: for one Task, the addressed professional (owner PractitionerRole) or a `ps` member of the
  addressed communauté (owner, or `restriction.recipient` once someone took charge).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.errors import FHIRError

State = tuple[str, str]  # (FHIR status, teledossier-status code)

DRAFT: State = ("draft", "brouillon")
WAITING: State = ("requested", "en-attente-reponse")
TAKEN: State = ("in-progress", "pris-en-charge")
ON_HOLD: State = ("on-hold", "attente-info-complementaire")
ANSWERED: State = ("completed", "repondu")
CLOSED_REQUIS: State = ("completed", "clos-requis")
REFUSED: State = ("rejected", "refuse")
RECUSED: State = ("rejected", "recuse")
READDRESSED: State = ("cancelled", "readresse")

OPEN_TASK_STATES = frozenset({WAITING, TAKEN, ON_HOLD})
# Dossier types whose complementary-information request does not block the answer (CCTP §2.3.3.4).
NON_BLOCKING_INFO_TYPES = frozenset({"greffe-renale"})


@dataclass(frozen=True)
class Transition:
    operation: str
    side: str  # "requerant" or "requis"
    sources: frozenset[State]
    target: State | None  # None: the state does not change (or is computed, see the operation)
    event: str | None = None  # notification event (teleexpertise/notify.py)


TASK_TRANSITIONS: dict[str, Transition] = {
    t.operation: t
    for t in (
        Transition("accept", "requis", frozenset({WAITING}), TAKEN),
        Transition("request-info", "requis", frozenset({WAITING, TAKEN}), ON_HOLD, "info-requested"),
        # Back to WAITING or TAKEN (whichever it was), or no change when given spontaneously.
        Transition("provide-info", "requerant", OPEN_TASK_STATES, None, "info-given"),
        # ON_HOLD only for NON_BLOCKING_INFO_TYPES (checked by `check_transition`).
        Transition("respond", "requis", frozenset({WAITING, TAKEN, ON_HOLD}), ANSWERED, "answered"),
        Transition("close", "requis", frozenset({ANSWERED}), CLOSED_REQUIS),
        Transition("refuse", "requis", OPEN_TASK_STATES, REFUSED, "refused"),
        Transition("readdress", "requerant", OPEN_TASK_STATES, READDRESSED, "readdressed"),
    )
}

# The dossier itself (ServiceRequest.status, extension business status).
REQUEST_DRAFT: State = DRAFT
REQUEST_ACTIVE: State = ("active", "en-attente-reponse")
REQUEST_CLOSED: State = ("completed", "clos-requerant")
REQUEST_REVOKED: State = ("revoked", "refuse")

REQUEST_TRANSITIONS: dict[str, Transition] = {
    t.operation: t
    for t in (
        Transition("send", "requerant", frozenset({REQUEST_DRAFT}), REQUEST_ACTIVE, "sent"),
        Transition("readdress", "requerant", frozenset({REQUEST_ACTIVE}), None, "readdressed"),
        # Only when no Task is still open (see tlx close).
        Transition("close", "requerant", frozenset({REQUEST_ACTIVE}), REQUEST_CLOSED),
    )
}

GUARDED_TASK_FIELDS = (
    "status", "businessStatus", "statusReason", "owner", "restriction", "focus", "basedOn", "for", "requester",
    "intent", "output", "executionPeriod", "code",
)  # fmt: skip
GUARDED_REQUEST_FIELDS = ("status", "requester", "performer", "intent", "category")


def illegal(operation: str, what: str, state: State) -> FHIRError:
    return FHIRError(
        409,
        f"${operation} is not allowed while {what} is {state[0]}/{state[1]}",
        code="business-rule",
    )


def check_transition(transition: Transition, state: State, *, dossier_type: str | None, what: str) -> None:
    if state not in transition.sources:
        raise illegal(transition.operation, what, state)
    if transition.operation == "respond" and state == ON_HOLD and dossier_type not in NON_BLOCKING_INFO_TYPES:
        raise FHIRError(
            409,
            f"the answer waits for the complementary information (only {', '.join(sorted(NON_BLOCKING_INFO_TYPES))} "
            "dossiers may be answered while it is requested)",
            code="business-rule",
        )


def wrong_side(operation: str, side: str) -> FHIRError:
    who = (
        "the requérant (author or a member of the author's communauté)"
        if side == "requerant"
        else ("an addressee of this Task (the addressed professional or a member of the addressed communauté)")
    )
    return FHIRError(403, f"${operation} is done by {who}", code="forbidden")
