"""Worklists: each one a plain FHIR search on Task that a user could also type, run with the same rules.

`<mine>` = the user's ps PractitionerRoles, `<teams>` = those and the user's communautés:

| list | the search it stands for |
| --- | --- |
| `to-answer` | `Task?tlx-addressee=<teams>&status=requested,in-progress,on-hold` (the shared worklist of the requis) |
| `taken` | `Task?owner=<mine>&status=in-progress,on-hold` (what I took in charge) |
| `sent-waiting` | `Task?requester=<mine>&status=requested,in-progress,on-hold` (what I sent, not answered yet) |
| `info-requested` | `Task?requester=<mine>&business-status=<teledossier-status>\\|attente-info-complementaire` |
| `answered` | `Task?requester=<mine>&business-status=<teledossier-status>\\|repondu` |

Filters: `type` (a teledossier-type code → `code=<system>|<type>`), `priority`, `authored` (→ `authored-on`,
with prefixes), `_count`, `_sort` (default `-authored-on`), paging with the search's own `next` links.
`tlx-addressee` is a custom search parameter (profiles/search-parameters/SearchParameter-tlx-addressee.json):
`Task.restriction.recipient`, where the addressee stays once someone took charge.

Indexes (MongoDB; docs/PERFORMANCE.md): besides the wildcard index, `Task` gets
`{i.tlx-addressee.r: 1, i.authored-on.max: -1, _id: 1}`, and the same on `i.owner.r` and `i.requester.r`,
so a worklist page is an index walk in `-authored-on` order over the user's few addressees (SORT_MERGE
over the `$in` points), not a sort of every match.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise.codes import DOSSIER_STATUS, DOSSIER_TYPE
from fhir_server.teleexpertise.directory import Principal

OPEN = "requested,in-progress,on-hold"
LISTS = ("to-answer", "taken", "sent-waiting", "info-requested", "answered")
PASS_THROUGH = ("_count", "_cursor", "_total", "_summary", "_elements", "_include", "_revinclude")


def worklist_params(principal: Principal, name: str, query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The Task search parameters of the worklist `name` for this user, with the query's filters."""
    mine = sorted(principal.ps_roles)
    teams = sorted(principal.ps_roles | principal.ps_communautes)
    if not mine:
        raise FHIRError(403, "worklists are for health professionals (profile ps)", code="forbidden")
    params: list[tuple[str, str]]
    if name == "to-answer":
        params = [("tlx-addressee", ",".join(teams)), ("status", OPEN)]
    elif name == "taken":
        params = [("owner", ",".join(mine)), ("status", "in-progress,on-hold")]
    elif name == "sent-waiting":
        params = [("requester", ",".join(mine)), ("status", OPEN)]
    elif name == "info-requested":
        params = [("requester", ",".join(mine)), ("business-status", f"{DOSSIER_STATUS}|attente-info-complementaire")]
    elif name == "answered":
        params = [("requester", ",".join(mine)), ("business-status", f"{DOSSIER_STATUS}|repondu")]
    else:
        raise FHIRError(400, f"list must be one of {', '.join(LISTS)}", code="invalid")
    sort = None
    for key, value in query:
        if key == "type":
            params.append(("code", ",".join(f"{DOSSIER_TYPE}|{v}" for v in value.split(","))))
        elif key == "priority":
            params.append(("priority", value))
        elif key == "authored":
            params.append(("authored-on", value))
        elif key == "_sort":
            sort = value
        elif key in PASS_THROUGH:
            params.append((key, value))
        elif key != "list":
            raise FHIRError(400, f"unknown worklist parameter {key!r}", code="invalid")
    params.append(("_sort", sort or "-authored-on"))
    return params


WORKLIST_INDEXES = [
    IndexModel(
        [(f"i.{param}.r", ASCENDING), ("i.authored-on.max", DESCENDING), ("_id", ASCENDING)],
        name=f"tlx_{param}_authored",
    )
    for param in ("tlx-addressee", "owner", "requester")
]


async def ensure_worklist_indexes(ctx: ServerContext) -> None:
    """The compound indexes of the worklist queries (Database.add_indexes: MongoDB only)."""
    await ctx.database.add_indexes("Task", WORKLIST_INDEXES)
