"""`GET [base]/Task/$worklist?list=to-answer|taken|sent-waiting|info-requested|answered[&type=][&priority=]
[&authored=][&_count=][&_sort=]`: a téléexpertise user's worklist, as a searchset Bundle.

Each list is a plain Task search (teleexpertise/worklists.py lists them); this operation fills in the
user's PractitionerRoles and communautés and runs it through the search engine, with the access rules of
any search. The Bundle's `self`/`next`/`previous` links are those plain searches, so paging goes on with
`GET [base]/Task?...` like any search.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import query_items, server
from fhir_server.http import fhir_response, wants_pretty
from fhir_server.interactions.search import Scope, run_search
from fhir_server.teleexpertise.dossier import acting_user
from fhir_server.teleexpertise.worklists import ensure_worklist_indexes, worklist_params


async def worklist(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task", "s")
    query = query_items(request)
    name = next((v for k, v in query if k == "list"), "to-answer")
    params = worklist_params(actor.principal, name, query)
    await ensure_worklist_indexes(ctx)
    bundle = await run_search(request, ctx, Scope(["Task"], "Task"), params)
    return fhir_response(bundle, 200, pretty=wants_pretty(request))
